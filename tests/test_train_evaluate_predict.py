"""Real training runs on seeded subsets of the real data, driven through the CLI as a user would."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keraslab import data, memory
from keraslab.cli import main
from keraslab.runs import Run

pytestmark = pytest.mark.slow


def run_cli(*args):
    """Run the CLI in-process; returns the exit code (0 when it returns normally)."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.fixture(scope="module")
def fashion_run(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fashion"
    code = run_cli("train", "fashion-mnist", "--model", "lesson-mlp", "--epochs", 1, "--train-subset", 10000,
                   "--data-dir", shared_data_dir, "--out", out, "--quiet")
    assert code == 0
    return Run.open(out)


@pytest.fixture(scope="module")
def imdb_run(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "imdb"
    code = run_cli("train", "imdb", "--model", "tutorial-embedding", "--epochs", 8, "--batch-size", 64,
                   "--train-subset", 6000, "--test-subset", 2000, "--param", "sequence_length=200",
                   "--data-dir", shared_data_dir, "--out", out, "--quiet")
    assert code == 0
    return Run.open(out)


def test_fashion_run_beats_chance_and_writes_everything(fashion_run):
    m = fashion_run.metrics
    assert m["accuracy"] >= 0.75, m["accuracy"]  # chance is 0.10
    assert m["n_test"] == 10000
    assert [c["class"] for c in m["per_class"]][6] == "Shirt"
    assert np.array(m["confusion_matrix"]).sum() == 10000
    for name in ["config.json", "environment.json", "history.json", "metrics.json", "probabilities.npy",
                 "model.keras", "report.md", "confusion_matrix.png", "learning_curves.png", "done"]:
        assert (fashion_run.path / name).is_file(), name
    assert any((fashion_run.path / "tensorboard").rglob("events.out.tfevents.*"))
    probs = fashion_run.probabilities
    assert probs.shape == (10000, 10)
    assert (probs.argmax(1) == data.load("fashion_mnist").y_test).mean() == pytest.approx(m["accuracy"])
    env = json.loads((fashion_run.path / "environment.json").read_text())
    assert env["packages"]["keras"].startswith("3.") and "git_commit" in env
    cfg = fashion_run.config
    assert cfg["seed"] == 0 and cfg["training"]["epochs"] == 1 and cfg["training"]["batch_size"] == 32
    assert "![Row-normalized confusion matrix](confusion_matrix.png)" in (fashion_run.path / "report.md").read_text()


def test_imdb_run_beats_chance(imdb_run):
    assert imdb_run.metrics["accuracy"] >= 0.75, imdb_run.metrics["accuracy"]  # chance is 0.50
    assert imdb_run.probabilities.shape == (2000, 2)
    assert imdb_run.metrics["class_names"] == ["negative", "positive"]


def test_same_seed_gives_identical_metrics(shared_data_dir, fashion_run, tmp_path):
    """Also: the run releases its graphs from TensorFlow's gradient registry (memory stays flat in
    a suite), and that clean-up after the first run changes nothing in the second."""
    out = tmp_path / "again"
    before = memory.custom_gradient_names()
    assert run_cli("train", "fashion-mnist", "--model", "lesson-mlp", "--epochs", 1, "--train-subset", 10000,
                   "--data-dir", shared_data_dir, "--out", out, "--quiet") == 0
    assert memory.custom_gradient_names() == before
    again = Run.open(out)
    assert again.metrics == fashion_run.metrics
    np.testing.assert_array_equal(again.probabilities, fashion_run.probabilities)


def test_evaluate_reproduces_metrics(fashion_run, imdb_run, shared_data_dir, capsys):
    for run in (fashion_run, imdb_run):
        assert run_cli("evaluate", run.path, "--data-dir", shared_data_dir) == 0
        assert "Matches metrics.json" in capsys.readouterr().out


def test_predict_png_of_test_image_returns_its_label(fashion_run, shared_data_dir, tmp_path, capsys):
    splits = data.load("fashion_mnist", data_dir=shared_data_dir)
    probs = fashion_run.probabilities
    # Images the model gets right and is sure of, so the check is about the pipeline, not the model.
    confident = np.flatnonzero((probs.argmax(1) == splits.y_test) & (probs.max(1) > 0.9))[:3]
    paths = []
    for i in confident:
        path = tmp_path / f"test{i}.png"
        Image.fromarray(np.round(splits.x_test[i] * 255).astype(np.uint8)).save(path)
        paths.append(path)
    assert run_cli("predict", fashion_run.path, *paths, "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["predicted"] for r in results] == [splits.class_names[splits.y_test[i]] for i in confident]
    for r, i in zip(results, confident):
        assert r["probabilities"][r["predicted"]] == pytest.approx(probs[i].max(), abs=1e-5)


def test_predict_text(imdb_run, capsys):
    assert run_cli("predict", imdb_run.path, "--json",
                   "--text", "A wonderful, moving film. The acting was superb and I loved every minute.",
                   "--text", "Awful. Boring, badly acted, a complete waste of time. The worst film ever.") == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["predicted"] for r in results] == ["positive", "negative"]


def test_predict_refuses_wrong_model_type(fashion_run, imdb_run, tmp_path, capsys):
    assert run_cli("predict", fashion_run.path, "--text", "great film") == 2
    assert "image model" in capsys.readouterr().err
    png = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(png)
    assert run_cli("predict", imdb_run.path, png) == 2
    assert "text model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "fashion-mnist", "--model", "nope"], "unknown model 'nope'"),
        (["train", "mnist", "--model", "lesson-mlp"], "unknown dataset"),
        (["train", "imdb", "--model", "lesson-mlp"], "cannot train on text data"),
        (["train", "fashion-mnist", "--model", "lesson-mlp", "--epochs", "0"], "'training.epochs'"),
        (["train", "fashion-mnist", "--model", "lesson-mlp", "--param", "units"], "not KEY=VALUE"),
        (["train", "fashion-mnist", "--model", "lesson-mlp", "--bogus"], "No such option"),
        (["evaluate", "/nonexistent/run"], "is not a directory"),
        (["predict", "/tmp"], "not a finished run"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(args, message):
    proc = subprocess.run([sys.executable, "-m", "keraslab", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_existing_run_directory_is_never_overwritten(fashion_run, shared_data_dir):
    before = (fashion_run.path / "metrics.json").read_text()
    assert run_cli("train", "fashion-mnist", "--model", "lesson-mlp", "--out", fashion_run.path,
                   "--data-dir", shared_data_dir) == 2
    assert (fashion_run.path / "metrics.json").read_text() == before



def test_keraslab_matches_plain_keras_bit_for_bit(shared_data_dir, tmp_path):
    """With no validation holdout, keraslab trains exactly what the exercise's plain Keras code does."""
    import dataclasses
    import gzip

    import keras
    import tensorflow as tf

    from keraslab import pipeline
    from keraslab.config import RunConfig

    def idx(name, offset):
        return np.frombuffer(gzip.open(shared_data_dir / "fashion-mnist" / name).read(), np.uint8, offset=offset)

    n = 3000  # the first images in file order, to keep the test short
    x, y = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:n] / 255.0, idx("train-labels-idx1-ubyte.gz", 8)[:n]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    plain = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(256, "relu"),
                              keras.layers.Dense(128, "relu"), keras.layers.Dense(64, "tanh"),
                              keras.layers.Dense(64, "relu"), keras.layers.Dense(10)])
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(x, y, epochs=1, verbose=0)
    plain_weights = plain.get_weights()

    full = data.load("fashion_mnist", data_dir=shared_data_dir, val_fraction=0)
    splits = dataclasses.replace(full, x_train=full.x_train[:n], y_train=full.y_train[:n])
    cfg = RunConfig(dataset="fashion_mnist", model="lesson-mlp", training={"epochs": 1}, val_fraction=0)
    run = Run.open(pipeline.train_run(cfg, tmp_path / "run", splits=splits, verbose=0))
    ours = run.load_model().get_weights()
    assert len(ours) == len(plain_weights)
    for a, b in zip(ours, plain_weights):
        np.testing.assert_array_equal(a, b)
