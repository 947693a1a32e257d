"""Compile and fit a registered model on a dataset's splits."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from typing import TYPE_CHECKING

from keraslab.config import TrainingConfig

if TYPE_CHECKING:
    from keraslab.data import Splits


def make_optimizer(cfg: TrainingConfig) -> keras.optimizers.Optimizer:
    kwargs = {"learning_rate": cfg.learning_rate}
    if cfg.weight_decay is not None:
        kwargs["weight_decay"] = cfg.weight_decay
    cls = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[cfg.optimizer]
    return cls(**kwargs)


def is_binary(model: keras.Model) -> bool:
    return model.output_shape[-1] == 1


def compile_model(model: keras.Model, cfg: TrainingConfig) -> None:
    """Models end in logits; one logit means binary, otherwise one logit per class."""
    if is_binary(model):
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metric = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=make_optimizer(cfg), loss=loss, metrics=[metric])


def adapt_preprocessing(model: keras.Model, x_train: np.ndarray) -> None:
    """Fit vocabularies and IDF weights on the training split only, never on validation or test."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.TextVectorization):
            layer.adapt(tf.data.Dataset.from_tensor_slices(tf.constant(list(x_train))).batch(2048))


def as_input(x: np.ndarray):
    """Numpy string arrays are not valid Keras inputs; TextVectorization wants string tensors."""
    if x.dtype == object or x.dtype.kind in "US":
        return tf.constant(list(x), dtype=tf.string)
    return x


def _dataset(x, y, batch_size: int, shuffle_seed: int | None):
    ds = tf.data.Dataset.from_tensor_slices((as_input(x), y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit(
    model: keras.Model,
    splits: "Splits",
    cfg: TrainingConfig,
    *,
    seed: int,
    callbacks: list[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, list[float]]:
    """Train on splits.x_train, watch splits.x_val; the test split is never touched here."""
    callbacks = list(callbacks)
    has_val = len(splits.y_val) > 0
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        monitor = es.monitor if has_val else es.monitor.removeprefix("val_")
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=es.patience, restore_best_weights=es.restore_best_weights
            )
        )
    if splits.kind == "image":
        # Numpy arrays straight into fit, as the exercise does: the fastest path on the CPU.
        history = model.fit(
            splits.x_train,
            splits.y_train,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            validation_data=(splits.x_val, splits.y_val) if has_val else None,
            callbacks=callbacks,
            verbose=verbose,
        )
    else:
        history = model.fit(
            _dataset(splits.x_train, splits.y_train, cfg.batch_size, shuffle_seed=seed),
            epochs=cfg.epochs,
            validation_data=(
                _dataset(splits.x_val, splits.y_val, cfg.batch_size, None) if has_val else None
            ),
            callbacks=callbacks,
            verbose=verbose,
        )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}
