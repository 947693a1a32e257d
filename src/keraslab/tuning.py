"""keras-tuner searches from YAML that survive restarts: ``keraslab tune TUNE.yaml``.

A search is the path of one run many times with proposed settings (see DESIGN.md): keras-tuner's
*oracle* (Hyperband, Bayesian optimization or random search) proposes hyperparameters, keraslab
builds, trains and validates each trial with the same functions as ``keraslab train``, and
records it. The test set is dropped right after loading: the tuner sees training and validation
data only.

1. :func:`load` reads and validates the search file (unknown keys, wrong types, bad ranges and
   unknown layer types are one-line errors naming the file and the key) and builds the search
   space; :func:`check_buildable` builds the smallest and the largest network once. Nothing trains.
2. :func:`tune` runs the search in ``SEARCH_DIR`` (default ``runs/tune/NAME``)::

       SEARCH_DIR/
         tune.yaml           the search file last used
         search.json         definition (and its hash), sessions, status, why the search stopped
         trials.jsonl        THE LEDGER: one JSON line per finished trial (rewritten atomically)
         trials.csv          the trials table; report.html (self-contained) and figures/*.png
         weights/<id>.weights.h5   weights a Hyperband trial may be continued from
         best.json, best_variant.yaml   the best trial; a suite file `keraslab run` accepts
         then_run.yaml, then_run/       --then-run N: best vs baseline over N seeds (a suite)
         keras_tuner/NAME/   keras-tuner's own files: a cache, rebuilt from the ledger each start
         superseded/<time>/  what --overwrite (or a changed search file) moved aside

3. **Restarts.** The ledger is the truth. Each start rebuilds the oracle by *replaying* the
   ledger: a fresh oracle with the same seed is asked for trial after trial, and each is answered
   with the ledger's recorded result instead of training. Every oracle here is deterministic given
   its seed and the results it was told, so the replayed oracle is in exactly the state of an
   uninterrupted search (Hyperband's brackets and rounds, the random draws' seed state, and the
   Bayesian oracle's numpy RandomState, which keras-tuner's own reload resets). Finished trials are
   never trained again; the interrupted trial is proposed again with the same hyperparameters and
   trained from its first epoch, with the same seed. docs/tuning.md lists what is reproduced
   exactly and what cannot be.
4. **Memory.** Every trial starts with ``keras.backend.clear_session()`` and ``gc.collect()`` and
   ends by releasing its graphs from TensorFlow's gradient registry (:mod:`keraslab.memory`);
   each ledger line records the resident memory after its trial (benchmarks/tune_memory.py).
5. **Score.** A trial's score is the objective of the weights it *keeps*: the epoch EarlyStopping
   restored (``restore_best_weights``) or else the last epoch. keras-tuner scores the best epoch
   seen, even when the model ends elsewhere: an optimistic number that a retrained model does
   not reach. With keraslab's score, retraining the best configuration with the search's seed
   reproduces the trial (checked by ``--then-run``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from keraslab import memory
from keraslab.config import RunConfig, Strict, TrainingConfig
from keraslab.errors import KeraslabError

SPEC_COPY = "tune.yaml"
STATE = "search.json"
LEDGER = "trials.jsonl"
CSV = "trials.csv"
BEST_JSON = "best.json"
BEST_VARIANT = "best_variant.yaml"
THEN_RUN_YAML = "then_run.yaml"
THEN_RUN_DIR = "then_run"
WEIGHTS = "weights"
KT_DIR = "keras_tuner"
SUPERSEDED = "superseded"
LOCK = ".lock"
TUNER_ID = "tuner0"
INLINE_MODEL = "sequential"
TUNED_VARIANT = "tuned"
BASELINE_VARIANT = "baseline"
DEFAULT_BASELINE = {"image": "lesson-mlp", "text": "tutorial-embedding"}
TUNABLE_TRAINING = ("learning_rate", "batch_size", "optimizer", "weight_decay")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_HP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_HINT = "see docs/tuning.md and the examples in experiments/tune/"


# --------------------------------------------------------------------------- schema


class IntHP(Strict):
    """``{tune: int, min, max, step, sampling: linear|log}``; with log sampling `step` is a factor."""

    tune: Literal["int"]
    min: int
    max: int
    step: int | None = Field(None, ge=1)
    sampling: Literal["linear", "log"] = "linear"
    default: int | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.sampling == "log":
            if self.min < 1:
                raise ValueError("log sampling needs min >= 1")
            if self.step is not None and self.step < 2:
                raise ValueError("with log sampling, step is a factor and must be >= 2")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} is outside [{self.min}, {self.max}]")
        return self


class FloatHP(Strict):
    """``{tune: float, min, max, step, sampling: linear|log|reverse_log}``."""

    tune: Literal["float"]
    min: float
    max: float
    step: float | None = Field(None, gt=0)
    sampling: Literal["linear", "log", "reverse_log"] = "linear"
    default: float | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _range(self):
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if self.sampling != "linear":
            if self.min <= 0:
                raise ValueError(f"{self.sampling} sampling needs min > 0")
            if self.step is not None and self.step <= 1:
                raise ValueError(f"with {self.sampling} sampling, step is a factor and must be > 1")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default:g} is outside [{self.min:g}, {self.max:g}]")
        return self


class ChoiceHP(Strict):
    """``{tune: choice, values: [...]}``: strings, numbers or booleans, all of one kind."""

    tune: Literal["choice"]
    values: list[Union[bool, int, float, str]] = Field(min_length=1)
    default: Union[bool, int, float, str, None] = None
    name: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _one_kind(cls, values):
        if not isinstance(values, list):
            return values
        kinds = {"bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else type(v).__name__
                 for v in values}
        if len(kinds) > 1:
            raise ValueError(f"all values must be of one kind (got {', '.join(sorted(kinds))})")
        if kinds == {"number"} and any(isinstance(v, float) for v in values):
            values = [float(v) for v in values]  # keras-tuner wants one type: 1 and 0.5 become floats
        if len({json.dumps(v) for v in values}) != len(values):
            raise ValueError("values must be distinct")
        return values

    @model_validator(mode="after")
    def _default_is_a_value(self):
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not one of the values")
        return self


HP_SPECS = {"int": IntHP, "float": FloatHP, "choice": ChoiceHP}


class AlgorithmSpec(Strict):
    name: Literal["hyperband", "bayesian", "random"] = "hyperband"
    factor: int | None = Field(None, ge=2)  # hyperband
    hyperband_iterations: int | None = Field(None, ge=1)  # hyperband
    num_initial_points: int | None = Field(None, ge=1)  # bayesian
    alpha: float | None = Field(None, gt=0)  # bayesian
    beta: float | None = Field(None, ge=0)  # bayesian

    @model_validator(mode="after")
    def _parameters_of_the_algorithm(self):
        own = {"hyperband": {"factor", "hyperband_iterations"}, "bayesian": {"num_initial_points", "alpha", "beta"},
               "random": set()}[self.name]
        foreign = [k for k in ("factor", "hyperband_iterations", "num_initial_points", "alpha", "beta")
                   if getattr(self, k) is not None and k not in own]
        if foreign:
            raise ValueError(f"{', '.join(foreign)} is not a parameter of {self.name} "
                             f"(its parameters: {', '.join(sorted(own)) or 'none'})")
        return self


class BudgetSpec(Strict):
    max_epochs: int = Field(ge=1)
    max_trials: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)


class BaselineSpec(Strict):
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


class TuneSpec(Strict):
    name: str
    dataset: str
    description: str | None = None
    seed: int = Field(0, ge=0)
    train_subset: int | None = Field(None, ge=1)
    val_fraction: float | None = Field(None, gt=0, lt=1)
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    algorithm: AlgorithmSpec
    budget: BudgetSpec
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    layers: list[Any] | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    baseline: BaselineSpec | None = None

    @field_validator("algorithm", mode="before")
    @classmethod
    def _name_alone(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _model_or_layers(self):
        if (self.model is None) == (self.layers is None):
            raise ValueError("give either 'model' (a registered model, with tunable 'params') "
                             "or 'layers' (an inline layer list with tunable values)")
        if self.layers is not None and self.params:
            raise ValueError("'params' goes with 'model'; an inline network is described by its 'layers' alone")
        return self


# --------------------------------------------------------------------------- reading and errors


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys and reads 1e-3 as a number (YAML 1.2), not a string."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise KeraslabError(f"{where}: not valid YAML{at}: {problem}", "check the indentation and quoting") from None


def _fail(file: str, key: str, message: str, allowed=None) -> KeraslabError:
    text = f"{file}: '{key}': {message}"
    if allowed is not None:
        text += f" (allowed: {', '.join(map(str, allowed)) or 'none'})"
    return KeraslabError(text, _HINT)


def _owner(cls: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    """The model class whose field the last element of `loc` would be."""
    t: Any = cls
    for part in loc[:-1]:
        f = t.model_fields.get(part) if isinstance(t, type) and issubclass(t, BaseModel) else None
        if f is None:
            return t
        ann = f.annotation
        for arg in getattr(ann, "__args__", (ann,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                ann = arg
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return t
        t = ann
    return t


def _validate(cls: type[BaseModel], data: Any, file: str, prefix: str = ""):
    """`cls` from plain data; every problem in one line naming the file and the key."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            key = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}' (allowed: {', '.join(_owner(cls, loc).model_fields)})")
            elif err["type"] == "missing":
                problems.append(f"missing key '{key}'")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"'{key}': {msg} (got {err.get('input')!r})")
        raise KeraslabError(f"{file}: {'; '.join(problems)}", _HINT) from None


