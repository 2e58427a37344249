"""The retraining workflow's Lambda-backed steps, one function per state, each taking the
workflow state and returning what goes under its result path (inferline.workflow).

handlers.py runs them in Lambda; local_runtime/retrain.py runs them on one machine, with the
same Services pointed at the embedded AWS and the local endpoints.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inferline import endpoints
from inferline.resources import endpoint_name, model_package_group, model_version_prefix, split_s3_uri
from inferline.spec import ModelSpec, load_spec
from retrain import dataset, deploy, gate, registry
from retrain.deploy import PromotionRolledBack
from retrain.settings import RetrainSettings

PROMOTED, REJECTED, SKIPPED, FAILED = "promoted", "rejected", "skipped", "failed"


@dataclass
class Services:
    s3: Any
    sagemaker: Any
    sns: Any
    load_spec: Callable[[str], ModelSpec]
    data_bucket: str
    artifacts_bucket: str
    prefix: str
    sagemaker_role_arn: str
    rollback_alarms: dict[str, list[str]] = field(default_factory=dict)
    topic_arn: str | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def from_settings(cls, settings: RetrainSettings, client: Callable[[str], Any]) -> Services:
        """The services a deployed stack's retraining Lambdas use, from their settings and a
        boto3 client factory."""
        return cls(
            s3=client("s3"),
            sagemaker=client("sagemaker"),
            sns=client("sns"),
            load_spec=load_spec,
            data_bucket=settings.data_bucket,
            artifacts_bucket=settings.artifacts_bucket,
            prefix=settings.resource_prefix,
            sagemaker_role_arn=settings.sagemaker_role_arn,
            rollback_alarms=settings.rollback_alarms,
            topic_arn=settings.retrain_topic_arn,
        )


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def build_dataset(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    model = state["model"]
    spec = svc.load_spec(model)
    now = svc.now()
    run_id = state.get("run_id") or new_run_id(now)
    champion = endpoints.champion(svc.sagemaker, endpoint_name(svc.prefix, model), svc.s3)
    group = model_package_group(svc.prefix, model)
    if champion["version"] and registry.find(svc.sagemaker, group, champion["version"]) is None:
        # The version the stack was deployed with: registered, so a rollback can return to it.
        registry.create(
            svc.sagemaker, group=group, version=champion["version"], image=champion["image"],
            model_data_url=champion["model_data_url"], approval=registry.APPROVED,
            description="the version serving when retraining first ran", metadata={"decision": "initial"},
        )  # fmt: skip
    # The number the registry gives next, or above it where another run holds that one.
    first = registry.next_version(svc.sagemaker, group, champion["version"])
    version = registry.claim_version(svc.s3, svc.data_bucket, model, first, run_id)
    built = dataset.build_dataset(svc.s3, spec=spec, data_bucket=svc.data_bucket, run_id=run_id, now=now)
    job = endpoints.resource_name(svc.prefix, model, f"v{version}", run_id)
    models = f"s3://{svc.artifacts_bucket}/{model_version_prefix(model)}"
    return built | {
        "run_id": run_id,
        "contender_version": version,
        "champion": champion,
        "training_job_name": job,
        "evaluation_job_name": endpoints.resource_name(svc.prefix, model, "eval", f"v{version}", run_id),
        "output_uri": models,
        # Beside the model version SageMaker writes under <output>/<job>/output/model.tar.gz.
        "evaluation_uri": f"{models}{job}/evaluation/",
        "hyperparameters": {
            "seed": str(spec.training.seed),
            "params": json.dumps(state.get("params") or {}, sort_keys=True),
        },
    }


def run_gate(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    report = json.loads(_read(svc.s3, state["dataset"]["evaluation_uri"] + "evaluation.json"))
    return gate.decide(report) | {"report": state["dataset"]["evaluation_uri"] + "evaluation.md"}


def register(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    data = state["dataset"]
    group = model_package_group(svc.prefix, state["model"])
    existing = registry.find(svc.sagemaker, group, data["contender_version"])
    if existing:  # a retry after the package was created
        return {
            "model_package_arn": existing["arn"],
            "package_version": existing["package_version"],
            "version": existing["version"],
            "approval": existing["approval"],
        }
    return registry.register(
        svc.sagemaker,
        group=group,
        version=data["contender_version"],
        image=data["champion"]["image"],
        model_data_url=state["training"]["model_data_url"],
        gate=state["gate"],
        evaluation_uri=data["evaluation_uri"],
        run_id=data["run_id"],
    )


def start_deployment(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    data = state["dataset"]
    return deploy.start(
        svc.sagemaker,
        endpoint=endpoint_name(svc.prefix, state["model"]),
        version=data["contender_version"],
        model_data_url=state["training"]["model_data_url"],
        image=data["champion"]["image"],
        role_arn=svc.sagemaker_role_arn,
        alarms=svc.rollback_alarms.get(state["model"], []),
        run_id=data["run_id"],
    )


def check_endpoint(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    return deploy.status(svc.sagemaker, state["deployment"]["endpoint"])


def verify_deployment(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    """The endpoint must run the new config; if SageMaker rolled back, the registered version
    is marked Rejected (it never served) and the promotion fails."""
    try:
        return deploy.verify(svc.sagemaker, state["deployment"])
    except PromotionRolledBack as exc:
        registry.set_status(
            svc.sagemaker,
            state["registry"]["model_package_arn"],
            registry.REJECTED,
            f"deployment rolled back: {exc}",
            {"rolled_back_at": svc.now().isoformat(timespec="seconds")},
        )
        raise


# -- notify ---------------------------------------------------------------------------------


def outcome(state: dict[str, Any]) -> str:
    if state.get("error"):
        return FAILED
    if (state.get("dataset") or {}).get("status") == dataset.SKIPPED:
        return SKIPPED
    return PROMOTED if (state.get("gate") or {}).get("decision") == gate.PROMOTE else REJECTED


def notification(state: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) telling what the run did, with the metrics side by side and links."""
    model, result = state["model"], outcome(state)
    data = state.get("dataset") or {}
    version = data.get("contender_version", "?")
    champion = (data.get("champion") or {}).get("version") or "?"
    subject = {
        PROMOTED: f"[inferline] {model}: version {version} promoted (replaces {champion})",
        REJECTED: f"[inferline] {model}: version {version} rejected; version {champion} keeps serving",
        SKIPPED: f"[inferline] {model}: retraining skipped",
        FAILED: f"[inferline] {model}: retraining failed; version {champion} keeps serving",
    }[result]
    lines = [subject.removeprefix("[inferline] "), ""]
    if state.get("trigger") == "monitoring":
        lines += [f"Started early by monitoring: {state.get('reason')}",
                  f"Monitoring report: {state.get('monitoring_report')}", ""]  # fmt: skip
    if result == SKIPPED:
        lines.append(f"Reason: {data.get('reason')}")
    if result == FAILED:
        error = state["error"]
        lines.append(f"Failed: {error.get('Error')}: {_cause(error.get('Cause'))}")
    decision = state.get("gate")
    if decision:
        metrics = sorted(decision["contender"].keys() - {"version"})
        lines += ["", f"{'metric':<24}{'contender v' + str(version):>18}{'champion v' + str(champion):>18}"]
        for name in metrics:
            new = decision["contender"].get(name)
            old = (decision.get("champion") or {}).get(name)
            lines.append(f"{name:<24}{_num(new):>18}{_num(old):>18}")
        lines += ["", "Gate:", *(f"  - {reason}" for reason in decision["reasons"])]
        lines.append(f"Evaluation report: {decision.get('report')}")
    if data.get("rows"):
        rows = data["rows"]
        lines.append(
            f"Dataset: {rows.get('train', 0):,} training rows ({rows.get('base', 0):,} base), "
            f"{rows.get('holdout', 0):,} holdout rows; manifest {data.get('manifest_uri')}"
        )
    if state.get("registry"):
        reg = state["registry"]
        lines.append(f"Registry: {reg['model_package_arn']} ({reg['approval']})")
    return subject, "\n".join(lines) + "\n"


