"""The feature store: stored per-entity features in one DynamoDB table.

Item: {"pk": "<feature_group>#<entity id>", "entity_id", "feature_group", <feature>: value,
"updated_at"}. Reads are one BatchGetItem per 100 entities; writes go through a batch writer.
An entity with no item gets the spec's defaults and is flagged, so a prediction made on
defaults can be told apart in the logs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from inferline.csv_rows import parse_cell
from inferline.spec import ModelSpec
from inferline.validation import check_value

BATCH_GET_LIMIT = 100
MAX_UNPROCESSED_RETRIES = 5


def entity_pk(spec: ModelSpec, entity_id: str) -> str:
    return f"{spec.entity.feature_group}#{entity_id}"


@dataclass
class EntityFeatures:
    values: dict[str, Any]
    known: bool  # False when the store had no item and the spec's defaults were used


def get_features(table, spec: ModelSpec, entity_ids: Iterable[str]) -> dict[str, EntityFeatures]:
    """Stored features for each distinct entity id, in as few BatchGetItem calls as possible."""
    ids = list(dict.fromkeys(entity_ids))
    if not spec.stored_features:
        return {i: EntityFeatures({}, True) for i in ids}
    client = table.meta.client
    names = list(spec.stored_features)
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH_GET_LIMIT):
        keys = [{"pk": entity_pk(spec, i)} for i in ids[start : start + BATCH_GET_LIMIT]]
        request = {
            table.name: {
                "Keys": keys,
                "ProjectionExpression": ", ".join(f"#f{n}" for n in range(len(names))) + ", entity_id",
                "ExpressionAttributeNames": {f"#f{n}": name for n, name in enumerate(names)},
            }
        }
        for _ in range(MAX_UNPROCESSED_RETRIES):
            reply = client.batch_get_item(RequestItems=request)
            for item in reply["Responses"].get(table.name, []):
                found[item["entity_id"]] = item
            request = reply.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise RuntimeError("DynamoDB left keys unprocessed after retries")
    result = {}
    for entity_id in ids:
        item = found.get(entity_id)
        values = {}
        for name, feature in spec.stored_features.items():
            value = item.get(name) if item else None
            values[name] = feature.default if value is None else _from_dynamo(value, feature.type)
        result[entity_id] = EntityFeatures(values, known=item is not None)
    return result


def _from_dynamo(value: Any, kind: str) -> Any:
    if isinstance(value, Decimal):
        return int(value) if kind == "int" else float(value)
    return value


@dataclass
class LoadReport:
    """What a bulk load did: rows written, and each rejected row with its reason."""

    loaded: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


def load_features_csv(table, spec: ModelSpec, text: str | io.TextIOBase) -> LoadReport:
    """Load a CSV of stored features (entity key column + feature columns) into the table.

    Every row is checked against the spec; bad rows are reported (row number, problem) and
    skipped, good rows are written in batches of 25. A header without the entity key or with
    unknown columns fails the whole load before anything is written.
    """
    reader = csv.DictReader(io.StringIO(text) if isinstance(text, str) else text)
    key = spec.entity.key
    header = reader.fieldnames or []
    unknown = [c for c in header if c != key and c not in spec.stored_features]
    if key not in header or unknown:
        problem = f"header must hold '{key}' and stored features {list(spec.stored_features)}"
        if unknown:
            problem += f"; unknown columns: {unknown}"
        raise ValueError(problem)
    report = LoadReport()
    now = datetime.now(UTC).isoformat()
    with table.batch_writer(overwrite_by_pkeys=["pk"]) as batch:
        for row_number, row in enumerate(reader, start=2):  # line 1 is the header
            item, problems = _feature_item(spec, row, now)
            if problems:
                report.rejected.append({"row": row_number, "problems": problems})
                continue
            batch.put_item(Item=item)
            report.loaded += 1
    return report


def _feature_item(spec: ModelSpec, row: dict[str, str], now: str) -> tuple[dict, list[str]]:
    entity_id = (row.get(spec.entity.key) or "").strip()
    problems = [] if entity_id else [f"{spec.entity.key}: is required"]
    item: dict[str, Any] = {
        "pk": entity_pk(spec, entity_id),
        "entity_id": entity_id,
        "feature_group": spec.entity.feature_group,
        "updated_at": now,
    }
    for name, feature in spec.stored_features.items():
        text = (row.get(name) or "").strip()
        if text == "":
            continue  # missing in the file: the spec's default applies at read time
        value, problem = check_value(feature, parse_cell(text, feature.type))
        if problem:
            problems.append(f"{name}: {problem}")
        else:
            item[name] = Decimal(str(value)) if feature.type in ("int", "float") else value
    return item, problems
