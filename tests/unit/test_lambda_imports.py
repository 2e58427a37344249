"""The Lambdas ship without scikit-learn, pandas or numpy: importing them must not
pull any of those in (they would not be in the deployed package)."""

import json
import os
import subprocess
import sys

from inferline.resources import local_environment

HEAVY = ("sklearn", "pandas", "numpy", "scipy", "joblib", "yaml")
RETRAIN_ENV = {
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/sagemaker",
    "ROLLBACK_ALARMS": json.dumps({"purchase-propensity": ["errors"]}),
    "RETRAIN_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:retrain",
}
# functions/monitor/settings.py (DATA_BUCKET and RESOURCE_PREFIX come with local_environment)
MONITOR_ENV = {
    "MODELS": json.dumps(["purchase-propensity"]),
    "RETRAIN_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:test-retrain",
}


def test_handlers_import_no_ml_libraries_and_no_yaml():
    code = (
        "import json, sys\n"
        "import preprocess.handler, postprocess.handler, feedback.handler, retrain.handlers\n"
        "import monitor.handlers\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    region = {"AWS_DEFAULT_REGION": "us-east-1"}
    env = os.environ | local_environment("test") | RETRAIN_ENV | MONITOR_ENV | region
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_missing_setting_fails_at_cold_start_naming_it():
    env = {k: v for k, v in os.environ.items() if k != "FEATURES_TABLE"}
    out = subprocess.run(
        [sys.executable, "-c", "import preprocess.handler"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "missing or invalid environment: FEATURES_TABLE" in out.stderr
