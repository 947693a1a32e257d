"""keraslab tune: the search file and its errors, the ledger replay, resume, budgets, outputs, and
one tiny real search end to end (killed in a subprocess and resumed).

Fast tests replace the Keras work of a trial (`tuning.train_trial`) with `FakeTraining`: real
oracles, real ledger, real reports, a made-up history in microseconds. The real tests train a
tiny Hyperband search (5 trials, 1-2 epochs on 1,000 images) once per module.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from keraslab import experiments, memory, pipeline, runs, tuning
from keraslab.cli import main
from keraslab.errors import KeraslabError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "experiments" / "tune"

TINY = """\
name: tiny
dataset: fashion-mnist
seed: 0
train_subset: 1000
val_fraction: 0.02
algorithm: {name: hyperband, factor: 2}
budget: {max_epochs: 2}
training:
  batch_size: 50
  learning_rate: {tune: float, min: 3.0e-4, max: 3.0e-3, sampling: log}
  early_stopping: {monitor: val_loss, patience: 1, restore_best_weights: true}
layers:
  - {type: Flatten}
  - {type: Dense, units: {tune: int, min: 16, max: 64, step: 16, name: units}, activation: relu}
  - repeat: {tune: int, min: 0, max: 1, name: extra}
    layers:
      - {type: Dense, units: 16, activation: {tune: choice, values: [relu, gelu]}}
  - {type: Dense, units: 10}
