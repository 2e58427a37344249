"""The deployment's settings, read from CDK context (cdk.json, or `-c key=value`) and validated.

Every setting is a flat key so it can be given on the command line; values from the command
line arrive as strings and are parsed here. A bad value stops synth with one message that
lists every problem and names the key, before any construct is built.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferline.clients import NAME_PATTERN as CLIENT_NAME_PATTERN
from inferline.monitoring import MONITOR_SCHEDULES
from inferline.resources import DEFAULT_PREFIX, endpoint_name
from inferline.spec import SpecError, UnknownModel, available_models, load_spec

REPO_ROOT = Path(__file__).resolve().parents[1]

# key -> (default, one-line description); cdk.json and docs/deploy.md list the same keys.
SETTINGS: dict[str, tuple[Any, str]] = {
    "prefix": (DEFAULT_PREFIX, "name prefix of every resource, and the stack name (stage)"),
    "models": (["purchase-propensity"], "models to serve: names of specs in model_artifacts/specs"),
    "instanceType": ("ml.g4dn.xlarge", "SageMaker endpoint instance type (GPU by default)"),
    "instanceCount": (1, "endpoint instances at deploy time, and the autoscaling minimum"),
    "maxInstanceCount": (2, "autoscaling maximum; equal to instanceCount turns autoscaling off"),
    "invocationsPerInstance": (600, "autoscaling target: invocations per instance per minute"),
    "dataCapturePercent": (20, "share of endpoint requests captured to S3 for monitoring"),
    "modelLatencyAlarmMs": (500, "p99 model latency (ms) that alarms and rolls a deployment back"),
    "emailSender": ("", "SES sender address of batch emails (empty: a deploy-time parameter)"),
    "uploadExpiryDays": (7, "days a batch upload (uploads/) is kept before it expires"),
    "resultExpiryDays": (30, "days batch results (results/) are kept before they expire"),
    "resultLinkExpirySeconds": (43_200, "lifetime of the emailed download links (at most 12 h)"),
    "batchMaxConcurrency": (10, "most batch chunk workers at once (protects the endpoint)"),
    "alarmEmail": ("", "address subscribed to the alarm topic (empty: no subscription)"),
    "logRetentionDays": (30, "retention of every log group the stack creates"),
    "apiRateLimit": (50, "API requests per second: the stage's limit, and a client's by default"),
    "apiBurstLimit": (100, "API request burst: the stage's limit, and a client's by default"),
    "apiDailyQuota": (100_000, "API requests per day, a client's by default (0: no quota)"),
    "clients": ({"default": {"recipients": ["example.com"]}}, "named API clients, each with its own "
                "key and usage plan: {name: {rateLimit, burstLimit, dailyQuota, recipients}}; "
                "recipients: the addresses or domains its batch results may be emailed to"),
    "servingImage": ("", "serving image URI to use instead of building the Dockerfile"),
    "powertoolsLayerArn": ("", "Powertools layer ARN (empty: the public layer, by SSM)"),
    "retrainSchedule": ("cron(0 3 1 * ? *)", "when every model is retrained: an EventBridge "
                        "Scheduler cron(...) in UTC (empty: only when started by hand)"),
    "retrainEmails": ([], "addresses subscribed to the retraining outcomes topic"),
    "trainingInstanceType": ("ml.m5.large", "instance type of the retraining's training and "
                             "evaluation jobs"),
    "monitorSchedule": ("daily", "how often every model is monitored (EventBridge Scheduler): "
                        "hourly or daily (empty: only when started by hand)"),
    "monitorInstanceType": ("ml.m5.large", "instance type of the monitoring job (a SageMaker "
                            "processing job on the serving image)"),
}
# Per-model key: where the trained model.tar.gz is (see ModelData below).
MODEL_DATA_KEY = "modelData."

# Log retention values CloudWatch accepts.
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)  # fmt: skip
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,23}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# SageMaker real-time instance types: ml.<family>.<size>
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
# Instance families with a 'g' after the generation are Graviton (arm64), e.g. ml.c7g.large.
GRAVITON_FAMILY = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")
# EventBridge Scheduler cron: minutes hours day-of-month month day-of-week year.
CRON_PATTERN = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")
# A presigned link signed with a Lambda role's temporary credentials dies with them: never
# promise more than the longest role session (12 h).
MAX_LINK_EXPIRY_SECONDS = 43_200
S3_URL_PATTERN = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")


class ConfigError(ValueError):
    """Context values that cannot be deployed; the message lists every problem."""


@dataclass(frozen=True)
class ModelData:
    """Where a model's trained model.tar.gz comes from.

    - `local_path`: a file on this machine, uploaded by `cdk deploy` as an S3 asset;
    - `s3_url`: an object already in S3;
    - neither: the URL is a CloudFormation parameter given at deploy time
      (`--parameters <Model>ModelDataUrl=s3://...`), so synth never needs a trained model.
    """

    local_path: Path | None = None
    s3_url: str | None = None

    @property
    def s3_bucket_and_key(self) -> tuple[str, str] | None:
        match = S3_URL_PATTERN.match(self.s3_url or "")
        return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class ClientConfig:
    """One API client: its own key, usage plan (rate, burst, daily quota) and batch recipients."""

    name: str
    rate_limit: int
    burst_limit: int
    daily_quota: int | None
    recipients: tuple[str, ...]


CLIENT_KEYS = {"rateLimit", "burstLimit", "dailyQuota", "recipients"}
RECIPIENT_PATTERN = re.compile(r"^([^@\s]+@)?[a-z0-9-]+(\.[a-z0-9-]+)+$", re.IGNORECASE)
MAX_CLIENTS = 25  # their key ids travel in a Lambda environment variable (4 KB in all)


def parse_clients(
    raw: Any, rate: int, burst: int, quota: int | None
) -> tuple[tuple[ClientConfig, ...], list[str]]:
    """The `clients` setting (the same shape in cdk.json and the local clients file): the clients,
    each limit defaulting to the API's, and the problems found."""
    if isinstance(raw, str):  # given on the command line: -c clients='{"a": {...}}'
        try:
            raw = json.loads(raw)
        except ValueError:
            return (), ["clients: not valid JSON"]
    if not isinstance(raw, Mapping) or not raw:
        return (), ["clients: expected at least one client: {name: {rateLimit, burstLimit, dailyQuota, "
                    "recipients}}"]  # fmt: skip
    found, problems = [], []
    for name, settings in raw.items():
        where = f"clients.{name}"
        if not re.fullmatch(CLIENT_NAME_PATTERN, str(name)):
            problems.append(f"{where}: a client name is 1-32 lowercase letters, digits or dashes")
            continue
        settings = {} if settings is None else settings
        if not isinstance(settings, Mapping):
            problems.append(f"{where}: expected an object")
            continue
        unknown = sorted(set(settings) - CLIENT_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {unknown} (known: {sorted(CLIENT_KEYS)})")
        limits = {}
        for key, default in (("rateLimit", rate), ("burstLimit", burst), ("dailyQuota", quota or 0)):
            try:
                limits[key] = _as_int(settings.get(key, default))
                if limits[key] < 0 or (key != "dailyQuota" and limits[key] < 1):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(f"{where}.{key}: expected a whole number of at least "
                                f"{0 if key == 'dailyQuota' else 1}")  # fmt: skip
                limits[key] = default
        recipients = settings.get("recipients", [])
        if not isinstance(recipients, list) or not all(
            isinstance(r, str) and RECIPIENT_PATTERN.match(r.lstrip("@")) for r in recipients
        ):
            problems.append(f"{where}.recipients: expected a list of addresses (ops@example.com) or "
                            "domains (example.com)")  # fmt: skip
            recipients = []
        found.append(ClientConfig(str(name), limits["rateLimit"], limits["burstLimit"],
                                  limits["dailyQuota"] or None, tuple(recipients)))  # fmt: skip
    if len(found) > MAX_CLIENTS:
        problems.append(f"clients: at most {MAX_CLIENTS} clients")
    return tuple(found), problems


@dataclass(frozen=True)
class Config:
    prefix: str
    models: tuple[str, ...]
    instance_type: str
    instance_count: int
    max_instance_count: int
    invocations_per_instance: int
    data_capture_percent: int
    model_latency_alarm_ms: int
    email_sender: str | None
    upload_expiry_days: int
    result_expiry_days: int
    result_link_expiry_seconds: int
    batch_max_concurrency: int
    alarm_email: str | None
    log_retention_days: int
    api_rate_limit: int
    api_burst_limit: int
    api_daily_quota: int | None
    clients: tuple[ClientConfig, ...]
    serving_image: str | None
    powertools_layer_arn: str | None
    retrain_schedule: str | None
    retrain_emails: tuple[str, ...]
    training_instance_type: str
    monitor_schedule: str | None = None
    monitor_instance_type: str = "ml.m5.large"
    model_data: dict[str, ModelData] = field(default_factory=dict)

    @property
    def autoscaling(self) -> bool:
        return self.max_instance_count > self.instance_count


def load_config(context: Mapping[str, Any]) -> Config:
    """The validated settings from a context mapping (CDK's, or a plain dict in tests)."""
    problems: list[str] = []

    def get(key: str, parse: Callable[[Any], Any], check: Callable[[Any], str | None]):
        default = SETTINGS[key][0]
        raw = context.get(key, default)
        try:
            value = parse(raw)
        except (TypeError, ValueError) as exc:
            problems.append(f"{key}={raw!r}: {exc}")
            return parse(default)
        why = check(value)
        if why:
            problems.append(f"{key}={raw!r}: {why}")
        return value

    prefix = get("prefix", str, lambda v: None if PREFIX_PATTERN.match(v) else
                 "2-24 characters: lowercase letters, digits and '-', starting with a letter")
    models = get("models", _as_list, lambda v: None if v else "name at least one model")
    instance_type = get("instanceType", str, lambda v: None if INSTANCE_TYPE_PATTERN.match(v)
                        else "expected a SageMaker instance type such as ml.g4dn.xlarge")
    instance_count = get("instanceCount", _as_int, _at_least(1))
    max_instance_count = get("maxInstanceCount", _as_int, _at_least(1))
    if max_instance_count < instance_count:
        problems.append(f"maxInstanceCount={max_instance_count}: must be >= instanceCount "
                        f"({instance_count})")
    invocations = get("invocationsPerInstance", _as_int, _at_least(1))
    capture = get("dataCapturePercent", _as_int,
                  lambda v: None if 0 <= v <= 100 else "a percentage: 0 to 100")
    latency_ms = get("modelLatencyAlarmMs", _as_int, _at_least(1))
    email_sender = get("emailSender", _as_str, _email_or_empty)
    alarm_email = get("alarmEmail", _as_str, _email_or_empty)
    upload_days = get("uploadExpiryDays", _as_int, _at_least(1))
    result_days = get("resultExpiryDays", _as_int, _at_least(1))
    link_seconds = get("resultLinkExpirySeconds", _as_int, lambda v: None if (
        60 <= v <= MAX_LINK_EXPIRY_SECONDS) else f"60 to {MAX_LINK_EXPIRY_SECONDS}: links are "
        "signed with the Lambda role's temporary credentials, which last at most 12 hours")
    # Lambda's SQS scaling: a maximum concurrency of 2 to 1000.
    concurrency = get("batchMaxConcurrency", _as_int,
                      lambda v: None if 2 <= v <= 1000 else "2 to 1000 (Lambda's SQS limits)")
    retention = get("logRetentionDays", _as_int, lambda v: None if v in RETENTION_DAYS else
                    f"CloudWatch accepts one of {', '.join(map(str, RETENTION_DAYS))}")
    rate = get("apiRateLimit", _as_int, _at_least(1))
    burst = get("apiBurstLimit", _as_int, _at_least(1))
    quota = get("apiDailyQuota", _as_int, _at_least(0))
    serving_image = get("servingImage", _as_str, lambda v: None if not v or (
        ".dkr.ecr." in v and ":" in v.rsplit("/", 1)[-1] or "@sha256:" in v)
        else "expected an ECR image URI with a tag or digest")
    layer = get("powertoolsLayerArn", _as_str, lambda v: None if not v or v.startswith("arn:")
                else "expected a Lambda layer version ARN")
    schedule = get("retrainSchedule", _as_str, _cron_or_empty)
    retrain_emails = get("retrainEmails", _as_list, lambda v: None if all(
        EMAIL_PATTERN.match(e) for e in v) else "expected email addresses")
    training_instance_type = get("trainingInstanceType", str, lambda v: None if (
        INSTANCE_TYPE_PATTERN.match(v)) else "expected a SageMaker instance type such as ml.m5.large")
    monitor_schedule = get("monitorSchedule", _as_str, lambda v: None if not v or v in MONITOR_SCHEDULES
                           else f"one of {', '.join(MONITOR_SCHEDULES)}, or empty")
    monitor_instance_type = get("monitorInstanceType", str, lambda v: None if (
        INSTANCE_TYPE_PATTERN.match(v)) else "expected a SageMaker instance type such as ml.m5.large")
    # Training and evaluation run the image the endpoints serve, built for one architecture
    # (unknown when servingImage names a prebuilt one).
    for key, job_type in (("trainingInstanceType", training_instance_type),
                          ("monitorInstanceType", monitor_instance_type)):
        if not serving_image and (bool(GRAVITON_FAMILY.match(instance_type))
                                  != bool(GRAVITON_FAMILY.match(job_type))):
            problems.append(f"{key}={job_type!r}: must have the same CPU architecture as "
                            f"instanceType ({instance_type}): the job runs the serving image")

    clients, found = parse_clients(context.get("clients", SETTINGS["clients"][0]), rate, burst,
                                   quota or None)  # fmt: skip
    problems += found

    known = available_models()
    for model in models:
        try:
            load_spec(model)
        except UnknownModel:
            problems.append(f"models: no spec named '{model}' in model_artifacts/specs "
                            f"(available: {', '.join(known) or 'none'})")
        except SpecError as exc:
            problems.append(f"models: spec '{model}' is invalid: {exc}")
        if len(endpoint_name(prefix, model)) > 63:
            problems.append(f"models: endpoint name '{endpoint_name(prefix, model)}' is over "
                            "SageMaker's 63 characters; shorten the prefix or model name")
        if len(retrain_schedule_name(prefix, model)) > 64:
            problems.append(f"models: schedule name '{retrain_schedule_name(prefix, model)}' is "
                            "over EventBridge Scheduler's 64 characters; shorten the prefix or "
                            "model name")
        if monitor_schedule and len(monitor_schedule_name(prefix, model)) > 64:
            problems.append(f"models: schedule name '{monitor_schedule_name(prefix, model)}' is "
                            "over EventBridge Scheduler's 64 characters; shorten the prefix or "
                            "model name (or leave monitorSchedule empty)")
    if len(set(models)) != len(models):
        problems.append(f"models: listed twice: {sorted({m for m in models if models.count(m) > 1})}")

    model_data: dict[str, ModelData] = {}
    for key, raw in context.items():
        if not key.startswith(MODEL_DATA_KEY):
            continue
        model = key[len(MODEL_DATA_KEY):]
        if model not in models:
            problems.append(f"{key}: '{model}' is not in models ({', '.join(models)})")
            continue
        try:
            model_data[model] = _model_data(str(raw))
        except ValueError as exc:
            problems.append(f"{key}={raw!r}: {exc}")

    problems += _unknown_keys(context)
    if problems:
        raise ConfigError("invalid inferline settings (CDK context):\n  " + "\n  ".join(problems))
    return Config(
        prefix=prefix,
        models=tuple(models),
        instance_type=instance_type,
        instance_count=instance_count,
        max_instance_count=max_instance_count,
        invocations_per_instance=invocations,
        data_capture_percent=capture,
        model_latency_alarm_ms=latency_ms,
        email_sender=email_sender or None,
        upload_expiry_days=upload_days,
        result_expiry_days=result_days,
        result_link_expiry_seconds=link_seconds,
        batch_max_concurrency=concurrency,
        alarm_email=alarm_email or None,
        log_retention_days=retention,
        api_rate_limit=rate,
        api_burst_limit=burst,
        api_daily_quota=quota or None,
        clients=clients,
        serving_image=serving_image or None,
        powertools_layer_arn=layer or None,
        retrain_schedule=schedule or None,
        retrain_emails=tuple(retrain_emails),
        training_instance_type=training_instance_type,
        monitor_schedule=monitor_schedule or None,
        monitor_instance_type=monitor_instance_type,
        model_data=model_data,
    )


def _model_data(value: str) -> ModelData:
    if value.startswith("s3://"):
        if not S3_URL_PATTERN.match(value):
            raise ValueError("expected s3://<bucket>/<key of model.tar.gz>")
        return ModelData(s3_url=value)
    path = Path(value).expanduser()
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        raise ValueError(f"no such file: {path} (train a model first, or give an s3:// URL)")
    if not path.name.endswith(".tar.gz"):
        raise ValueError("SageMaker model data is a .tar.gz holding model.joblib")
    return ModelData(local_path=path)


def retrain_schedule_name(prefix: str, model: str) -> str:
    return f"{prefix}-retrain-{model}"


def monitor_schedule_name(prefix: str, model: str) -> str:
    return f"{prefix}-monitor-{model}"


def _as_list(value: Any) -> list[str]:
    """A JSON list from cdk.json, or "a,b" / '["a","b"]' from the command line."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if not isinstance(value, list):
        raise ValueError("expected a list of names")
    return [str(v).strip() for v in value if str(v).strip()]


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected a whole number")
    try:
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _as_str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _at_least(low: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}"


def _cron_or_empty(value: str) -> str | None:
    if not value:
        return None
    match = CRON_PATTERN.match(value)
    if not match:
        return "expected cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 3 1 * ? *)"
    day_of_month, day_of_week = match.group(3), match.group(5)
    if (day_of_month == "?") == (day_of_week == "?"):
        return "exactly one of day-of-month and day-of-week must be '?'"
    return None


def _email_or_empty(value: str) -> str | None:
    return None if not value or EMAIL_PATTERN.match(value) else "expected an email address"


def _unknown_keys(context: Mapping[str, Any]) -> list[str]:
    """A key that is one typo away from a setting is a mistake that would silently deploy the
    default (say, a GPU instance); CDK's own keys look nothing like ours and pass."""
    problems = []
    for key in context:
        if key in SETTINGS or key.startswith(MODEL_DATA_KEY):
            continue
        close = difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.8)
        if close:
            problems.append(f"{key}: unknown setting; did you mean '{close[0]}'?")
    return problems
