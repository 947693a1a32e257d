"""Typed, validated configs. Unknown keys are errors, so a typo never silently trains the default."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keraslab.errors import KeraslabError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EarlyStopping(Strict):
    monitor: str = "val_loss"
    patience: int = Field(2, ge=0)
    restore_best_weights: bool = True


class Erasing(Strict):
    """Random erasing (Zhong et al. 2017): a rectangle of random area and aspect ratio per image."""

    probability: float = Field(0.5, ge=0, le=1)
    min_area: float = Field(0.02, gt=0, le=1)  # shares of the image's area
    max_area: float = Field(0.25, gt=0, le=1)
    min_aspect: float = Field(0.3, gt=0)  # height / width drawn log-uniformly in [min_aspect, 1/min_aspect]
    fill: Literal["random", "zero"] = "random"  # uniform noise in [0, 1], or black (cutout)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_area > self.max_area:
            raise ValueError(f"min_area {self.min_area} is larger than max_area {self.max_area}")
        if self.min_aspect > 1:
            raise ValueError("min_aspect must be at most 1 (the range is [min_aspect, 1/min_aspect])")
        return self


class Augmentation(Strict):
    """Training-only image augmentation, drawn afresh for every batch; never applied to validation or test."""

    translate: int = Field(0, ge=0, le=14)  # pad by this many pixels (zeros) and crop back at a random offset
    horizontal_flip: bool = False  # mirror left-right with probability 1/2
    erasing: Erasing | None = None

    @property
    def active(self) -> bool:
        return bool(self.translate or self.horizontal_flip or (self.erasing and self.erasing.probability > 0))


class LRSchedule(Strict):
    """How the learning rate moves during training; `learning_rate` is its peak (or starting) value.

    - constant: `learning_rate` throughout (after an optional warm-up).
    - cosine: linear warm-up from `initial_learning_rate` (default 0) to `learning_rate` over
      `warmup_epochs`, then half a cosine down to `final_learning_rate` (default 0) at the last step.
    - one_cycle: half a cosine up from `initial_learning_rate` (default learning_rate / 25) over
      `warmup_epochs` (default 30% of the epochs), then half a cosine down to `final_learning_rate`
      (default initial_learning_rate / 10,000), as in Smith's one-cycle policy (momentum fixed).
    - reduce_on_plateau: after the warm-up, multiply by `factor` whenever `monitor` has not improved
      by more than `min_delta` for `patience` epochs, never below `final_learning_rate` (default 0).
    Updated at every step; the value at each epoch's end is logged as `learning_rate`.
    """

    kind: Literal["constant", "cosine", "one_cycle", "reduce_on_plateau"]
    warmup_epochs: float | None = Field(None, ge=0)
    initial_learning_rate: float | None = Field(None, ge=0)
    final_learning_rate: float | None = Field(None, ge=0)
    # reduce_on_plateau only
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    min_delta: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _plateau_keys(self):
        plateau_only = [
            f for f in ("factor", "min_delta", "monitor", "patience") if getattr(self, f) != type(self).model_fields[f].default
        ]
        if plateau_only and self.kind != "reduce_on_plateau":
            raise ValueError(f"{', '.join(sorted(plateau_only))} only apply to kind reduce_on_plateau, not {self.kind}")
        return self


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    early_stopping: EarlyStopping | None = None
    # Added for the Fashion-MNIST CNNs; each default leaves training exactly as it was before.
    lr_schedule: LRSchedule | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # share of each target spread evenly over the classes
    augmentation: Augmentation | None = None  # images only
    tta: Literal["none", "flip"] = "none"  # test-time augmentation: average the image and its mirror image
    mixed_precision: bool = False  # compute in bfloat16 (keras policy mixed_bfloat16), variables in float32

    @model_validator(mode="after")
    def _warmup_fits(self):
        s = self.lr_schedule
        if s is not None and s.warmup_epochs is not None and s.warmup_epochs >= self.epochs and s.kind in ("cosine", "one_cycle"):
            raise ValueError(f"lr_schedule.warmup_epochs ({s.warmup_epochs:g}) must be shorter than epochs ({self.epochs})")
        return self


# Settings added after run keys were first published: left out of RunConfig.key() while at their
# defaults, so runs trained before they existed keep their keys (and suites resume them).
_ADDED_TRAINING_DEFAULTS = {
    name: TrainingConfig.model_fields[name].default
    for name in ("lr_schedule", "label_smoothing", "augmentation", "tta", "mixed_precision")
}


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
        data = self.model_dump(mode="json")
        for name, default in _ADDED_TRAINING_DEFAULTS.items():
            if data["training"].get(name) == default:
                del data["training"][name]
        blob = json.dumps(data, sort_keys=True)
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
