"""The retraining workflow on one machine: the Step Functions states (inferline.workflow), in
the same order, with the same plain functions (retrain.steps) against the embedded AWS.

Where AWS runs a service, so does this runner, the same way: Train is the training entry
point as a local process with SageMaker's paths (input/data/train, input/config/
hyperparameters.json with string values, model/, output/failure) and its model.tar.gz
uploaded where the training job would write it; Evaluate is model_artifacts.evaluate as a
local process with the processing job's inputs and outputs; Deploy's UpdateEndpoint reaches
the local endpoints, which swap model servers blue/green (local_runtime/sagemaker_local.py).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferline.resources import bucket_name, retrain_state_machine_name, split_s3_uri
from inferline.spec import load_spec
from inferline.workflow import (
    BUILD_DATASET,
    CHECK_ENDPOINT,
    DEPLOY,
    DONE,
    ENDPOINT_CHANGING,
    ENDPOINT_SETTLED,
    EVALUATE,
    GATE,
    HAS_ENOUGH_DATA,
    IS_PROMOTED,
    NOTIFY,
    NOTIFY_FAILURE,
    REGISTER,
    RETRAIN_RESULT_PATHS,
    RETRAINING_FAILED,
    TRAIN,
    VERIFY_DEPLOYMENT,
    WAIT_FOR_ENDPOINT,
)
from local_runtime.bootstrap import LOCAL_ROLE_ARN, model_archive
from local_runtime.config import REPO_ROOT, LocalConfig
from retrain import steps
from retrain.dataset import SKIPPED
from retrain.gate import PROMOTE


class JobFailed(RuntimeError):
    """A training or processing job ended in Failed; the message is its FailureReason."""


class TrainingJobFailed(JobFailed):
    pass


class ProcessingJobFailed(JobFailed):
    pass


@dataclass
class RunResult:
    outcome: str
    steps: list[str]
    state: dict[str, Any]
    notification: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> tuple[str, ...]:
        """The states visited, with the endpoint wait loop counted once (as RETRAIN_STEPS has it)."""
        loop = (WAIT_FOR_ENDPOINT, CHECK_ENDPOINT, ENDPOINT_SETTLED)
        out: list[str] = []
        for name in self.steps:
            if name == WAIT_FOR_ENDPOINT and tuple(out[-3:]) == loop:
                del out[-3:]
            out.append(name)
        return tuple(out)


class LocalRetraining:
    def __init__(
        self,
        svc: steps.Services,
        python: str = sys.executable,
        wait_seconds: float = 0.5,
        deploy_timeout: float = 180,
        on_step: Callable[[str], None] | None = None,
        jobs_in_process: bool = False,
    ):
        """`jobs_in_process` runs the training and evaluation entry points in this process
        (the same code, without a Python start-up per job: for tests)."""
        self.svc = svc
        self.jobs_in_process = jobs_in_process
        self.python = python
        self.wait_seconds = wait_seconds
        self.deploy_timeout = deploy_timeout
        self.on_step = on_step or (lambda name: None)

    def run(
        self,
        model: str,
        params: dict[str, Any] | None = None,
        trigger: str = "cli",
        reason: str | None = None,
        monitoring_report: str | None = None,
    ) -> RunResult:
        """The workflow's input: {"model", "trigger", "params"}, and from a monitoring alarm its
        "reason" and "monitoring_report" (as the on_alarm Lambda starts it)."""
        state: dict[str, Any] = {"model": model, "trigger": trigger, "params": params or {}}
        if reason:
            state |= {"reason": reason, "monitoring_report": monitoring_report}
        visited: list[str] = []

        def visit(name: str) -> None:
            visited.append(name)
            self.on_step(name)

        def task(name: str, function: Callable[[dict[str, Any], steps.Services], Any]) -> None:
            visit(name)
            state[RETRAIN_RESULT_PATHS[name].removeprefix("$.")] = function(state, self.svc)

        try:
            task(BUILD_DATASET, steps.build_dataset)
            visit(HAS_ENOUGH_DATA)
            if state["dataset"]["status"] != SKIPPED:
                task(TRAIN, self.train)
                task(EVALUATE, self.evaluate)
                task(GATE, steps.run_gate)
                task(REGISTER, steps.register)
                visit(IS_PROMOTED)
                if state["gate"]["decision"] == PROMOTE:
                    task(DEPLOY, steps.start_deployment)
                    deadline = time.monotonic() + self.deploy_timeout
                    while True:
                        visit(WAIT_FOR_ENDPOINT)
                        time.sleep(self.wait_seconds)
                        task(CHECK_ENDPOINT, steps.check_endpoint)
                        visit(ENDPOINT_SETTLED)
                        if state["endpoint_status"]["status"] not in ENDPOINT_CHANGING:
                            break
                        if time.monotonic() > deadline:
                            raise TimeoutError(
                                f"the endpoint was still updating after {self.deploy_timeout:.0f} s"
                            )
                    task(VERIFY_DEPLOYMENT, steps.verify_deployment)
            task(NOTIFY, steps.notify)
            visit(DONE)
        except Exception as exc:  # every task's catch: States.ALL -> NotifyFailure
            state["error"] = {"Error": type(exc).__name__, "Cause": str(exc)}
            task(NOTIFY_FAILURE, steps.notify)
            visit(RETRAINING_FAILED)
        return RunResult(steps.outcome(state), visited, state, state.get("notification") or {})

    # -- the two SageMaker jobs, as local processes ----------------------------------------

    def train(self, state: dict[str, Any], svc: steps.Services) -> dict[str, Any]:
        data = state["dataset"]
        with tempfile.TemporaryDirectory(prefix="inferline-train-") as tmp:
            root = Path(tmp)
            channel = root / "input" / "data" / "train"
            self._download_prefix(data["train_uri"], channel)
            # The rows the version will be monitored against: the newest production rows,
            # the holdout Evaluate judges it on (never trained on).
            reference = root / "input" / "data" / "reference"
            self._download_prefix(data["holdout_uri"], reference)
            hyperparameters = {
                "model": state["model"],
                "version": data["contender_version"],
                **data["hyperparameters"],
            }
            config_dir = root / "input" / "config"
            config_dir.mkdir(parents=True)
            (config_dir / "hyperparameters.json").write_text(
                json.dumps({k: str(v) for k, v in hyperparameters.items()})
            )
            env = {
                "SM_CHANNEL_TRAIN": str(channel),
                "SM_CHANNEL_REFERENCE": str(reference),
                "SM_MODEL_DIR": str(root / "model"),
                "SM_INPUT_CONFIG_DIR": str(config_dir),
                "SM_OUTPUT_DIR": str(root / "output"),
                "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            }
            self._run_job(
                [self.python, "-m", "model_artifacts.train"],
                env,
                root / "output" / "failure",
                TrainingJobFailed,
            )
            bucket, key = split_s3_uri(f"{data['output_uri']}{data['training_job_name']}/output/model.tar.gz")
            svc.s3.put_object(Bucket=bucket, Key=key, Body=model_archive(root / "model"))
        return {"model_data_url": f"s3://{bucket}/{key}"}

    def evaluate(self, state: dict[str, Any], svc: steps.Services) -> dict[str, Any]:
        data = state["dataset"]
        with tempfile.TemporaryDirectory(prefix="inferline-evaluate-") as tmp:
            root = Path(tmp)
            self._download_prefix(data["holdout_uri"], root / "holdout")
            self._download(state["training"]["model_data_url"], root / "contender")
            (root / "champion").mkdir()
            if data["champion"].get("model_data_url"):
                self._download(data["champion"]["model_data_url"], root / "champion")
            args = [
                self.python, "-m", "model_artifacts.evaluate", "--holdout", str(root / "holdout"),
                "--contender", str(root / "contender"), "--champion", str(root / "champion"),
                "--out", str(root / "evaluation"),
            ]  # fmt: skip
            self._run_job(args, {}, None, ProcessingJobFailed)
            for path in sorted((root / "evaluation").iterdir()):
                bucket, key = split_s3_uri(data["evaluation_uri"] + path.name)
                svc.s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        return {
            "job_name": data["evaluation_job_name"],
            "status": "Completed",
        }  # as the state machine keeps it

    def _run_job(
        self, args: list[str], env: dict[str, str], failure_file: Path | None, error: type[JobFailed]
    ) -> None:
        if self.jobs_in_process:
            code, output = _run_in_process(args[2], args[3:], env)
        else:
            done = subprocess.run(args, env=os.environ | env, cwd=REPO_ROOT, capture_output=True, text=True)
            code, output = done.returncode, done.stderr or done.stdout
        if code != 0:
            reason = failure_file.read_text() if failure_file and failure_file.is_file() else ""
            tail = output.strip().splitlines()[-5:]
            raise error(reason or " | ".join(tail) or f"exit code {code}")

    def _download_prefix(self, uri: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        bucket, prefix = split_s3_uri(uri)
        for page in self.svc.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = folder / obj["Key"][len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.svc.s3.download_file(bucket, obj["Key"], str(target))

    def _download(self, uri: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        bucket, key = split_s3_uri(uri)
        self.svc.s3.download_file(bucket, key, str(folder / key.rsplit("/", 1)[-1]))


def _run_in_process(module: str, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`python -m module argv...` with `env` added, in this process: (exit code, error text)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return importlib.import_module(module).main(argv) or 0, ""
    except Exception as exc:
        return 1, f"{type(exc).__name__}: {exc}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def local_services(config: LocalConfig) -> steps.Services:
    """Services for the running local platform: the embedded AWS and the local endpoints."""
    from local_runtime.sagemaker_local import LocalSageMaker
    from local_runtime.up import local_client

    sns = local_client(config, "sns")
    topic = sns.create_topic(Name=retrain_state_machine_name(config.prefix))["TopicArn"]  # idempotent
    return steps.Services(
        s3=local_client(config, "s3"),
        sagemaker=LocalSageMaker(local_client(config, "sagemaker"), config.serving_url()),
        sns=sns,
        load_spec=load_spec,
        data_bucket=bucket_name(config.prefix, "data"),
        artifacts_bucket=bucket_name(config.prefix, "artifacts"),
        prefix=config.prefix,
        sagemaker_role_arn=LOCAL_ROLE_ARN,
        topic_arn=topic,
    )


def aws_services(prefix: str) -> steps.Services:
    """Services for a deployed stack, with the caller's AWS credentials: the settings are the
    retraining Lambdas' own environment (read off the Deploy Lambda), so `inferline models`
    and `inferline rollback --aws` act exactly as the workflow would."""
    import boto3

    from retrain.settings import RetrainSettings

    function = f"{prefix}-retrain-deploy"
    env = boto3.client("lambda").get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    return steps.Services.from_settings(RetrainSettings.model_validate(env), boto3.client)


def write_outbox(config: LocalConfig, result: RunResult) -> Path | None:
    """The notification as a file a person can open, beside the batch emails."""
    note = result.notification
    if not note:
        return None
    run_id = (result.state.get("dataset") or {}).get("run_id") or time.strftime("%Y%m%d-%H%M%S")
    path = config.path("outbox", f"retrain-{result.state['model']}-{run_id}.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"Subject: {note['subject']}\n\n{note['message']}", encoding="utf-8")
    return path
