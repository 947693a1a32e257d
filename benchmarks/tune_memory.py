"""Resident memory over many small keras-tuner trials: does it stay flat?

Runs a random search of N small trials (default 30; 1 epoch each on 2,000 Fashion-MNIST images,
networks of 1-3 Dense layers of 16-256 units) through `keraslab.tuning.tune`, then prints the
resident memory (RSS) the ledger recorded after each trial and the process' peak.

Between trials keraslab clears the Keras session, removes the gradient functions the trial left
in TensorFlow's global registry (the leak: see keraslab.memory), and
collects garbage. Two switches turn parts of that off, to show what each one does:

    KERASLAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/tune_memory.py
    KERASLAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/tune_memory.py --keep-custom-gradients
    KERASLAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/tune_memory.py --keep-custom-gradients --no-clear-session

RSS is read from /proc/self/statm after each trial (after the session is cleared), the peak from
resource.getrusage (ru_maxrss). Figures for docs/tuning.md come from this script.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: memory-benchmark
dataset: fashion-mnist
seed: 0
train_subset: 2000
val_fraction: 0.05
algorithm: random
budget: {{max_epochs: 1, max_trials: {trials}}}
training:
  batch_size: 64
  learning_rate: {{tune: float, min: 1.0e-4, max: 1.0e-2, sampling: log}}
layers:
  - {{type: Flatten}}
  - repeat: {{tune: int, min: 1, max: 3, name: depth}}
    layers:
      - {{type: Dense, units: {{tune: int, min: 16, max: 256, step: 16, name: units}}, activation: relu}}
  - {{type: Dense, units: 10}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--no-clear-session", action="store_true",
                        help="do not call keras.backend.clear_session() between trials (gc.collect() only)")
    parser.add_argument("--keep-custom-gradients", action="store_true",
                        help="leave TensorFlow's gradient registry alone (clear_session and gc only, "
                             "the best a plain keras-tuner loop does)")
    args = parser.parse_args()

    import keras

    from keraslab import memory, tuning

    if args.no_clear_session:
        memory.fresh_session = gc.collect
    if args.keep_custom_gradients:
        memory._gradient_registry = lambda: None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SPEC.format(trials=args.trials))
        search = tuning.load(path)
        started = time.perf_counter()
        outcome = tuning.tune(search, Path(tmp) / "search", quiet=True, report=False)
        wall = time.perf_counter() - started
        entries = outcome.entries

    rss = [e["rss_mb"] for e in entries]
    peak = [e["peak_rss_mb"] for e in entries]
    label = ("keraslab's default: clear_session, registry clean-up, gc" if not (args.no_clear_session or args.keep_custom_gradients)
             else ", ".join(["no clear_session" if args.no_clear_session else "clear_session",
                             "no registry clean-up" if args.keep_custom_gradients else "registry clean-up", "gc"]))
    print(f"\n{len(entries)} trials {label}; keras {keras.__version__}; {wall:.0f} s")
    print(f"{'trial':>5}  {'RSS MiB':>8}  {'peak MiB':>8}  {'params':>8}")
    for e in entries:
        if e["number"] in (1, 2, 3, 5) or e["number"] % 5 == 0:
            layers = e["config"]["model_params"]["layers"]
            params, prev = 0, 28 * 28
            for layer in layers:
                if layer["type"] == "Dense":
                    params += prev * layer["units"] + layer["units"]
                    prev = layer["units"]
            print(f"{e['number']:>5}  {e['rss_mb']:>8.1f}  {e['peak_rss_mb']:>8.1f}  {params:>8,}")
    n = len(rss)
    first, last = rss[: min(5, n)], rss[-min(5, n):]
    import numpy as np

    x = np.arange(5, n + 1)
    slope = float(np.polyfit(x, rss[4:], 1)[0]) if n >= 10 else float("nan")
    print(f"RSS after trial 1: {rss[0]:.0f} MiB; mean of trials 1-5: {np.mean(first):.0f} MiB; "
          f"mean of the last 5: {np.mean(last):.0f} MiB")
    print(f"growth from trial 5 to {n} (least squares): {slope:+.2f} MiB per trial")
    print(f"peak RSS of the process: {max(peak):.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
