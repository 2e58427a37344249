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


def test_the_libraries_the_layer_lacks_are_bundled_and_importable_from_the_asset(bundle):
    """email-validator (batch addresses) and what it imports, pure Python, at the locked
    versions: importing it from the asset finds the asset's copy."""
    import subprocess
    import sys
    from importlib.metadata import version

    for package in ("email_validator", "dns", "idna"):
        assert (bundle / package / "__init__.py").is_file(), package
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import email_validator, dns.name, idna; "
        "print(email_validator.__file__, email_validator.__version__)"
    )
    args = [sys.executable, "-c", code, str(bundle)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    path, found = out.stdout.split()
    assert path.startswith(str(bundle)) and found == version("email-validator")