"""


def write(tmp_path: Path, text: str = TINY, name: str = "tune.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edited(text: str = TINY, **changes) -> str:
    data = yaml.safe_load(text)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def layers_with(i: int, layer) -> list:
    layers = yaml.safe_load(TINY)["layers"]
    layers[i] = layer
    return layers


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


# --------------------------------------------------------------------------- the search file


def test_shipped_searches_load_and_build():
    units = tuning.load(SHIPPED / "fashion_mnist_tune_units.yaml")
    assert list(units.space.hps) == ["units"]
    assert units.space.hps["units"].finite_values() == list(range(10, 236, 25))
    assert units.spec.algorithm.factor == 3 and units.spec.budget.max_epochs == 10
    es = units.fixed_training["early_stopping"]
    assert es["monitor"] == "val_loss" and es["patience"] == 2
    layers = units.space.resolve({"units": 210})[0]["layers"]
    assert [l.get("units") for l in layers] == [None, 210, 128, 64, 64, 10]  # the lesson MLP, first width tuned
    assert units.space.cardinality() == 10 and "expect 10 trials of 2 epoch(s) each" in units.warnings[0]
    assert tuning.planned(units) == (30, 120)

    rich = tuning.load(SHIPPED / "fashion_mnist_tune_rich.yaml")
    assert {"depth", "learning_rate", "batch_size", "units_1", "units_4", "activation_4", "dropout_4"} <= set(rich.space.hps)
    assert rich.space.hps["units_3"].condition == ("depth", (3, 4))
    assert rich.space.cardinality() is None and tuning.planned(rich) == (30, 226)
    imdb = tuning.load(SHIPPED / "imdb_tune.yaml")
    assert imdb.model == "tutorial-embedding" and imdb.kind == "text"
    assert set(imdb.space.hps) == {"max_tokens", "sequence_length", "embedding_dim", "dropout", "learning_rate"}
    for search in (units, rich, imdb):
        counts = tuning.check_buildable(search)
        assert 0 < counts["lowest"] < counts["highest"]


def test_resolve_a_variable_depth_network(tmp_path):
    search = tuning.load(write(tmp_path))
    assert search.space.hps["dense2_0.activation_1"].condition == ("extra", (1,))
    params, tuned = search.space.resolve({"learning_rate": 0.001, "units": 48, "extra": 1, "dense2_0.activation_1": "gelu"})
    assert [(l["type"], l.get("units"), l.get("activation")) for l in params["layers"]] == [
        ("Flatten", None, None), ("Dense", 48, "relu"), ("Dense", 16, "gelu"), ("Dense", 10, None)]
    assert tuned == {"learning_rate": 0.001}
    cfg = search.trial_config({"learning_rate": 0.001, "units": 16, "extra": 0})
    assert len(cfg.model_params["layers"]) == 3 and cfg.training.epochs == 2 and cfg.training.batch_size == 50
    assert cfg.seed == 0 and cfg.train_subset == 1000 and cfg.val_fraction == 0.02


def test_numbers_in_exponent_notation_are_numbers(tmp_path):
    text = TINY.replace("learning_rate: {tune: float, min: 3.0e-4, max: 3.0e-3, sampling: log}",
                        "learning_rate: {tune: choice, values: [1e-3, 1e-4]}")
    search = tuning.load(write(tmp_path, text))
    assert search.space.hps["learning_rate"].spec.values == [1e-3, 1e-4]  # not the strings "1e-3", "1e-4"


@pytest.mark.parametrize(
    "text, expected",
    [
        (edited(epochs=3), ["unknown key 'epochs'", "allowed: name, dataset"]),
        (edited(algorithm={"name": "hyperband", "factr": 3}), ["unknown key 'algorithm.factr'", "allowed: name, factor"]),
        (edited(algorithm={"name": "grid"}), ["'algorithm.name'", "'hyperband', 'bayesian' or 'random'"]),
        (edited(algorithm={"name": "random", "factor": 3}), ["'algorithm'", "factor is not a parameter of random"]),
        (edited(algorithm="random"), ["'budget.max_trials'", "random search needs a number of trials"]),
        (edited(budget=None), ["missing key 'budget'"]),
        (edited(budget={"max_epochs": 0}), ["'budget.max_epochs'", "greater than or equal to 1"]),
        (edited(budget={"max_epochs": 2, "max_minutes": -1}), ["'budget.max_minutes'"]),
        (edited(objective="test_accuracy"), ["'objective'", "'val_accuracy' or 'val_loss'"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": {"tune": "int", "min": 300, "max": 10}})),
         ["'layers.1.units'", "min 300 is greater than max 10"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": {"tune": "int", "min": "ten", "max": 20}})),
         ["'layers.1.units.min'", "'ten'"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": {"tune": "integer", "min": 1, "max": 20}})),
         ["'layers.1.units.tune'", "unknown kind 'integer'", "allowed: int, float, choice"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": {"tune": "int", "min": 1, "max": 20, "stepp": 2}})),
         ["unknown key 'layers.1.units.stepp'", "allowed: tune, min, max, step, sampling"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": 10, "activation": {"tune": "choice", "values": ["relu", 3]}})),
         ["'layers.1.activation.values'", "one kind"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": 10, "activation": {"tune": "choice", "values": ["relu", "softmax"]}})),
         ["'layers.1.activation'", "one of: linear, relu"]),
        (edited(layers=layers_with(1, {"type": "Dropout", "rate": {"tune": "float", "min": 0.1, "max": 1.5}})),
         ["'layers.1.rate'", "Dropout rate must be a number >= 0 and < 1"]),
        (edited(layers=layers_with(1, {"type": "Dense", "unitz": {"tune": "int", "min": 1, "max": 5}})),
         ["'layers.1.unitz'", "unknown key for Dense"]),
        (edited(layers=layers_with(1, {"type": "Dens", "units": 5})), ["'layers.1.type'", "unknown layer type 'Dens'"]),
        (edited(layers=layers_with(1, {"type": {"tune": "choice", "values": ["Dense"]}, "units": 5})),
         ["'layers.1.type'", "cannot be tuned"]),
        (edited(layers=layers_with(2, {"repeat": {"tune": "float", "min": 0, "max": 2}, "layers": [{"type": "Dense", "units": 4}]})),
         ["'layers.2.repeat'", "number of repetitions"]),
        (edited(layers=layers_with(2, {"repeat": 2, "layer": []})), ["'layers.2.layer'", "allowed: repeat, layers"]),
        (edited(layers=layers_with(3, {"type": "Dense", "units": 7})), ["'layers'", "logits layer {type: Dense, units: 10}"]),
        (edited(training={"epochs": 3}), ["'training.epochs'", "budget.max_epochs"]),
        (edited(training={"optimiser": "adam"}), ["'training.optimiser'", "unknown key", "allowed: batch_size"]),
        (edited(training={"early_stopping": {"tune": "choice", "values": [1, 2]}}),
         ["'training.early_stopping'", "cannot be tuned", "allowed: learning_rate, batch_size, optimizer"]),
        (edited(training={"learning_rate": {"tune": "float", "min": 0, "max": 0.1, "sampling": "log"}}),
         ["'training.learning_rate'", "log sampling needs min > 0"]),
        (edited(training={"optimizer": {"tune": "choice", "values": ["adam", "adamx"]}}),
         ["'training.optimizer'", "'adamx'"]),
        (edited(layers=None), ["either 'model'", "or 'layers'"]),
        (edited(layers=None, model="tutorial-embedding"), ["'model'", "text model", "allowed: ", "lesson-mlp"]),
        (edited(layers=None, model="lesson-mlp", params={"units": {"tune": "int", "min": 1, "max": 3}}),
         ["'params.units'", "lesson-mlp has no parameter 'units'"]),
        (edited(dataset="imdb"), ["'layers'", "inline layer lists are for image datasets"]),
        (edited(dataset="mnist"), ["'dataset': unknown dataset 'mnist'", "allowed: fashion_mnist, imdb_reviews"]),
        (edited(training={"batch_size": 50}, layers=[{"type": "Flatten"}, {"type": "Dense", "units": 10}]),
         ["nothing to tune"]),
        (edited(layers=layers_with(1, {"type": "Dense", "units": {"tune": "int", "min": 8, "max": 16, "name": "extra"}})),
         ["'layers.2.repeat'", "name 'extra' is already used by 'layers.1.units'"]),
        (edited(name="my search/1"), ["'name'", "folder name"]),
        (edited(baseline={"model": "nope"}), ["'baseline.model'", "unknown image model 'nope'"]),
        ("name: x\nname: y\n", ["duplicate key 'name'"]),
        ("name: x\n  dataset: [\n", ["not valid YAML", "line"]),
    ],
)
def test_bad_search_files_are_one_line_errors_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text, "bad-search.yaml")
    with pytest.raises(KeraslabError) as info:
        tuning.load(path)
    message = info.value.one_line()
    assert "\n" not in message
    assert str(path) in message or "bad-search.yaml" in message, message
    for part in expected:
        assert part in message, message


def test_cli_rejects_a_bad_search_before_training(tmp_path, monkeypatch, capsys):
    fake = FakeTraining()
    fake.patch(monkeypatch)
    path = write(tmp_path, edited(budget={"max_epoch": 3}))
    assert run_cli("tune", path, "--search-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unknown key 'budget.max_epoch'" in err[0]
    assert fake.calls == [] and not (tmp_path / "out").exists()


def test_dry_run_shows_space_and_schedule(tmp_path, capsys):
    assert run_cli("tune", SHIPPED / "fashion_mnist_tune_units.yaml", "--search-dir", tmp_path / "s", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "10 .. 235 step 25" in out or "10 .. 256 step 25" in out
    assert "plans 30 trial(s)" in out and "only 10 distinct configurations" in out and "Nothing was trained" in out
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- fake training


class FakeTraining:
    """Stands in for `tuning.train_trial`: a made-up, deterministic history per configuration."""

    def __init__(self, fail_on: int | None = None, nan_on: int | None = None):
        self.calls: list[dict] = []
        self.fail_on = fail_on
        self.nan_on = nan_on

    def patch(self, monkeypatch):
        monkeypatch.setattr(tuning, "train_trial", self)
        monkeypatch.setattr(tuning, "load_search_splits", lambda search, data_dir=None: None)
        monkeypatch.setattr(tuning, "check_buildable", lambda search: {})  # Keras builds: tested on their own
        return self

    def __call__(self, search, values, trial_id, splits, search_dir, callbacks=()):
        self.calls.append(dict(values))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("injected crash")
        key = json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True)
        quality = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8
        start = int(values.get("tuner/initial_epoch", 0))
        n = int(values.get("tuner/epochs", search.spec.budget.max_epochs)) - start
        acc = [0.5 + 0.3 * quality + 0.02 * (start + i) for i in range(n)]
        if self.nan_on is not None and len(self.calls) == self.nan_on:
            acc = [float("nan")] * n
        history = {"loss": [1 - a for a in acc], "accuracy": acc, "val_loss": [1.1 - a for a in acc], "val_accuracy": acc}
        for cb in callbacks:  # as Keras calls them, two batches an epoch
            cb.set_params({"epochs": n, "steps": 2})
            cb.on_train_begin()
            for i in range(n):
                cb.on_train_batch_end(0)
                cb.on_train_batch_end(1)
                cb.on_epoch_end(i, {k: v[i] for k, v in history.items()})
        if tuning._keeps_weights(values):
            path = tuning.weights_path(search_dir, trial_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("fake weights")
        return history, n - 1


# --------------------------------------------------------------------------- replay and resume


def _simulate(search, directory, n, told=None):
    """Ask an oracle for n trials, telling each a made-up score; returns the proposals."""
    oracle = tuning.make_oracle(search, directory) if told is None else told
    proposals = []
    for _ in range(n):
        trial = tuning._create(oracle)
        if trial.status != "RUNNING":
            break
        values = dict(trial.hyperparameters.values)
        score = 0.5 + 0.1 * math.sin(values["units"] / 7) + 0.02 * math.log10(values["learning_rate"])
        proposals.append({"number": len(proposals) + 1, "trial_id": trial.trial_id, "values": values, "status": "completed",
                          "metrics": {"val_accuracy": score, "val_loss": 1 - score}, "kept_epoch": 0})
        tuning._tell(oracle, trial, proposals[-1])
    return proposals


@pytest.mark.parametrize("algorithm, total, cuts", [
    ({"name": "hyperband", "factor": 2}, 7, (1, 3, 5)),  # cuts inside and between brackets and rounds
    ({"name": "random"}, 6, (1, 4)),
    # Trial 3 is the first Gaussian-process proposal; 4 comes after the replay. (keras-tuner's own
    # reload() gets 4 wrong: it resets the oracle's numpy RandomState and proposes 3's values again.)
    ({"name": "bayesian", "num_initial_points": 2}, 4, (3,)),
])
def test_replaying_the_ledger_restores_the_oracle_exactly(tmp_path, algorithm, total, cuts):
    """Every algorithm's oracle, rebuilt from k recorded trials, proposes what an uninterrupted one does."""
    search = tuning.load(write(tmp_path, edited(algorithm=algorithm, budget={"max_epochs": 4, "max_trials": total})))
    uninterrupted = _simulate(search, tmp_path / "a", total)
    assert len(uninterrupted) == total
    assert len({json.dumps(p["values"], sort_keys=True) for p in uninterrupted}) == total
    for k in cuts:
        oracle, notes = tuning.replay(search, tmp_path / f"b{k}", uninterrupted[:k])
        assert notes == []
        resumed = _simulate(search, tmp_path / f"b{k}", total - k, told=oracle)
        assert [p["values"] for p in resumed] == [p["values"] for p in uninterrupted[k:]]
        assert [p["trial_id"] for p in resumed] == [p["trial_id"] for p in uninterrupted[k:]]


