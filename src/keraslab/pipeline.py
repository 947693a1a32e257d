"""The path of one run: data → model → training → evaluation → run directory → report."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from keraslab import data, evaluation, memory, models, runs, training
from keraslab.config import RunConfig
from keraslab.reports import run_report
from keraslab.seeding import seed_everything


def load_splits(cfg: RunConfig, data_dir: Path | None = None) -> data.Splits:
    return data.load(
        cfg.dataset,
        data_dir=data_dir,
        seed=cfg.seed,
        val_fraction=cfg.val_fraction,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
    )


def train_run(
    cfg: RunConfig,
    out: Path,
    *,
    data_dir: Path | None = None,
    splits: data.Splits | None = None,
    verbose: int | str = "auto",
    tensorboard_dir: Path | None = None,
    init_weights: Path | None = None,
    callbacks: list[keras.callbacks.Callback] = (),
) -> Path:
    """Train, evaluate on the test set and publish a finished run directory at `out`.

    `tensorboard_dir` defaults to ``out/tensorboard``; a suite points every run into its own
    log tree instead. `init_weights`: a ``.weights.h5`` file of the same architecture to start
    from instead of the seeded initialization (the exercise's load_weights trick). It is loaded
    before the vectorizers are adapted and before compiling, so it can carry neither stale
    vocabulary statistics nor another variant's optimizer settings.
    """
    started = time.perf_counter()
    runs.refuse_existing(out)  # before the slow data loading, so a clash fails fast
    splits = splits or load_splits(cfg, data_dir)
    spec = models.get(cfg.model, kind=splits.kind)
    resolved = cfg.model_dump(mode="json")
    resolved["val_fraction"] = splits.val_fraction
    env = runs.environment() | {"data_source": splits.source, "run_key": cfg.key()}

    with memory.release_graphs(), runs.RunWriter(out) as writer:
        runs.write_json(writer.path / runs.CONFIG, resolved)
        memory.fresh_session()  # with release_graphs: memory stays flat when one process trains many models
        seed_everything(cfg.seed)
        model = models.build(cfg.model, num_classes=len(splits.class_names), kind=spec.kind, **cfg.model_params)
        if init_weights is not None:
            model.load_weights(init_weights)
            env["init_weights"] = str(init_weights)
        training.adapt_preprocessing(model, splits.x_train)
        training.compile_model(model, cfg.training)
        log_dir = tensorboard_dir or writer.path / runs.TENSORBOARD
        tensorboard = keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)
        history = training.fit(
            model, splits, cfg.training, seed=cfg.seed, callbacks=[tensorboard, *callbacks], verbose=verbose
        )

        probs = evaluation.predict_probabilities(model, splits.x_test, tta=cfg.training.tta)
        metrics = evaluation.compute_metrics(splits.y_test, probs, splits.class_names)
        env["wall_seconds"] = round(time.perf_counter() - started, 2)
        model.save(writer.path / runs.MODEL)
        np.save(writer.path / runs.PROBABILITIES, probs.astype(np.float32))
        runs.write_json(writer.path / runs.HISTORY, history)
        runs.write_json(writer.path / runs.METRICS, metrics)
        runs.write_json(writer.path / runs.ENVIRONMENT, env)
        run_report.write(writer.path, resolved, metrics, history, env)
        return writer.finish()


def evaluate_run(run: runs.Run, *, data_dir: Path | None = None) -> tuple[dict, dict]:
    """Reload the saved model, re-predict the same test set; return (fresh, recorded) metrics."""
    cfg = RunConfig.model_validate(run.config)
    splits = load_splits(cfg, data_dir)
    model = run.load_model()
    probs = evaluation.predict_probabilities(model, splits.x_test, tta=cfg.training.tta)
    return evaluation.compute_metrics(splits.y_test, probs, splits.class_names), run.metrics
