"""The monitoring job: `python -m model_artifacts.monitoring`, a SageMaker processing job on the
serving image (the monitoring workflow's Monitor step), and the same code on one machine.

It reads the window's logs from S3 itself (boto3; the job's role may read them), so its only
arguments are the run's, as the Prepare step writes them:

    python -m model_artifacts.monitoring --model purchase-propensity --data-bucket BUCKET \\
        --champion-version 3 --model-data-url s3://.../model.tar.gz \\
        [--since ISO] [--until ISO] [--run-id ID] [--serving-since ISO] [--trigger schedule]

It writes result.json, summary.json and report.html under monitoring/<model>/runs/<run_id>/
and prints the result's summary as JSON on stdout. A failure is written to
/opt/ml/output/message (SageMaker's failure reason) and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:
    _repo = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(_repo), str(_repo / "functions")]

log = logging.getLogger("inferline.monitor")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_artifacts.monitoring", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True)
    p.add_argument("--data-bucket", required=True)
    p.add_argument("--champion-version", required=True)
    p.add_argument("--model-data-url", required=True, help="the serving version's model.tar.gz")
    p.add_argument("--since", help="window start, ISO 8601 (default: the spec's window before --until)")
    p.add_argument("--until", help="window end, ISO 8601 (default: now)")
    p.add_argument("--run-id")
    p.add_argument("--serving-since", help="when the endpoint started serving this version")
    p.add_argument("--trigger", default="manual")
    return p


def run(argv: list[str] | None = None, s3=None, now: datetime | None = None):
    """Parse the run's arguments and monitor; returns the MonitoringRun."""
    from model_artifacts.monitoring.run import monitor

    args = parser().parse_args(argv)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    return monitor(
        s3,
        model=args.model,
        data_bucket=args.data_bucket,
        champion={
            "version": args.champion_version,
            "model_data_url": args.model_data_url,
            "serving_since": args.serving_since,
        },
        since=_time(args.since),
        until=_time(args.until),
        now=now,
        run_id=args.run_id,
        trigger=args.trigger,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        done = run(argv)
    except Exception as exc:
        _report_failure(f"{type(exc).__name__}: {exc}")
        raise
    summary: dict[str, Any] = done.result["summary"]
    print(json.dumps({"run_id": done.result["run_id"], **summary, "report": done.uris.get("report.html")}))
    return 0


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _report_failure(message: str) -> None:
    """SageMaker shows /opt/ml/output/message as a processing job's failure reason."""
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    if output.is_dir():
        (output / "message").write_text(message[:1024], encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
