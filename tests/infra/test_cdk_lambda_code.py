"""The Lambda code asset: functions/ plus the served models' specs as JSON, no YAML needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferline.spec import load_spec, load_spec_file


@pytest.fixture(scope="module")
def bundle(synth) -> Path:
    """The asset folder every function's code comes from (one asset, shared)."""
    keys = {
        fn["Properties"]["Code"]["S3Key"]
        for fn in synth.resources("AWS::Lambda::Function").values()
        if "S3Key" in fn["Properties"]["Code"]  # not CDK's inline bucket-notification handler
    }
    (key,) = keys
    folder = synth.outdir / f"asset.{key.removesuffix('.zip')}"
    assert folder.is_dir()
    return folder


def test_handlers_and_shared_package_are_bundled(bundle):
    for name in ("preprocess", "postprocess", "feedback"):
        assert (bundle / name / "handler.py").is_file()
    assert (bundle / "inferline" / "spec.py").is_file()
    assert not list(bundle.rglob("__pycache__"))


def test_specs_are_bundled_as_json_for_the_served_models_only(synth, bundle):
    specs = bundle / "specs"
    assert sorted(p.name for p in specs.iterdir()) == sorted(
        f"{m}.json" for m in synth.config.models
    )
    for model in synth.config.models:
        assert load_spec_file(specs / f"{model}.json") == load_spec(model)
