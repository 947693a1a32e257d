"""Experiment suites: variants x seeds, resumable, then statistics and a report.

``keraslab run SUITE.yaml`` is the path of one run (``pipeline.train_run``) many times:

1. :func:`load` reads and validates the suite file (unknown keys, wrong types and unknown names are
   errors naming the file, the key and the allowed values) and expands variants x seeds into
   :class:`~keraslab.config.RunConfig`\\ s, before anything trains.
2. :func:`run` trains the runs that have no finished run directory yet, seed by seed (the data
   is loaded once per seed), and skips the rest: a run lives at
   ``SUITE_DIR/runs/<variant>/seed<k>-<config hash>/`` and ``train_run`` publishes it atomically
   with its ``done`` marker last, so an interrupted run is simply trained again.
3. :func:`summarize` compares every variant and ensemble with the baseline (``comparison``), from
   the runs' saved test probabilities, never retraining; ``reports.suite_report`` renders it.

The suite directory::

    SUITE_DIR/
      suite.yaml        the suite file last used (older, different copies go to superseded/)
      plan.json         every run: variant, seed, config hash, resolved config, directory
      summary.json      per-seed accuracies, mean, std, differences, McNemar, verdicts
      report.md, report.html, figures/*.png
      runs/<variant>/seed<k>-<hash>/   one finished run directory each (see runs.py)
      init/<architecture>-seed<k>.weights.h5   shared initial weights (shared_init: true)
      tensorboard/<variant>/seed<k>/   one TensorBoard tree: tensorboard --logdir SUITE_DIR/tensorboard
      superseded/<time>/   whatever --force or a changed suite moved aside; nothing is deleted
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from keraslab import runs
from keraslab.config import EarlyStopping, RunConfig, Strict, TrainingConfig
from keraslab.errors import KeraslabError

SUITE_COPY = "suite.yaml"
PLAN = "plan.json"
SUMMARY = "summary.json"
RUNS = "runs"
INIT = "init"
TENSORBOARD = "tensorboard"
SUPERSEDED = "superseded"
LOCK = ".lock"
INLINE_MODEL = "sequential"  # the registered builder that takes an inline `layers` list

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_HINT = "see docs/suites.md and the examples in experiments/"


# --------------------------------------------------------------------------- schema


class VariantSpec(Strict):
    """One variant: a registered model with parameters, or an inline layer list; training overrides."""

    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    layers: list[Any] | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None

    @model_validator(mode="after")
    def _model_or_layers(self):
        if (self.model is None) == (self.layers is None):
            raise ValueError("give either 'model' (a registered model name) or 'layers' (an inline layer list)")
        if self.layers is not None and self.params:
            raise ValueError("'params' goes with 'model'; an inline network is described by its 'layers' alone")
        return self


class EnsembleSpec(Strict):
    """Variants whose test probabilities are averaged, seed by seed (optionally weighted)."""

    members: list[str] = Field(min_length=2)
    weights: list[float] | None = None
    description: str | None = None


class TargetSpec(Strict):
    """A goal of the suite: the best of `among` (mean test accuracy over seeds) reaches `accuracy`,
    optionally with every training run within `max_wall_seconds` (an ensemble: its members' runs added)."""

    name: str
    accuracy: float = Field(gt=0, le=1)
    among: list[str] = Field(min_length=1)
    max_wall_seconds: float | None = Field(None, gt=0)
    tried: str | None = None  # what was tried to reach it; the report shows it when the goal is missed


class SuiteSpec(Strict):
    name: str
    dataset: str
    description: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    shared_init: bool = False
    training: dict[str, Any] = Field(default_factory=dict)
    baseline: str | None = None
    variants: dict[str, VariantSpec] = Field(min_length=1)
    ensembles: dict[str, EnsembleSpec] = Field(default_factory=dict)
    targets: list[TargetSpec] = Field(default_factory=list)
    val_fraction: float | None = Field(None, ge=0, lt=1)
    # A training subset only: the data layer draws a test subset per seed, and seeds are compared
    # on one and the same test set. Evaluating the whole test set is cheap next to training.
    train_subset: int | None = Field(None, ge=1)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_means_range(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("give a positive number of seeds or a list of seeds")
            return list(range(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value):
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError("seeds must be distinct non-negative integers")
        return value


# --------------------------------------------------------------------------- validation errors


def _unwrap(annotation):
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        for a in args:
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
        return args[0] if args else annotation
    return annotation


def _owner(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class whose field the last element of `loc` would be."""
    t: Any = cls
    for part in loc[:-1]:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            f = t.model_fields.get(part)
            if f is None:
                return None
            t = f.annotation
        elif get_origin(t) in (dict, list):
            t = get_args(t)[-1]
        else:
            return None
    t = _unwrap(t)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _validate(cls: type[BaseModel], data: Any, file: str, prefix: str = ""):
    """`cls` from plain data; every problem in one line naming the file, the key and what is allowed."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc)) or "(top level)"
            if err["type"] == "extra_forbidden":
                owner = _owner(cls, loc)
                allowed = f" (allowed: {', '.join(owner.model_fields)})" if owner else ""
                problems.append(f"unknown key '{key}'{allowed}")
            elif err["type"] == "missing":
                problems.append(f"missing key '{key}'")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"'{key}': {msg} (got {err.get('input')!r})")
        raise KeraslabError(f"{file}: {'; '.join(problems)}", _HINT) from None


def _fail(file: str, key: str, message: str, allowed=None) -> KeraslabError:
    text = f"{file}: '{key}': {message}"
    if allowed is not None:
        text += f" (allowed: {', '.join(map(str, allowed)) or 'none'})"
    return KeraslabError(text, _HINT)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last one."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeraslabError(f"suite file {path} not found", "give the path of a suite YAML file, e.g. experiments/smoke.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeraslabError(f"cannot read suite file {path}: {exc}", "save it as UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise KeraslabError(f"{path}: not valid YAML{where}: {problem}", "check the indentation and quoting") from None
    if not isinstance(data, dict):
        raise KeraslabError(f"{path}: a suite file must be a mapping of keys (name, dataset, variants, ...)", _HINT)
    return data


# --------------------------------------------------------------------------- the expanded suite


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    params: dict
    training: TrainingConfig
    inline: bool
    description: str | None = None

    @property
    def architecture(self) -> str:
        """Equal for variants whose networks are built identically (shared_init groups by it)."""
        return _hash({"model": self.model, "params": self.params})

    def describe(self) -> str:
        if self.description:
            return self.description
        if self.inline:
            parts = []
            for layer in self.params["layers"]:
                extra = ", ".join(f"{k}={v}" for k, v in layer.items() if k not in ("type", "name"))
                parts.append(f"{layer['type']}({extra})" if extra else layer["type"])
            return " → ".join(parts)
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.model}({params})" if params else self.model


@dataclass(frozen=True)
class Ensemble:
    name: str
    members: list[str]
    weights: list[float] | None
    description: str | None = None

    def describe(self) -> str:
        if self.description:
            return self.description
        if self.weights:
            return "average of " + " + ".join(f"{w:g}×{m}" for m, w in zip(self.members, self.weights))
        return "average of " + " + ".join(self.members)


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    seed: int
    config: RunConfig

    @property
    def key(self) -> str:
        return self.config.key()

    def relpath(self) -> Path:
        return Path(RUNS) / self.variant / f"seed{self.seed}-{self.key}"


@dataclass
class Suite:
    file: Path
    text: str
    spec: SuiteSpec
    dataset: str
    kind: str
    class_names: list[str]
    variants: dict[str, Variant]
    ensembles: dict[str, Ensemble]
    baseline: str
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def seeds(self) -> list[int]:
        return list(self.spec.seeds)

    def default_dir(self) -> Path:
        return Path("runs") / "suites" / self.name


def load(path, *, text: str | None = None) -> Suite:
    """Read, validate and expand a suite file; nothing is built or trained.

    Every user mistake raises :class:`KeraslabError` naming the file, the key and the allowed values.
    """
    from keraslab import data, models

    path = Path(path)
    file = str(path)
    if text is None:
        raw = read_yaml(path)
        text = path.read_text(encoding="utf-8")
    else:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    spec: SuiteSpec = _validate(SuiteSpec, raw, file)

    if not _NAME.match(spec.name):
        raise _fail(file, "name", f"{spec.name!r} is not usable as a folder name; use letters, digits, '_', '-', '.'")
    try:
        dataset = data.canonical_name(spec.dataset)
    except KeraslabError:
        raise _fail(file, "dataset", f"unknown dataset {spec.dataset!r}", list(data.DATASETS)) from None
    info = data.DATASETS[dataset]
    kind, class_names = info.kind, list(info.class_names)

    _validate(TrainingConfig, spec.training, file, "training")  # suite defaults alone
    variants: dict[str, Variant] = {}
    for name, v in spec.variants.items():
        where = f"variants.{name}"
        if not _NAME.match(name):
            raise _fail(file, where, "variant names become folder names; use letters, digits, '_', '-', '.'")
        _validate(TrainingConfig, v.training, file, f"{where}.training")
        if v.layers is not None:
            if kind != "image":
                raise _fail(file, f"{where}.layers", f"inline layer lists are for image datasets; {dataset} is {kind}",
                            [n for n in models.names(kind) if n != INLINE_MODEL])
            from keraslab.models import inline

            problems = inline.check_layers(v.layers, len(class_names))
            if problems:
                loc, msg = problems[0]
                more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
                raise _fail(file, f"{where}.layers" + (f".{loc}" if loc else ""), msg + more)
            model, params = INLINE_MODEL, {"layers": v.layers}
        else:
            allowed = [n for n in models.names(kind) if n != INLINE_MODEL]
            if v.model not in models.names():
                raise _fail(file, f"{where}.model", f"unknown model {v.model!r}", allowed)
            if models.get(v.model).kind != kind:
                raise _fail(file, f"{where}.model", f"{v.model!r} is a {models.get(v.model).kind} model, {dataset} is {kind} data", allowed)
            known = models.get(v.model).params
            for p in v.params:
                if p not in known:
                    raise _fail(file, f"{where}.params.{p}", f"{v.model} has no parameter {p!r}",
                                [f"{k}={d!r}" for k, d in known.items()])
            model, params = v.model, dict(v.params)
        merged = _merge(_merge(models.get(model).training, spec.training), v.training)
        training = _validate(TrainingConfig, merged, file, f"{where}.training")
        variants[name] = Variant(name, model, params, training, v.layers is not None, v.description)

    baseline = spec.baseline or next(iter(spec.variants))
    if baseline not in variants:
        raise _fail(file, "baseline", f"unknown variant {baseline!r}", list(variants))

    ensembles: dict[str, Ensemble] = {}
    for name, e in spec.ensembles.items():
        where = f"ensembles.{name}"
        if not _NAME.match(name):
            raise _fail(file, where, "ensemble names become file names; use letters, digits, '_', '-', '.'")
        if name in variants:
            raise _fail(file, where, f"{name!r} is already a variant; give the ensemble another name")
        for m in e.members:
            if m not in variants:
                raise _fail(file, f"{where}.members", f"unknown variant {m!r}", list(variants))
        if len(set(e.members)) != len(e.members):
            raise _fail(file, f"{where}.members", "a member is listed twice")
        if e.weights is not None:
            if len(e.weights) != len(e.members):
                raise _fail(file, f"{where}.weights", f"{len(e.weights)} weights for {len(e.members)} members; give one per member")
            if any(w < 0 or not math.isfinite(w) for w in e.weights) or sum(e.weights) <= 0:
                raise _fail(file, f"{where}.weights", "weights must be non-negative with a positive sum")
        ensembles[name] = Ensemble(name, list(e.members), e.weights, e.description)

    for i, t in enumerate(spec.targets):
        for n in t.among:
            if n not in variants and n not in ensembles:
                raise _fail(file, f"targets.{i}.among", f"unknown variant or ensemble {n!r}", [*variants, *ensembles])

    suite = Suite(path, text, spec, dataset, kind, class_names, variants, ensembles, baseline)
    for seed in spec.seeds:
        for name, v in variants.items():
            cfg = RunConfig(
                dataset=dataset, model=v.model, model_params=v.params, training=v.training, seed=seed,
                val_fraction=spec.val_fraction, train_subset=spec.train_subset,
            )
            suite.runs.append(PlannedRun(name, seed, cfg))
    return suite


def check_buildable(suite: Suite) -> dict[str, int]:
    """Build every variant's network once (no training) so shape or parameter mistakes surface
    before the first run; returns the parameter count of each variant."""
    import keras

    from keraslab import models

    counts: dict[str, int] = {}
    by_arch: dict[str, int] = {}
    for name, v in suite.variants.items():
        if v.architecture not in by_arch:
            keras.backend.clear_session()
            try:
                model = models.build(v.model, num_classes=len(suite.class_names), kind=suite.kind, **v.params)
            except KeraslabError as exc:
                raise _fail(str(suite.file), f"variants.{name}", exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
            except Exception as exc:  # a bad parameter value reaches Keras
                raise _fail(str(suite.file), f"variants.{name}", f"cannot build {v.model}: {type(exc).__name__}: {exc}") from None
            by_arch[v.architecture] = int(model.count_params())
        counts[name] = by_arch[v.architecture]
    keras.backend.clear_session()
    return counts


# --------------------------------------------------------------------------- state on disk


def run_dir(suite_dir: Path, r: PlannedRun) -> Path:
    return Path(suite_dir) / r.relpath()


def is_done(path: Path) -> bool:
    return (Path(path) / runs.DONE).is_file()


def init_weights_path(suite_dir: Path, suite: Suite, r: PlannedRun) -> Path:
    return Path(suite_dir) / INIT / f"{suite.variants[r.variant].architecture}-seed{r.seed}.weights.h5"


def tensorboard_path(suite_dir: Path, r: PlannedRun) -> Path:
    return Path(suite_dir) / TENSORBOARD / r.variant / f"seed{r.seed}"


def _superseded_dir(suite_dir: Path, stamp: str) -> Path:
    return Path(suite_dir) / SUPERSEDED / stamp


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def move_aside(path: Path, suite_dir: Path, stamp: str) -> Path | None:
    """Move `path` (inside the suite dir) under superseded/<stamp>/, keeping its relative place."""
    path = Path(path)
    if not path.exists():
        return None
    rel = path.resolve().relative_to(Path(suite_dir).resolve())
    target = _superseded_dir(suite_dir, stamp) / rel
    n = 1
    while target.exists():
        n += 1
        target = _superseded_dir(suite_dir, f"{stamp}-{n}") / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, target)
    return target


@dataclass
class PlanEntry:
    run: PlannedRun
    path: Path
    state: str  # "done", "to run", "to rerun (--force)"


def plan(suite: Suite, suite_dir: Path, force: list[str] = ()) -> list[PlanEntry]:
    """What `run` would do: each planned run with its directory and whether it is finished."""
    force = _check_force(suite, force)
    out = []
    for r in suite.runs:
        path = run_dir(suite_dir, r)
        if r.variant in force:
            state = "to rerun (--force)"
        elif is_done(path):
            state = "done"
        else:
            state = "to run"
        out.append(PlanEntry(r, path, state))
    return out


def _check_force(suite: Suite, force) -> set[str]:
    force = set(force or ())
    for name in force:
        if name not in suite.variants:
            if name in suite.ensembles:
                raise KeraslabError(
                    f"--force {name}: {name!r} is an ensemble; it is never trained, only averaged",
                    f"force its members instead: {', '.join(suite.ensembles[name].members)}",
                )
            raise KeraslabError(f"--force {name}: unknown variant {name!r}", f"variants of {suite.name}: {', '.join(suite.variants)}")
    return force


class _Lock:
    """One `keraslab run` per suite directory at a time."""

    def __init__(self, suite_dir: Path):
        self.path = Path(suite_dir) / LOCK

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise KeraslabError(
                f"another `keraslab run` is working in {self.path.parent}",
                "wait for it to finish, or give this one another --suite-dir",
            ) from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _save_suite_copy(suite: Suite, suite_dir: Path, stamp: str) -> None:
    copy = Path(suite_dir) / SUITE_COPY
    if copy.exists() and copy.read_text(encoding="utf-8") != suite.text:
        move_aside(copy, suite_dir, stamp)
    if not copy.exists():
        tmp = copy.with_name(copy.name + ".tmp")
        tmp.write_text(suite.text, encoding="utf-8")
        os.replace(tmp, copy)
    runs.write_json(
        Path(suite_dir) / PLAN,
        {
            "suite": suite.name,
            "file": str(suite.file),
            "dataset": suite.dataset,
            "baseline": suite.baseline,
            "seeds": suite.seeds,
            "shared_init": suite.spec.shared_init,
            "runs": [
                {
                    "variant": r.variant, "seed": r.seed, "key": r.key, "dir": str(r.relpath()),
                    "init_weights": str(init_weights_path(suite_dir, suite, r).relative_to(suite_dir)) if suite.spec.shared_init else None,
                    "config": r.config.model_dump(mode="json"),
                }
                for r in suite.runs
            ],
        },
    )


# --------------------------------------------------------------------------- progress


class Progress:
    """Suite progress (run k of N, elapsed, ETA) and the current run's epochs, in the terminal.

    On a terminal: two rich progress bars. Otherwise (logs, CI): one line per run and Keras'
    one-line-per-epoch output. `quiet`: one line per finished run only.
    """

    def __init__(self, total: int, *, quiet: bool = False, console=None):
        from rich.console import Console

        self.total = total
        self.quiet = quiet
        self.console = console or Console()
        self.live = (not quiet) and self.console.is_terminal
        self.done = 0
        self.started = time.perf_counter()
        self._bar = None

    def __enter__(self):
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("elapsed"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=self.console,
            )
            self._bar.__enter__()
            self._suite = self._bar.add_task("suite", total=self.total, info="")
            self._epoch = self._bar.add_task("run", total=1, info="", visible=False)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    @property
    def keras_verbose(self):
        return 0 if (self.quiet or self.live) else 2

    def start_run(self, k: int, r: PlannedRun) -> list:
        label = f"run {k} of {self.total}: {r.variant} seed {r.seed}"
        if self._bar is not None:
            self._bar.update(self._suite, description=f"suite: run {k} of {self.total}")
            self._bar.reset(self._epoch, total=1, visible=True, description=f"{r.variant} seed {r.seed}", info="")
            return [_EpochCallback(self, k - 1, f"{r.variant} seed {r.seed}")]
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            eta = f", ETA {_clock(elapsed / self.done * (self.total - self.done))}" if self.done else ""
            self.console.print(f"[{label}] elapsed {_clock(elapsed)}{eta}", highlight=False, markup=False)
        return []

    def finish_run(self, r: PlannedRun, accuracy: float, seconds: float) -> None:
        self.done += 1
        line = f"finished {r.variant} seed {r.seed}: test accuracy {accuracy:.4f} ({seconds:.0f} s)"
        if self._bar is not None:
            self._bar.update(self._suite, completed=self.done)
            self._bar.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _epoch_callback_base():
    import keras

    return keras.callbacks.Callback


class _EpochCallback:
    """Built lazily as a keras Callback subclass (keeps TensorFlow out of `import experiments`)."""

    def __new__(cls, progress: Progress, runs_before: int, description: str):
        base = _epoch_callback_base()

        class EpochBar(base):
            label = description

            def on_train_begin(self, logs=None):
                self.epochs = self.params.get("epochs") or 1
                self.steps = self.params.get("steps") or 1
                progress._bar.reset(progress._epoch, total=self.epochs * self.steps, info="")

            def on_train_batch_end(self, batch, logs=None):
                bar = progress._bar
                bar.advance(progress._epoch)
                done = bar.tasks[progress._epoch].completed / max(bar.tasks[progress._epoch].total or 1, 1)
                bar.update(progress._suite, completed=runs_before + min(done, 0.999))

            def on_epoch_begin(self, epoch, logs=None):
                progress._bar.update(progress._epoch, description=f"{self.label}, epoch {epoch + 1}/{self.epochs}")

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                short = {"accuracy": "acc", "val_accuracy": "val acc", "val_loss": "val loss"}
                parts = [f"{short[k]} {float(logs[k]):.4f}" for k in short if k in logs]
                progress._bar.update(progress._epoch, completed=(epoch + 1) * self.steps, info=" · ".join(parts))

        return EpochBar()


# --------------------------------------------------------------------------- running


def load_splits(suite: Suite, seed: int, data_dir: Path | None):
    """The dataset as every run of `seed` sees it (same validation split, same subsets)."""
    from keraslab import pipeline

    cfg = next(r.config for r in suite.runs if r.seed == seed)
    return pipeline.load_splits(cfg, data_dir)


@dataclass
class RunOutcome:
    suite_dir: Path
    trained: list[PlannedRun]
    skipped: list[PlannedRun]
    moved: list[Path]
    summary: dict | None = None
    report: dict | None = None


def run(
    suite: Suite,
    suite_dir: Path | None = None,
    *,
    data_dir: Path | None = None,
    force: list[str] = (),
    quiet: bool = False,
    console=None,
    report: bool = True,
) -> RunOutcome:
    """Train what is missing, skip what is finished, then summarize and write the report."""
    from keraslab import pipeline

    suite_dir = Path(suite_dir or suite.default_dir())
    force = _check_force(suite, force)
    check_buildable(suite)
    stamp = _stamp()
    moved: list[Path] = []
    with _Lock(suite_dir):
        _save_suite_copy(suite, suite_dir, stamp)
        for name in sorted(force):
            for sub in (Path(RUNS) / name, Path(TENSORBOARD) / name):
                target = move_aside(suite_dir / sub, suite_dir, stamp)
                if target is not None:
                    moved.append(target)
        entries = plan(suite, suite_dir)
        pending = [e.run for e in entries if e.state != "done"]
        skipped = [e.run for e in entries if e.state == "done"]
        trained: list[PlannedRun] = []
        with Progress(len(pending), quiet=quiet, console=console) as progress:
            for seed in suite.seeds:
                todo = [r for r in pending if r.seed == seed]
                if not todo:
                    continue
                splits = load_splits(suite, seed, data_dir)
                for r in todo:
                    out = run_dir(suite_dir, r)
                    if out.exists():  # a final-named folder without `done`: never ours, never used
                        moved.append(move_aside(out, suite_dir, stamp))
                    tb = tensorboard_path(suite_dir, r)
                    if tb.exists():  # logs of an interrupted or superseded attempt
                        moved.append(move_aside(tb, suite_dir, stamp))
                    init = None
                    if suite.spec.shared_init:
                        init = init_weights_path(suite_dir, suite, r)
                        write_init_weights(suite, r, init)
                    callbacks = progress.start_run(len(trained) + 1, r)
                    started = time.perf_counter()
                    with warnings.catch_warnings():
                        # The init file holds layer weights only, so the run keeps its own optimizer.
                        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                        pipeline.train_run(
                            r.config, out, splits=splits, verbose=progress.keras_verbose,
                            tensorboard_dir=tb, init_weights=init, callbacks=callbacks,
                        )
                    trained.append(r)
                    accuracy = runs.read_json(out / runs.METRICS)["accuracy"]
                    progress.finish_run(r, accuracy, time.perf_counter() - started)
                del splits
        outcome = RunOutcome(suite_dir, trained, skipped, moved)
        if report:
            outcome.summary, outcome.report = summarize_and_report(suite, suite_dir, data_dir=data_dir)
    return outcome


def write_init_weights(suite: Suite, r: PlannedRun, path: Path) -> Path:
    """The seeded initial weights of `r`'s architecture, shared by every variant built the same way.

    Written atomically from an *uncompiled* model: a weights file saved after ``compile`` would
    also hold the optimizer's variables, learning rate included, and give them to every variant.
    The weights are those ``train_run`` would draw itself (same seed, same build order).
    """
    path = Path(path)
    if path.exists():
        return path
    import keras

    from keraslab import models
    from keraslab.seeding import seed_everything

    v = suite.variants[r.variant]
    keras.backend.clear_session()
    seed_everything(r.seed)
    model = models.build(v.model, num_classes=len(suite.class_names), kind=suite.kind, **v.params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name.removesuffix('.weights.h5')}.partial-{os.getpid()}.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, path)
    keras.backend.clear_session()
    return path


# --------------------------------------------------------------------------- statistics


def _finished_runs(suite: Suite, suite_dir: Path) -> dict[str, list[runs.Run]]:
    out: dict[str, list[runs.Run]] = {}
    missing = []
    for r in suite.runs:
        path = run_dir(suite_dir, r)
        if is_done(path):
            out.setdefault(r.variant, []).append(runs.Run(path))
        else:
            missing.append(f"{r.variant} seed {r.seed}")
    if missing:
        raise KeraslabError(
            f"{suite_dir}: {len(missing)} run(s) of suite {suite.name!r} are not finished: {', '.join(missing[:6])}"
            + (" ..." if len(missing) > 6 else ""),
            f"finish them with `keraslab run {suite.file} --suite-dir {suite_dir}`",
        )
    return out


def _per_class(y: np.ndarray, probs_list: list[np.ndarray], k: int) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    cm = np.zeros((k, k), dtype=np.int64)
    prec, rec = [], []
    for p in probs_list:
        pred = p.argmax(axis=1)
        cm += confusion_matrix(y, pred, labels=np.arange(k))
        pr, rc, _, _ = precision_recall_fscore_support(y, pred, labels=np.arange(k), zero_division=0)
        prec.append(pr)
        rec.append(rc)
    return {
        "precision": np.mean(prec, axis=0).tolist(),
        "recall": np.mean(rec, axis=0).tolist(),
        "confusion_matrix_summed": cm.tolist(),
    }


def summarize(suite: Suite, suite_dir: Path, y_true: np.ndarray) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """Statistics of every variant and ensemble against the baseline, from the runs on disk.

    Returns the JSON-able summary and the per-seed test probabilities of every variant and ensemble.
    """
    from keraslab import comparison

    suite_dir = Path(suite_dir)
    y = np.asarray(y_true)
    k = len(suite.class_names)
    finished = _finished_runs(suite, suite_dir)
    probs: dict[str, list[np.ndarray]] = {}
    entries: dict[str, dict] = {}
    for name, v in suite.variants.items():
        seed_runs = finished[name]
        probs[name] = []
        per_seed = []
        for r, run in zip([p for p in suite.runs if p.variant == name], seed_runs):
            p = run.probabilities
            metrics = run.metrics
            # The accuracy of the saved (float32) probabilities, the numbers the statistics use; it
            # matches metrics.json unless the test set changed (a float32 tie may move one example).
            acc = float(np.mean(p.argmax(1) == y)) if p.shape == (len(y), k) else None
            if acc is None or abs(acc - metrics["accuracy"]) > 3 / len(y):
                raise KeraslabError(
                    f"{run.path}: its probabilities do not match this suite's test set ({len(y)} examples)",
                    "the data or the suite's subsets changed since it was trained; rerun it with --force "
                    f"{name}",
                )
            env = runs.read_json(run.path / runs.ENVIRONMENT)
            probs[name].append(p)
            per_seed.append({
                "seed": r.seed,
                "test_accuracy": acc,
                "test_loss": metrics["loss"],
                "wall_seconds": env.get("wall_seconds"),
                "epochs_run": len(run.history.get("loss", [])),
                "run_dir": str(run.path.relative_to(suite_dir)),
                "run_key": r.key,
                "init_weights": (str(init_weights_path(suite_dir, suite, r).relative_to(suite_dir))
                                 if env.get("init_weights") else None),
            })
        accs = [s["test_accuracy"] for s in per_seed]
        entries[name] = {
            "name": name,
            "kind": "variant",
            "description": v.describe(),
            "model": v.model,
            "params": v.params,
            "training": v.training.model_dump(mode="json"),
            "seeds": per_seed,
            "test_accuracy": accs,
            "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
            "wall_seconds": round(sum(s["wall_seconds"] or 0 for s in per_seed), 2),
        }
    for name, e in suite.ensembles.items():
        ens = [
            comparison.ensemble_probabilities([probs[m][i] for m in e.members], e.weights)
            for i in range(len(suite.seeds))
        ]
        probs[name] = ens
        accs = [float(np.mean(p.argmax(1) == y)) for p in ens]
        gain = comparison.ensemble_gain(y, {m: probs[m] for m in e.members}, ens)
        entries[name] = {
            "name": name,
            "kind": "ensemble",
            "description": e.describe(),
            "members": e.members,
            "weights": e.weights,
            "seeds": [{"seed": s, "test_accuracy": a} for s, a in zip(suite.seeds, accs)],
            "test_accuracy": accs,
            "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
            "wall_seconds": round(sum(entries[m]["wall_seconds"] for m in e.members), 2),
            "gain_over_best_member": gain,
        }
    for name, entry in entries.items():
        entry.update(_per_class(y, probs[name], k))
        if name == suite.baseline:
            entry.update({"verdict": "baseline", "vs_baseline": None, "difference": None, "mcnemar_p": None})
            continue
        cmp = comparison.compare(
            y, probs[suite.baseline], probs[name], variant=name, baseline=suite.baseline,
            n_classes=k, alpha=suite.spec.alpha,
        )
        d = cmp.to_dict()
        entry.update({
            "difference": {
                "estimate": d["seed_diff"]["estimate"],
                "seed_ci": [d["seed_diff"]["low"], d["seed_diff"]["high"]],
                "bootstrap_ci": [d["bootstrap_diff"]["low"], d["bootstrap_diff"]["high"]],
                "level": d["seed_diff"]["level"],
            },
            "mcnemar_p": d["mcnemar_pooled"]["p_value"],
            "mcnemar_p_per_seed": [m["p_value"] for m in d["mcnemar_per_seed"]],
            "verdict": cmp.verdict,
            "verdict_reason": comparison.verdict_reason(cmp),
            "vs_baseline": d,
        })
    order = sorted(entries, key=lambda n: (-entries[n]["mean"], n))
    return comparison._jsonable({
        "targets": [_target(t, entries) for t in suite.spec.targets],
        "suite": suite.name,
        "description": suite.spec.description,
        "file": str(suite.file),
        "dataset": suite.dataset,
        "kind": suite.kind,
        "class_names": suite.class_names,
        "n_test": int(len(y)),
        "seeds": suite.seeds,
        "alpha": suite.spec.alpha,
        "baseline": suite.baseline,
        "shared_init": suite.spec.shared_init,
        "train_subset": suite.spec.train_subset,
        "val_fraction": suite.spec.val_fraction,
        "order": order,
        "results": [entries[n] for n in order],
        "total_wall_seconds": round(sum(e["wall_seconds"] for e in entries.values() if e["kind"] == "variant"), 2),
        "command": _command(),
        "generated": datetime.now().isoformat(timespec="seconds"),
    }), probs


def _slowest_run(entries: dict[str, dict], name: str) -> float:
    """Wall seconds of an entry's slowest training run; an ensemble needs all its members' runs."""
    e = entries[name]
    if e["kind"] == "ensemble":
        return sum(_slowest_run(entries, m) for m in e["members"])
    return max(s["wall_seconds"] or 0.0 for s in e["seeds"])


def _target(t: TargetSpec, entries: dict[str, dict]) -> dict:
    """Whether the best candidate reaches the goal, and by how much it misses."""
    in_time = [n for n in t.among if t.max_wall_seconds is None or _slowest_run(entries, n) <= t.max_wall_seconds]
    best = max(in_time or t.among, key=lambda n: (entries[n]["mean"], n))
    mean, wall = entries[best]["mean"], _slowest_run(entries, best)
    within = t.max_wall_seconds is None or wall <= t.max_wall_seconds
    return {
        "name": t.name, "accuracy": t.accuracy, "max_wall_seconds": t.max_wall_seconds, "among": t.among,
        "best": best, "mean": mean, "std": entries[best]["std"], "gap": mean - t.accuracy,
        "slowest_run_seconds": wall, "within_time": within, "met": mean >= t.accuracy and within,
        "tried": t.tried,
    }


def _command() -> str | None:
    """The keraslab command line that is running, if this process is the keraslab CLI."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "keraslab" or argv0.parts[-2:] == ("keraslab", "__main__.py"):
        return " ".join(["keraslab", *sys.argv[1:]])
    return None


def summarize_and_report(suite: Suite, suite_dir: Path, *, data_dir: Path | None = None) -> tuple[dict, dict]:
    """summary.json, report.md, report.html and figures/, from the finished runs (no training)."""
    from keraslab.reports import suite_report

    suite_dir = Path(suite_dir)
    _finished_runs(suite, suite_dir)  # fail before loading data when runs are missing
    splits = load_splits(suite, suite.seeds[0], data_dir)
    summary, probs = summarize(suite, suite_dir, splits.y_test)
    previous = suite_dir / SUMMARY
    if not (summary["command"] or "").startswith("keraslab run") and previous.is_file():
        summary["command"] = runs.read_json(previous).get("command")  # the run that trained, not a re-render
    runs.write_json(suite_dir / SUMMARY, summary)
    histories = {
        name: [runs.Run(run_dir(suite_dir, r)).history for r in suite.runs if r.variant == name]
        for name in suite.variants
    }
    paths = suite_report.write(suite_dir, summary, histories=histories, probs=probs,
                               x_test=splits.x_test, y_test=splits.y_test)
    return summary, paths


def open_suite_dir(suite_dir: Path) -> Suite:
    """The suite recorded in a suite directory (its copy of the suite file)."""
    suite_dir = Path(suite_dir)
    copy = suite_dir / SUITE_COPY
    if not copy.is_file():
        raise KeraslabError(f"{suite_dir} is not a suite directory (no {SUITE_COPY})", "pass a folder made by `keraslab run`")
    suite = load(copy)
    plan_file = suite_dir / PLAN
    if plan_file.is_file():  # name the file the user ran, not our copy of it
        suite.file = Path(runs.read_json(plan_file).get("file") or copy)
    return suite