def test_a_ledger_that_disagrees_with_the_oracle_wins_with_a_note(tmp_path):
    search = tuning.load(write(tmp_path, edited(algorithm="random", budget={"max_epochs": 2, "max_trials": 5})))
    recorded = _simulate(search, tmp_path / "a", 3)
    recorded[1]["values"] = {**recorded[1]["values"], "units": 16 if recorded[1]["values"]["units"] != 16 else 32}
    oracle, notes = tuning.replay(search, tmp_path / "b", recorded)
    assert len(notes) == 1 and "trial 2" in notes[0]
    assert oracle.trials[recorded[1]["trial_id"]].hyperparameters.values == recorded[1]["values"]
    assert len(oracle.end_order) == 3


def test_crash_then_resume_trains_only_the_rest_and_matches_an_uninterrupted_search(tmp_path, monkeypatch):
    path = write(tmp_path)
    search = tuning.load(path)
    FakeTraining().patch(monkeypatch)
    whole = tuning.tune(search, tmp_path / "whole", quiet=True, report=False)
    assert [e["number"] for e in whole.entries] == [1, 2, 3, 4, 5]

    first = FakeTraining(fail_on=3).patch(monkeypatch)
    with pytest.raises(RuntimeError, match="injected crash"):
        tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    assert len(first.calls) == 3 and len(tuning.read_ledger(tmp_path / "s")) == 2
    before = (tmp_path / "s" / tuning.LEDGER).read_text().splitlines()

    second = FakeTraining().patch(monkeypatch)
    outcome = tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    assert second.calls[0] == first.calls[2]  # the interrupted trial is proposed again, same values
    assert len(second.calls) == 3 and [e["number"] for e in outcome.trained] == [3, 4, 5]
    after = (tmp_path / "s" / tuning.LEDGER).read_text().splitlines()
    assert after[:2] == before  # finished trials are kept byte for byte, never trained again
    strip = lambda e: {k: e[k] for k in ("trial_id", "values", "score", "history", "kept_epoch")}  # noqa: E731
    assert [strip(e) for e in outcome.entries] == [strip(e) for e in whole.entries]
    assert [e["session"] for e in outcome.entries] == [1, 1, 2, 2, 2]
    assert outcome.stop_reason == "the algorithm's schedule is complete"

    third = FakeTraining().patch(monkeypatch)
    again = tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    assert third.calls == [] and len(again.entries) == 5


