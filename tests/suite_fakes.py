"""Stand-ins for the slow parts of a suite (data loading, training), for fast suite tests.

`FakeTraining` replaces `pipeline.train_run` with a function that writes a real, finished run
directory (same files, same atomic RunWriter) in milliseconds, with test probabilities that
depend only on the run's config hash, and records every call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keraslab import data, evaluation, experiments, pipeline, runs

N_TEST = 300
CLASS_NAMES = list(data.DATASETS["fashion_mnist"].class_names)

SUITE_YAML = """\
name: fake
dataset: fashion-mnist
seeds: [0, 1]
shared_init: false
training: {epochs: 2, batch_size: 100}
baseline: a
variants:
  a: {model: lesson-mlp}
  b: {model: lesson-mlp, training: {learning_rate: 0.0001}}
  c:
    layers:
      - {type: Flatten}
      - {type: Dense, units: 16, activation: gelu}
      - {type: Dense, units: 10}
ensembles:
  e: {members: [a, c], weights: [1, 3]}
"""


def write_suite(tmp_path: Path, text: str = SUITE_YAML, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def fake_splits(seed: int = 0) -> data.Splits:
    rng = np.random.default_rng(1234)  # the test set is the same for every seed, as in the real data
    x_test = rng.random((N_TEST, 28, 28), dtype=np.float32)
    y_test = np.arange(N_TEST) % 10
    train = np.random.default_rng(seed).random((20, 28, 28), dtype=np.float32)
    return data.Splits(
        name="fashion_mnist", kind="image", class_names=CLASS_NAMES,
        x_train=train, y_train=np.arange(20) % 10, x_val=train[:5], y_val=np.arange(5),
        x_test=x_test, y_test=y_test, source="fake", val_fraction=0.1,
    )


TEXT_SUITE_YAML = """\
name: fake-text
dataset: imdb
seeds: [0, 1]
training: {epochs: 1}
variants:
  tutorial: {model: tutorial-embedding}
  wide: {model: tutorial-embedding, params: {embedding_dim: 32}}
ensembles:
  both: {members: [tutorial, wide]}
"""

# Markup, line breaks and a pipe in every review: the report must escape them all.
REVIEW = "<script>alert('x')</script> A <b>wonderful</b> film.<br /><br />I loved it | every minute (review {i})."


def fake_text_splits(seed: int = 0) -> data.Splits:
    y_test = np.arange(N_TEST) % 2
    x_test = np.array([REVIEW.format(i=i) + " more" * (i % 50) for i in range(N_TEST)], dtype=object)  # lengths vary
    x_train = np.array([REVIEW.format(i=-i) for i in range(12)], dtype=object)
    return data.Splits(
        name="imdb_reviews", kind="text", class_names=["negative", "positive"],
        x_train=x_train, y_train=np.arange(12) % 2, x_val=x_train[:4], y_val=np.arange(4) % 2,
        x_test=x_test, y_test=y_test, source="fake", val_fraction=0.2,
    )


def fake_probabilities(key: str, y: np.ndarray, k: int = 10) -> np.ndarray:
    """Softmax-like rows whose argmax is right on about 70-85% of examples, fixed by `key`."""
    rng = np.random.default_rng(int(key, 16))
    acc = 0.70 + 0.15 * rng.random()
    pred = np.where(rng.random(len(y)) < acc, y, (y + rng.integers(1, k, len(y))) % k)
    probs = rng.random((len(y), k)) * 0.5
    probs[np.arange(len(y)), pred] += 1.0
    return probs / probs.sum(axis=1, keepdims=True)


class FakeTraining:
    """Callable replacement for pipeline.train_run; `fail_on` = call number (1-based) that raises."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[tuple[str, int]] = []
        self.kwargs: list[dict] = []
        self.fail_on = fail_on

    def __call__(self, cfg, out, *, splits=None, data_dir=None, verbose=0, tensorboard_dir=None,
                 init_weights=None, callbacks=()):
        self.calls.append((Path(out).parent.name, cfg.seed))
        self.kwargs.append({"tensorboard_dir": tensorboard_dir, "init_weights": init_weights, "splits": splits})
        runs.refuse_existing(out)
        with runs.RunWriter(out) as writer:
            if self.fail_on is not None and len(self.calls) == self.fail_on:
                (writer.path / runs.CONFIG).write_text("{}")  # half-written, then the "crash"
                raise RuntimeError("injected crash in the middle of a run")
            for cb in callbacks:  # drive progress callbacks as Keras would: 2 epochs of 3 batches
                cb.set_params({"epochs": 2, "steps": 3, "verbose": verbose})
                cb.on_train_begin()
                for epoch in range(2):
                    cb.on_epoch_begin(epoch)
                    for batch in range(3):
                        cb.on_train_batch_end(batch, {"loss": 1.0})
                    cb.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75})
            probs = fake_probabilities(cfg.key(), splits.y_test, len(splits.class_names))
            metrics = evaluation.compute_metrics(splits.y_test, probs, splits.class_names)
            runs.write_json(writer.path / runs.CONFIG, cfg.model_dump(mode="json"))
            runs.write_json(writer.path / runs.METRICS, metrics)
            runs.write_json(writer.path / runs.HISTORY, {
                "loss": [1.0, 0.6], "accuracy": [0.6, 0.7], "val_loss": [0.9, 0.7], "val_accuracy": [0.62, 0.71]})
            runs.write_json(writer.path / runs.ENVIRONMENT, {
                "wall_seconds": 1.5, "init_weights": str(init_weights) if init_weights else None, "data_source": "fake"})
            np.save(writer.path / runs.PROBABILITIES, probs.astype(np.float32))
            if tensorboard_dir is not None:
                Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
                (Path(tensorboard_dir) / "events.out.tfevents.fake").write_text("")
            return writer.finish()


def patch(monkeypatch, training: FakeTraining) -> FakeTraining:
    def load_splits(suite, seed, data_dir):
        return fake_splits(seed) if suite.kind == "image" else fake_text_splits(seed)

    monkeypatch.setattr(pipeline, "train_run", training)
    monkeypatch.setattr(experiments, "load_splits", load_splits)
    monkeypatch.setattr(experiments, "check_buildable", lambda suite: {n: 0 for n in suite.variants})
    return training