# --------------------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Ref:
    """A tuned value in a template; inside a repeat block the name gets ``_<repetition>``."""

    name: str


@dataclass
class HP:
    """One hyperparameter: its keras-tuner declaration, its values and where it came from."""

    name: str
    spec: IntHP | FloatHP | ChoiceHP
    where: str
    condition: tuple[str, tuple] | None = None  # (count hyperparameter, the counts that use it)

    @property
    def kind(self) -> str:
        return self.spec.tune

    @property
    def log(self) -> bool:
        return getattr(self.spec, "sampling", "linear") != "linear"

    def declare(self, hps) -> None:
        s = self.spec
        if self.kind == "int":
            hps.Int(self.name, s.min, s.max, step=s.step, sampling=s.sampling, default=s.default)
        elif self.kind == "float":
            hps.Float(self.name, s.min, s.max, step=s.step, sampling=s.sampling, default=s.default)
        else:
            hps.Choice(self.name, list(s.values), default=s.default)

    def finite_values(self) -> list | None:
        """Every value it can take, or None when there are infinitely many."""
        s = self.spec
        if self.kind == "choice":
            return list(s.values)
        if self.kind == "float" and s.step is None:
            return None if s.max > s.min else [s.min]
        import keras_tuner as kt

        hps = kt.HyperParameters()
        self.declare(hps)
        hp = hps.space[0]
        if self.kind == "int" and s.step is None:  # log sampling without a step: integers in range
            return list(range(s.min, s.max + 1))
        return sorted(set(hp.values))

    def extremes(self) -> list:
        if self.kind == "choice":
            return list(self.spec.values)
        return [self.spec.min, self.spec.max]

    def describe(self) -> str:
        s = self.spec
        if self.kind == "choice":
            text = " | ".join(map(str, s.values))
        else:
            text = f"{s.min:g} .. {s.max:g}"
            if s.step is not None:
                text += f" {'×' if self.log else 'step'} {s.step:g}"
            if self.log:
                text += f", {s.sampling}"
        if self.condition:
            text += f" (when {self.condition[0]} >= {min(self.condition[1])})"
        return text


@dataclass
class Repeat:
    count: int | Ref
    layers: list[dict]
    where: str


@dataclass
class Space:
    hps: dict[str, HP] = field(default_factory=dict)
    template: list[dict | Repeat] | None = None  # inline layers (image data)
    params: dict[str, Any] = field(default_factory=dict)  # registered model parameters
    training: dict[str, Any] = field(default_factory=dict)  # the tuned training settings only

    def add(self, hp: HP, file: str) -> Ref:
        old = self.hps.get(hp.name)
        if old is not None and (old.spec.model_dump(exclude={"name"}) != hp.spec.model_dump(exclude={"name"})
                                or old.condition != hp.condition):
            raise _fail(file, hp.where, f"hyperparameter name {hp.name!r} is already used by '{old.where}' "
                        "with another definition; give it another 'name'")
        self.hps.setdefault(hp.name, hp)
        return Ref(hp.name)

    def hyperparameters(self):
        """A keras_tuner.HyperParameters with every hyperparameter declared (conditions included)."""
        import keras_tuner as kt

        hps = kt.HyperParameters()
        for hp in self.hps.values():
            if hp.condition:
                with hps.conditional_scope(hp.condition[0], list(hp.condition[1])):
                    hp.declare(hps)
            else:
                hp.declare(hps)
        return hps

    def resolve(self, values: dict) -> tuple[dict, dict]:
        """(model parameters, tuned training settings) for one set of hyperparameter values."""

        def sub(v, rep=None):
            if isinstance(v, Ref):
                return values[v.name if rep is None else f"{v.name}_{rep}"]
            return v

        training = {k: sub(v) for k, v in self.training.items()}
        if self.template is None:
            return {k: sub(v) for k, v in self.params.items()}, training
        layers = []
        for item in self.template:
            if isinstance(item, Repeat):
                for rep in range(1, int(sub(item.count)) + 1):
                    for layer in item.layers:
                        d = {k: sub(v, rep) for k, v in layer.items()}
                        if "name" in d:
                            d["name"] = f"{d['name']}_{rep}"
                        layers.append(d)
            else:
                layers.append({k: sub(v) for k, v in item.items()})
        return {"layers": layers}, training

    def corner(self, high: bool) -> dict:
        """Values with every hyperparameter at its first/lowest or last/highest value (for build checks)."""
        return {name: (hp.extremes()[-1] if high else hp.extremes()[0]) for name, hp in self.hps.items()}

    def cardinality(self) -> int | None:
        """The number of distinct configurations (active values only), or None if infinite."""
        per = {}
        for name, hp in self.hps.items():
            vals = hp.finite_values()
            if vals is None:
                return None
            per[name] = len(vals)
        in_repeat = {n for n, hp in self.hps.items() if hp.condition}
        counts = {}  # count hyperparameter -> per-repetition product
        for item in self.template or []:
            if isinstance(item, Repeat) and isinstance(item.count, Ref):
                names = {v.name for layer in item.layers for v in layer.values() if isinstance(v, Ref)}
                counts[item.count.name] = math.prod(per[f"{n}_1"] for n in names)
        total = 1
        for name, n in per.items():
            if name in in_repeat:
                continue
            if name in counts:
                total *= sum(counts[name] ** c for c in self.hps[name].finite_values())
            else:
                total *= n
        for item in self.template or []:  # a fixed number of repetitions
            if isinstance(item, Repeat) and not isinstance(item.count, Ref):
                names = {v.name for layer in item.layers for v in layer.values() if isinstance(v, Ref)}
                total *= math.prod(per[f"{n}_{r}"] for n in names for r in range(1, item.count + 1))
        return total


def _is_hp(value) -> bool:
    return isinstance(value, dict) and "tune" in value


