"""Helpers for the infra tests (a module name no other test folder uses)."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3


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


def with_parameters(value: Any, parameters: dict[str, str]) -> Any:
    """A template (or part of one) as deployed with these parameter values: each Ref to one of
    them replaced by its value, and Fn::Split / Fn::Select over known text evaluated (how a URL
    parameter becomes an object's ARN)."""
    if isinstance(value, list):
        return [with_parameters(v, parameters) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and arg in parameters:
            return parameters[arg]
        arg = with_parameters(arg, parameters)
        if key == "Fn::Split" and all(isinstance(a, str) for a in arg):
            return arg[1].split(arg[0])
        if key == "Fn::Select" and isinstance(arg[1], list) and all(isinstance(a, str) for a in arg[1]):
            return arg[1][int(arg[0])]
        return {key: arg}
    return {k: with_parameters(v, parameters) for k, v in value.items()}


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


# -- IAM checked on moto (moto matches the resources of S3 statements only) --------------------


def s3_policy(template: dict[str, Any], role_logical_id: str, buckets: dict[str, str], without=None) -> dict:
    """A role's S3 statements with moto's buckets in them (`buckets`: {"<LogicalId.Arn>": name}),
    minus any statement granting `without`, and every other service allowed."""
    statements = []
    for statement in role_statements(template, role_logical_id):
        actions, resources = (
            value if isinstance(value, list) else [value]
            for value in (statement["Action"], statement["Resource"])
        )
        if not any(a.startswith("s3:") for a in actions) or without in actions:
            continue
        bound = []
        for resource in resources:
            (token,) = [t for t in buckets if resource.startswith(t)]  # this stack's buckets only
            bound.append(resource.replace(token, f"arn:aws:s3:::{buckets[token]}"))
        statements.append(statement | {"Resource": bound})
    statements.append({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def iam_user_keys(policy: dict) -> dict[str, str]:
    """A new moto IAM user holding `policy`: its access key id and secret."""
    iam = boto3.client("iam")
    name = f"role-{len(iam.list_users()['Users'])}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="role", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
