"""Context settings: defaults, command-line strings, and one clear error listing every problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from infra.app import CDK_JSON
from infra.config import REPO_ROOT, SETTINGS, ClientConfig, ConfigError, load_config
from infra.serving import model_data_parameter


def test_cdk_json_lists_every_setting_with_its_default():
    context = json.loads(CDK_JSON.read_text())["context"]
    for key, (default, _) in SETTINGS.items():
        assert context[key] == default, key


def test_defaults_serve_on_a_gpu():
    config = load_config({})
    assert config.instance_type == "ml.g4dn.xlarge"
    assert config.models == ("purchase-propensity",)
    assert config.autoscaling and config.instance_count == 1
    assert config.alarm_email is None and config.email_sender is None
    assert config.model_data == {}


def test_command_line_strings_are_parsed():
    config = load_config({
        "models": "purchase-propensity", "instanceCount": "2", "maxInstanceCount": "2",
        "alarmEmail": "ops@example.com", "apiDailyQuota": "0", "prefix": "inferline-dev",
    })
    assert config.models == ("purchase-propensity",)
    assert config.instance_count == 2 and not config.autoscaling
    assert config.alarm_email == "ops@example.com"
    assert config.api_daily_quota is None
    assert config.prefix == "inferline-dev"
    assert load_config({"models": '["purchase-propensity"]'}).models == ("purchase-propensity",)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config({
            "models": ["purchase-propensity", "no-such-model"],
            "instanceType": "g4dn.xlarge",
            "instanceCount": "two",
            "alarmEmail": "not-an-address",
            "logRetentionDays": 31,
            "prefix": "Inferline",
            "instanceTyp": "ml.m5.large",
        })
    message = str(caught.value)
    for expected in ("no spec named 'no-such-model'", "available: purchase-propensity",
                     "instanceType='g4dn.xlarge'", "instanceCount='two'",
                     "alarmEmail='not-an-address'", "logRetentionDays=31", "prefix='Inferline'",
                     "instanceTyp: unknown setting; did you mean 'instanceType'?"):
        assert expected in message


def test_autoscaling_maximum_below_minimum_is_refused():
    with pytest.raises(ConfigError, match="maxInstanceCount=1: must be >= instanceCount"):
        load_config({"instanceCount": 2, "maxInstanceCount": 1})


def test_model_data_from_s3_or_a_local_file(tmp_path):
    config = load_config({"modelData.purchase-propensity": "s3://my-models/pp/model.tar.gz"})
    data = config.model_data["purchase-propensity"]
    assert data.s3_bucket_and_key == ("my-models", "pp/model.tar.gz")

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    config = load_config({"modelData.purchase-propensity": str(archive)})
    assert config.model_data["purchase-propensity"].local_path == archive

    with pytest.raises(ConfigError, match="no such file"):
        load_config({"modelData.purchase-propensity": str(tmp_path / "missing.tar.gz")})
    with pytest.raises(ConfigError, match="is not in models"):
        load_config({"modelData.other-model": "s3://b-1/model.tar.gz"})


def test_model_data_parameter_name():
    assert model_data_parameter("purchase-propensity") == "PurchasePropensityModelDataUrl"


def test_the_app_stops_with_the_message_before_building(tmp_path):
    """What `cdk synth -c instanceType=g4dn.xlarge` shows: the CLI passes context in
    CDK_CONTEXT_JSON, and the app exits non-zero naming the key."""
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path),
           "CDK_CONTEXT_JSON": json.dumps({"instanceType": "g4dn.xlarge"})}
    done = subprocess.run([sys.executable, "-m", "infra.app"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "instanceType='g4dn.xlarge': expected a SageMaker instance type" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing synthesized


# -- retraining ------------------------------------------------------------------------------


def test_retraining_defaults_monthly_on_a_cpu_instance():
    config = load_config({})
    assert config.retrain_schedule == "cron(0 3 1 * ? *)"  # 03:00 UTC on the 1st
    assert config.retrain_emails == ()
    assert config.training_instance_type == "ml.m5.large"


def test_retraining_settings_from_the_command_line():
    config = load_config({
        "retrainSchedule": "cron(30 2 ? * MON *)",
        "retrainEmails": "ml@example.com, owner@example.org",
        "trainingInstanceType": "ml.c5.xlarge",
    })
    assert config.retrain_schedule == "cron(30 2 ? * MON *)"
    assert config.retrain_emails == ("ml@example.com", "owner@example.org")
    assert config.training_instance_type == "ml.c5.xlarge"
    assert load_config({"retrainEmails": '["a@example.com"]'}).retrain_emails == ("a@example.com",)
    # empty: no schedule, runs start by hand only
    assert load_config({"retrainSchedule": ""}).retrain_schedule is None


def test_every_retraining_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config({
            "retrainSchedule": "cron(0 3 1 * * *)",
            "retrainEmails": ["ml@example.com", "not-an-address"],
            "trainingInstanceType": "m5.large",
            "retrainSchedul": "cron(0 3 1 * ? *)",
        })
    message = str(caught.value)
    for expected in ("retrainSchedule='cron(0 3 1 * * *)': exactly one of day-of-month and "
                     "day-of-week must be '?'",
                     "retrainEmails=['ml@example.com', 'not-an-address']: expected email addresses",
                     "trainingInstanceType='m5.large': expected a SageMaker instance type",
                     "retrainSchedul: unknown setting; did you mean 'retrainSchedule'?"):
        assert expected in message
    with pytest.raises(ConfigError, match=r"retrainSchedule='rate\(30 days\)': expected cron\("):
        load_config({"retrainSchedule": "rate(30 days)"})


def test_training_and_monitoring_run_the_serving_image_so_architectures_must_match():
    with pytest.raises(ConfigError, match="trainingInstanceType='ml.m5.large': must have the same "
                       r"CPU architecture as instanceType \(ml.c7g.xlarge\)"):
        load_config({"instanceType": "ml.c7g.xlarge"})
    with pytest.raises(ConfigError, match="monitorInstanceType='ml.m5.large': must have the same "
                       r"CPU architecture as instanceType \(ml.c7g.xlarge\)"):
        load_config({"instanceType": "ml.c7g.xlarge", "trainingInstanceType": "ml.m6g.large"})
    graviton = load_config({"instanceType": "ml.c7g.xlarge", "trainingInstanceType": "ml.m6g.large",
                            "monitorInstanceType": "ml.m6g.large"})
    assert (graviton.training_instance_type, graviton.monitor_instance_type) == ("ml.m6g.large",) * 2
    # a prebuilt image's architecture is not known here: the user's call
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/inferline:1.0"
    assert load_config({"instanceType": "ml.c7g.xlarge", "servingImage": image})


def test_docs_deploy_lists_every_setting():
    text = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    missing = [key for key in SETTINGS if f"`{key}`" not in text]
    assert not missing, f"docs/deploy.md's settings table lacks {missing}"


# -- clients ---------------------------------------------------------------------------------


def test_the_default_client_takes_the_api_limits():
    (client,) = load_config({}).clients
    assert client.name == "default" and client.recipients == ("example.com",)
    assert (client.rate_limit, client.burst_limit, client.daily_quota) == (50, 100, 100_000)
    (client,) = load_config({"apiRateLimit": 7, "apiBurstLimit": "9", "apiDailyQuota": 0}).clients
    assert (client.rate_limit, client.burst_limit, client.daily_quota) == (7, 9, None)


def test_clients_with_their_own_limits_and_recipients():
    config = load_config({"apiRateLimit": 7, "clients": {
        "analytics": {"rateLimit": 5, "burstLimit": 10, "dailyQuota": 1000,
                      "recipients": ["example.com", "ops@partner.example"]},
        "partner-2": {"dailyQuota": 0},
        "bare": None,
    }})
    analytics, partner, bare = config.clients
    assert analytics == ClientConfig("analytics", 5, 10, 1000, ("example.com", "ops@partner.example"))
    assert partner == ClientConfig("partner-2", 7, 100, None, ())  # dailyQuota 0: no quota
    assert bare == ClientConfig("bare", 7, 100, 100_000, ())
    assert (config.api_rate_limit, config.api_burst_limit) == (7, 100)  # the stage's, unchanged


def test_clients_as_a_json_string_from_the_command_line():
    config = load_config({"clients": '{"a": {"rateLimit": "3", "recipients": ["a.example"]}, "b": {}}'})
    assert [(c.name, c.rate_limit, c.recipients) for c in config.clients] == [
        ("a", 3, ("a.example",)), ("b", 50, ())]
    with pytest.raises(ConfigError, match="clients: not valid JSON"):
        load_config({"clients": "{a: 1}"})


@pytest.mark.parametrize(("clients", "expected"), [
    ({"Analytics": {}}, "clients.Analytics: a client name is 1-32 lowercase letters"),
    ({"1st": {}}, "clients.1st: a client name is"),
    ({"a": {"rateLimt": 5}}, "clients.a: unknown keys ['rateLimt']"),
    ({"a": {"recipients": "example.com"}}, "clients.a.recipients: expected a list of addresses"),
    ({"a": {"recipients": ["not an address"]}}, "clients.a.recipients: expected a list"),
    ({"a": {"rateLimit": 0}}, "clients.a.rateLimit: expected a whole number of at least 1"),
    ({"a": {"dailyQuota": -1}}, "clients.a.dailyQuota: expected a whole number of at least 0"),
    ({"a": ["rateLimit"]}, "clients.a: expected an object"),
    ({}, "clients: expected at least one client"),
    ([], "clients: expected at least one client"),
])
def test_bad_clients_are_refused(clients, expected):
    with pytest.raises(ConfigError) as caught:
        load_config({"clients": clients})
    assert expected in str(caught.value)


def test_every_client_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config({"clients": {"Bad": {}, "a": {"burstLimit": "x", "colour": 1}}})
    message = str(caught.value)
    for expected in ("clients.Bad: a client name", "clients.a.burstLimit: expected a whole number",
                     "clients.a: unknown keys ['colour']"):
        assert expected in message