def _parse_hp(value: dict, file: str, where: str, default_name: str) -> IntHP | FloatHP | ChoiceHP:
    kind = value.get("tune")
    if kind not in HP_SPECS:
        raise _fail(file, f"{where}.tune", f"unknown kind {kind!r}", list(HP_SPECS))
    spec = _validate(HP_SPECS[kind], value, file, where)
    name = spec.name or default_name
    if not _HP_NAME.match(name) or name.startswith("tuner"):
        raise _fail(file, f"{where}.name", f"{name!r} is not usable as a hyperparameter name; "
                    "use letters, digits, '_' and '.', not starting with 'tuner'")
    return spec


def _check_layer_values(layer: dict, candidates: dict[str, list], file: str, where: str) -> None:
    """Check a layer template with every candidate value of its tuned keys against the allow-list."""
    from keraslab.models import inline

    probe = {k: v for k, v in layer.items() if k not in candidates}
    problems = inline.check_layers([probe | {k: c[0] for k, c in candidates.items()}])
    for key, values in candidates.items():
        for v in values[1:]:
            problems += inline.check_layers([probe | {k: c[0] for k, c in candidates.items()} | {key: v}])
    if problems:
        loc, msg = problems[0]
        loc = loc.split(".", 1)[1] if "." in loc else ""
        raise _fail(file, f"{where}.{loc}" if loc else where, msg)


def _parse_layer(layer: Any, file: str, where: str, space: Space, default_prefix: str, repeat: Repeat | None,
                 max_count: int, count_values: list[int] | None) -> dict:
    if not isinstance(layer, dict):
        raise _fail(file, where, f"a layer must be a mapping with a 'type' key (got {layer!r})")
    if "repeat" in layer:
        raise _fail(file, where, "repeat blocks cannot be nested")
    for fixed in ("type", "name"):
        if _is_hp(layer.get(fixed)):
            raise _fail(file, f"{where}.{fixed}", f"'{fixed}' cannot be tuned")
    out: dict = {}
    candidates: dict[str, list] = {}
    base_layer = layer.get("name") or f"{str(layer.get('type', 'layer')).lower()}{default_prefix}"
    for key, value in layer.items():
        if not _is_hp(value):
            out[key] = value
            continue
        spec = _parse_hp(value, file, f"{where}.{key}", f"{base_layer}.{key}")
        base = spec.name or f"{base_layer}.{key}"
        if repeat is None:
            out[key] = space.add(HP(base, spec, f"{where}.{key}"), file)
        else:
            for rep in range(1, max_count + 1):
                cond = None
                if count_values is not None:
                    cond = (repeat.count.name, tuple(c for c in count_values if c >= rep))
                space.add(HP(f"{base}_{rep}", spec, f"{where}.{key}", cond), file)
            out[key] = Ref(base)
        hp = space.hps[f"{base}_1" if repeat is not None else base]
        candidates[key] = hp.extremes()
    _check_layer_values(out, candidates, file, where)
    return out


def _parse_template(layers: Any, file: str, space: Space) -> list:
    if not isinstance(layers, list) or not layers:
        raise _fail(file, "layers", "must be a non-empty list of layers, e.g. [{type: Flatten}, {type: Dense, units: 10}]")
    template: list = []
    for i, item in enumerate(layers):
        where = f"layers.{i}"
        if isinstance(item, dict) and "repeat" in item:
            extra = sorted(set(item) - {"repeat", "layers"})
            if extra:
                raise _fail(file, f"{where}.{extra[0]}", "unknown key in a repeat block", ["repeat", "layers"])
            count = item["repeat"]
            if _is_hp(count):
                spec = _parse_hp(count, file, f"{where}.repeat", f"repeat{i}.count")
                if spec.tune == "float" or (spec.tune == "int" and spec.sampling != "linear"):
                    raise _fail(file, f"{where}.repeat", "the number of repetitions must be {tune: int} (linear) "
                                "or {tune: choice} of whole numbers")
                hp = HP(spec.name or f"repeat{i}.count", spec, f"{where}.repeat")
                values = hp.finite_values()
                if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
                    raise _fail(file, f"{where}.repeat", "repetition counts must be whole numbers >= 0")
                ref = space.add(hp, file)
                block = Repeat(ref, [], where)
                max_count, count_values = max(values), values
            elif isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                block = Repeat(count, [], where)
                max_count, count_values = count, None
            else:
                raise _fail(file, f"{where}.repeat", f"must be a whole number >= 0 or a tuned int (got {count!r})")
            inner = item.get("layers")
            if not isinstance(inner, list) or not inner:
                raise _fail(file, f"{where}.layers", "a repeat block needs a non-empty 'layers' list")
            for j, layer in enumerate(inner):
                block.layers.append(_parse_layer(layer, file, f"{where}.layers.{j}", space, f"{i}_{j}", block,
                                                 max_count, count_values))
            template.append(block)
        else:
            template.append(_parse_layer(item, file, where, space, str(i), None, 0, None))
    return template


# --------------------------------------------------------------------------- the loaded search


@dataclass
class Search:
    file: Path
    text: str
    spec: TuneSpec
    dataset: str
    kind: str
    class_names: list[str]
    model: str
    space: Space
    fixed_training: dict  # the training settings that are not tuned (no epochs)
    baseline: BaselineSpec
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.spec.objective]

    @property
    def oracle_seed(self) -> int:
        return self.spec.seed + 1  # keras-tuner reads a seed of 0 as "no seed": draw one at random

    def default_dir(self) -> Path:
        return Path("runs") / "tune" / self.name

    def definition(self) -> dict:
        """What determines the trials: changing any of it makes a different search.

        The budget's max_trials and max_minutes, the description and the baseline (used by
        --then-run only) may change between sessions, e.g. to extend a search; everything else
        must stay the same to resume.
        """
        d = self.spec.model_dump(mode="json")
        d.pop("description", None)
        d.pop("baseline", None)
        d["budget"] = {"max_epochs": self.spec.budget.max_epochs}
        d["dataset"] = self.dataset
        return d

    def definition_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()[:12]

    def training_for(self, tuned: dict, epochs: int | None = None) -> TrainingConfig:
        from keraslab import models

        merged = {**models.get(self.model).training, **self.fixed_training, **tuned,
                  "epochs": epochs or self.spec.budget.max_epochs}
        return TrainingConfig.model_validate(merged)

    def trial_config(self, values: dict, epochs: int | None = None) -> RunConfig:
        """The run a set of hyperparameter values stands for (epochs: budget.max_epochs by default)."""
        params, tuned = self.space.resolve(values)
        return RunConfig(
            dataset=self.dataset, model=self.model, model_params=params, training=self.training_for(tuned, epochs),
            seed=self.spec.seed, val_fraction=self.spec.val_fraction, train_subset=self.spec.train_subset,
        )


