"""Fashion-MNIST speed: keraslab's training path against plain Keras, and every image model's throughput.

    python benchmarks/fashion_mnist_speed.py --data-dir ../shared/data            # full (about 15-25 min on 2 cores)
    python benchmarks/fashion_mnist_speed.py --data-dir ../shared/data --quick    # about 3-5 min

Part 1, overhead. The lesson MLP (Flatten, Dense 256 relu, 128 relu, 64 tanh, 64 relu, 10) is
trained in one process

- with plain Keras, as the exercise does: a keras.Sequential, Adam 1e-3, sparse cross-entropy,
  numpy arrays into ``model.fit`` with validation data; and
- with keraslab: ``models.build("lesson-mlp")``, ``training.compile_model``, ``training.fit``
  (what ``keraslab train`` runs, without the data loading, evaluation and run directory),

at identical settings (epochs, batch size, data, seed), alternating the two, several repetitions
each. It prints the median wall time of each and the ratio keraslab / plain Keras (target <= 1.05).
keraslab seeds with ``seed_everything``, which also turns on TensorFlow's deterministic ops, so the
comparison is done twice: like with like (both deterministic), and as shipped (keraslab
deterministic, plain Keras seeded only, as the exercise was).

Part 2, throughput. For each registered image model, training examples per second under its
registered recipe (batch size, augmentation, schedule; no validation), the second of two short
epochs, and inference examples per second; with ``--mixed-precision`` also under mixed_bfloat16.

Timings on a shared machine are noisy: the script alternates and reports medians, and prints the
load average before and after so a reader can judge the contention.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=os.environ.get("KERASLAB_DATA_DIR"), help="folder with fashion-mnist/*.gz")
    p.add_argument("--quick", action="store_true", help="subset of 10,000 images, 2 epochs, 3 repetitions, short throughput runs")
    p.add_argument("--epochs", type=int, help="epochs per overhead run (default 10, quick 2)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the overhead runs (the lesson's 32)")
    p.add_argument("--reps", type=int, help="repetitions of each overhead run (default 5, quick 3)")
    p.add_argument("--train-subset", type=int, help="training images for the overhead runs (default all 54,000; quick 10,000)")
    p.add_argument("--models", nargs="*", help="image models for the throughput table (default: all registered)")
    p.add_argument("--throughput-batches", type=int, help="batches per throughput epoch (default 40, quick 15)")
    p.add_argument("--mixed-precision", action="store_true", help="also measure each model under mixed_bfloat16")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    return p.parse_args(argv)


def plain_keras_fit(keras, x, y, xv, yv, epochs, batch_size):
    """The exercise's code, in plain Keras."""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=(xv, yv), verbose=0)
    return model


def set_determinism(on: bool) -> None:
    """TensorFlow's deterministic ops on or off (the public API only turns them on)."""
    from tensorflow.python.framework import config as tf_config

    (tf_config.enable_op_determinism if on else tf_config.disable_op_determinism)()


