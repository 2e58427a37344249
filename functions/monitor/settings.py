"""The monitoring Lambdas' settings from the environment, checked at cold start."""

from __future__ import annotations

import json

from pydantic import Field, field_validator

from inferline.settings import EnvSettings


class MonitorSettings(EnvSettings):
    """Every monitoring Lambda gets the same environment (each role is scoped separately)."""

    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)
    resource_prefix: str = Field(validation_alias="RESOURCE_PREFIX", min_length=1)
    # The models the stack serves: the alarm names the trigger may act on are theirs.
    models: list[str] = Field(validation_alias="MODELS", min_length=1)
    # Where a drift or quality alarm starts retraining.
    retrain_state_machine_arn: str = Field(validation_alias="RETRAIN_STATE_MACHINE_ARN", min_length=3)

    @field_validator("models", mode="before")
    @classmethod
    def _json(cls, value):
        return json.loads(value) if isinstance(value, str) else value