def load(path, *, text: str | None = None) -> Search:
    """Read and validate a search file and build its space; nothing is built or trained."""
    from keraslab import data, models

    path = Path(path)
    file = str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeraslabError(f"search file {path} not found",
                                "give the path of a search YAML file, e.g. experiments/tune/fashion_mnist_tune_units.yaml") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeraslabError(f"cannot read search file {path}: {exc}", "save it as UTF-8 text") from None
    raw = parse_yaml(text, file)
    if not isinstance(raw, dict):
        raise KeraslabError(f"{file}: a search file must be a mapping of keys (name, dataset, algorithm, budget, ...)", _HINT)
    spec: TuneSpec = _validate(TuneSpec, raw, file)
    if not _NAME.match(spec.name):
        raise _fail(file, "name", f"{spec.name!r} is not usable as a folder name; use letters, digits, '_', '-', '.'")
    try:
        dataset = data.canonical_name(spec.dataset)
    except KeraslabError:
        raise _fail(file, "dataset", f"unknown dataset {spec.dataset!r}", list(data.DATASETS)) from None
    info = data.DATASETS[dataset]
    kind, class_names = info.kind, list(info.class_names)
    if spec.algorithm.name in ("random", "bayesian") and spec.budget.max_trials is None:
        raise _fail(file, "budget.max_trials", f"{spec.algorithm.name} search needs a number of trials")

    space = Space()
    # training: fixed settings and tuned ones
    fixed_training: dict = {}
    allowed_training = [k for k in TrainingConfig.model_fields if k != "epochs"]
    for key, value in spec.training.items():
        where = f"training.{key}"
        if key == "epochs":
            raise _fail(file, where, "the epochs of each trial come from budget.max_epochs (and Hyperband's schedule)")
        if key not in TrainingConfig.model_fields:
            raise _fail(file, where, "unknown key", allowed_training)
        if _is_hp(value):
            if key not in TUNABLE_TRAINING:
                raise _fail(file, where, "cannot be tuned", TUNABLE_TRAINING)
            hp_spec = _parse_hp(value, file, where, key)
            hp = HP(hp_spec.name or key, hp_spec, where)
            for v in hp.extremes():  # every candidate must be a valid training setting
                _validate(TrainingConfig, {key: v}, file, "training")
            space.training[key] = space.add(hp, file)
        else:
            fixed_training[key] = value
    _validate(TrainingConfig, fixed_training, file, "training")

    if spec.layers is not None:
        if kind != "image":
            raise _fail(file, "layers", f"inline layer lists are for image datasets; {dataset} is {kind}: "
                        "tune a registered model's 'params' instead", [n for n in models.names(kind)])
        space.template = _parse_template(spec.layers, file, space)
        model = INLINE_MODEL
    else:
        allowed = [n for n in models.names(kind) if n != INLINE_MODEL]
        if spec.model not in models.names():
            raise _fail(file, "model", f"unknown model {spec.model!r}", allowed)
        if models.get(spec.model).kind != kind:
            raise _fail(file, "model", f"{spec.model!r} is a {models.get(spec.model).kind} model, {dataset} is {kind} data", allowed)
        known = models.get(spec.model).params
        for p, value in spec.params.items():
            if p not in known:
                raise _fail(file, f"params.{p}", f"{spec.model} has no parameter {p!r}",
                            [f"{k}={d!r}" for k, d in known.items()])
            if _is_hp(value):
                hp_spec = _parse_hp(value, file, f"params.{p}", p)
                space.params[p] = space.add(HP(hp_spec.name or p, hp_spec, f"params.{p}"), file)
            else:
                space.params[p] = value
        model = spec.model
    if not space.hps:
        raise _fail(file, "(top level)", "nothing to tune: give at least one {tune: int|float|choice} value "
                    "in 'layers', 'params' or 'training'")

    baseline = spec.baseline or BaselineSpec(model=DEFAULT_BASELINE[kind])
    allowed = [n for n in models.names(kind) if n != INLINE_MODEL]
    if baseline.model not in models.names(kind) or baseline.model == INLINE_MODEL:
        raise _fail(file, "baseline.model", f"unknown {kind} model {baseline.model!r}", allowed)
    known = models.get(baseline.model).params
    for p in baseline.params:
        if p not in known:
            raise _fail(file, f"baseline.params.{p}", f"{baseline.model} has no parameter {p!r}",
                        [f"{k}={d!r}" for k, d in known.items()])
    _validate(TrainingConfig, baseline.training, file, "baseline.training")

    search = Search(path, text, spec, dataset, kind, class_names, model, space, fixed_training, baseline)
    for corner in (False, True):  # the training settings of both corners must validate together
        try:
            search.trial_config(space.corner(corner))
        except ValidationError as exc:
            raise _fail(file, "training", str(exc.errors()[0]["msg"])) from None
    if spec.layers is not None:
        from keraslab.models import inline

        for corner in (False, True):
            layers = space.resolve(space.corner(corner))[0]["layers"]
            problems = inline.check_layers(layers, len(class_names))
            if problems:
                loc, msg = problems[0]
                raise _fail(file, "layers", f"with every tuned value at its {'highest' if corner else 'lowest'}: "
                            f"layer {loc}: {msg}")
    search.warnings = _warnings(search)
    return search


def check_buildable(search: Search) -> dict[str, int]:
    """Build the network with every tuned value at its lowest and at its highest (no training);
    returns their parameter counts. A shape mistake fails here, before the first trial."""
    import keras

    from keraslab import models

    counts = {}
    for label, corner in (("lowest", False), ("highest", True)):
        params = search.space.resolve(search.space.corner(corner))[0]
        keras.backend.clear_session()
        try:
            model = models.build(search.model, num_classes=len(search.class_names), kind=search.kind, **params)
        except KeraslabError as exc:
            raise _fail(str(search.file), "layers" if search.spec.layers is not None else "params",
                        f"with every tuned value at its {label}: {exc.message}") from None
        except Exception as exc:  # a bad parameter value reaches Keras
            raise _fail(str(search.file), "layers" if search.spec.layers is not None else "params",
                        f"cannot build {search.model} with every tuned value at its {label}: "
                        f"{type(exc).__name__}: {exc}") from None
        counts[label] = int(model.count_params())
    keras.backend.clear_session()
    return counts


# --------------------------------------------------------------------------- the algorithm's schedule


def hyperband_rounds(max_epochs: int, factor: int, iterations: int = 1) -> list[dict]:
    """keras-tuner's Hyperband schedule: each round's trials and epochs, in the order it runs them."""
    brackets, epochs = 0, max_epochs
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end0 = math.ceil(1 + math.log(max_epochs, factor))
    out = []
    for it in range(iterations):
        for b in range(brackets - 1, -1, -1):
            for r in range(b + 1):
                size = math.ceil(end0 / (b + 1) * factor ** (b - r))
                ep = math.ceil(max_epochs / factor ** (b - r))
                prev = math.ceil(max_epochs / factor ** (b - r + 1)) if r else 0
                out.append({"iteration": it, "bracket": b, "round": r, "trials": size, "epochs": ep, "initial_epoch": prev})
    return out


def planned(search: Search) -> tuple[int, int]:
    """(trials, epochs) the search plans: an upper bound (early stopping and exhausted spaces end sooner)."""
    s = search.spec
    if s.algorithm.name == "hyperband":
        rounds = hyperband_rounds(s.budget.max_epochs, s.algorithm.factor or 3, s.algorithm.hyperband_iterations or 1)
        trials = epochs = 0
        for r in rounds:
            for _ in range(r["trials"]):
                if s.budget.max_trials and trials >= s.budget.max_trials:
                    return trials, epochs
                trials += 1
                epochs += r["epochs"] - r["initial_epoch"]
        return trials, epochs
    return s.budget.max_trials, s.budget.max_trials * s.budget.max_epochs


def _warnings(search: Search) -> list[str]:
    """Things about the search a user should know before spending hours on it."""
    out = []
    n = search.space.cardinality()
    s = search.spec
    if n is None:
        return out
    if s.algorithm.name == "hyperband":
        rounds = hyperband_rounds(s.budget.max_epochs, s.algorithm.factor or 3, s.algorithm.hyperband_iterations or 1)
        left, trials = n, 0
        for b in [r for r in rounds if r["round"] == 0]:
            if left < b["trials"]:
                first = trials == 0
                trials += left
                expect = (f"expect {trials} trials of {b['epochs']} epoch(s) each and none longer" if first else
                          f"expect {trials} trials in all")
                out.append(
                    f"the space has only {n} distinct configurations; Hyperband's bracket {b['bracket']} wants "
                    f"{b['trials']} new ones, and keras-tuner ends the whole search when it cannot draw a new "
                    f"one: {expect} (see docs/tuning.md, 'Small spaces')")
                break
            left -= b["trials"]
            trials += sum(r["trials"] for r in rounds if r["bracket"] == b["bracket"] and r["iteration"] == b["iteration"])
    elif n < s.budget.max_trials:
        out.append(f"the space has only {n} distinct configurations, fewer than budget.max_trials "
                   f"{s.budget.max_trials}: the search ends when every one has been tried")
    return out


# --------------------------------------------------------------------------- the ledger


