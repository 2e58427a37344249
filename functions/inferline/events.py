"""The events the Lambdas receive, as pydantic models for Powertools' event_parser.

The predict workflow's input and the feedback Lambda's event are both API Gateway proxy
events; only the parts the handlers read are declared, so the smaller event the Step
Functions integration builds and the full one the local gateway builds both parse.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Identity(_Event):
    apiKeyId: str | None = None  # the caller's API key id (never the key): its client


class RequestContext(_Event):
    requestId: str
    identity: Identity | None = None

    @property
    def api_key_id(self) -> str | None:
        return self.identity.apiKeyId if self.identity else None


class ModelPath(_Event):
    model: str


class PredictEvent(_Event):
    body: str | None = None
    headers: dict[str, str | None] | None = None  # the workflow's input carries Content-Type only
    pathParameters: ModelPath
    requestContext: RequestContext


class FeedbackEvent(_Event):
    body: str | None = None
    headers: dict[str, str | None] | None = None
    requestContext: RequestContext


class EndpointReply(_Event):
    Body: str | bytes | dict


class PostprocessEvent(_Event):
    """The workflow state after InvokeEndpoint: Preprocess's output plus $.endpoint."""

    model: str
    context: dict
    endpoint: EndpointReply
