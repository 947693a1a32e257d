"""Training features: augmentation, learning-rate schedules, label smoothing, TTA, mixed precision,
and the validation of their settings. Real Fashion-MNIST images, seeded subsets, tiny models."""

import json
import math
import textwrap

import keras
import numpy as np
import pytest

from keraslab import data, evaluation, training
from keraslab.config import LRSchedule, RunConfig, TrainingConfig, validate
from keraslab.errors import KeraslabError
from keraslab.seeding import seed_everything


@pytest.fixture(scope="module")
def splits(shared_data_dir):
    return data.load("fashion_mnist", data_dir=shared_data_dir, seed=0, train_subset=512, test_subset=128)


def tiny_model(num_classes: int = 10) -> keras.Model:
    return keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(num_classes, name="logits")]
    )


# --------------------------------------------------------------------------- augmentation


def _augment(x, **settings):
    seed_everything(0)
    layer = training.RandomAugment(settings)
    return keras.ops.convert_to_numpy(layer(x, training=True))


def _shifted(img, dy, dx):
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_translation_is_an_exact_integer_shift_of_each_images_own_row(splits):
    x = splits.x_train[:64]
    out = _augment(x, translate=3)
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    seen = set()
    for i in range(len(x)):
        # the output row is a shift of its own input (label alignment), and of no other image's
        matches = [s for s in shifts if np.array_equal(out[i], _shifted(x[i], *s))]
        assert matches, f"row {i} is not a shift of input row {i}"
        seen.add(matches[0])
        others = [j for j in range(len(x)) if j != i and any(np.array_equal(out[i], _shifted(x[j], *s)) for s in shifts)]
        assert not others
    assert len(seen) > 5, "shifts are drawn per image"


def test_flip_mirrors_some_images_and_keeps_the_rest(splits):
    x = splits.x_train[:64]
    out = _augment(x, horizontal_flip=True)
    flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped | kept)
    assert 10 < flipped.sum() < 54  # about half


def test_erasing_changes_one_rectangle_per_image_within_the_area_bounds(splits):
    x = splits.x_train[:64]
    out = _augment(x, erasing={"probability": 1.0, "min_area": 0.05, "max_area": 0.2, "fill": "zero"})
    for o, xi in zip(out, x):
        erased = (o == 0) & (xi != 0)
        changed = o != xi
        assert np.all(o[changed] == 0)
        rows, cols = np.nonzero(o != xi) if changed.any() else (np.array([0]), np.array([0]))
        if erased.any():
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box <= 0.2 * 784 * 1.5 + 28  # rounding of the sides
    area_zeroed = [((o == 0) & (xi != 0)).sum() for o, xi in zip(out, x)]
    assert np.mean(area_zeroed) > 0.02 * 784


def test_augmentation_is_off_at_inference(splits):
    x = splits.x_test[:32]
    layer = training.RandomAugment({"translate": 2, "horizontal_flip": True, "erasing": {"probability": 1.0}})
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)


def test_fit_with_augmentation_trains_the_model_and_keeps_it_free_of_augmentation(splits, tmp_path):
    cfg = TrainingConfig(epochs=2, batch_size=64, augmentation={"translate": 2, "horizontal_flip": True, "erasing": {}})
    seed_everything(0)
    model = tiny_model()
    training.compile_model(model, cfg)
    before = [w.copy() for w in model.get_weights()]
    history = training.fit(model, splits, cfg, seed=0, verbose=0)
    assert len(history["loss"]) == 2 and "val_accuracy" in history
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not any(isinstance(l, training.RandomAugment) for l in model._flatten_layers())
    p1 = evaluation.predict_probabilities(model, splits.x_test)
    p2 = evaluation.predict_probabilities(model, splits.x_test)
    np.testing.assert_array_equal(p1, p2)  # inference is deterministic: nothing random is left in the model
    model.save(tmp_path / "m.keras")  # loads with plain Keras: no custom objects
    np.testing.assert_array_equal(evaluation.predict_probabilities(keras.models.load_model(tmp_path / "m.keras"), splits.x_test), p1)


