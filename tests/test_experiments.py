"""Experiment suites: validation, expansion, resume, --force, ensembles, and one tiny real suite.

Most tests replace training with `suite_fakes.FakeTraining` (real run directories, written in
milliseconds); `real_suite` runs experiments/smoke.yaml for real through the CLI, once per module,
crashing it in the middle of its third run first, so the resume is tested on real training too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import yaml

import suite_fakes
from keraslab import comparison, experiments, pipeline, runs
from keraslab.cli import main
from keraslab.errors import KeraslabError
from suite_fakes import FakeTraining, write_suite

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.yaml"


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


def edited(**changes) -> str:
    """SUITE_YAML with top-level keys replaced (None removes a key)."""
    data = yaml.safe_load(suite_fakes.SUITE_YAML)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def variants_with(**extra) -> dict:
    data = yaml.safe_load(suite_fakes.SUITE_YAML)["variants"]
    data.update(extra)
    return data


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "text, expected",
    [
        (edited(epochs=3), ["unknown key 'epochs'", "allowed: name, dataset", "variants", "ensembles"]),
        (edited(training={"epoch": 3}), ["unknown key 'training.epoch'", "allowed: epochs, batch_size, optimizer"]),
        (edited(variants=variants_with(d={"model": "lesson-mlp", "trainnig": {}})),
         ["unknown key 'variants.d.trainnig'", "allowed: model, params, layers, training"]),
        (edited(variants=variants_with(d={"model": "lesson-mlp", "training": {"early_stopping": {"patiense": 2}}})),
         ["unknown key 'variants.d.training.early_stopping.patiense'", "allowed: monitor, patience, restore_best_weights"]),
        (edited(training={"batch_size": "many"}), ["'training.batch_size'", "'many'"]),
        (edited(training={"optimizer": "adamx"}), ["'training.optimizer'", "'adam', 'adamw', 'sgd' or 'rmsprop'", "'adamx'"]),
        (edited(seeds="zero"), ["'seeds'", "'zero'"]),
        (edited(alpha=2), ["'alpha'", "less than 1"]),
        (edited(dataset="mnist"), ["'dataset': unknown dataset 'mnist'", "allowed: fashion_mnist, imdb_reviews"]),
        (edited(variants=variants_with(d={"model": "nope"})),
         ["'variants.d.model': unknown model 'nope'", "allowed: ", "lesson-mlp,"]),
        (edited(variants=variants_with(d={"model": "tutorial-embedding"})),
         ["'variants.d.model'", "text model", "allowed: ", "lesson-mlp,"]),
        (edited(variants=variants_with(d={"model": "lesson-mlp", "params": {"units": 3}})),
         ["'variants.d.params.units'", "lesson-mlp has no parameter 'units'", "allowed: "]),
        (edited(variants=variants_with(d={"model": "lesson-mlp", "layers": [{"type": "Flatten"}]})),
         ["'variants.d'", "either 'model'", "or 'layers'"]),
        (edited(variants=variants_with(d={"layers": [{"type": "Flatten"}, {"type": "Dens", "units": 10}]})),
         ["'variants.d.layers.1.type'", "unknown layer type 'Dens'", "allowed: Dense, Dropout"]),
        (edited(variants=variants_with(d={"layers": [{"type": "Flatten"}, {"type": "Dense", "unitz": 10}]})),
         ["'variants.d.layers.1.unitz'", "allowed: type, units, activation"]),
        (edited(variants=variants_with(d={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]})),
         ["'variants.d.layers.1.activation'", "one of: linear, relu"]),
        (edited(variants=variants_with(d={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 7}]})),
         ["'variants.d.layers.1'", "logits layer {type: Dense, units: 10}"]),
        (edited(baseline="zzz"), ["'baseline': unknown variant 'zzz'", "allowed: a, b, c"]),
        (edited(ensembles={"e": {"members": ["a", "x"]}}), ["'ensembles.e.members': unknown variant 'x'", "allowed: a, b, c"]),
        (edited(ensembles={"e": {"members": ["a", "c"], "weights": [1]}}), ["'ensembles.e.weights'", "1 weights for 2 members"]),
        (edited(ensembles={"a": {"members": ["b", "c"]}}), ["'ensembles.a'", "already a variant"]),
        (edited(ensembles={"e": {"members": ["a"]}}), ["'ensembles.e.members'", "at least 2"]),
        (edited(name="my suite/1"), ["'name'", "folder name"]),
        (edited(targets=[{"name": "t", "accuracy": 0.9, "among": ["zz"]}]),
         ["'targets.0.among': unknown variant or ensemble 'zz'", "allowed: a, b, c, e"]),
        (edited(targets=[{"name": "t", "accuracy": 90, "among": ["a"]}]), ["'targets.0.accuracy'", "less than or equal to 1"]),
        (edited(name=None), ["missing key 'name'"]),
        ("name: x\ndataset: fashion-mnist\nname: y\n", ["duplicate key 'name'"]),
        ("name: x\n  dataset: [\n", ["not valid YAML", "line"]),
        ("- just\n- a list\n", ["must be a mapping"]),
    ],
)
def test_invalid_suite_names_file_key_and_allowed_values(tmp_path, text, expected):
    path = write_suite(tmp_path, text, "bad-suite.yaml")
    with pytest.raises(KeraslabError) as info:
        experiments.load(path)
    message = info.value.one_line()
    assert "\n" not in message
    assert str(path) in message, message
    for part in expected:
        assert part in message, message


def test_cli_rejects_a_bad_suite_before_training(tmp_path, monkeypatch, capsys):
    training = suite_fakes.patch(monkeypatch, FakeTraining())
    path = write_suite(tmp_path, edited(training={"optimiser": "adam"}))
    assert run_cli("run", path, "--suite-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unknown key 'training.optimiser'" in err[0]
    assert training.calls == [] and not (tmp_path / "out").exists()


def test_missing_suite_file_is_a_one_line_error(tmp_path, capsys):
    assert run_cli("run", tmp_path / "nope.yaml") == 2
    assert "nope.yaml not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- expansion


def test_expansion_variants_times_seeds_and_training_merge(tmp_path):
    suite = experiments.load(write_suite(tmp_path))
    assert [(r.variant, r.seed) for r in suite.runs] == [
        ("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    a, b, c = (suite.variants[n] for n in "abc")
    assert a.training.epochs == b.training.epochs == 2 and a.training.batch_size == 100
    assert a.training.learning_rate == 1e-3 and b.training.learning_rate == 1e-4
    assert c.model == experiments.INLINE_MODEL and c.params["layers"][1]["units"] == 16
    assert a.architecture == b.architecture != c.architecture
    keys = {r.key for r in suite.runs}
    assert len(keys) == 6  # the config hash changes with the variant and the seed
    assert suite.runs[0].relpath() == Path("runs/a") / f"seed0-{suite.runs[0].key}"
    assert suite.baseline == "a" and suite.ensembles["e"].weights == [1, 3]


def test_seed_count_and_defaults(tmp_path):
    suite = experiments.load(write_suite(tmp_path, edited(seeds=3, baseline=None)))
    assert suite.seeds == [0, 1, 2] and suite.baseline == "a"  # the first variant by default
    suite = experiments.load(write_suite(tmp_path, edited(seeds=None)))
    assert suite.seeds == [0, 1, 2]


def test_shipped_suites_are_valid():
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        suite = experiments.load(path)
        assert len(suite.runs) == len(suite.variants) * len(suite.seeds), path
    fashion = experiments.load(REPO / "experiments" / "fashion_mnist_exercise.yaml")
    assert fashion.seeds == [0, 1, 2] and fashion.baseline == "lesson-mlp"
    t = fashion.variants["mixed-adamw"].training
    assert (t.optimizer, t.learning_rate, t.batch_size) == ("adamw", 1e-3, 450)
    assert fashion.variants["lesson-mlp"].training.batch_size == 250
    assert fashion.variants["lr-1e-4"].training.learning_rate == 1e-4
    assert [l.get("units") for l in fashion.variants["fifth-layer-32"].params["layers"]] == [None, 256, 128, 64, 64, 32, 10]
    acts = [l.get("activation") for l in fashion.variants["mixed-adamw"].params["layers"]][1:]
    assert acts == ["relu", "gelu", "sigmoid", "selu", None]
    assert fashion.ensembles["lesson+mixed"].members == ["lesson-mlp", "mixed-adamw"]
    imdb = experiments.load(REPO / "experiments" / "imdb_exercise.yaml")
    assert len(imdb.variants) >= 4 and imdb.ensembles


def test_every_variant_of_the_shipped_suites_builds():
    for name in ["fashion_mnist_exercise", "imdb_exercise"]:
        counts = experiments.check_buildable(experiments.load(REPO / "experiments" / f"{name}.yaml"))
        assert all(n > 0 for n in counts.values()), counts


def test_shared_init_file_holds_layer_weights_only(tmp_path):
    """A weights file saved after compile carries the optimizer and its learning rate; ours must not."""
    suite = experiments.load(write_suite(tmp_path))
    r = next(r for r in suite.runs if r.variant == "b")
    path = experiments.write_init_weights(suite, r, tmp_path / "init" / "x.weights.h5")
    with h5py.File(path) as f:
        assert "optimizer" not in f
    from keraslab import models, training
    from keraslab.config import TrainingConfig

    keras.backend.clear_session()
    model = models.build("lesson-mlp", num_classes=10)
    training.compile_model(model, TrainingConfig(learning_rate=0.0123))
    model.load_weights(path)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0123)


# --------------------------------------------------------------------------- resume, force (fake training)


def test_dry_run_lists_runs_and_trains_nothing(tmp_path, monkeypatch, capsys):
    training = suite_fakes.patch(monkeypatch, FakeTraining())
    path = write_suite(tmp_path)
    assert run_cli("run", path, "--suite-dir", tmp_path / "s", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "6 of 6 runs to train" in out and "--dry-run" in out
    assert training.calls == [] and not (tmp_path / "s").exists()


def test_resume_after_a_crash_between_runs_trains_only_the_rest(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    first = suite_fakes.patch(monkeypatch, FakeTraining(fail_on=3))
    with pytest.raises(RuntimeError, match="injected crash"):
        experiments.run(suite, sd, quiet=True)
    assert first.calls == [("a", 0), ("b", 0), ("c", 0)]
    done = [e.run for e in experiments.plan(suite, sd) if e.state == "done"]
    assert [(r.variant, r.seed) for r in done] == [("a", 0), ("b", 0)]
    assert not list((sd / "runs" / "c").glob(".*partial*"))  # the crashed run cleaned up after itself
    stamps = {r.variant: (experiments.run_dir(sd, r) / runs.DONE).stat().st_mtime_ns for r in done}

    second = suite_fakes.patch(monkeypatch, FakeTraining())
    outcome = experiments.run(suite, sd, quiet=True, report=False)
    assert second.calls == [("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert len(outcome.skipped) == 2 and len(outcome.trained) == 4
    for r in done:
        assert (experiments.run_dir(sd, r) / runs.DONE).stat().st_mtime_ns == stamps[r.variant]

    third = suite_fakes.patch(monkeypatch, FakeTraining())
    outcome = experiments.run(suite, sd, quiet=True, report=False)
    assert third.calls == [] and len(outcome.skipped) == 6


def test_a_leftover_partial_run_is_never_taken_as_finished(tmp_path, monkeypatch):
    """What a killed process leaves: a hidden partial folder, even one that holds a `done` file."""
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    r = suite.runs[0]
    final = experiments.run_dir(sd, r)
    partial = final.with_name(f".{final.name}.partial-999999")
    partial.mkdir(parents=True)
    (partial / runs.CONFIG).write_text("{}")
    (partial / runs.DONE).write_text("not really")
    stray = experiments.run_dir(sd, suite.runs[1])  # a final-named folder without `done`
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine")
    assert [e.state for e in experiments.plan(suite, sd)][:2] == ["to run", "to run"]

    training = suite_fakes.patch(monkeypatch, FakeTraining())
    outcome = experiments.run(suite, sd, quiet=True, report=False)
    assert ("a", 0) in training.calls and ("b", 0) in training.calls and len(training.calls) == 6
    assert experiments.is_done(final) and experiments.is_done(stray)
    kept = list((sd / "superseded").rglob("notes.txt"))  # moved aside, never deleted
    assert len(kept) == 1 and kept[0].read_text() == "mine"
    assert any(p == kept[0].parent for p in outcome.moved)


def test_force_moves_a_variant_aside_and_reruns_it(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(suite, sd, quiet=True, report=False)
    old = sorted(p.name for p in (sd / "runs" / "b").iterdir())
    a_before = {p.name: (p / runs.DONE).stat().st_mtime_ns for p in (sd / "runs" / "a").iterdir()}

    entries = experiments.plan(suite, sd, force=["b"])
    assert sum(e.state == "to rerun (--force)" for e in entries) == 2  # --dry-run shows it, moves nothing
    assert sorted(p.name for p in (sd / "runs" / "b").iterdir()) == old

    training = suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(suite, sd, force=["b"], quiet=True, report=False)
    assert training.calls == [("b", 0), ("b", 1)]
    moved = list((sd / "superseded").glob("*/runs/b"))
    assert len(moved) == 1 and sorted(p.name for p in moved[0].iterdir()) == old
    assert all((p / runs.PROBABILITIES).is_file() for p in moved[0].iterdir())
    assert list((sd / "superseded").glob("*/tensorboard/b/seed0"))
    assert {p.name: (p / runs.DONE).stat().st_mtime_ns for p in (sd / "runs" / "a").iterdir()} == a_before

    for bad, message in [("e", "is an ensemble"), ("zz", "unknown variant 'zz'")]:
        with pytest.raises(KeraslabError, match=message):
            experiments.run(suite, sd, force=[bad], quiet=True, report=False)


def test_changed_settings_train_anew_and_keep_the_old_runs(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(suite, sd, quiet=True, report=False)
    changed = experiments.load(write_suite(tmp_path, suite_fakes.SUITE_YAML.replace("epochs: 2", "epochs: 3")))
    training = suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(changed, sd, quiet=True, report=False)
    assert len(training.calls) == 6  # a new config hash is a new run
    assert len(list((sd / "runs" / "a").iterdir())) == 4  # the old runs stay where they were
    assert len(list((sd / "superseded").glob("*/suite.yaml"))) == 1
    assert "epochs: 3" in (sd / "suite.yaml").read_text()


def test_tensorboard_tree_init_weights_and_data_loaded_once_per_seed(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path, edited(shared_init=True)))
    sd = tmp_path / "s"
    loads = []
    training = suite_fakes.patch(monkeypatch, FakeTraining())
    monkeypatch.setattr(experiments, "load_splits",
                        lambda s, seed, data_dir: loads.append(seed) or suite_fakes.fake_splits(seed))
    monkeypatch.setattr(experiments, "write_init_weights", lambda s, r, path: path)
    experiments.run(suite, sd, quiet=True, report=False)
    assert loads == [0, 1]  # once per seed, shared by that seed's runs
    for (variant, seed), kw in zip(training.calls, training.kwargs):
        assert kw["tensorboard_dir"] == sd / "tensorboard" / variant / f"seed{seed}"
    init = {(v, s): kw["init_weights"] for (v, s), kw in zip(training.calls, training.kwargs)}
    assert init[("a", 0)] == init[("b", 0)] != init[("c", 0)]  # same architecture, same start
    assert init[("a", 0)] != init[("a", 1)]
    summary, _ = experiments.summarize(suite, sd, suite_fakes.fake_splits().y_test)
    recorded = {e["name"]: e["seeds"][0]["init_weights"] for e in summary["results"] if e["kind"] == "variant"}
    assert recorded["a"] == recorded["b"] == str(init[("a", 0)].relative_to(sd))


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_shows_run_k_of_n_and_epochs(tmp_path, monkeypatch, terminal):
    from rich.console import Console

    suite = experiments.load(write_suite(tmp_path))
    suite_fakes.patch(monkeypatch, FakeTraining())
    console = Console(record=True, width=150, force_terminal=terminal)
    experiments.run(suite, tmp_path / "s", console=console, report=False)
    text = console.export_text()
    for variant, seed in [("a", 0), ("c", 1)]:
        assert f"finished {variant} seed {seed}: test accuracy 0." in text
    if terminal:  # rich bars: the suite's run k of N with elapsed and ETA, and the run's epochs
        assert "suite: run 6 of 6" in text and "ETA" in text and "c seed 1, epoch 2/2" in text
        assert "val acc 0.7500" in text
    else:  # logs: one line per run
        assert "[run 1 of 6: a seed 0] elapsed 0:00:00" in text and "[run 6 of 6: c seed 1]" in text and "ETA" in text


def test_a_second_run_on_the_same_suite_dir_is_refused(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining())
    with experiments._Lock(sd):
        with pytest.raises(KeraslabError, match="another `keraslab run`"):
            experiments.run(suite, sd, quiet=True)


# --------------------------------------------------------------------------- statistics wiring


def test_summary_and_ensemble_averaging_from_the_run_directories(tmp_path, monkeypatch):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(suite, sd, quiet=True)
    summary = json.loads((sd / "summary.json").read_text())
    by = {e["name"]: e for e in summary["results"]}
    y = suite_fakes.fake_splits().y_test

    def probs(variant):
        return [np.load(experiments.run_dir(sd, r) / runs.PROBABILITIES) for r in suite.runs if r.variant == variant]

    pa, pb, pc = probs("a"), probs("b"), probs("c")
    for seed in range(2):  # weights [1, 3]: a quarter a, three quarters c
        by_hand = (pa[seed] + 3 * pc[seed]) / 4
        assert by["e"]["test_accuracy"][seed] == pytest.approx(np.mean(by_hand.argmax(1) == y))
    gain = comparison.ensemble_gain(y, {"a": pa, "c": pc}, [(x + 3 * z) / 4 for x, z in zip(pa, pc)])
    assert by["e"]["gain_over_best_member"]["gain"] == pytest.approx(gain["gain"])

    cmp = comparison.compare(y, pa, pb, variant="b", baseline="a", n_classes=10, alpha=0.05)
    b = by["b"]
    assert b["test_accuracy"] == pytest.approx([np.mean(p.argmax(1) == y) for p in pb])
    assert b["mean"] == pytest.approx(np.mean(b["test_accuracy"]))
    assert b["std"] == pytest.approx(np.std(b["test_accuracy"], ddof=1))
    assert b["difference"]["estimate"] == pytest.approx(cmp.seed_diff.estimate)
    assert b["difference"]["seed_ci"] == pytest.approx([cmp.seed_diff.low, cmp.seed_diff.high])
    assert b["difference"]["bootstrap_ci"] == pytest.approx([cmp.bootstrap_diff.low, cmp.bootstrap_diff.high])
    assert b["mcnemar_p"] == pytest.approx(cmp.mcnemar_pooled.p_value)
    assert b["verdict"] == cmp.verdict and b["verdict_reason"] == comparison.verdict_reason(cmp)
    assert b["wall_seconds"] == pytest.approx(3.0)
    assert by["a"]["verdict"] == "baseline" and by["a"]["difference"] is None
    assert [e["name"] for e in summary["results"]] == sorted(by, key=lambda n: -by[n]["mean"])
    assert summary["n_test"] == suite_fakes.N_TEST and summary["seeds"] == [0, 1]


TARGETS_YAML = """\
targets:
  - {name: reachable, accuracy: 0.01, among: [a, b]}
  - {name: too high, accuracy: 1.0, among: [b, c, e], tried: more epochs and a wider network}
  - {name: too slow, accuracy: 0.01, among: [e], max_wall_seconds: 2}
