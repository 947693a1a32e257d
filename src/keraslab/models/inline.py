"""Inline layer lists in the style of ``keras.Sequential``, checked against an allow-list.

A suite file may describe a network as a list of layers instead of a registered model name::

    layers:
      - {type: Flatten}
      - {type: Dense, units: 256, activation: relu}
      - {type: Dropout, rate: 0.2}
      - {type: Dense, units: 10}          # the logits: one unit per class, no activation

Only the layer types and keys below are accepted, so a typo is an error before anything trains,
never a silently ignored setting. :func:`check_layers` returns every problem at once as
``(location, message)`` pairs; :func:`build_layers` turns a checked list into Keras layers.
The ``sequential`` model in ``models/vision.py`` wraps them between the 28x28 input and nothing
else: the list's last layer must be the logits layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish",
    "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign",
)
PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Key:
    kind: str  # "int", "float", "bool", "str", "activation", "padding", "int_or_pair", "shape"
    required: bool = False
    low: float | None = None  # inclusive lower bound for numbers
    below: float | None = None  # exclusive upper bound for numbers


_NAME = Key("str")
LAYER_KEYS: dict[str, dict[str, Key]] = {
    "Dense": {"units": Key("int", True, 1), "activation": Key("activation"), "use_bias": Key("bool"), "name": _NAME},
    "Dropout": {"rate": Key("float", True, 0, 1), "name": _NAME},
    "GaussianNoise": {"stddev": Key("float", True, 0), "name": _NAME},
    "Activation": {"activation": Key("activation", True), "name": _NAME},
    "Flatten": {"name": _NAME},
    "BatchNormalization": {"momentum": Key("float", False, 0, 1), "name": _NAME},
    "LayerNormalization": {"name": _NAME},
    "Reshape": {"target_shape": Key("shape", True), "name": _NAME},
    "Conv2D": {
        "filters": Key("int", True, 1), "kernel_size": Key("int_or_pair", True), "strides": Key("int_or_pair"),
        "padding": Key("padding"), "activation": Key("activation"), "name": _NAME,
    },
    "MaxPooling2D": {"pool_size": Key("int_or_pair"), "strides": Key("int_or_pair"), "padding": Key("padding"), "name": _NAME},
    "GlobalAveragePooling2D": {"name": _NAME},
}


def _check_value(key: Key, value: Any) -> str | None:
    """None when `value` fits `key`, else what was expected."""
    if key.kind == "activation":
        return None if value in ACTIVATIONS else f"one of: {', '.join(ACTIVATIONS)}"
    if key.kind == "padding":
        return None if value in PADDINGS else f"one of: {', '.join(PADDINGS)}"
    if key.kind == "str":
        return None if isinstance(value, str) and value else "a non-empty string"
    if key.kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if key.kind == "int_or_pair":
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or (
            isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        )
        return None if ok else "a positive integer or a list of two"
    if key.kind == "shape":
        ok = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        return None if ok else "a list of positive integers, e.g. [28, 28, 1]"
    number = (int,) if key.kind == "int" else (int, float)
    expected = "an integer" if key.kind == "int" else "a number"
    if key.low is not None:
        expected += f" >= {key.low:g}"
    if key.below is not None:
        expected += f" and < {key.below:g}"
    if not isinstance(value, number) or isinstance(value, bool):
        return expected
    if (key.low is not None and value < key.low) or (key.below is not None and value >= key.below):
        return expected
    return None


def check_layers(layers: Any, num_classes: int | None = None) -> list[tuple[str, str]]:
    """Every problem in an inline layer list, as ``(location, message)``; empty when it is fine.

    Locations are relative to the list, e.g. ``"2.unitz"``. With `num_classes`, the last layer must
    be the logits layer: Dense with one unit per class (1 for two classes) and no activation.
    """
    if not isinstance(layers, list) or not layers:
        return [("", "must be a non-empty list of layers, e.g. [{type: Flatten}, {type: Dense, units: 10}]")]
    problems = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            problems.append((f"{i}", f"must be a mapping with a 'type' key (got {layer!r})"))
            continue
        kind = layer.get("type")
        if kind not in LAYER_KEYS:
            problems.append((f"{i}.type", f"unknown layer type {kind!r}; allowed: {', '.join(LAYER_KEYS)}"))
            continue
        allowed = LAYER_KEYS[kind]
        for name, value in layer.items():
            if name == "type":
                continue
            if name not in allowed:
                problems.append((f"{i}.{name}", f"unknown key for {kind}; allowed: type, {', '.join(allowed)}"))
                continue
            expected = _check_value(allowed[name], value)
            if expected:
                problems.append((f"{i}.{name}", f"{kind} {name} must be {expected} (got {value!r})"))
        for name, key in allowed.items():
            if key.required and name not in layer:
                problems.append((f"{i}.{name}", f"{kind} needs '{name}'"))
    if not problems and num_classes is not None:
        last = layers[-1]
        units = 1 if num_classes == 2 else num_classes
        if last.get("type") != "Dense" or last.get("units") != units or last.get("activation", "linear") != "linear":
            problems.append((
                f"{len(layers) - 1}",
                f"the last layer must be the logits layer {{type: Dense, units: {units}}} without activation "
                f"({num_classes} classes; keraslab applies the softmax itself)",
            ))
    return problems


def build_layers(layers: list[dict]) -> list:
    """Keras layers for a list that :func:`check_layers` accepted."""
    from keras import layers as kl

    out = []
    for spec in layers:
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
        out.append(getattr(kl, spec["type"])(**kwargs))
    return out