def test_a_torn_last_ledger_line_is_ignored_and_a_bad_middle_one_is_an_error(tmp_path, monkeypatch):
    search = tuning.load(write(tmp_path))
    FakeTraining().patch(monkeypatch)
    tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    ledger = tmp_path / "s" / tuning.LEDGER
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    assert len(tuning.read_ledger(tmp_path / "s")) == 3
    ledger.write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    with pytest.raises(KeraslabError, match="line 2 is not valid JSON"):
        tuning.read_ledger(tmp_path / "s")


def test_changed_search_is_refused_and_overwrite_moves_the_old_one_aside(tmp_path, monkeypatch):
    FakeTraining().patch(monkeypatch)
    sd = tmp_path / "s"
    tuning.tune(tuning.load(write(tmp_path)), sd, quiet=True, report=False)
    changed = tuning.load(write(tmp_path, TINY.replace("max: 64, step: 16", "max: 128, step: 16"), "changed.yaml"))
    with pytest.raises(KeraslabError, match=r"another version of this search \(changed: layers") as info:
        tuning.tune(changed, sd, quiet=True, report=False)
    assert "--overwrite" in str(info.value)
    old = (sd / tuning.LEDGER).read_text()
    fake = FakeTraining().patch(monkeypatch)
    outcome = tuning.tune(changed, sd, overwrite=True, quiet=True, report=False)
    assert len(fake.calls) == 5 and outcome.moved is not None
    assert (outcome.moved / tuning.LEDGER).read_text() == old  # moved, never deleted
    assert (outcome.moved / tuning.SPEC_COPY).read_text() == TINY and (sd / tuning.SPEC_COPY).read_text() != TINY
    assert tuning.load(sd / tuning.SPEC_COPY).definition_hash() == changed.definition_hash()