def read_ledger(search_dir: Path) -> list[dict]:
    """The finished trials, in order. A torn last line (a crash while writing) is ignored."""
    path = Path(search_dir) / LEDGER
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise KeraslabError(f"{path}: line {i + 1} is not valid JSON",
                                "the ledger was edited by hand; fix the line or start over with --overwrite") from None
        if entry.get("number") != len(entries) + 1:
            raise KeraslabError(f"{path}: line {i + 1} holds trial number {entry.get('number')}, expected {len(entries) + 1}",
                                "the ledger was edited by hand; fix it or start over with --overwrite")
        entries.append(entry)
    return entries


def write_ledger(search_dir: Path, entries: list[dict]) -> None:
    """Append a trial: the whole file is rewritten into a temporary file and renamed over the old
    one, so a crash leaves either the old ledger or the new one, never half a line."""
    path = Path(search_dir) / LEDGER
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the oracle


def make_oracle(search: Search, search_dir: Path):
    """A fresh keras-tuner oracle for the search, writing its files under SEARCH_DIR/keras_tuner/."""
    import keras_tuner as kt

    s = search.spec
    common = dict(
        objective=kt.Objective(s.objective, search.direction),
        hyperparameters=search.space.hyperparameters(),
        allow_new_entries=False,
        tune_new_entries=True,
        seed=search.oracle_seed,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=3,
    )
    a = s.algorithm
    if a.name == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=s.budget.max_epochs, factor=a.factor or 3,
                                            hyperband_iterations=a.hyperband_iterations or 1, **common)
    elif a.name == "bayesian":
        # max_trials=None: keraslab counts trials itself, and trial ids keep one width when the budget grows.
        oracle = kt.oracles.BayesianOptimizationOracle(max_trials=None, num_initial_points=a.num_initial_points,
                                                       alpha=a.alpha or 1e-4, beta=a.beta if a.beta is not None else 2.6,
                                                       **common)
    else:
        oracle = kt.oracles.RandomSearchOracle(max_trials=None, **common)
    oracle._set_project_dir(str(Path(search_dir) / KT_DIR), search.name)
    oracle.verbose = 0  # keras-tuner's own printing would tear the progress bars
    return oracle


class _OracleCall:
    """keras-tuner 1.4 calls the deprecated threading.currentThread() in every oracle method;
    keep that warning out of the user's terminal."""

    def __enter__(self):
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="keras_tuner")
        warnings.filterwarnings("ignore", message=".*currentThread.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*getName.*", category=DeprecationWarning)
        # The Bayesian oracle's Gaussian process warns about kernel bounds on most fits.
        warnings.filterwarnings("ignore", module="sklearn.gaussian_process")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _create(oracle):
    with _OracleCall():
        return oracle.create_trial(TUNER_ID)


def _tell(oracle, trial, entry: dict) -> None:
    """Report a finished trial to the oracle, exactly the same way live and when replaying."""
    with _OracleCall():
        _tell_quietly(oracle, trial, entry)


def _tell_quietly(oracle, trial, entry: dict) -> None:
    from keras_tuner.src.engine import trial as trial_module

    if entry["status"] == "completed":
        oracle.update_trial(trial.trial_id, dict(entry["metrics"]), step=entry["kept_epoch"])
        trial.status = trial_module.TrialStatus.COMPLETED
    else:
        trial.status = trial_module.TrialStatus.FAILED
        trial.message = entry.get("message")
    try:
        oracle.end_trial(trial)
    except RuntimeError as exc:  # keras-tuner stops after max_consecutive_failed_trials failures
        raise KeraslabError(f"{' '.join(str(exc).split())[:300]}",
                            "the last trials failed (see trials.jsonl); fix the search space and run with --overwrite") from None


def replay(search: Search, search_dir: Path, entries: list[dict]):
    """A fresh oracle told the ledger's trials in order: the state of an uninterrupted search.

    Returns (oracle, notes). When a proposal differs from the ledger (another keras-tuner version,
    a changed library), the ledger wins, the trial is inserted as recorded, and a note says from
    which trial on the oracle's later proposals may differ from an uninterrupted search's.
    """
    from keras_tuner.src.engine import trial as trial_module

    kt_dir = Path(search_dir) / KT_DIR
    if kt_dir.exists():
        shutil.rmtree(kt_dir)  # a cache, derived from the ledger alone
    oracle = make_oracle(search, search_dir)
    notes: list[str] = []
    for entry in entries:
        trial = _create(oracle)
        same = (trial.status == trial_module.TrialStatus.RUNNING and trial.trial_id == entry["trial_id"]
                and trial.hyperparameters.values == entry["values"])
        if not same:
            if not notes:
                notes.append(f"replaying the ledger: the oracle proposed another configuration at trial "
                             f"{entry['number']} than the one recorded; the ledger's trials were kept, the "
                             "oracle's later proposals may differ from an uninterrupted search's")
            if trial.status == trial_module.TrialStatus.RUNNING and trial.trial_id == entry["trial_id"]:
                trial.hyperparameters.values = dict(entry["values"])
            else:
                trial = trial_module.Trial(oracle.get_space(), trial_id=entry["trial_id"],
                                           status=trial_module.TrialStatus.RUNNING)
                trial.hyperparameters.values = dict(entry["values"])
                oracle.trials[trial.trial_id] = trial
                oracle.start_order.append(trial.trial_id)
                oracle.ongoing_trials[TUNER_ID] = trial
        _tell(oracle, trial, entry)
    return oracle, notes


# --------------------------------------------------------------------------- one trial


def load_search_splits(search: Search, data_dir: Path | None = None):
    """Training and validation data of the search; the test set is dropped before any trial."""
    from keraslab import data

    splits = data.load(search.dataset, data_dir=data_dir, seed=search.spec.seed,
                       val_fraction=search.spec.val_fraction, train_subset=search.spec.train_subset)
    return dataclasses.replace(splits, x_test=splits.x_test[:0], y_test=splits.y_test[:0])


def weights_path(search_dir: Path, trial_id: str) -> Path:
    return Path(search_dir) / WEIGHTS / f"{trial_id}.weights.h5"


def _keeps_weights(values: dict) -> bool:
    """Hyperband may continue this trial in its bracket's next round."""
    return "tuner/round" in values and values["tuner/round"] < values["tuner/bracket"]


def train_trial(search: Search, values: dict, trial_id: str, splits, search_dir: Path,
                callbacks: list = ()) -> tuple[dict[str, list[float]], int]:
    """Build, train and validate one trial: (history, index of the epoch whose weights it keeps).

    The same steps as ``pipeline.train_run`` (fresh session, seed, build, adapt on the training
    split, compile, fit with the same early stopping), without the test set. A Hyperband trial
    that continues another starts from that trial's kept weights and trains the remaining epochs
    (as keras-tuner does: weights only, a fresh optimizer). Writes the weights a later round may
    continue from, and nothing else. Then it releases the trial's graphs (keraslab.memory).
    """
    with memory.release_graphs():
        return _train_trial(search, values, trial_id, splits, search_dir, callbacks)


