"""Models registered by name, as timm does.

Every builder has the same contract: ``builder(num_classes, **params) -> keras.Model``, uncompiled,
ending in *logits* (one unit for two classes, else ``num_classes`` units). Training chooses the
loss from the output width, evaluation turns logits into probabilities the same way, so a builder
never needs to know how it will be trained or evaluated.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from keraslab.errors import KeraslabError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "image" or "text": which datasets it accepts
    builder: Callable[..., Any]
    expected: str  # expected test accuracy and time, measured on the 2-core CPU
    training: dict[str, Any] = field(default_factory=dict)  # default TrainingConfig values

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.builder) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def params(self) -> dict[str, Any]:
        """The builder's tunable keyword arguments and their defaults."""
        sig = inspect.signature(self.builder)
        return {
            n: p.default
            for n, p in sig.parameters.items()
            if n != "num_classes" and p.default is not inspect.Parameter.empty
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, kind: str, expected: str, training: dict[str, Any] | None = None):
    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, kind, builder, expected, dict(training or {}))
        return builder

    return decorate


def names(kind: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def get(name: str, kind: str | None = None) -> ModelSpec:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise KeraslabError(
            f"unknown model {name!r}", f"choose one of: {', '.join(names(kind))}"
        )
    if kind is not None and spec.kind != kind:
        raise KeraslabError(
            f"model {name!r} is a {spec.kind} model and cannot train on {kind} data",
            f"{kind} models: {', '.join(names(kind))}",
        )
    return spec


def build(name: str, *, num_classes: int, kind: str | None = None, **params):
    spec = get(name, kind)
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in spec.params.items()) or "none"
        raise KeraslabError(
            f"model {name!r} has no parameter {', '.join(map(repr, unknown))}",
            f"its parameters: {allowed}",
        )
    return spec.builder(num_classes=num_classes, **params)