def test_augmented_training_is_repeatable_with_the_same_seed(splits):
    cfg = TrainingConfig(epochs=1, batch_size=128, augmentation={"translate": 2, "horizontal_flip": True})
    weights = []
    for _ in range(2):
        keras.backend.clear_session()
        seed_everything(3)
        model = tiny_model()
        training.compile_model(model, cfg)
        training.fit(model, splits, cfg, seed=3, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- test-time augmentation


def test_tta_with_an_identity_transform_changes_nothing(splits):
    seed_everything(0)
    model = tiny_model()
    plain = evaluation.predict_probabilities(model, splits.x_test)
    same = evaluation.predict_probabilities(model, splits.x_test, transforms=[lambda x: x])
    np.testing.assert_array_equal(same, plain)


def test_flip_tta_averages_the_image_and_its_mirror(splits):
    seed_everything(0)
    model = tiny_model()
    x = splits.x_test
    expected = (evaluation.predict_probabilities(model, x) + evaluation.predict_probabilities(model, x[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(evaluation.predict_probabilities(model, x, tta="flip"), expected, rtol=1e-12)
    symmetric = (x + x[:, :, ::-1]) / 2  # mirror-symmetric images: flipping changes nothing
    np.testing.assert_allclose(
        evaluation.predict_probabilities(model, symmetric, tta="flip"), evaluation.predict_probabilities(model, symmetric), rtol=1e-6
    )


def test_tta_refuses_text_and_unknown_names():
    with pytest.raises(KeraslabError, match="unknown test-time augmentation 'rotate'"):
        evaluation.predict_probabilities(tiny_model(), np.zeros((2, 28, 28), "float32"), tta="rotate")


# --------------------------------------------------------------------------- learning-rate schedules


class RecordLR(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_begin(self, batch, logs=None):
        self.values.append(training.learning_rate_of(self.model.optimizer))


def _fit_recording(splits, schedule: dict, epochs=4, batch_size=128, learning_rate=0.01):
    cfg = TrainingConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=schedule)
    seed_everything(0)
    model = tiny_model()
    training.compile_model(model, cfg)
    rec = RecordLR()
    history = training.fit(model, splits, cfg, seed=0, callbacks=[rec], verbose=0)
    return np.array(rec.values), history


def test_cosine_with_warmup_follows_its_formula_step_by_step(splits):
    lrs, history = _fit_recording(splits, {"kind": "cosine", "warmup_epochs": 1, "final_learning_rate": 0.001})
    steps = math.ceil(len(splits.y_train) / 128)  # 4 steps per epoch, 16 in all
    total, warm = 4 * steps, steps
    assert len(lrs) == total
    expected = [0.01 * t / warm for t in range(warm)] + [
        0.001 + (0.01 - 0.001) * (1 + math.cos(math.pi * (t - warm) / (total - 1 - warm))) / 2 for t in range(warm, total)
    ]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert lrs[warm] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.001)
    np.testing.assert_allclose(history["learning_rate"], lrs[steps - 1 :: steps], rtol=1e-6)


def test_one_cycle_rises_from_a_25th_to_the_peak_then_falls_far_below(splits):
    lrs, _ = _fit_recording(splits, {"kind": "one_cycle"}, epochs=5)
    total = len(lrs)
    warm = round(0.3 * 5 * total / 5)
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert np.argmax(lrs) == warm and lrs[warm] == pytest.approx(0.01)
    assert np.all(np.diff(lrs[: warm + 1]) > 0) and np.all(np.diff(lrs[warm:]) < 0)
    assert lrs[-1] == pytest.approx(0.01 / 25 / 1e4)
    mid = (warm + total - 1) / 2
    if mid == int(mid):
        assert lrs[int(mid)] == pytest.approx((0.01 + 0.01 / 25 / 1e4) / 2)


def test_schedule_formula_edges():
    s = LRSchedule(kind="cosine")
    assert training.scheduled_learning_rate(s, 1.0, 0, 11, 0) == pytest.approx(1.0)
    assert training.scheduled_learning_rate(s, 1.0, 5, 11, 0) == pytest.approx(0.5)
    assert training.scheduled_learning_rate(s, 1.0, 10, 11, 0) == pytest.approx(0.0)
    assert training.scheduled_learning_rate(LRSchedule(kind="constant", warmup_epochs=1), 1.0, 2, 10, 4) == pytest.approx(0.5)
    assert training.scheduled_learning_rate(LRSchedule(kind="constant"), 1.0, 7, 10, 0) == 1.0


def test_reduce_on_plateau_multiplies_by_factor_after_patience_epochs():
    cfg = TrainingConfig(learning_rate=0.1, lr_schedule={"kind": "reduce_on_plateau", "factor": 0.5, "patience": 2, "final_learning_rate": 0.02})
    model = tiny_model()
    training.compile_model(model, cfg)
    cb = training.LearningRateSchedule(cfg.lr_schedule, cfg.learning_rate)
    cb.set_model(model)
    cb.set_params({"steps": 3, "epochs": 10})
    cb.on_train_begin()
    val_losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.95, 0.5, 0.6, 0.7, 0.8]
    used, logged = [], []
    for epoch, v in enumerate(val_losses):
        cb.on_epoch_begin(epoch)
        for b in range(3):
            cb.on_train_batch_begin(b)
        used.append(training.learning_rate_of(model.optimizer))
        logs = {"val_loss": v}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    # best 0.9 at epoch 1; epochs 2, 3 do not improve -> halved from epoch 4; epochs 4, 5 neither ->
    # halved again from epoch 6; epoch 6 improves (0.5); epochs 7, 8 do not -> 0.0125, floored at 0.02
    np.testing.assert_allclose(used, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02], rtol=1e-6)
    np.testing.assert_allclose(logged, used, rtol=1e-6)


def test_reduce_on_plateau_with_an_unlogged_monitor_names_the_logged_ones(splits):
    with pytest.raises(KeraslabError, match="monitors 'val_auc'.*val_loss"):
        _fit_recording(splits, {"kind": "reduce_on_plateau", "monitor": "val_auc"}, epochs=2)


# --------------------------------------------------------------------------- label smoothing


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_loss_is_cross_entropy_with_smoothed_targets(splits, smoothing):
    cfg = TrainingConfig(label_smoothing=smoothing)
    seed_everything(0)
    model = tiny_model()
    training.compile_model(model, cfg)
    x, y = splits.x_test, splits.y_test
    logp = _log_softmax(np.asarray(model.predict(x, verbose=0), dtype=np.float64))
    target = np.full((len(y), 10), smoothing / 10)
    target[np.arange(len(y)), y] += 1 - smoothing
    expected = float(np.mean(-(target * logp).sum(axis=1)))
    loss = model.evaluate(x, training.targets(y, model, cfg), verbose=0, batch_size=len(y))[0]
    assert loss == pytest.approx(expected, rel=1e-5)
    if smoothing:
        plain = float(np.mean(-logp[np.arange(len(y)), y]))
        assert loss != pytest.approx(plain, rel=1e-3)


def test_label_smoothing_trains_with_sparse_labels_from_the_data(splits):
    cfg = TrainingConfig(epochs=1, batch_size=128, label_smoothing=0.1)
    seed_everything(0)
    model = tiny_model()
    training.compile_model(model, cfg)
    history = training.fit(model, splits, cfg, seed=0, verbose=0)
    assert 0 <= history["val_accuracy"][0] <= 1 and np.isfinite(history["loss"][0])


# --------------------------------------------------------------------------- mixed precision


def test_mixed_precision_computes_in_bfloat16_with_float32_variables_and_logits(splits):
    cfg = TrainingConfig(epochs=1, batch_size=128, mixed_precision=True)
    seed_everything(0)
    model = tiny_model()
    training.compile_model(model, cfg)
    dense = model.layers[1]
    assert dense.compute_dtype == "bfloat16" and dense.kernel.dtype == "float32"
    assert model.get_layer("logits").compute_dtype == "float32"
    training.fit(model, splits, cfg, seed=0, verbose=0)
    assert model(splits.x_test[:4]).dtype == "float32"


# --------------------------------------------------------------------------- settings


def test_new_fields_default_to_the_old_behaviour_and_keep_old_run_keys():
    cfg = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp"}, "x")
    t = cfg.training
    assert (t.lr_schedule, t.label_smoothing, t.augmentation, t.tta, t.mixed_precision) == (None, 0.0, None, "none", False)
    old = cfg.model_dump(mode="json")
    for name in ("lr_schedule", "label_smoothing", "augmentation", "tta", "mixed_precision"):
        del old["training"][name]
    import hashlib

    assert cfg.key() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
    smoothed = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "training": {"label_smoothing": 0.1}}, "x")
    assert smoothed.key() != cfg.key()