"""


def test_targets_say_met_or_missed_by_how_much_and_what_was_tried(tmp_path, monkeypatch, capsys):
    suite = experiments.load(write_suite(tmp_path, suite_fakes.SUITE_YAML + TARGETS_YAML))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining())
    experiments.run(suite, sd, quiet=True)
    summary = json.loads((sd / "summary.json").read_text())
    by = {e["name"]: e for e in summary["results"]}
    reachable, high, slow = summary["targets"]

    best = max(["a", "b"], key=lambda n: by[n]["mean"])
    assert reachable["best"] == best and reachable["met"] and reachable["gap"] == pytest.approx(by[best]["mean"] - 0.01)
    assert reachable["slowest_run_seconds"] == pytest.approx(1.5)  # FakeTraining's runs take 1.5 s
    assert not high["met"] and high["gap"] == pytest.approx(max(by[n]["mean"] for n in "bce") - 1.0)
    # the ensemble trains both members: 1.5 + 1.5 s, over its 2 s limit, so missed however accurate
    assert slow["best"] == "e" and slow["slowest_run_seconds"] == pytest.approx(3.0)
    assert not slow["within_time"] and not slow["met"]

    md = (sd / "report.md").read_text()
    assert "## Targets" in md and "| reachable | ≥ 1.00 % |" in md
    assert f"- **too high**, missed ({-100 * high['gap']:.2f} pp short). Tried: more epochs and a wider network" in md
    assert "3 s (over the limit) | **missed** |" in md
    assert "reachable" not in md.split("## Targets")[1].split("Tried:")[0].split("- **")[1]  # met goals list nothing tried
    assert run_cli("report", sd) == 0
    out = capsys.readouterr().out
    assert "target too slow (≥ 1.00 % in ≤ 2 s per run): missed; best e, " in out


def test_report_refuses_an_unfinished_suite(tmp_path, monkeypatch, capsys):
    suite = experiments.load(write_suite(tmp_path))
    sd = tmp_path / "s"
    suite_fakes.patch(monkeypatch, FakeTraining(fail_on=2))
    with pytest.raises(RuntimeError):
        experiments.run(suite, sd, quiet=True, report=False)
    assert run_cli("report", sd) == 2
    err = capsys.readouterr().err
    assert "5 run(s) of suite 'fake' are not finished" in err and "keraslab run" in err


# --------------------------------------------------------------------------- a tiny real suite


@pytest.fixture(scope="module")
def real_suite(shared_data_dir, tmp_path_factory):
    """experiments/smoke.yaml for real via the CLI: crashed in the middle of run 3, then resumed."""
    sd = tmp_path_factory.mktemp("suite") / "smoke"
    real_train_run = pipeline.train_run
    calls = []

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("injected crash in the middle of a real run")

    def crashing(cfg, out, **kw):
        calls.append(Path(out))
        if len(calls) == 3:
            kw["callbacks"] = [*kw.get("callbacks", []), Crash()]
        return real_train_run(cfg, out, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "train_run", crashing)
        with pytest.raises(RuntimeError, match="injected crash"):
            main(["run", str(SMOKE), "--suite-dir", str(sd), "--data-dir", str(shared_data_dir), "--quiet"])
    first = list(calls)
    assert len(first) == 3 and experiments.is_done(first[0]) and experiments.is_done(first[1])
    assert not first[2].exists() and not list(first[2].parent.glob(".*partial*"))
    finished_at = {p: (p / runs.DONE).stat().st_mtime_ns for p in first[:2]}

    calls.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "train_run", crashing)
        assert run_cli("run", SMOKE, "--suite-dir", sd, "--data-dir", shared_data_dir, "--quiet") == 0
    resumed = list(calls)
    assert len(resumed) == 2 and resumed[0] == first[2]  # only the crashed run and the one never started
    assert all((p / runs.DONE).stat().st_mtime_ns == t for p, t in finished_at.items())
    return sd


@pytest.mark.slow
def test_real_suite_writes_summary_report_and_runs(real_suite):
    sd = real_suite
    summary = json.loads((sd / "summary.json").read_text())
    by = {e["name"]: e for e in summary["results"]}
    assert set(by) == {"lesson-mlp", "small-mixed", "both"}
    assert summary["n_test"] == 10000 and summary["seeds"] == [0, 1]
    for name in ("lesson-mlp", "small-mixed"):
        e = by[name]
        assert len(e["test_accuracy"]) == 2 and all(0.5 < a < 1 for a in e["test_accuracy"])
        assert e["wall_seconds"] > 0 and all(s["epochs_run"] == 1 for s in e["seeds"])
        for s in e["seeds"]:
            run = runs.Run.open(sd / s["run_dir"])
            assert run.config["train_subset"] == 2000 and run.config["training"]["epochs"] == 1
            env = json.loads((run.path / runs.ENVIRONMENT).read_text())
            assert env["init_weights"] and (sd / s["init_weights"]).is_file()  # shared_init, recorded
            assert any((sd / "tensorboard" / name / f"seed{s['seed']}").rglob("events.out.tfevents.*"))
            assert not (run.path / "tensorboard").exists()  # one TensorBoard tree per suite
    for name in ("small-mixed", "both"):
        e = by[name]
        assert e["verdict"] in (comparison.BETTER, comparison.WORSE, comparison.NO_DIFFERENCE)
        assert 0 <= e["mcnemar_p"] <= 1 and e["difference"]["seed_ci"][0] <= e["difference"]["estimate"]
    assert len(by["both"]["gain_over_best_member"]["gain"]) == 2
    assert len(list((sd / "init").glob("*.weights.h5"))) == 4  # 2 architectures x 2 seeds


@pytest.mark.slow
def test_real_suite_report_html_is_self_contained(real_suite):
    page = (real_suite / "report.html").read_text()
    summary = json.loads((real_suite / "summary.json").read_text())
    for e in summary["results"]:
        assert f"<td><strong>{e['name']}</strong>" in page
        assert f"{100 * e['mean']:.2f}" in page
    assert page.count("data:image/png;base64,") >= 7  # accuracy, curves, 3 confusion, per class, gallery
    assert "<img src=\"figures/" not in page and "http://" not in page and "https://" not in page
    assert "What helped" in page and "Most confused class pairs" in page
    md = (real_suite / "report.md").read_text()
    for e in summary["results"]:
        assert f"| {e['name']}" in md
    for png in ["accuracy", "learning_curves", "confusion_baseline", "confusion_best", "confusion_difference",
                "per_class", "misclassified"]:
        assert f"](figures/{png}.png)" in md
        assert (real_suite / "figures" / f"{png}.png").stat().st_size > 1000


@pytest.mark.slow
def test_rerun_and_report_retrain_nothing(real_suite, shared_data_dir, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("nothing should train")

    monkeypatch.setattr(pipeline, "train_run", refuse)
    before = json.loads((real_suite / "summary.json").read_text())
    assert run_cli("run", SMOKE, "--suite-dir", real_suite, "--data-dir", shared_data_dir, "--quiet") == 0
    out = capsys.readouterr().out
    assert "Trained 0 run(s), reused 4 finished run(s)" in out and "lesson-mlp" in out and "baseline" in out
    assert run_cli("report", real_suite, "--data-dir", shared_data_dir) == 0
    after = json.loads((real_suite / "summary.json").read_text())
    strip = lambda s: {k: v for k, v in s.items() if k not in ("generated", "command")}  # noqa: E731
    assert strip(after) == strip(before)
