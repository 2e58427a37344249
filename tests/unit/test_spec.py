from pathlib import Path

import pytest

from inferline.spec import (
    ModelSpec,
    SpecError,
    UnknownModel,
    available_models,
    load_spec,
    load_spec_file,
    parse_spec,
)

SPEC_PATH = Path(__file__).parents[2] / "model_artifacts" / "specs" / "purchase-propensity.yaml"
TEXT = SPEC_PATH.read_text()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_demo_spec_loads_with_the_fields_the_platform_reads():
    spec = load_spec("purchase-propensity")
    assert spec.task == "binary"
    assert spec.entity.key == "user_id"
    assert spec.pii_fields == ["email"]
    assert "user_id" not in spec.model_inputs and "email" not in spec.model_inputs
    assert spec.model_inputs[-4:] == [
        "purchases_30d",
        "avg_order_value",
        "days_since_last_visit",
        "tenure_days",
    ]
    assert set(spec.categorical_inputs) == {"category", "device", "country"}
    assert spec.positive_class == 1
    assert "purchase-propensity" in available_models()


def test_ground_truth_may_name_a_class_its_label_or_a_bool():
    spec = load_spec("purchase-propensity")
    assert spec.class_for(1) == 1
    assert spec.class_for("purchase") == 1
    assert spec.class_for("no_purchase") == 0
    assert spec.class_for(False) == 0
    assert spec.class_for("maybe") is None
    assert spec.class_for(2) is None


def test_unknown_or_unsafe_model_names_are_unknown():
    for name in ("no-such-model", "../etc/passwd", "", "UPPER"):
        with pytest.raises(UnknownModel):
            load_spec(name)


def test_every_problem_is_reported_with_its_line():
    broken = TEXT.replace("min: 0, max: 100000", "min: zero, max: 100000").replace(
        "threshold: 0.5", "threshold: 2"
    )
    with pytest.raises(SpecError) as info:
        parse_spec(broken, "broken.yaml")
    message = str(info.value)
    assert f"line {line_of(broken, 'min: zero')}: request.fields.price.min" in message
    assert f"line {line_of(broken, 'threshold: 2')}: output.threshold" in message


def test_unknown_keys_are_refused_not_ignored():
    broken = TEXT.replace("promotion_margin: 0.005", "promotion_margn: 0.005")
    with pytest.raises(SpecError, match=r"line \d+: evaluation.promotion_margn: Extra inputs"):
        parse_spec(broken)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("key: user_id ", "key: account_id "), "entity.key 'account_id' is not a request field"),
        (("min: 0, max: 23", "min: 23, max: 0"), "min (23.0) is greater than max (0.0)"),
        (("slices: [country, device]", "slices: [country, price]"), "slice 'price'"),
        (("classes: [0, 1]", "classes: [0, 1, 2]"), "exactly two target.classes"),
        (("pii: true, model_input: false", "pii: true"), "cannot be a model input"),
        (("{type: int, min: 0, default: 0}", "{type: int, min: 0, default: none}"), "is not a int"),
    ],
)
def test_inconsistent_specs_fail_loudly(change, problem):
    assert change[0] in TEXT
    with pytest.raises(SpecError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(TEXT.replace(*change))


def test_yaml_syntax_errors_name_the_line():
    with pytest.raises(SpecError, match=r"line \d+: not valid YAML"):
        parse_spec("name: x\nrequest: {fields: [\n")


def test_the_bundled_json_form_round_trips(tmp_path):
    spec = load_spec("purchase-propensity")
    (tmp_path / "purchase-propensity.json").write_text(spec.model_dump_json())
    again = load_spec_file(tmp_path / "purchase-propensity.json")
    assert again == spec
    assert again.output.labels == {0: "no_purchase", 1: "purchase"}


def test_a_file_whose_name_differs_from_the_spec_name_is_refused(tmp_path):
    (tmp_path / "other.yaml").write_text(TEXT)
    with pytest.raises(SpecError, match="does not match the file name"):
        load_spec_file(tmp_path / "other.yaml")


def test_multiclass_specs_need_top_k():
    multi = (
        TEXT.replace("task: binary", "task: multiclass")
        .replace("classes: [0, 1]", "classes: [a, b, c]")
        .replace("labels: {0: no_purchase, 1: purchase}", "top_k: 2")
    )
    spec = ModelSpec.model_validate(
        __import__("yaml").safe_load(multi.replace("threshold: 0.5", ""))
    )
    assert spec.output.top_k == 2
    with pytest.raises(SpecError, match="top_k"):
        parse_spec(multi.replace("top_k: 2", "top_k: 5"))
