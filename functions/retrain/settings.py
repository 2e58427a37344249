"""The retraining Lambdas' settings from the environment, checked at cold start."""

from __future__ import annotations

import json

from pydantic import Field, field_validator

from inferline.settings import EnvSettings


class RetrainSettings(EnvSettings):
    """Every retraining Lambda gets the same environment (each role is scoped separately)."""

    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)
    artifacts_bucket: str = Field(validation_alias="ARTIFACTS_BUCKET", min_length=3)
    resource_prefix: str = Field(validation_alias="RESOURCE_PREFIX", min_length=1)
    # The SageMaker execution role new Models run with (Deploy passes it to CreateModel).
    sagemaker_role_arn: str = Field(validation_alias="SAGEMAKER_ROLE_ARN", min_length=3)
    # {"<model>": ["<alarm name>", ...]}: the alarms that roll a blue/green update back.
    rollback_alarms: dict[str, list[str]] = Field(validation_alias="ROLLBACK_ALARMS")
    # Where the outcome of every run is published (SNS; email subscriptions from context).
    retrain_topic_arn: str = Field(validation_alias="RETRAIN_TOPIC_ARN", min_length=3)

    @field_validator("rollback_alarms", mode="before")
    @classmethod
    def _json(cls, value):
        return json.loads(value) if isinstance(value, str) else value
