"""The service side of a window: traffic, latency, refusals and the champion's age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from model_artifacts.monitoring.logs import BATCH, ONLINE, Refusals, Window

HOUR = 3600.0


def service_section(window: Window, mask: np.ndarray, refusals: Refusals, champion: dict[str, Any],
                    now: datetime) -> dict[str, Any]:  # fmt: skip
    online = window.source == ONLINE
    latency = window.latency_ms[mask & online]
    latency = latency[np.isfinite(latency)]
    start = window.since.timestamp()
    hours = max(1, int(np.ceil((window.until.timestamp() - start) / HOUR)))
    bucket = np.clip(((window.created - start) // HOUR).astype(int), 0, hours - 1)
    per_hour_online = np.bincount(bucket[online], minlength=hours)
    per_hour_batch = np.bincount(bucket[window.source == BATCH], minlength=hours)
    trained_at = champion.get("trained_at")
    serving_since = champion.get("serving_since")
    return {
        "predictions": {
            "all_versions": window.n,
            "serving_version": int(mask.sum()),
            "online": int((mask & online).sum()),
            "batch": int((mask & (window.source == BATCH)).sum()),
            "by_version": {v: int((window.version == i).sum()) for i, v in enumerate(window.versions)},
        },
        "online_requests": dict(window.online_requests),
        "batch_jobs": len(window.batch_jobs),
        "per_hour": {
            "start": window.since.isoformat(),
            "online": per_hour_online.tolist(),
            "batch": per_hour_batch.tolist(),
        },
        "latency_ms": {
            q: float(np.percentile(latency, int(q[1:]))) if len(latency) else None
            for q in ("p50", "p90", "p99")
        }
        | {"max": float(latency.max()) if len(latency) else None, "rows": int(len(latency))},
        "refused": {"online_requests": refusals.online_requests, "batch_rows": refusals.batch_rows},
        "champion": {
            "version": champion.get("version"),
            "trained_at": trained_at,
            "age_days": _days(trained_at, now),
            "serving_since": serving_since,
            "serving_days": _days(serving_since, now),
        },
        "read": {"objects": window.objects, "bytes": window.bytes},
        "figures": {
            "Predictions": float(mask.sum()),
            "LatencyP99Ms": float(np.percentile(latency, 99)) if len(latency) else None,
        },
    }


def _days(when: str | None, now: datetime) -> float | None:
    if not when:
        return None
    try:
        then = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((now - then).total_seconds() / 86400, 2)
