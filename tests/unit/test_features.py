from decimal import Decimal

import pytest

from inferline.features import entity_pk, get_features, load_features_csv
from inferline.spec import load_spec

SPEC = load_spec("purchase-propensity")
HEADER = "user_id,purchases_30d,avg_order_value,days_since_last_visit,tenure_days\n"


def test_bulk_load_writes_good_rows_and_reports_each_bad_one(aws):
    csv_text = HEADER + (
        "u1,3,42.5,2,400\n"
        "u2,-1,10,1,1\n"  # purchases_30d below its minimum
        ",1,1,1,1\n"  # no entity id
        "u3,many,1,1,1\n"  # not a number
        "u4,,,,\n"  # all missing: stored without them, defaults apply on read
    )
    report = load_features_csv(aws.features, SPEC, csv_text)
    assert report.loaded == 2
    assert [r["row"] for r in report.rejected] == [3, 4, 5]
    assert report.rejected[0]["problems"] == ["purchases_30d: must be >= 0"]
    assert "user_id: is required" in report.rejected[1]["problems"]
    assert "purchases_30d: must be an integer, got a string" in report.rejected[2]["problems"]
    item = aws.features.get_item(Key={"pk": entity_pk(SPEC, "u1")})["Item"]
    assert item["avg_order_value"] == Decimal("42.5") and item["feature_group"] == "user"


def test_a_header_without_the_key_or_with_unknown_columns_fails_before_writing(aws):
    with pytest.raises(ValueError, match="unknown columns: \\['colour'\\]"):
        load_features_csv(aws.features, SPEC, HEADER.strip() + ",colour\nu1,1,1,1,1,red\n")
    with pytest.raises(ValueError, match="must hold 'user_id'"):
        load_features_csv(aws.features, SPEC, "purchases_30d\n1\n")
    assert aws.features.scan()["Count"] == 0


def test_lookup_returns_typed_values_defaults_and_a_known_flag(aws):
    load_features_csv(aws.features, SPEC, HEADER + "u1,3,42.5,2,400\nu4,,,,\n")
    found = get_features(aws.features, SPEC, ["u1", "ghost", "u4", "u1"])
    assert list(found) == ["u1", "ghost", "u4"]
    assert found["u1"].known and found["u1"].values == {
        "purchases_30d": 3,
        "avg_order_value": 42.5,
        "days_since_last_visit": 2,
        "tenure_days": 400,
    }
    assert isinstance(found["u1"].values["purchases_30d"], int)
    assert not found["ghost"].known
    assert found["ghost"].values == {n: f.default for n, f in SPEC.stored_features.items()}
    assert found["u4"].known and found["u4"].values["days_since_last_visit"] == 365


def test_lookup_is_one_batched_read_per_hundred_entities(aws):
    rows = "".join(f"u{i},{i % 7},10,1,{i}\n" for i in range(250))
    assert load_features_csv(aws.features, SPEC, HEADER + rows).loaded == 250
    calls = []
    client = aws.features.meta.client
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    found = get_features(aws.features, SPEC, [f"u{i}" for i in range(250)])
    assert calls == ["BatchGetItem"] * 3
    assert all(f.known for f in found.values())
    assert found["u249"].values["tenure_days"] == 249