def test_budgets_stop_the_search_and_a_larger_budget_continues_it(tmp_path, monkeypatch):
    text = edited(algorithm="random", budget={"max_epochs": 2, "max_trials": 2})
    fake = FakeTraining().patch(monkeypatch)
    outcome = tuning.tune(tuning.load(write(tmp_path, text)), tmp_path / "s", quiet=True, report=False)
    assert len(fake.calls) == 2 and outcome.stop_reason == "budget.max_trials reached (2 trials)"
    more = tuning.load(write(tmp_path, text.replace("max_trials: 2", "max_trials: 4"), "more.yaml"))
    outcome = tuning.tune(more, tmp_path / "s", quiet=True, report=False)  # the budget may change: same search
    assert len(fake.calls) == 4 and [e["trial_id"] for e in outcome.entries] == ["0000", "0001", "0002", "0003"]

    monkeypatch.setattr(tuning, "_budget_reason", lambda s, e: "budget.max_minutes reached" if len(e) >= 1 else None)
    outcome = tuning.tune(tuning.load(write(tmp_path, text, "t.yaml")), tmp_path / "t", quiet=True, report=False)
    assert len(outcome.entries) == 1 and outcome.stop_reason == "budget.max_minutes reached"


def test_wall_clock_budget_counts_the_trials_of_every_session():
    search = tuning.load(SHIPPED / "fashion_mnist_tune_rich.yaml")  # max_minutes 240
    assert tuning._budget_reason(search, [{"seconds": 120 * 60}]) is None
    assert "max_minutes" in tuning._budget_reason(search, [{"seconds": 120 * 60}, {"seconds": 120 * 60}])