def notify(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    reg = state.get("registry") or {}
    if (
        state.get("error")
        and reg.get("approval") == registry.APPROVED
        and not state.get("verification")
        and registry.describe(svc.sagemaker, reg["model_package_arn"])["approval"] == registry.APPROVED
    ):
        # Approved by the gate but never verified serving (Deploy, the wait or the check
        # failed): it must not look like a version a rollback could return to.
        registry.set_status(
            svc.sagemaker, reg["model_package_arn"], registry.REJECTED,
            f"promotion failed: {state['error'].get('Error')}: {_cause(state['error'].get('Cause'))}",
        )  # fmt: skip
        reg["approval"] = registry.REJECTED
    subject, body = notification(state)
    if svc.topic_arn:
        svc.sns.publish(TopicArn=svc.topic_arn, Subject=subject[:99], Message=body)
    return {"outcome": outcome(state), "subject": subject, "message": body}


def _cause(cause: Any) -> str:
    """Step Functions gives a Lambda error's Cause as JSON text: show its message."""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause
        if isinstance(parsed, dict):
            return str(parsed.get("errorMessage") or parsed.get("FailureReason") or parsed)
    return str(cause)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _read(s3, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


# -- rollback ---------------------------------------------------------------------------------


class RollbackError(ValueError):
    pass


def rollback(model: str, svc: Services, to_version: str | None = None) -> dict[str, Any]:
    """Re-point the endpoint to a previous approved version (the newest one older than what
    serves now, or `to_version`). Returns the deployment; the caller waits for the endpoint,
    verifies it, and only then records the rollback (record_rollback)."""
    sm = svc.sagemaker
    endpoint = endpoint_name(svc.prefix, model)
    group = model_package_group(svc.prefix, model)
    serving = endpoints.champion(sm, endpoint)
    approved = [v for v in registry.versions(sm, group) if v["approval"] == registry.APPROVED]
    others = [v for v in approved if v["version"] != serving["version"]]
    if to_version is not None:
        target = next((v for v in others if v["version"] == str(to_version)), None)
        if target is None:
            raise RollbackError(
                f"version {to_version} of {model} is not an approved version other than the one "
                f"serving ({serving['version']}); approved: {[v['version'] for v in approved] or 'none'}"
            )
    else:
        older = [v for v in others if _older(v["version"], serving["version"])]
        if not older:
            raise RollbackError(
                f"{model} version {serving['version']} has no earlier approved version to roll back to"
            )
        target = older[-1]
    now = svc.now()
    deployment = deploy.start(
        sm,
        endpoint=endpoint,
        version=target["version"],
        model_data_url=target["model_data_url"],
        image=target["image"] or serving["image"],
        role_arn=svc.sagemaker_role_arn,
        alarms=svc.rollback_alarms.get(model, []),
        run_id=f"rollback-{now:%Y%m%d-%H%M%S}",
    )
    current = next((v for v in approved if v["version"] == serving["version"]), None)
    return deployment | {
        "rolled_back_from": serving["version"],
        "rolled_back_from_arn": current["arn"] if current else None,
        "target_arn": target["arn"],
    }


def record_rollback(svc: Services, deployment: dict[str, Any]) -> None:
    """Once the endpoint verifiably serves the target: the version rolled back from is
    Rejected, and the target notes that it was restored."""
    stamp = svc.now().isoformat(timespec="seconds")
    back, to = deployment["rolled_back_from"], deployment["version"]
    if deployment.get("rolled_back_from_arn"):
        registry.set_status(
            svc.sagemaker, deployment["rolled_back_from_arn"], registry.REJECTED,
            f"rolled back to version {to} at {stamp}", {"rolled_back_at": stamp},
        )  # fmt: skip
    registry.set_status(
        svc.sagemaker, deployment["target_arn"], registry.APPROVED,
        f"restored by a rollback from version {back} at {stamp}", {"restored_at": stamp},
    )  # fmt: skip


def _older(a: str, b: str | None) -> bool:
    if b is None:
        return True
    if a.isdigit() and b.isdigit():
        return int(a) < int(b)
    return a < b