def _train_trial(search, values, trial_id, splits, search_dir, callbacks):
    import keras

    from keraslab import models, training
    from keraslab.seeding import seed_everything

    epochs = int(values.get("tuner/epochs", search.spec.budget.max_epochs))
    initial = int(values.get("tuner/initial_epoch", 0))
    parent = values.get("tuner/trial_id")
    cfg = search.trial_config(values)
    t = cfg.training

    memory.fresh_session()
    seed_everything(cfg.seed)
    model = models.build(cfg.model, num_classes=len(search.class_names), kind=search.kind, **cfg.model_params)
    if parent is not None:
        source = weights_path(search_dir, parent)
        if not source.is_file():
            raise KeraslabError(f"trial {trial_id} continues trial {parent}, whose weights {source} are missing",
                                "the search folder lost files; start over with --overwrite")
        model.load_weights(source)
    training.adapt_preprocessing(model, splits.x_train)
    training.compile_model(model, t)
    early = None
    if t.early_stopping is not None:  # the callback training.fit would add, kept here to read its best epoch
        es = t.early_stopping
        early = keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience,
                                              restore_best_weights=es.restore_best_weights)
    fit_cfg = t.model_copy(update={"epochs": epochs - initial, "early_stopping": None})
    history = training.fit(model, splits, fit_cfg, seed=cfg.seed, verbose=0,
                           callbacks=[*callbacks, *([early] if early else [])])
    n = len(history.get("loss", []))
    kept = early.best_epoch if (early is not None and early.restore_best_weights) else n - 1
    if _keeps_weights(values):
        path = weights_path(search_dir, trial_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{trial_id}.partial-{os.getpid()}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, path)
    del model
    memory.fresh_session()
    return history, kept