def test_a_small_space_ends_the_search_as_keras_tuner_does(tmp_path, monkeypatch):
    text = edited(training={"batch_size": 50},
                  layers=[{"type": "Flatten"}, {"type": "Dense", "units": {"tune": "choice", "values": [8, 16, 24]}},
                          {"type": "Dense", "units": 10}])
    search = tuning.load(write(tmp_path, text))
    # bracket 1 draws 2 of the 3 and continues the better one; bracket 0 wants 2 new ones, finds 1
    assert search.space.cardinality() == 3 and "expect 4 trials in all" in search.warnings[0]
    FakeTraining().patch(monkeypatch)
    outcome = tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    assert len(outcome.entries) == 4 and "space is exhausted" in outcome.stop_reason


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    FakeTraining(nan_on=2).patch(monkeypatch)
    search = tuning.load(write(tmp_path, edited(algorithm="random", budget={"max_epochs": 1, "max_trials": 3})))
    outcome = tuning.tune(search, tmp_path / "s", quiet=True)
    assert [e["status"] for e in outcome.entries] == ["completed", "failed", "completed"]
    assert outcome.entries[1]["score"] is None and outcome.best["number"] in (1, 3)
    oracle, _ = tuning.replay(search, tmp_path / "r", outcome.entries)
    assert oracle.trials["0001"].status == "FAILED"


def test_a_lost_search_json_is_recovered_from_the_copy_of_the_search_file(tmp_path, monkeypatch):
    fake = FakeTraining(fail_on=3).patch(monkeypatch)
    search = tuning.load(write(tmp_path))
    with pytest.raises(RuntimeError):
        tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    (tmp_path / "s" / tuning.STATE).unlink()
    fake = FakeTraining().patch(monkeypatch)
    tuning.tune(search, tmp_path / "s", quiet=True, report=False)
    assert len(fake.calls) == 3
    (tmp_path / "s" / tuning.STATE).unlink()
    other = tuning.load(write(tmp_path, TINY.replace("seed: 0", "seed: 1"), "other.yaml"))
    with pytest.raises(KeraslabError, match="changed: seed"):
        tuning.tune(other, tmp_path / "s", quiet=True, report=False)


