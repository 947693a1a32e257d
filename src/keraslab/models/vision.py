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