def run_trial(search: Search, trial_values: dict, trial_id: str, number: int, splits, search_dir: Path,
              *, session: int, callbacks: list = ()) -> dict:
    """Train one trial (:func:`train_trial`) and return its ledger entry."""
    started = time.perf_counter()
    values = dict(trial_values)
    initial = int(values.get("tuner/initial_epoch", 0))
    cfg = search.trial_config(values)
    history, kept = train_trial(search, values, trial_id, splits, search_dir, callbacks)
    n = len(history.get("loss", []))
    metrics = {k: float(v[kept]) for k, v in history.items()}
    objective = search.spec.objective
    score = metrics.get(objective)
    series = history.get(objective, [])
    best_seen = (max(series) if search.direction == "max" else min(series)) if series else None
    status = "completed" if score is not None and math.isfinite(score) else "failed"
    weights = str(weights_path(search_dir, trial_id).relative_to(search_dir)) if _keeps_weights(values) else None
    t = cfg.training
    rss, peak = memory.rss_mb()
    return {
        "number": number,
        "trial_id": trial_id,
        "status": status,
        "message": None if status == "completed" else f"{objective} is {score!r}",
        "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
        "values": values,
        "hyperband": ({k.removeprefix("tuner/"): values.get(k) for k in
                       ("tuner/bracket", "tuner/round", "tuner/epochs", "tuner/initial_epoch", "tuner/trial_id")}
                      if "tuner/epochs" in values else None),
        "objective": objective,
        "score": score if status == "completed" else None,
        "best_epoch_score": best_seen,
        "kept_epoch": initial + kept,
        "epochs_run": n,
        "total_epochs": initial + n,
        "metrics": metrics,
        "history": history,
        "seconds": round(time.perf_counter() - started, 3),
        "rss_mb": None if rss is None else round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "weights": weights,
        "config": {"model": cfg.model, "model_params": cfg.model_params,
                   "training": t.model_dump(mode="json", exclude_none=True)},
        "session": session,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- best trial and exports


def best_entry(search: Search, entries: list[dict]) -> dict | None:
    done = [e for e in entries if e["status"] == "completed"]
    if not done:
        return None
    sign = -1 if search.direction == "max" else 1
    return min(done, key=lambda e: (sign * e["score"], e["number"]))


def variant_block(search: Search, entry: dict) -> dict:
    """The best trial as a suite variant: inline layers or a registered model with parameters,
    plus the tuned training settings as overrides."""
    params, tuned = search.space.resolve(entry["values"])
    desc = ", ".join(f"{k}={_short(v)}" for k, v in entry["hyperparameters"].items())
    block: dict = {"description": f"best of search {search.name} (trial {entry['number']}): {desc}"}
    if search.model == INLINE_MODEL:
        block["layers"] = params["layers"]
    else:
        block["model"] = search.model
        block["params"] = params
    if tuned:
        block["training"] = tuned
    return block


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def suite_dict(search: Search, entry: dict, seeds: list[int]) -> dict:
    """A suite file (as data) comparing the best trial with the baseline over `seeds`.

    Both train with the search's fixed training settings for budget.max_epochs epochs (and the
    search's early stopping); the tuned variant overrides what was tuned; the baseline uses its
    registered defaults for those (or the search file's baseline.training).
    """
    training = {**search.fixed_training, "epochs": search.spec.budget.max_epochs}
    baseline: dict = {"model": search.baseline.model,
                      "description": f"{search.baseline.model} at the search's training settings"}
    if search.baseline.params:
        baseline["params"] = search.baseline.params
    if search.baseline.training:
        baseline["training"] = search.baseline.training
    suite = {
        "name": f"{search.name}-best",
        "dataset": search.dataset,
        "description": (f"The best configuration of search {search.name} ({search.spec.algorithm.name}, "
                        f"{search.spec.objective} {entry['score']:.4f} at trial {entry['number']}) "
                        f"against {search.baseline.model}, retrained from scratch over {len(seeds)} seed(s) "
                        "and compared on the test set."),
        "seeds": list(seeds),
    }
    if search.spec.train_subset is not None:
        suite["train_subset"] = search.spec.train_subset
    if search.spec.val_fraction is not None:
        suite["val_fraction"] = search.spec.val_fraction
    suite["training"] = training
    suite["baseline"] = BASELINE_VARIANT
    suite["variants"] = {BASELINE_VARIANT: baseline, TUNED_VARIANT: variant_block(search, entry)}
    return suite


def suite_yaml(search: Search, entry: dict, seeds: list[int], header: str = "") -> str:
    body = yaml.safe_dump(suite_dict(search, entry, seeds), sort_keys=False, default_flow_style=None, width=110)
    return header + body


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_best(search: Search, search_dir: Path, entries: list[dict]) -> dict | None:
    """best.json and best_variant.yaml (a suite file `keraslab run` accepts)."""
    from keraslab import runs

    best = best_entry(search, entries)
    if best is None:
        return None
    search_dir = Path(search_dir)
    path = search_dir / BEST_VARIANT
    header = (
        f"# Best configuration of search {search.name}: trial {best['number']} (id {best['trial_id']}), "
        f"{search.spec.objective} {best['score']:.4f} after {best['total_epochs']} epoch(s).\n"
        f"# Exported by keraslab tune. Run it as a suite (test-set comparison with the baseline):\n"
        f"#   keraslab run {path}\n"
        f"# or paste the `{TUNED_VARIANT}` variant below into another suite on {search.dataset}.\n"
    )
    _atomic_text(path, suite_yaml(search, best, [0, 1, 2], header))
    runs.write_json(search_dir / BEST_JSON, {
        "search": search.name,
        "objective": search.spec.objective,
        "trial": best["number"],
        "trial_id": best["trial_id"],
        "score": best["score"],
        "best_epoch_score": best["best_epoch_score"],
        "total_epochs": best["total_epochs"],
        "hyperparameters": best["hyperparameters"],
        "hyperband": best["hyperband"],
        "config": best["config"],
        "variant": variant_block(search, best),
        "retrain_epochs": search.spec.budget.max_epochs,
        "best_variant_yaml": str(path),
    })
    return best


# --------------------------------------------------------------------------- state on disk


class _Lock:
    """One `keraslab tune` per search directory at a time."""

    def __init__(self, search_dir: Path):
        self.path = Path(search_dir) / LOCK

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise KeraslabError(f"another `keraslab tune` is working in {self.path.parent}",
                                "wait for it to finish, or give this one another --search-dir") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def move_aside(search_dir: Path, names: list[str] | None = None) -> Path | None:
    """Move the search's files (all but superseded/ and the lock) to superseded/<time>/; delete nothing."""
    search_dir = Path(search_dir)
    items = [p for p in search_dir.iterdir() if p.name not in (SUPERSEDED, LOCK)] if search_dir.is_dir() else []
    if names is not None:
        items = [p for p in items if p.name in names]
    if not items:
        return None
    target = search_dir / SUPERSEDED / _stamp()
    n = 1
    while target.exists():
        n += 1
        target = search_dir / SUPERSEDED / f"{_stamp()}-{n}"
    target.mkdir(parents=True)
    for p in items:
        os.rename(p, target / p.name)
    return target


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def prepare_dir(search: Search, search_dir: Path, *, overwrite: bool) -> tuple[dict, Path | None]:
    """Check that SEARCH_DIR holds this search (or nothing), record the session; return (state, moved)."""
    from keraslab import runs

    search_dir = Path(search_dir)
    moved = move_aside(search_dir) if overwrite else None
    state_path = search_dir / STATE
    state = runs.read_json(state_path) if state_path.is_file() else {}
    entries = read_ledger(search_dir)
    if entries and not state.get("definition_hash") and (search_dir / SPEC_COPY).is_file():
        try:  # search.json was lost: the copy of the search file tells what the trials belong to
            old = load(search_dir / SPEC_COPY)
            state.update(definition=old.definition(), definition_hash=old.definition_hash())
        except KeraslabError:
            pass
    if entries and state.get("definition_hash") != search.definition_hash():
        changed = _differences(state.get("definition") or {}, search.definition())
        raise KeraslabError(
            f"{search_dir} holds {len(entries)} finished trial(s) of another version of this search "
            f"(changed: {', '.join(changed[:5]) or 'the search definition'})",
            f"resume with the search file it was started with, or start over with --overwrite "
            f"(the old search is moved to {search_dir / SUPERSEDED}/, nothing is deleted)")
    spec_copy = search_dir / SPEC_COPY
    if spec_copy.exists() and spec_copy.read_text(encoding="utf-8") != search.text:
        move_aside(search_dir, [SPEC_COPY])
    if not spec_copy.exists():
        _atomic_text(spec_copy, search.text)
    state = {
        "search": search.name,
        "file": str(search.file),
        "definition": search.definition(),
        "definition_hash": search.definition_hash(),
        "sessions": int(state.get("sessions", 0)) + 1,
        "started": state.get("started") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "session_started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "stop_reason": None,
        "resumed_from": len(entries),
    }
    runs.write_json(state_path, state)
    return state, moved


# --------------------------------------------------------------------------- progress


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Trial k of N, best so far, elapsed and ETA: rich bars on a terminal, one line per trial in logs.

    The ETA is the planned epochs still to train times this session's seconds per epoch (an upper
    bound when early stopping ends trials sooner), capped by the time budget left.
    """

    def __init__(self, search: Search, entries: list[dict], *, quiet: bool = False, console=None):
        from rich.console import Console

        self.search = search
        self.total_trials, self.total_epochs = planned(search)
        self.entries = entries
        self.quiet = quiet
        self.console = console or Console()
        self.live = (not quiet) and self.console.is_terminal
        self.started = time.perf_counter()
        self.epochs_at_start = self._epochs_done()
        self.epochs_trained = 0  # epochs trained in this session: the rate
        self.epochs_accounted = 0  # planned epochs of this session's trials, early-stopped ones in full
        self._trial_planned = self._trial_trained = 0
        self._bar = None

    def _epochs_done(self) -> int:
        return sum(self.search.spec.budget.max_epochs if e.get("hyperband") is None else
                   e["hyperband"]["epochs"] - e["hyperband"]["initial_epoch"] for e in self.entries)

    def best_text(self) -> str:
        best = best_entry(self.search, self.entries)
        if best is None:
            return "best: none yet"
        return f"best {self.search.spec.objective} {best['score']:.4f} (trial {best['number']})"

    def eta(self) -> float | None:
        if self.epochs_trained <= 0:
            return None
        elapsed = time.perf_counter() - self.started
        left = max(self.total_epochs - self.epochs_at_start - self.epochs_accounted, 0)
        eta = elapsed / self.epochs_trained * left
        budget = self.search.spec.budget.max_minutes
        if budget:
            eta = min(eta, max(budget * 60 - sum(e["seconds"] for e in self.entries), 0))
        return eta

    def info(self) -> str:
        return f"{self.best_text()} · elapsed {_clock(time.perf_counter() - self.started)} · ETA {_clock(self.eta())}"

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), console=self.console)
            self._bar.__enter__()
            self._search = self._bar.add_task("search", total=self.total_trials, completed=len(self.entries),
                                              info=self.info())
            self._trial = self._bar.add_task("trial", total=1, info="", visible=False)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_trial(self, number: int, values: dict) -> list:
        hps = ", ".join(f"{k}={_short(v)}" for k, v in values.items() if not k.startswith("tuner/"))
        epochs = int(values.get("tuner/epochs", self.search.spec.budget.max_epochs)) - int(values.get("tuner/initial_epoch", 0))
        cont = f" (continues trial {int(values['tuner/trial_id']) + 1})" if values.get("tuner/trial_id") is not None else ""
        label = f"trial {number} of {self.total_trials}"
        self._trial_planned, self._trial_trained = epochs, 0
        if self._bar is not None:
            self._bar.update(self._search, description=f"search: {label}", info=self.info())
            self._bar.reset(self._trial, total=1, visible=True, description=f"trial {number}: {hps}{cont}", info="")
            return [_trial_callback(self, epochs)]
        if not self.quiet:
            self.console.print(f"[{label}] {hps}{cont}, up to {epochs} epoch(s) | {self.info()}",
                               highlight=False, markup=False)
        return [_trial_callback(self, epochs)]

    def epoch_done(self) -> None:
        self.epochs_trained += 1
        self.epochs_accounted += 1
        self._trial_trained += 1
        if self._bar is not None:
            self._bar.update(self._search, info=self.info())

    def finish_trial(self, entry: dict) -> None:
        self.epochs_accounted += max(self._trial_planned - self._trial_trained, 0)  # early stopping's savings
        score = "failed" if entry["score"] is None else f"{entry['objective']} {entry['score']:.4f}"
        line = (f"finished trial {entry['number']}: {score} after {entry['total_epochs']} epoch(s) "
                f"({entry['seconds']:.0f} s) | {self.best_text()}")
        if self._bar is not None:
            self._bar.update(self._search, completed=entry["number"], info=self.info())
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            self.console.print(line, highlight=False, markup=False)

    def note(self, text: str) -> None:
        (self._bar.console if self._bar is not None else self.console).print(text, highlight=False, markup=False)


def _trial_callback(progress: Progress, epochs: int):
    import keras

    class TrialBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps = self.params.get("steps") or 1
            if progress._bar is not None:
                progress._bar.reset(progress._trial, total=epochs * self.steps, info="")

        def on_train_batch_end(self, batch, logs=None):
            if progress._bar is not None:
                progress._bar.advance(progress._trial)

        def on_epoch_end(self, epoch, logs=None):
            # Epochs skipped by early stopping still count against the plan: the ETA stays an upper bound.
            progress.epoch_done()
            if progress._bar is not None:
                logs = logs or {}
                short = {"accuracy": "acc", "val_accuracy": "val acc", "val_loss": "val loss"}
                parts = [f"{short[k]} {float(logs[k]):.4f}" for k in short if k in logs]
                progress._bar.update(progress._trial, completed=(epoch + 1) * self.steps, info=" · ".join(parts))

    return TrialBar()


# --------------------------------------------------------------------------- the search


@dataclass
class TuneOutcome:
    search_dir: Path
    entries: list[dict]
    trained: list[dict]
    best: dict | None
    stop_reason: str
    notes: list[str]
    moved: Path | None = None
    report: dict | None = None
    then_run: Any = None  # experiments.RunOutcome
    reproduced: dict | None = None


def _budget_reason(search: Search, entries: list[dict]) -> str | None:
    b = search.spec.budget
    if b.max_trials is not None and len(entries) >= b.max_trials:
        return f"budget.max_trials reached ({len(entries)} trials)"
    spent = sum(e["seconds"] for e in entries)
    if b.max_minutes is not None and spent >= b.max_minutes * 60:
        return f"budget.max_minutes reached ({spent / 60:.1f} minutes of trials)"
    return None


def tune(
    search: Search,
    search_dir: Path | None = None,
    *,
    data_dir: Path | None = None,
    overwrite: bool = False,
    then_run: int | None = None,
    quiet: bool = False,
    console=None,
    report: bool = True,
) -> TuneOutcome:
    """Run (or resume) the search, then write its tables, report and best variant; with
    `then_run`, retrain the best configuration and the baseline over that many seeds and compare."""
    from keras_tuner.src.engine import trial as trial_module
    from rich.console import Console

    from keraslab import runs

    console = console or Console()
    search_dir = Path(search_dir or search.default_dir())
    if then_run is not None and then_run < 1:
        raise KeraslabError(f"--then-run {then_run}: give a number of seeds >= 1")
    check_buildable(search)
    with _Lock(search_dir):
        state, moved = prepare_dir(search, search_dir, overwrite=overwrite)
        entries = read_ledger(search_dir)
        oracle, notes = replay(search, search_dir, entries)
        for w in search.warnings + notes:
            console.print(f"note: {w}", highlight=False, markup=False)
        if entries:
            console.print(f"Resuming {search.name}: {len(entries)} finished trial(s) in {search_dir / LEDGER} "
                          "are kept, not trained again.", highlight=False, markup=False)
        trained: list[dict] = []
        splits = None
        stop_reason = None
        with Progress(search, entries, quiet=quiet, console=console) as progress:
            while stop_reason is None:
                stop_reason = _budget_reason(search, entries)
                if stop_reason:
                    break
                trial = _create(oracle)
                if trial.status != trial_module.TrialStatus.RUNNING:
                    total, _ = planned(search)
                    stop_reason = ("the algorithm's schedule is complete" if len(entries) >= total and
                                   search.spec.algorithm.name == "hyperband" else
                                   "keras-tuner found no new configuration to try (the space is exhausted)")
                    break
                if splits is None:
                    splits = load_search_splits(search, data_dir)
                number = len(entries) + 1
                callbacks = progress.start_trial(number, trial.hyperparameters.values)
                entry = run_trial(search, trial.hyperparameters.values, trial.trial_id, number, splits, search_dir,
                                  session=state["sessions"], callbacks=callbacks)
                entries.append(entry)
                write_ledger(search_dir, entries)  # first the ledger, then the oracle: the ledger is the truth
                trained.append(entry)
                _tell(oracle, trial, json.loads(json.dumps(entry)))
                progress.finish_trial(entry)
                from keraslab import tuning_report

                tuning_report.write_csv(search, search_dir, entries)
        del splits
        state.update({"status": "finished", "stop_reason": stop_reason, "trials": len(entries), "notes": notes,
                      "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        runs.write_json(search_dir / STATE, state)
        best = export_best(search, search_dir, entries)
        outcome = TuneOutcome(search_dir, entries, trained, best, stop_reason, notes, moved)
        if then_run is not None:
            if best is None:
                raise KeraslabError(f"{search_dir}: no trial finished successfully; nothing to retrain",
                                    "see trials.jsonl for the failures")
            outcome.then_run, outcome.reproduced = run_best(search, search_dir, best, then_run, data_dir=data_dir,
                                                            quiet=quiet, console=console)
        if report:
            from keraslab import tuning_report

            outcome.report = tuning_report.write_all(search, search_dir, entries, state,
                                                     then_run=outcome.then_run, reproduced=outcome.reproduced)
    return outcome


def run_best(search: Search, search_dir: Path, best: dict, n_seeds: int, *, data_dir=None, quiet=False, console=None):
    """--then-run: write then_run.yaml (the best trial and the baseline over n seeds) and run it
    with `keraslab run`'s machinery; returns (its RunOutcome, the reproduction check)."""
    from keraslab import experiments

    search_dir = Path(search_dir)
    path = search_dir / THEN_RUN_YAML
    header = (f"# Written by keraslab tune --then-run {n_seeds}: the best trial of {search.name} against the baseline.\n"
              f"#   keraslab run {path} --suite-dir {search_dir / THEN_RUN_DIR}\n")
    _atomic_text(path, suite_yaml(search, best, list(range(n_seeds)), header))
    suite = experiments.load(path)
    outcome = experiments.run(suite, search_dir / THEN_RUN_DIR, data_dir=data_dir, quiet=quiet, console=console)
    return outcome, reproduction_check(search, search_dir, best, suite)


