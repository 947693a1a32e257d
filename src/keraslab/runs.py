"""The run directory, the unit of truth: everything downstream reads these files, never retrains.

A run is written into a hidden ``.NAME.partial-PID`` sibling and renamed into place only after its
``done`` marker is written, so an interrupted run can never be mistaken for a finished one and a
finished run is never overwritten.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from keraslab.errors import KeraslabError

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
HISTORY = "history.json"
METRICS = "metrics.json"
PROBABILITIES = "probabilities.npy"
MODEL = "model.keras"
REPORT = "report.md"
DONE = "done"
TENSORBOARD = "tensorboard"

_PACKAGES = ["keraslab", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scikit-learn", "scipy"]


def git_commit() -> str | None:
    """The commit of the keraslab source tree, with '-dirty' when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment() -> dict:
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": git_commit(),
        "command": sys.argv,
    }


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


def default_run_dir(runs_root: Path, dataset: str, model: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return runs_root / dataset / f"{model}_seed{seed}_{stamp}"


def refuse_existing(path: Path) -> None:
    if Path(path).exists():
        raise KeraslabError(
            f"run directory {path} already exists",
            "choose another --out; keraslab never overwrites a run",
        )


class RunWriter:
    """Collects a run's files in a partial directory; `finish()` publishes it atomically.

    Used as a context manager, a run that fails or is interrupted removes its own partial
    directory: it holds nothing finished, and leaving it would only clutter the runs folder.
    """

    def __init__(self, final: Path):
        self.final = Path(final)
        refuse_existing(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.with_name(f".{self.final.name}.partial-{os.getpid()}")
        self.path.mkdir()
        self.started = datetime.now(timezone.utc)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def finish(self) -> Path:
        (self.path / DONE).write_text(datetime.now(timezone.utc).isoformat() + "\n")
        try:
            os.rename(self.path, self.final)
        except OSError as exc:
            raise KeraslabError(
                f"could not publish run to {self.final}: {exc}",
                f"the finished run is kept in {self.path}",
            ) from None
        return self.final


@dataclass(frozen=True)
class Run:
    """A finished run directory, read back."""

    path: Path

    @classmethod
    def open(cls, path) -> "Run":
        path = Path(path)
        if not path.is_dir():
            raise KeraslabError(f"{path} is not a directory", "pass a run directory made by `keraslab train`")
        if not (path / DONE).exists():
            raise KeraslabError(
                f"{path} is not a finished run (no '{DONE}' marker)",
                "pass a run directory made by `keraslab train`; interrupted runs are never used",
            )
        return cls(path)

    @property
    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    @property
    def metrics(self) -> dict:
        return read_json(self.path / METRICS)

    @property
    def history(self) -> dict:
        return read_json(self.path / HISTORY)

    @property
    def probabilities(self) -> np.ndarray:
        return np.load(self.path / PROBABILITIES)

    def load_model(self):
        import keras

        import keraslab.models  # noqa: F401  registers custom objects used by saved models

        return keras.models.load_model(self.path / MODEL)
