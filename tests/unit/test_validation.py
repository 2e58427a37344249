import json

import pytest

from inferline.spec import FieldSpec, load_spec
from inferline.validation import InvalidRequest, check_value, parse_instances, validate_instances

SPEC = load_spec("purchase-propensity")
GOOD = {
    "user_id": "u1",
    "price": 10.5,
    "category": "books",
    "device": "mobile",
    "country": "US",
    "session_pages": 3,
    "hour_of_day": 12,
    "discount_pct": 0,
    "email": "a@example.com",
}


def problems(instances):
    with pytest.raises(InvalidRequest) as info:
        validate_instances(SPEC, instances)
    return {(p.instance, p.field): p.problem for p in info.value.problems}


def test_a_good_instance_is_cleaned_to_the_spec_types():
    [clean] = validate_instances(SPEC, [GOOD | {"session_pages": 3.0}])
    assert clean["session_pages"] == 3 and isinstance(clean["session_pages"], int)
    assert clean["discount_pct"] == 0.0 and isinstance(clean["discount_pct"], float)
    optional_missing = {k: v for k, v in GOOD.items() if k != "email"}
    assert "email" not in validate_instances(SPEC, [optional_missing])[0]


def test_every_problem_in_every_instance_is_reported_at_once():
    bad = GOOD | {"price": -1, "category": "cars", "hour_of_day": 24, "session_pages": 2.5}
    del bad["device"]
    found = problems([GOOD, bad, "not an object", GOOD | {"prce": 3}])
    assert found == {
        (1, "price"): "must be >= 0",
        (1, "category"): (
            "must be one of books, electronics, fashion, home, sports, toys, grocery, beauty; got 'cars'"
        ),
        (1, "hour_of_day"): "must be <= 23",
        (1, "session_pages"): "must be an integer, got 2.5",
        (1, "device"): "is required",
        (2, None): "must be a JSON object of field values",
        (3, "prce"): "unknown field",
    }


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("price", "12.5", "must be a number, got a string"),
        ("price", True, "must be a number, got a boolean"),
        ("price", float("inf"), "must be a finite number"),
        ("session_pages", [1], "must be an integer, got a list"),
        ("user_id", 42, "must be a string, got a number"),
        ("user_id", "x" * 65, "must be at most 64 characters"),
        ("country", "us", "got 'us'"),
        ("user_id", None, "is required"),
    ],
)
def test_wrong_types_and_values_name_the_field(field, value, problem):
    found = problems([GOOD | {field: value}])
    assert problem in found[(0, field)]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (None, None, "request body is empty"),
        ("  ", None, "request body is empty"),
        ("{not json", None, "not valid JSON"),
        ('{"instances": [{"price": NaN}]}', None, "not valid JSON"),
        ("[1, 2]", "instances", 'expected a JSON object {"instances"'),
        ('{"instances": []}', "instances", "non-empty list"),
        ('{"instances": {}}', "instances", "non-empty list"),
        ('{"instances": [{}], "extra": 1}', "extra", "unknown top-level field"),
    ],
)
def test_malformed_bodies_are_invalid_requests(body, field, problem):
    with pytest.raises(InvalidRequest) as info:
        parse_instances(body, SPEC)
    [p] = info.value.problems
    assert info.value.status == 400
    assert p.field == field and problem in p.problem


def test_too_many_instances_is_413():
    body = json.dumps({"instances": [GOOD] * (SPEC.request.max_instances + 1)})
    with pytest.raises(InvalidRequest) as info:
        parse_instances(body, SPEC)
    assert info.value.status == 413 and info.value.error == "too_many_instances"
    assert (
        len(parse_instances(json.dumps({"instances": [GOOD] * SPEC.request.max_instances}), SPEC))
        == 100
    )


@pytest.mark.parametrize(
    "kind, value, expected, problem",
    [
        ("float", 1e-131, 0.0, None),
        ("float", -9.6e-202, 0.0, None),
        ("float", 1e-130, 1e-130, None),
        ("float", 1e125, 1e125, None),
        ("float", 1.1e125, None, "must be at most 1e+125 in magnitude"),
        ("float", -1e300, None, "must be at most 1e+125 in magnitude"),
        ("int", 10**38 - 1, 10**38 - 1, None),
        ("int", -(10**38), None, "must have at most 38 digits"),
        ("int", 1e40, None, "must have at most 38 digits"),
    ],
)
def test_numbers_are_kept_within_what_the_stores_hold(kind, value, expected, problem):
    """A field without limits of its own still only takes numbers DynamoDB can hold."""
    clean, found = check_value(FieldSpec(type=kind), value)
    assert found == problem
    if problem is None:
        assert clean == expected
