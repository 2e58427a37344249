"""Lambda settings from the environment, validated at cold start: a missing or empty variable
fails the first invocation with its name, not a KeyError deep inside a request."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

T = TypeVar("T", bound="EnvSettings")


class EnvSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls: type[T]) -> T:
        try:
            return cls.model_validate(dict(os.environ))
        except ValidationError as exc:
            names = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise RuntimeError(f"{cls.__name__}: missing or invalid environment: {names}") from None


class PreprocessSettings(EnvSettings):
    features_table: str = Field(validation_alias="FEATURES_TABLE", min_length=3)
    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)  # the refusal log


class PredictionLogSettings(EnvSettings):
    """Postprocess and feedback: both write beside the prediction log."""

    predictions_table: str = Field(validation_alias="PREDICTIONS_TABLE", min_length=3)
    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)
