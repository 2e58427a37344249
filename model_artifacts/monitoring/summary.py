"""A run's findings in plain words: its status, a headline, what changed and what to do."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferline.spec import ModelSpec


def summarize(spec: ModelSpec, result: dict[str, Any]) -> dict[str, Any]:
    """The report's first words: status, a headline, what changed, and what to do."""
    n = result["judged"]["rows"]
    version = result["champion"]["version"]
    quality, drift, dq = result["quality"], result.get("drift") or {}, result["data_quality"]
    metric = quality["metric"]
    findings: list[str] = []
    actions: list[str] = []
    in_alarm = [k for k, a in result["alarms"].items() if a["state"] == "ALARM"]
    if n == 0:
        status = "no_data"
        headline = (f"No predictions of version {version} between {result['window']['since']} and "
                    f"{result['window']['until']}: nothing to judge.")  # fmt: skip
        actions.append("Check that traffic reaches the endpoint, or look further back with --since.")
    elif not result["judged"]["drift"]:
        status = "insufficient"
        headline = f"{n:,} predictions of version {version}: {result['judged']['reason']}"
    else:
        status = "alarm" if in_alarm else "healthy"
        headline = ""
    for name in drift.get("drifted", []):
        findings.append(f"{name} drifted: {describe_shift(drift['features'][name])}.")
    for part in ("score", "predicted"):
        test = drift.get(part)
        if test and test.get("drifted"):
            what = "The score" if part == "score" else "The predicted label"
            findings.append(f"{what} drifted: {describe_shift(test)}.")
    live, estimated = quality.get("live"), quality.get("estimated") or {}
    ref = quality["reference"].get(metric)
    if live and live.get(metric) is not None:
        findings.append(
            f"{metric} on {quality['labeled']:,} predictions with ground truth: {live[metric]:.3f} "
            f"(reference {_num(ref)}; {_versus(quality['drop'])})."
        )
    elif n:
        findings.append(
            f"{quality['labeled']:,} of {n:,} predictions have ground truth so far "
            f"(the live metric needs {spec.monitoring.min_labeled_rows:,})."
        )
    if estimated.get("value") is not None:
        findings.append(
            f"Estimated {metric} from the scores alone (CBPE): {estimated['value']:.3f} "
            f"(reference {_num(ref)}; {_versus(estimated.get('drop'))})."
        )
    for key in in_alarm:
        alarm = result["alarms"][key]
        if alarm["kind"] == "data_quality" and alarm["value"] is not None:  # (not one kept from before)
            findings.append(f"Data quality: {alarm['metric']} is {_num(alarm['value'])} "
                            f"(threshold {_num(alarm['threshold'])}).")  # fmt: skip
    refused = dq["refusals"]
    if refused["online_requests"] or refused["batch_rows"]:
        top = refused["by_field"][0] if refused["by_field"] else None
        most = f"; most often {top['field'] or 'the request'}: {top['problem']}" if top else ""
        findings.append(f"Refused for invalid input: {refused['online_requests']:,} request(s) and "
                        f"{refused['batch_rows']:,} batch row(s){most}.")  # fmt: skip
    if status == "healthy":
        headline = (f"Version {version} looks healthy: no drift over {n:,} predictions"
                    + (f", {metric} {live[metric]:.3f}" if live and live.get(metric) is not None else "")
                    + ".")  # fmt: skip
    elif status == "alarm":
        kinds = sorted({result["alarms"][k]["kind"].replace("_", " ") for k in in_alarm})
        headline = (
            f"Version {version} needs attention: {' and '.join(kinds)} alarm(s) over {n:,} predictions."
        )
        retraining = [k for k in in_alarm if result["alarms"][k]["retrains"]]
        if retraining:
            actions.append(
                f"A {retraining[0].replace('_', ' ')} alarm starts retraining on the newest labeled data "
                f"(at most once every {spec.monitoring.retrain_cooldown_hours} h); check the contender "
                f"with `inferline models {spec.name}` when it finishes."
            )
        if drift.get("drifted"):
            actions.append("Check whether the drifted inputs changed upstream (a new client, a schema or "
                           "unit change) before trusting a retrained model.")  # fmt: skip
        if any(result["alarms"][k]["kind"] == "data_quality" for k in in_alarm):
            actions.append("Fix the data-quality issue at its source: retraining does not fix broken inputs.")
    if result["baseline"]["status"] == "missing":
        actions.append(f"Retrain {spec.name} (inferline retrain {spec.name}): every new version carries the "
                       "baseline drift and the estimated metric are judged against.")  # fmt: skip
    if not actions and status == "healthy":
        actions.append("Nothing to do.")
    return {"status": status, "headline": headline, "findings": findings, "actions": actions,
            "in_alarm": in_alarm}  # fmt: skip


def describe_shift(test: dict[str, Any]) -> str:
    """The largest visible change of a drifted distribution, in plain words."""
    if test["kind"] == "categorical":
        cats = test["categories"]
        deltas = [w - r for r, w in zip(cats["reference"], cats["window"], strict=True)]
        i = int(np.argmax(np.abs(deltas)))
        return (f"{cats['values'][i]} {cats['reference'][i]:.0%} -> {cats['window'][i]:.0%} "
                f"(PSI {test['psi']:.3f}, p={test['p_value']:.1e})")  # fmt: skip
    ref_mean = test.get("reference_mean")
    shift = f"mean {ref_mean:.3g} -> {test['window_mean']:.3g}, " if ref_mean is not None else ""
    return f"{shift}PSI {test['psi']:.3f}, KS p={test['p_value']:.1e}"


def why_not_judged(spec: ModelSpec, baseline_info: dict[str, Any]) -> str:
    """Why a run did not judge drift and data quality."""
    if baseline_info["status"] == "missing":
        return f"no baseline to compare with: {baseline_info['message']}"
    return (f"drift and data quality are judged from {spec.monitoring.min_rows:,} predictions "
            f"(spec monitoring.min_rows); shown, not judged.")  # fmt: skip


def _versus(drop: float | None) -> str:
    if drop is None:
        return "not compared"
    return f"{abs(drop):.3f} {'worse' if drop > 0 else 'better'}"


def _num(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
