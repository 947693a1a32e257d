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
    expected=(
        "Fashion-MNIST test accuracy 0.874-0.880 (seeds 0-2; 10 epochs, batch 32); about 80 s on 2 idle CPU cores"
    ),
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


# --------------------------------------------------------------------------- stronger models
#
# The models below are what the Fashion-MNIST targets were measured with (docs/vision_models.md).
# Each ends in float32 logits (`_logits`), so they also train under `mixed_precision: true`.
# Their registered `training` settings are the recipe that produced the stated accuracy; training
# features (augmentation, schedules, label smoothing, TTA) live in TrainingConfig, not in the models,
# so a saved model.keras is plain Keras layers and predicts without keraslab's training code.


def _logits(num_classes: int) -> layers.Dense:
    return layers.Dense(1 if num_classes == 2 else num_classes, dtype="float32", name="logits")


def _image(name: str = "image"):
    """The 28x28 input and its reshape to one channel."""
    inputs = keras.Input(shape=INPUT_SHAPE, name=name)
    return inputs, layers.Reshape((*INPUT_SHAPE, 1), name="channel")(inputs)


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dense_bn_relu(x, units: int, dropout: float, name: str):
    x = layers.Dense(units, use_bias=False, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


@register(
    "mlp-bn-dropout",
    kind="image",
    expected=(
        "Fashion-MNIST test accuracy 0.893 ± 0.002 (3 seeds, experiments/fashion_mnist_best.yaml); "
        "about 2.5 min on 2 CPU cores"
    ),
    training={
        "epochs": 15, "batch_size": 128, "optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 1e-4,
        "lr_schedule": {"kind": "cosine", "warmup_epochs": 1}, "label_smoothing": 0.1,
        "augmentation": {"horizontal_flip": True}, "tta": "flip",
    },
)
def mlp_bn_dropout(
    num_classes: int = 10, widths: tuple = (1024, 512, 256), dropout: float = 0.3, input_dropout: float = 0.1
):
    """A wider MLP: Flatten, input dropout, then Dense, batch norm, ReLU and dropout per hidden layer."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    if input_dropout:
        x = layers.Dropout(input_dropout, name="input_dropout")(x)
    for i, units in enumerate(widths):
        x = _dense_bn_relu(x, int(units), dropout, f"hidden{i + 1}")
    return keras.Model(inputs, _logits(num_classes)(x), name="mlp_bn_dropout")


@register(
    "cnn-small",
    kind="image",
    expected=(
        "Fashion-MNIST test accuracy 0.915 ± 0.002 (3 seeds, experiments/fashion_mnist_best.yaml); "
        "about 4 min on 2 CPU cores"
    ),
    training={
        "epochs": 15, "batch_size": 128, "optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 1e-4,
        "lr_schedule": {"kind": "one_cycle"}, "label_smoothing": 0.1,
    },
)
def cnn_small(num_classes: int = 10, filters: tuple = (32, 64), dense: int = 128, dropout: float = 0.4):
    """The classic small convnet: Conv 3x3 32, max pool, Conv 3x3 64, max pool, Dense 128, dropout."""
    inputs, x = _image()
    for i, f in enumerate(filters):
        x = layers.Conv2D(int(f), 3, activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(int(dense), activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dense_dropout")(x)
    return keras.Model(inputs, _logits(num_classes)(x), name="cnn_small")


@register(
    "vgg-bn",
    kind="image",
    expected=(
        "Fashion-MNIST test accuracy 0.930 ± 0.001 (3 seeds, experiments/fashion_mnist_best.yaml); "
        "about 10 min on 2 CPU cores; with --epochs 20: 0.935 ± 0.0005 in about 14 min"
    ),
    training={
        "epochs": 15, "batch_size": 128, "optimizer": "adamw", "learning_rate": 3e-3, "weight_decay": 0.01,
        "lr_schedule": {"kind": "one_cycle"}, "label_smoothing": 0.1,
        "augmentation": {"translate": 2, "horizontal_flip": True}, "tta": "flip",
    },
)
def vgg_bn(
    num_classes: int = 10,
    width: int = 16,
    blocks: int = 3,
    convs_per_block: int = 2,
    dropout: float = 0.1,
    head: str = "flatten",
    dense: int = 128,
    head_dropout: float = 0.3,
):
    """VGG-style: blocks of 3x3 conv, batch norm, ReLU (width doubling), max pool and dropout; dense head."""
    from keraslab.errors import KeraslabError

    if head not in ("flatten", "gap"):
        raise KeraslabError(f"vgg-bn: head {head!r} is not 'flatten' or 'gap'", "flatten keeps where features are; gap averages them")
    if not 1 <= blocks <= 3:
        raise KeraslabError(f"vgg-bn: blocks={blocks}; 28x28 images allow 1 to 3 pooling blocks", "use blocks: 2 or 3")
    inputs, x = _image()
    for b in range(blocks):
        for c in range(convs_per_block):
            x = _conv_bn_relu(x, int(width) * 2**b, f"block{b + 1}_{c + 1}")
        x = layers.MaxPooling2D(name=f"block{b + 1}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"block{b + 1}_dropout")(x)
    x = layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    if dense:
        x = _dense_bn_relu(x, int(dense), head_dropout, "head")
    return keras.Model(inputs, _logits(num_classes)(x), name="vgg_bn")


@register(
    "resnet-small",
    kind="image",
    expected=(
        "Fashion-MNIST test accuracy not measured on the full data: at about 76 s per epoch on 2 CPU "
        "cores its 20 epochs take about 25 min (benchmarks/fashion_mnist_speed.py)"
    ),
    training={
        "epochs": 20, "batch_size": 128, "optimizer": "adamw", "learning_rate": 3e-3, "weight_decay": 5e-4,
        "lr_schedule": {"kind": "one_cycle"}, "label_smoothing": 0.1,
        "augmentation": {"translate": 2, "horizontal_flip": True}, "tta": "flip",
    },
)
def resnet_small(num_classes: int = 10, width: int = 16, blocks_per_stage: tuple = (1, 1, 1), dropout: float = 0.2):
    """A small ResNet (He et al. 2016, CIFAR layout): 3x3 stem, basic residual blocks in 3 stages, global average pool."""
    inputs, x = _image()
    x = _conv_bn_relu(x, int(width), "stem")
    for s, n in enumerate(blocks_per_stage):
        filters = int(width) * 2**s
        for b in range(int(n)):
            name = f"stage{s + 1}_block{b + 1}"
            strides = 2 if (s > 0 and b == 0) else 1
            shortcut = x
            y = _conv_bn_relu(x, filters, f"{name}_a", strides=strides)
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
            y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj_conv")(shortcut)
                shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _logits(num_classes)(x), name="resnet_small")