def reproduction_check(search: Search, search_dir: Path, best: dict, suite) -> dict | None:
    """Does the retrained best variant, with the search's seed, repeat the trial epoch for epoch?

    Only meaningful when the trial trained from scratch for budget.max_epochs epochs (every trial
    of random and Bayesian search; Hyperband trials of a bracket's only round) and the search's
    seed is among the suite's seeds.
    """
    from keraslab import experiments, runs

    hb = best.get("hyperband")
    if hb is not None and (hb["initial_epoch"] != 0 or hb["epochs"] != search.spec.budget.max_epochs):
        return {"checked": False, "reason": f"the best trial trained {hb['initial_epoch']} → {hb['epochs']} epochs "
                "in Hyperband's schedule, the retrain trains budget.max_epochs from scratch"}
    run = next((r for r in suite.runs if r.variant == TUNED_VARIANT and r.seed == search.spec.seed), None)
    if run is None:
        return {"checked": False, "reason": f"the search's seed {search.spec.seed} is not among the retrain's seeds"}
    history = runs.Run(experiments.run_dir(Path(search_dir) / THEN_RUN_DIR, run)).history
    key = search.spec.objective
    retrained = history.get(key, [])
    recorded = best["history"].get(key, [])
    same = retrained == recorded
    return {"checked": True, "reproduced": same, "seed": search.spec.seed, "objective": key,
            "trial_history": recorded, "retrained_history": retrained}


# --------------------------------------------------------------------------- dry run


def describe(search: Search, search_dir: Path):
    """What `keraslab tune --dry-run` shows: the space, the schedule, the budget and the folder's state."""
    from rich.console import Group
    from rich.table import Table

    s = search.spec
    space = Table(title=f"Search {search.name} on {search.dataset}: {len(search.space.hps)} hyperparameter(s)")
    for col in ("hyperparameter", "kind", "values", "from"):
        space.add_column(col)
    for hp in search.space.hps.values():
        space.add_row(hp.name, hp.kind, hp.describe(), hp.where)
    parts = [space]
    a = s.algorithm
    if a.name == "hyperband":
        sched = Table(title=f"Hyperband: max_epochs {s.budget.max_epochs}, factor {a.factor or 3}, "
                            f"{a.hyperband_iterations or 1} iteration(s)")
        for col in ("bracket", "round", "trials", "epochs (from → to)"):
            sched.add_column(col, justify="right")
        for r in hyperband_rounds(s.budget.max_epochs, a.factor or 3, a.hyperband_iterations or 1):
            sched.add_row(str(r["bracket"]), str(r["round"]), str(r["trials"]), f"{r['initial_epoch']} → {r['epochs']}")
        parts.append(sched)
    trials, epochs = planned(search)
    n = search.space.cardinality()
    done = read_ledger(search_dir)
    lines = [
        f"algorithm {a.name}, objective {s.objective} ({search.direction}), seed {s.seed}, "
        f"{'all' if s.train_subset is None else s.train_subset} training examples",
        f"plans {trials} trial(s), at most {epochs} epoch(s) of training"
        + (f", at most {s.budget.max_minutes:g} minutes" if s.budget.max_minutes else ""),
        f"distinct configurations: {'infinitely many' if n is None else f'{n:,}'}",
        f"search folder {search_dir}: {len(done)} finished trial(s)",
    ] + [f"note: {w}" for w in search.warnings]
    return Group(*parts, *lines)
