"""Typed, validated configs. Unknown keys are errors, so a typo never silently trains the default."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keraslab.errors import KeraslabError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EarlyStopping(Strict):
    monitor: str = "val_loss"
    patience: int = Field(2, ge=0)
    restore_best_weights: bool = True


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    early_stopping: EarlyStopping | None = None


class RunConfig(Strict):
    dataset: str
    model: str
    model_params: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    seed: int = Field(0, ge=0)
    val_fraction: float | None = Field(None, ge=0, lt=1)
    train_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)

    def key(self) -> str:
        """A short hash of everything that determines the result: equal keys, equal runs."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def validate(cls: type[Strict], data: dict[str, Any], where: str):
    """Build `cls` from plain data, turning pydantic's report into one line naming each bad key."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise KeraslabError(f"{where}: {'; '.join(problems)}", "see `keraslab --help`") from None
