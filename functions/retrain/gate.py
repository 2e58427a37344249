"""Gate: promote the contender only if it beats the champion by the spec's margin on the main
metric, on the same holdout, and no named slice gets worse by more than the tolerance."""

from __future__ import annotations

from typing import Any

PROMOTE = "promote"
REJECT = "reject"


def decide(report: dict[str, Any]) -> dict[str, Any]:
    """The decision on an evaluation report (model_artifacts/evaluate.py's evaluation.json)."""
    metric = report["metric"]
    sign = 1 if report["higher_is_better"] else -1
    contender, champion = report["contender"], report["champion"]
    new = contender["overall"][metric]
    outcome: dict[str, Any] = {
        "metric": metric,
        "contender": {"version": contender["version"], **_main(contender["overall"]),
                      # which backend will serve it (model_artifacts.compiled); older reports: none
                      "backend": ((contender.get("trained") or {}).get("compiled") or {}).get("backend")},
        "champion": {"version": champion["version"], **_main(champion["overall"])} if champion else None,
        "worse_slices": [],
    }
    if champion is None:
        return outcome | {
            "decision": PROMOTE,
            "reasons": ["there is no champion: the first version is promoted"],
        }

    old = champion["overall"][metric]
    gain = sign * (new - old)
    margin = report["promotion_margin"]
    reasons = []
    if gain < margin:
        change = f"better by only {gain:.4f}" if gain > 0 else f"worse by {-gain:.4f}"
        reasons.append(f"{metric} {new:.4f} vs champion {old:.4f}: {change}; promotion needs {margin}")
    tolerance = report["slice_tolerance"]
    for column, cells in contender["slices"].items():
        for value, cell in cells.items():
            before = (champion["slices"].get(column, {}).get(value) or {}).get(metric)
            after = cell.get(metric)
            if before is None or after is None:
                continue  # too few rows or one class: not judged (the report shows it)
            loss = sign * (before - after)
            if loss > tolerance:
                outcome["worse_slices"].append(
                    {"slice": column, "value": value, "champion": before, "contender": after}
                )
                reasons.append(
                    f"{column}={value}: {metric} {after:.4f} vs champion {before:.4f} "
                    f"is worse by {loss:.4f}, over the tolerance {tolerance}"
                )
    if reasons:
        return outcome | {"decision": REJECT, "reasons": reasons}
    return outcome | {
        "decision": PROMOTE,
        "reasons": [f"{metric} {new:.4f} vs champion {old:.4f}: better by {gain:.4f} (margin {margin}); "
                    "no slice worse than the tolerance"],
    }  # fmt: skip


def _main(overall: dict[str, float]) -> dict[str, float]:
    """The metrics worth showing side by side (not the row count)."""
    return {k: v for k, v in overall.items() if k != "rows"}