def test_outputs_from_fake_trials(tmp_path, monkeypatch):
    FakeTraining().patch(monkeypatch)
    search = tuning.load(write(tmp_path))
    outcome = tuning.tune(search, tmp_path / "s", quiet=True)
    sd = tmp_path / "s"
    rows = (sd / tuning.CSV).read_text().splitlines()
    assert rows[0].startswith("trial,trial_id,status,val_accuracy,best_epoch_val_accuracy,epochs")
    assert "bracket,round,from_epoch,continues_trial,learning_rate,units,extra" in rows[0] and len(rows) == 6
    best = json.loads((sd / tuning.BEST_JSON).read_text())
    assert best["trial"] == outcome.best["number"] and best["score"] == max(e["score"] for e in outcome.entries)
    page = (sd / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "http://" not in page and "https://" not in page
    assert "Hyperband brackets" in page and "Best trial" in page and f"{best['score']:.4f}" in page
    exported = experiments.load(sd / tuning.BEST_VARIANT)
    assert exported.baseline == "baseline" and set(exported.variants) == {"baseline", "tuned"}
    assert exported.variants["tuned"].params["layers"] == outcome.best["config"]["model_params"]["layers"]
    assert exported.variants["tuned"].training.learning_rate == outcome.best["values"]["learning_rate"]  # exact
    assert exported.variants["baseline"].model == "lesson-mlp" and exported.seeds == [0, 1, 2]
    assert exported.spec.train_subset == 1000 and exported.variants["tuned"].training.epochs == 2
    hb = [json.loads(l)["hyperband"] for l in (sd / tuning.LEDGER).read_text().splitlines()]
    assert [h["bracket"] for h in hb] == [1, 1, 1, 0, 0] and hb[2]["trial_id"] is not None
    assert (sd / "weights" / "0000.weights.h5").is_file() and not (sd / "weights" / "0003.weights.h5").exists()


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_shows_trial_k_of_n_best_elapsed_and_eta(tmp_path, monkeypatch, terminal):
    from rich.console import Console

    FakeTraining().patch(monkeypatch)
    console = Console(record=True, width=200, force_terminal=terminal)
    tuning.tune(tuning.load(write(tmp_path)), tmp_path / "s", console=console, report=False)
    text = console.export_text()
    assert "finished trial 5: val_accuracy 0." in text and "best val_accuracy 0." in text
    if terminal:
        assert "search: trial 5 of 5" in text and "ETA" in text and "elapsed" in text
    else:
        assert "[trial 1 of 5]" in text and "[trial 3 of 5]" in text and "(continues trial" in text
        assert "elapsed 0:00:0" in text and "ETA" in text


def test_a_second_tune_on_the_same_dir_is_refused(tmp_path, monkeypatch):
    FakeTraining().patch(monkeypatch)
    with tuning._Lock(tmp_path / "s"):
        with pytest.raises(KeraslabError, match="another `keraslab tune`"):
            tuning.tune(tuning.load(write(tmp_path)), tmp_path / "s", quiet=True)


# --------------------------------------------------------------------------- a tiny real search


@pytest.fixture(scope="module")
def real_search(shared_data_dir, tmp_path_factory):
    """The tiny Hyperband search for real through the CLI, with --then-run 1."""
    base = tmp_path_factory.mktemp("tune")
    path = write(base)
    sd = base / "search"
    seen_test_sizes, leftovers = [], []
    real_train = tuning.train_trial

    def recording(search, values, trial_id, splits, search_dir, callbacks=()):
        seen_test_sizes.append((len(splits.x_test), len(splits.y_test)))
        before = memory.custom_gradient_names()
        result = real_train(search, values, trial_id, splits, search_dir, callbacks)
        leftovers.append(sorted(memory.custom_gradient_names() - before))
        return result

    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "train_trial", recording)
        assert run_cli("tune", path, "--search-dir", sd, "--then-run", 1, "--data-dir", shared_data_dir, "--quiet") == 0
    return {"path": path, "dir": sd, "test_sizes": seen_test_sizes, "leftovers": leftovers,
            "seconds": time.perf_counter() - started}


@pytest.mark.slow
def test_real_search_end_to_end(real_search):
    sd = real_search["dir"]
    assert real_search["test_sizes"] == [(0, 0)] * 5  # the tuner never sees test data
    # each trial's graphs are released: no gradient function is left in TensorFlow's global registry
    assert real_search["leftovers"] == [[]] * 5
    entries = tuning.read_ledger(sd)
    assert [e["status"] for e in entries] == ["completed"] * 5
    assert [e["total_epochs"] for e in entries] == [1, 1, 2, 2, 2] or entries[3]["epochs_run"] < 2  # early stopping
    cont = entries[2]
    assert cont["hyperband"]["trial_id"] in ("0000", "0001") and cont["hyperband"]["initial_epoch"] == 1
    assert all(0.1 < e["score"] < 1 for e in entries)
    assert all(e["rss_mb"] and e["peak_rss_mb"] for e in entries)
    assert (sd / "report.html").stat().st_size > 20_000 and len((sd / tuning.CSV).read_text().splitlines()) == 6
    summary = json.loads((sd / tuning.THEN_RUN_DIR / "summary.json").read_text())
    by = {e["name"]: e for e in summary["results"]}
    assert set(by) == {"baseline", "tuned"} and summary["n_test"] == 10000 and summary["seeds"] == [0]
    assert by["baseline"]["verdict"] == "baseline" and by["tuned"]["verdict"] in ("better", "worse", "no detectable difference")
    page = (sd / "report.html").read_text()
    assert "Retrained on the test set" in page and "tuned" in page


