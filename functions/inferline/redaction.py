"""PII redaction: every field the spec marks `pii` erased (Powertools Data Masking) before a
request is logged or passed on, online and in batch alike."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_masking import DataMasking

from inferline.spec import ModelSpec

_masking = DataMasking()


def redact(spec: ModelSpec, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the instances with every PII field erased (absent fields stay absent).

    One erase call for the whole list: Powertools parses each field path once per call,
    which per instance would cost more than the rest of preprocess.
    """
    copies = [dict(i) for i in instances]
    # erase refuses a path that matches nothing: name only fields some instance has
    present = [name for name in spec.pii_fields if any(name in i for i in copies)]
    if not present:
        return copies
    fields = [f"instances[*].{name}" for name in present]
    return _masking.erase({"instances": copies}, fields=fields)["instances"]