@pytest.mark.parametrize(
    "training_block, message",
    [
        ({"augmentation": {"shift": 2}}, "unknown key 'training.augmentation.shift'"),
        ({"augmentation": {"translate": 20}}, "'training.augmentation.translate'"),
        ({"augmentation": {"erasing": {"min_area": 0.5, "max_area": 0.1}}}, "min_area 0.5 is larger than max_area 0.1"),
        ({"lr_schedule": {"kind": "step"}}, "'training.lr_schedule.kind'"),
        ({"lr_schedule": {"kind": "cosine", "patience": 3}}, "patience only apply to kind reduce_on_plateau"),
        ({"lr_schedule": {"kind": "one_cycle", "warmup_epochs": 10}, "epochs": 10}, "warmup_epochs \\(10\\) must be shorter than epochs"),
        ({"label_smoothing": 1.0}, "'training.label_smoothing'"),
        ({"tta": "rotate"}, "'training.tta'"),
        ({"mixed_precision": "maybe"}, "'training.mixed_precision'"),
    ],
)
def test_bad_new_settings_are_named(training_block, message):
    with pytest.raises(KeraslabError, match=message):
        validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "training": training_block}, "suite.yaml")


def test_a_saved_config_validates_again():
    t = TrainingConfig(lr_schedule={"kind": "one_cycle"}, augmentation={"translate": 2, "erasing": {}}, tta="flip")
    assert TrainingConfig.model_validate(t.model_dump(mode="json")) == t