@pytest.mark.slow
def test_exported_variant_runs_in_keraslab_run(real_search, capsys):
    sd = real_search["dir"]
    best = yaml.safe_load((sd / tuning.BEST_VARIANT).read_text())
    then = yaml.safe_load((sd / tuning.THEN_RUN_YAML).read_text())
    assert best.pop("seeds") == [0, 1, 2] and then.pop("seeds") == [0]
    assert "over 3 seed(s)" in best.pop("description") and "over 1 seed(s)" in then.pop("description")
    assert best == then  # --then-run ran exactly the exported suite, with its own number of seeds
    assert run_cli("run", sd / tuning.BEST_VARIANT, "--suite-dir", sd / "x", "--dry-run") == 0
    assert "6 of 6 runs to train" in capsys.readouterr().out
    suite = experiments.load(sd / tuning.THEN_RUN_YAML)
    for r in suite.runs:  # trained by keraslab run's machinery, finished and on disk
        assert experiments.is_done(experiments.run_dir(sd / tuning.THEN_RUN_DIR, r))


@pytest.mark.slow
def test_a_retrained_exported_trial_repeats_the_trial_exactly(real_search, shared_data_dir, tmp_path):
    """The number the search found is the number of the configuration it exports (same seed)."""
    sd = real_search["dir"]
    search = tuning.load(real_search["path"])
    entry = next(e for e in tuning.read_ledger(sd) if e["hyperband"]["initial_epoch"] == 0 and e["hyperband"]["epochs"] == 2)
    path = tmp_path / "one.yaml"
    path.write_text(tuning.suite_yaml(search, entry, [search.spec.seed]))
    suite = experiments.load(path)
    run = next(r for r in suite.runs if r.variant == tuning.TUNED_VARIANT)
    out = pipeline.train_run(run.config, tmp_path / "run", data_dir=shared_data_dir, verbose=0)
    assert runs.Run(out).history == entry["history"]


@pytest.mark.slow
def test_a_killed_search_resumes_without_repeating_finished_trials(real_search, shared_data_dir, tmp_path):
    """Kill -9 the CLI after its second trial; the rerun finishes the search, identical to the uninterrupted one."""
    sd = tmp_path / "search"
    env = {**os.environ, "KERASLAB_DATA_DIR": str(shared_data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "keraslab", "tune", str(real_search["path"]), "--search-dir", str(sd),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(tuning.read_ledger(sd)) < 2:
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search did not finish two trials in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed = tuning.read_ledger(sd)
    assert 2 <= len(killed) < 5
    before = (sd / tuning.LEDGER).read_text().splitlines()

    assert run_cli("tune", real_search["path"], "--search-dir", sd, "--data-dir", shared_data_dir, "--quiet") == 0
    after = (sd / tuning.LEDGER).read_text().splitlines()
    assert after[: len(before)] == before  # finished trials kept byte for byte
    resumed = tuning.read_ledger(sd)
    assert [e["session"] for e in resumed] == [1] * len(killed) + [2] * (5 - len(killed))
    reference = tuning.read_ledger(real_search["dir"])
    strip = lambda e: {k: e[k] for k in ("trial_id", "values", "score", "history", "kept_epoch")}  # noqa: E731
    assert [strip(e) for e in resumed] == [strip(e) for e in reference]  # same as never interrupted (CPU)
    state = json.loads((sd / tuning.STATE).read_text())
    assert state["sessions"] == 2 and state["resumed_from"] == len(killed)


def test_search_splits_hold_no_test_data(shared_data_dir):
    splits = tuning.load_search_splits(tuning.load(SHIPPED / "fashion_mnist_tune_units.yaml"), shared_data_dir)
    assert len(splits.x_test) == 0 and len(splits.y_test) == 0
    assert len(splits.y_train) == 54000 and len(splits.y_val) == 6000
    assert isinstance(splits.x_train, np.ndarray)
