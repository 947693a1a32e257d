"""Image classifiers for 28x28 grayscale inputs in [0, 1] (Fashion-MNIST)."""

import keras
from keras import layers

from keraslab.models.registry import register

INPUT_SHAPE = (28, 28)


def _head(num_classes: int) -> layers.Dense:
    return layers.Dense(1 if num_classes == 2 else num_classes, name="logits")


@register(
    "lesson-mlp",
    kind="image",
    expected="Fashion-MNIST test accuracy 0.875-0.90 (10 epochs, batch 32); about 1 minute on 2 CPU cores",
    training={"epochs": 10, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam"},
)
def lesson_mlp(num_classes: int = 10):
    """The course lesson's network: Flatten, Dense 256 relu, 128 relu, 64 tanh, 64 relu, logits."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name="image"),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(128, activation="relu"),
            layers.Dense(64, activation="tanh"),
            layers.Dense(64, activation="relu"),
            _head(num_classes),
        ],
        name="lesson_mlp",
    )


@register(
    "sequential",
    kind="image",
    expected="depends on its layers; with the default (the lesson-mlp layers) as lesson-mlp",
    training={"epochs": 10, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam"},
)
def sequential(num_classes: int = 10, layers: list | None = None):
    """An inline keras.Sequential-style layer list (suite files); the last layer gives the logits."""
    from keraslab.errors import KeraslabError
    from keraslab.models import inline

    units = 1 if num_classes == 2 else num_classes
    if layers is None:  # the lesson network, so the model also builds without parameters
        layers = [{"type": "Flatten"}] + [
            {"type": "Dense", "units": n, "activation": a} for n, a in [(256, "relu"), (128, "relu"), (64, "tanh"), (64, "relu")]
        ] + [{"type": "Dense", "units": units, "name": "logits"}]
    problems = inline.check_layers(layers, num_classes)
    if problems:
        raise KeraslabError(
            "layers: " + "; ".join(f"{loc or 'list'}: {msg}" if loc else msg for loc, msg in problems),
            "see keraslab.models.inline for the allowed layer types and keys",
        )
    model = keras.Sequential([keras.Input(shape=INPUT_SHAPE, name="image"), *inline.build_layers(layers)], name="sequential")
    if tuple(model.output_shape) != (None, units):
        raise KeraslabError(
            f"layers: the network outputs shape {tuple(model.output_shape)}, expected (None, {units})",
            "start with {type: Flatten} (or Reshape to [28, 28, 1] before Conv2D) so the logits are one vector per image",
        )
    return model