def test_suite_variants_take_the_new_settings(tmp_path):
    from keraslab import experiments

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(textwrap.dedent("""
        name: features
        dataset: fashion-mnist
        seeds: 1
        training: {epochs: 3, batch_size: 128}
        variants:
          plain: {model: lesson-mlp}
          all-features:
            model: lesson-mlp
            training:
              lr_schedule: {kind: cosine, warmup_epochs: 1}
              label_smoothing: 0.1
              augmentation: {translate: 2, horizontal_flip: true, erasing: {probability: 0.5}}
              tta: flip
              mixed_precision: true
    """))
    suite = experiments.load(suite_file)
    t = suite.variants["all-features"].training
    assert t.lr_schedule.kind == "cosine" and t.augmentation.erasing.probability == 0.5 and t.tta == "flip"
    suite_file.write_text(suite_file.read_text().replace("tta: flip", "tta: flop"))
    with pytest.raises(KeraslabError, match="variants.all-features.training.tta"):
        experiments.load(suite_file)


def test_augmentation_on_text_is_refused():
    from types import SimpleNamespace

    text = SimpleNamespace(kind="text", x_train=np.array(["a good film"] * 4, dtype=object), y_train=np.array([1, 0, 1, 0]),
                           x_val=np.array([], dtype=object), y_val=np.array([], dtype=np.int64))
    with pytest.raises(KeraslabError, match="augmentation and tta are for image data"):
        training.fit(tiny_model(2), text, TrainingConfig(augmentation={"horizontal_flip": True}), seed=0, verbose=0)
