"""Compile and fit a registered model on a dataset's splits.

Besides the plain path (numpy arrays into ``model.fit``, as the exercise does), the training
features of :class:`~keraslab.config.TrainingConfig` are wired here:

- ``augmentation``: a :class:`RandomAugment` layer in front of the model, in a training-only
  wrapper that shares the model's weights; the model that is evaluated and saved never contains it.
- ``lr_schedule``: :class:`LearningRateSchedule`, a callback that sets the learning rate before
  every step (cosine with warm-up, one-cycle, reduce-on-plateau) and logs it as ``learning_rate``.
- ``label_smoothing``: Keras' sparse cross-entropy has no smoothing, so the targets become one-hot
  (:func:`targets`) and the loss ``CategoricalCrossentropy(label_smoothing=...)``.
- ``mixed_precision``: the layers compute in bfloat16, variables and logits stay float32.
- ``early_stopping``: on validation data only, best weights restored (the test set is never seen here).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from typing import TYPE_CHECKING

from keraslab.config import Augmentation, LRSchedule, TrainingConfig
from keraslab.errors import KeraslabError

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


def loss_and_metrics(model: keras.Model, cfg: TrainingConfig) -> tuple[keras.losses.Loss, list]:
    """Models end in logits; one logit means binary, otherwise one logit per class.

    With label smoothing the multi-class targets are one-hot (see :func:`targets`)."""
    if is_binary(model):
        loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)
        metric = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    elif cfg.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return loss, [metric]


def compile_model(model: keras.Model, cfg: TrainingConfig) -> None:
    if cfg.mixed_precision:
        use_mixed_precision(model)
    loss, metrics = loss_and_metrics(model, cfg)
    model.compile(optimizer=make_optimizer(cfg), loss=loss, metrics=metrics)


def targets(y: np.ndarray, model: keras.Model, cfg: TrainingConfig) -> np.ndarray:
    """The labels as the loss wants them: class indices, or one-hot rows when smoothing labels."""
    if cfg.label_smoothing and not is_binary(model):
        return np.eye(model.output_shape[-1], dtype=np.float32)[np.asarray(y)]
    return y


def use_mixed_precision(model: keras.Model, policy: str = "mixed_bfloat16") -> None:
    """Compute in bfloat16, keep variables in float32 (Keras' mixed precision), on a built model.

    Layers already declared float32 (the logits of the vision models) stay float32, so the loss
    and the probabilities are computed from float32 logits. Saved models keep the policy.
    """
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.dtype_policy.name == "float32" and layer.name != "logits":
            layer.dtype_policy = policy


def adapt_preprocessing(model: keras.Model, x_train: np.ndarray) -> None:
    """Fit vocabularies and IDF weights on the training split only, never on validation or test."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.TextVectorization):
            layer.adapt(tf.data.Dataset.from_tensor_slices(tf.constant(list(x_train))).batch(2048))


def adapt_label_statistics(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray) -> None:
    """Fit weights that are statistics of the training labels (nbsvm's NB log-count ratios).

    Training split only. A layer opts in with an ``adapt_with_labels(batches)`` method; it gets
    ``(features, labels)`` batches, its features being what the layers before it make of x_train.
    `fit` calls this first, after the vectorizers were adapted.
    """
    for index, layer in enumerate(model.layers):
        if hasattr(layer, "adapt_with_labels"):
            upstream = model.layers[:index]

            def features(x, upstream=upstream):
                for earlier in upstream:
                    x = earlier(x)
                return x

            ds = tf.data.Dataset.from_tensor_slices((as_input(x_train), y_train)).batch(2048)
            layer.adapt_with_labels((features(x), y) for x, y in ds)


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


def learning_rate_of(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


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
    adapt_label_statistics(model, splits.x_train, splits.y_train)
    callbacks = list(callbacks)
    has_val = len(splits.y_val) > 0
    if splits.kind != "image" and (cfg.augmentation is not None or cfg.tta != "none"):
        raise KeraslabError(
            f"augmentation and tta are for image data, not {splits.kind}",
            "remove 'augmentation' and 'tta' from this training config",
        )
    y_train, y_val = targets(splits.y_train, model, cfg), targets(splits.y_val, model, cfg)
    if cfg.lr_schedule is not None:
        callbacks.insert(0, LearningRateSchedule(cfg.lr_schedule, cfg.learning_rate, has_val=has_val))
    trained = model
    if cfg.augmentation is not None and cfg.augmentation.active:
        trained = with_augmentation(model, cfg.augmentation, cfg)
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
        history = trained.fit(
            splits.x_train,
            y_train,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            validation_data=(splits.x_val, y_val) if has_val else None,
            callbacks=callbacks,
            verbose=verbose,
        )
    else:
        history = trained.fit(
            _dataset(splits.x_train, y_train, cfg.batch_size, shuffle_seed=seed),
            epochs=cfg.epochs,
            validation_data=(
                _dataset(splits.x_val, y_val, cfg.batch_size, None) if has_val else None
            ),
            callbacks=callbacks,
            verbose=verbose,
        )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


# --------------------------------------------------------------------------- augmentation


def with_augmentation(model: keras.Model, aug: Augmentation, cfg: TrainingConfig) -> keras.Model:
    """A training-only model: RandomAugment, then `model` (the same layers and weights).

    It shares `model`'s optimizer, so what `model` saves afterwards is the trained optimizer state.
    At inference (validation) RandomAugment is the identity.
    """
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    wrapper = keras.Model(inputs, model(RandomAugment(aug, name="augment")(inputs)), name=f"{model.name}_augmented")
    loss, metrics = loss_and_metrics(model, cfg)
    wrapper.compile(optimizer=model.optimizer, loss=loss, metrics=metrics)
    return wrapper


class RandomAugment(keras.layers.Layer):
    """Random translation (pad with zeros, crop back), horizontal flip and random erasing.

    For batches of images (n, H, W) or (n, H, W, C), each image drawing its own transform at every
    step; the identity unless called with ``training=True``. Shapes never change and every image
    stays in its row, so labels stay aligned. Translation is exact (integer shifts by one-hot
    matrix products), so an image shifted by 0 comes back bit-identical.
    """

    def __init__(self, augmentation: Augmentation | dict, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.augmentation = Augmentation.model_validate(augmentation) if isinstance(augmentation, dict) else augmentation
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        return {**super().get_config(), "augmentation": self.augmentation.model_dump(mode="json")}

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=None):
        if not training:
            return x
        aug = self.augmentation
        ops = keras.ops
        if len(x.shape) not in (3, 4):
            raise ValueError(f"RandomAugment wants images (n, H, W) or (n, H, W, C), got shape {x.shape}")
        n = ops.shape(x)[0]
        h, w = x.shape[1], x.shape[2]
        rows, cols = ops.arange(h), ops.arange(w)
        if aug.translate:
            p = aug.translate
            dy = keras.random.randint((n,), -p, p + 1, seed=self.seed_generator)
            dx = keras.random.randint((n,), -p, p + 1, seed=self.seed_generator)
            # out[i, j] = in[i - dy, j - dx], zero outside: shift_y @ image @ shift_x
            shift_y = ops.cast(ops.equal(rows[None, None, :], rows[None, :, None] - dy[:, None, None]), x.dtype)
            shift_x = ops.cast(ops.equal(cols[None, :, None], cols[None, None, :] - dx[:, None, None]), x.dtype)
            if len(x.shape) == 3:
                x = ops.matmul(ops.matmul(shift_y, x), shift_x)
            else:
                x = ops.einsum("nij,njkc,nkl->nilc", shift_y, x, shift_x)
        if aug.horizontal_flip:
            flip = keras.random.uniform((n,), seed=self.seed_generator) < 0.5
            flip = ops.reshape(flip, (-1,) + (1,) * (len(x.shape) - 1))
            x = ops.where(flip, ops.flip(x, axis=2), x)
        e = aug.erasing
        if e is not None and e.probability > 0:
            u = keras.random.uniform((n, 5), seed=self.seed_generator)
            area = (e.min_area + (e.max_area - e.min_area) * u[:, 0]) * (h * w)
            log_aspect = math.log(e.min_aspect) * (1 - 2 * u[:, 1])  # uniform in [log a, -log a]
            eh = ops.clip(ops.round(ops.sqrt(area * ops.exp(log_aspect))), 1, h)
            ew = ops.clip(ops.round(ops.sqrt(area / ops.exp(log_aspect))), 1, w)
            top = ops.floor(u[:, 2] * (h - eh + 1))
            left = ops.floor(u[:, 3] * (w - ew + 1))
            on = u[:, 4] < e.probability
            r = ops.cast(rows, "float32")[None, :, None]
            c = ops.cast(cols, "float32")[None, None, :]
            mask = (
                (r >= top[:, None, None]) & (r < (top + eh)[:, None, None])
                & (c >= left[:, None, None]) & (c < (left + ew)[:, None, None])
                & on[:, None, None]
            )
            if len(x.shape) == 4:
                mask = mask[..., None]
            if e.fill == "random":
                fill = keras.random.uniform(ops.shape(x), dtype=x.dtype, seed=self.seed_generator)
            else:
                fill = ops.zeros_like(x)
            x = ops.where(mask, fill, x)
        return x


# --------------------------------------------------------------------------- learning-rate schedules


def schedule_warmup_epochs(s: LRSchedule, epochs: int) -> float:
    if s.warmup_epochs is not None:
        return s.warmup_epochs
    return 0.3 * epochs if s.kind == "one_cycle" else 0.0


def schedule_endpoints(s: LRSchedule, base: float) -> tuple[float, float]:
    """(initial, final) learning rates with the kind's defaults filled in."""
    if s.kind == "one_cycle":
        initial = base / 25 if s.initial_learning_rate is None else s.initial_learning_rate
        final = initial / 1e4 if s.final_learning_rate is None else s.final_learning_rate
    else:
        initial = 0.0 if s.initial_learning_rate is None else s.initial_learning_rate
        final = 0.0 if s.final_learning_rate is None else s.final_learning_rate
    return initial, final


def scheduled_learning_rate(s: LRSchedule, base: float, step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning rate before optimizer step `step` (0-based) of `total_steps`.

    For reduce_on_plateau this is the warm-up, then `base` (the callback applies the reductions).
    """
    initial, final = schedule_endpoints(s, base)
    if step < warmup_steps:
        t = step / warmup_steps
        if s.kind == "one_cycle":
            return initial + (base - initial) * (1 - math.cos(math.pi * t)) / 2
        return initial + (base - initial) * t
    if s.kind in ("constant", "reduce_on_plateau"):
        return base
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps))
    return final + (base - final) * (1 + math.cos(math.pi * t)) / 2


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training step from an :class:`LRSchedule`.

    The optimizer keeps a plain float learning rate, so saved models need no custom objects.
    Reduce-on-plateau watches `monitor` at each epoch's end, as keras.callbacks.ReduceLROnPlateau
    does (without cooldown); without validation data it watches the training metric instead.
    """

    def __init__(self, schedule: LRSchedule, learning_rate: float, *, has_val: bool = True):
        super().__init__()
        self.schedule = schedule
        self.base = learning_rate
        self.monitor = schedule.monitor if has_val else schedule.monitor.removeprefix("val_")

    def on_train_begin(self, logs=None):
        self.steps_per_epoch = int(self.params.get("steps") or 1)
        self.epochs = int(self.params.get("epochs") or 1)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.warmup_steps = round(schedule_warmup_epochs(self.schedule, self.epochs) * self.steps_per_epoch)
        self.epoch = 0
        self.plateau_lr = self.base
        self.best = math.inf
        self.wait = 0
        self.mode_max = "acc" in self.monitor

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch
        lr = scheduled_learning_rate(self.schedule, self.base, step, self.total_steps, self.warmup_steps)
        if self.schedule.kind == "reduce_on_plateau" and step >= self.warmup_steps:
            lr = self.plateau_lr
        self.model.optimizer.learning_rate = lr

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = learning_rate_of(self.model.optimizer)
        s = self.schedule
        if s.kind != "reduce_on_plateau" or (epoch + 1) * self.steps_per_epoch < self.warmup_steps:
            return
        value = logs.get(self.monitor)
        if value is None:
            raise KeraslabError(
                f"lr_schedule: reduce_on_plateau monitors {self.monitor!r}, which training does not log",
                f"monitor one of: {', '.join(sorted(k for k in logs if k != 'learning_rate'))}",
            )
        value = -float(value) if self.mode_max else float(value)
        if value < self.best - s.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= max(1, s.patience):
            floor = s.final_learning_rate or 0.0
            self.plateau_lr = max(self.plateau_lr * s.factor, floor)
            self.wait = 0
