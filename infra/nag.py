"""cdk-nag acknowledgments: a finding on one construct (and its children), with one line of
reason. IDs take the form the AwsSolutions pack reports: `AwsSolutions::<rule>[<finding>]`."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """`rule` as cdk-nag prints it, e.g. "AwsSolutions-IAM5[Resource::*]"."""
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def arn_of(construct: IConstruct) -> str:
    """How cdk-nag spells a resource's ARN in a finding: <LogicalId.Arn>."""
    element = construct.node.default_child
    return f"<{Stack.of(construct).get_logical_id(element)}.Arn>"  # type: ignore[arg-type]


def default_policy(grantee: iam.IGrantable) -> Construct:
    """The DefaultPolicy a grant to a role (or to a Lambda's role) lands in: where its findings
    are acknowledged."""
    role = grantee.role if isinstance(grantee, lambda_.Function) else grantee
    return role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
