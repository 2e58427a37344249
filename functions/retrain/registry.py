"""The SageMaker Model Registry: one model package group per model, one package per contender,
Approved (promoted) or Rejected, with its metrics and evaluation report.

inferline's model version is the package's version number, assigned before training (so the
model bundle, the endpoint's Model and every prediction log carry the same number); the
package records it in its customer metadata as well.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from inferline.resources import retrain_version_claim_key

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
_META = "inferline:"


def versions(sm, group: str) -> list[dict[str, Any]]:
    """Every registered version of the group, oldest first."""
    summaries = []
    token = None
    while True:
        kwargs = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Ascending"}
        if token:
            kwargs["NextToken"] = token
        try:
            page = sm.list_model_packages(**kwargs)
        except sm.exceptions.ClientError as exc:  # the group does not exist yet
            if "does not exist" in str(exc) or exc.response["Error"]["Code"] == "ResourceNotFound":
                return []
            raise
        summaries += page.get("ModelPackageSummaryList", [])
        token = page.get("NextToken")
        if not token:
            break
    return [describe(sm, s["ModelPackageArn"]) for s in summaries]


def describe(sm, arn: str) -> dict[str, Any]:
    package = sm.describe_model_package(ModelPackageName=arn)
    meta = package.get("CustomerMetadataProperties") or {}
    container = (package.get("InferenceSpecification") or {}).get("Containers", [{}])[0]
    return {
        "arn": package["ModelPackageArn"],
        "package_version": package.get("ModelPackageVersion"),
        "version": meta.get(f"{_META}version") or str(package.get("ModelPackageVersion")),
        "approval": package.get("ModelApprovalStatus"),
        "description": package.get("ApprovalDescription") or "",
        "created_at": str(package.get("CreationTime", "")),
        "image": container.get("Image"),
        "model_data_url": container.get("ModelDataUrl"),
        "metadata": {k.removeprefix(_META): v for k, v in meta.items()},
    }


def find(sm, group: str, version: str) -> dict[str, Any] | None:
    return next((v for v in versions(sm, group) if v["version"] == str(version)), None)


def next_version(sm, group: str, champion_version: str | None) -> str:
    """The version the next contender gets: one above every registered version and the
    champion's (which may predate the registry)."""
    numbers = [int(v["version"]) for v in versions(sm, group) if str(v["version"]).isdigit()]
    if champion_version and str(champion_version).isdigit():
        numbers.append(int(champion_version))
    return str(max(numbers, default=0) + 1)


def claim_version(s3, bucket: str, model: str, first: str, run_id: str, attempts: int = 100) -> str:
    """Version `first`, or the lowest free one above it, claimed for run `run_id`.

    next_version reads the registry, which learns of a version only when the run registers
    it, hours later; two runs started together (the monthly schedule and a manual start) would
    both train "version N". Each claim is an object written only if it does not exist yet (S3
    If-None-Match: *), so exactly one run gets each number. A run that finds its own claim (a
    retried step) keeps it. A run that fails leaves its number claimed: versions may skip a
    number, never share one."""
    number = int(first)
    for _ in range(attempts):
        key = retrain_version_claim_key(model, str(number))
        body = json.dumps({"model": model, "version": str(number), "run_id": run_id}).encode()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/json")
            return str(number)
        except ClientError as exc:
            code = exc.response["Error"].get("Code")
            if code == "ConditionalRequestConflict":  # a concurrent write to the same key: look again
                time.sleep(0.2)
                continue
            if code not in ("PreconditionFailed", "412"):
                raise
        held = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if held.get("run_id") == run_id:
            return str(number)
        number += 1
    raise RuntimeError(f"no free version for {model} in {attempts} tries from {first}")


def register(
    sm,
    *,
    group: str,
    version: str,
    image: str,
    model_data_url: str,
    gate: dict[str, Any],
    evaluation_uri: str,
    run_id: str,
) -> dict[str, Any]:
    """Register the contender, Approved if the gate promoted it, else Rejected."""
    approval = APPROVED if gate["decision"] == "promote" else REJECTED
    metric = gate["metric"]
    metadata = {
        "version": str(version),
        "run_id": run_id,
        "decision": gate["decision"],
        "metric": metric,
        f"contender_{metric}": f"{gate['contender'][metric]:.6f}",
        "evaluation": evaluation_uri,
    }
    if gate["contender"].get("backend"):  # onnxruntime or scikit-learn: what the server will run
        metadata["backend"] = gate["contender"]["backend"]
    if gate.get("champion"):
        metadata |= {
            "champion_version": str(gate["champion"]["version"]),
            f"champion_{metric}": f"{gate['champion'][metric]:.6f}",
        }
    statistics = {"ContentType": "application/json", "S3Uri": evaluation_uri + "evaluation.json"}
    arn = create(
        sm, group=group, version=version, image=image, model_data_url=model_data_url, approval=approval,
        description="; ".join(gate["reasons"]), metadata=metadata,
        ModelMetrics={"ModelQuality": {"Statistics": statistics}},
    )  # fmt: skip
    package = describe(sm, arn)
    return {
        "model_package_arn": arn,
        "package_version": package["package_version"],
        "version": str(version),
        "approval": approval,
    }


def create(
    sm,
    *,
    group: str,
    version: str,
    image: str,
    model_data_url: str,
    approval: str,
    description: str,
    metadata: dict[str, str],
    **extra: Any,
) -> str:
    """A new package in `group` for this version's model; returns its ARN."""
    arn = sm.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"version {version}",
        InferenceSpecification={
            "Containers": [{"Image": image, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": ["application/json", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=approval,
        CustomerMetadataProperties={
            _META + k: v[:256] for k, v in ({"version": str(version)} | metadata).items()
        },
        **extra,
    )["ModelPackageArn"]
    # The approval description is not a CreateModelPackage parameter: set it right after.
    set_status(sm, arn, approval, description)
    return arn


def set_status(sm, arn: str, approval: str, description: str, extra: dict[str, str] | None = None) -> None:
    """Change a package's approval and note why; its metadata is kept (UpdateModelPackage
    replaces what it is given, so the whole set is sent back)."""
    current = sm.describe_model_package(ModelPackageName=arn).get("CustomerMetadataProperties") or {}
    metadata = current | {_META + k: v[:256] for k, v in (extra or {}).items()}
    sm.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus=approval,
        ApprovalDescription=description[:1024],
        CustomerMetadataProperties=metadata,
    )
