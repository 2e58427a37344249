"""Helpers for the infra tests (a module name no other test folder uses)."""

from __future__ import annotations

import re
from typing import Any


def resolve(value: Any) -> Any:
    """A template value with intrinsics flattened to text: Fn::Join joined, a Ref or
    GetAtt written as <LogicalId> or <LogicalId.Attr>, so strings can be compared."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Fn::Join":
            return arg[0].join(str(resolve(part)) for part in arg[1])
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}]+)\}", r"<\1>", arg)
        if key == "Fn::GetAtt":
            return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[dict]:
    """Every IAM statement of the policies attached to a role, intrinsics resolved."""
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if {"Ref": role_logical_id} in resource["Properties"]["Roles"]:
            statements += resolve(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions_on(statements: list[dict], prefix: str) -> dict[str, set[str]]:
    """{resource: actions} for the actions starting with `prefix` (e.g. "dynamodb:")."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for resource in resources:
            for action in actions:
                if action.startswith(prefix):
                    found.setdefault(resource, set()).add(action)
    return found