def overhead(args, splits):
    import keras

    from keraslab import models, training
    from keraslab.config import TrainingConfig
    from keraslab.seeding import seed_everything

    epochs = args.epochs or (2 if args.quick else 10)
    reps = args.reps or (3 if args.quick else 5)
    cfg = TrainingConfig(epochs=epochs, batch_size=args.batch_size, optimizer="adam", learning_rate=1e-3)
    n = len(splits.y_train)
    print(f"\n== Overhead: lesson MLP, {n} training images, {len(splits.y_val)} validation, {epochs} epochs, "
          f"batch {args.batch_size}, {reps} repetitions each, alternating")

    def run_plain(deterministic: bool) -> float:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        set_determinism(deterministic)
        start = time.perf_counter()
        plain_keras_fit(keras, splits.x_train, splits.y_train, splits.x_val, splits.y_val, epochs, args.batch_size)
        return time.perf_counter() - start

    def run_keraslab(deterministic: bool) -> float:
        keras.backend.clear_session()
        seed_everything(0)  # turns determinism on, as every keraslab run does
        set_determinism(deterministic)
        start = time.perf_counter()
        model = models.build("lesson-mlp", num_classes=10, kind="image")
        training.compile_model(model, cfg)
        training.fit(model, splits, cfg, seed=0, verbose=0)
        return time.perf_counter() - start

    times = {k: [] for k in ("plain", "plain_det", "keraslab", "keraslab_nodet")}
    run_plain(False)  # warm-up: imports, graph tracing caches, thread pools
    for r in range(reps):
        for key, fn in (("plain", lambda: run_plain(False)), ("keraslab", lambda: run_keraslab(True)),
                        ("plain_det", lambda: run_plain(True)), ("keraslab_nodet", lambda: run_keraslab(False))):
            times[key].append(fn())
        print(f"  repetition {r + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        ("plain Keras (seeded, no deterministic ops)", med["plain"]),
        ("plain Keras (deterministic ops)", med["plain_det"]),
        ("keraslab (deterministic ops, as shipped)", med["keraslab"]),
        ("keraslab (deterministic ops off)", med["keraslab_nodet"]),
    ]
    print(f"\n  {'path':46s} {'median s':>9s} {'examples/s':>11s}")
    for label, t in rows:
        print(f"  {label:46s} {t:9.2f} {n * epochs / t:11.0f}")
    like = med["keraslab"] / med["plain_det"]
    shipped = med["keraslab"] / med["plain"]
    nodet = med["keraslab_nodet"] / med["plain"]
    print(f"\n  ratio keraslab / plain Keras, like with like (both deterministic): {like:.3f}  (target <= 1.05)")
    print(f"  ratio keraslab / plain Keras, both without deterministic ops:      {nodet:.3f}")
    print(f"  ratio keraslab as shipped / the exercise's plain Keras:              {shipped:.3f}")
    return {"like_with_like": like, "no_determinism": nodet, "as_shipped": shipped, "medians": med}


def throughput(args, splits):
    import keras

    from keraslab import data, models, training
    from keraslab.config import TrainingConfig
    from keraslab.seeding import seed_everything

    names = args.models or models.names("image")
    batches = args.throughput_batches or (15 if args.quick else 40)
    policies = ["float32"] + (["mixed_bfloat16"] if args.mixed_precision else [])
    print(f"\n== Throughput: each model's registered recipe, {batches} batches per epoch, second epoch timed, no validation")
    print(f"  {'model':16s} {'precision':15s} {'batch':>5s} {'params':>9s} {'train ex/s':>11s} {'infer ex/s':>11s} {'est. s/epoch (54k)':>19s}")

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.start

    out = {}
    for name in names:
        spec = models.get(name)
        for policy in policies:
            settings = {**spec.training, "epochs": 2, "mixed_precision": policy != "float32"}
            cfg = TrainingConfig.model_validate(settings)
            n = batches * cfg.batch_size
            sub = dataclasses.replace(
                splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n],
                x_val=splits.x_val[:0], y_val=splits.y_val[:0],
            )
            keras.backend.clear_session()
            seed_everything(0)
            model = models.build(name, num_classes=10, kind="image")
            training.compile_model(model, cfg)
            timer = EpochTimer()
            training.fit(model, sub, cfg, seed=0, callbacks=[timer], verbose=0)
            train_rate = n / timer.last
            x = splits.x_test[:4096]
            model.predict(x[:1024], batch_size=1024, verbose=0)
            start = time.perf_counter()
            model.predict(x, batch_size=1024, verbose=0)
            infer_rate = len(x) / (time.perf_counter() - start)
            out[(name, policy)] = (train_rate, infer_rate)
            print(f"  {name:16s} {policy:15s} {cfg.batch_size:5d} {model.count_params():9d} {train_rate:11.0f} {infer_rate:11.0f} "
                  f"{54000 / train_rate:19.0f}", flush=True)
    return out


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf
    import keras

    from keraslab import data

    print(f"keraslab speed benchmark: Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min)")
    subset = args.train_subset or (10000 if args.quick else None)
    splits = data.load("fashion_mnist", data_dir=args.data_dir, seed=0, train_subset=subset)
    if not args.skip_overhead:
        overhead(args, splits)
    if not args.skip_throughput:
        full = data.load("fashion_mnist", data_dir=args.data_dir, seed=0)
        throughput(args, full)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")


if __name__ == "__main__":
    sys.exit(main())
