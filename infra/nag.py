"""cdk-nag acknowledgments: a finding on one construct (and its children), with one line of
reason. IDs take the form the AwsSolutions pack reports: `AwsSolutions::<rule>[<finding>]`."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """`rule` as cdk-nag prints it, e.g. "AwsSolutions-IAM5[Resource::*]"."""
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def arn_of(construct: IConstruct) -> str:
    """How cdk-nag spells a resource's ARN in a finding: <LogicalId.Arn>."""
    element = construct.node.default_child
    return f"<{Stack.of(construct).get_logical_id(element)}.Arn>"  # type: ignore[arg-type]
