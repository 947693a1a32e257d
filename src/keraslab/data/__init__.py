"""Datasets as fixed, verified train/val/test splits: the first stage of every run.

`load(name)` finds the data (see `keraslab.data.sources` for the search order and caches),
proves it is the real dataset, and cuts a validation set out of the *training* data with a
seeded permutation, so two runs with the same seed see exactly the same examples and the test
set is never used for any choice. Arrays handed out are fresh copies: a caller that normalises
or augments in place cannot corrupt the in-process cache or another run's data.

    >>> from keraslab.data import load
    >>> s = load("fashion-mnist", seed=0)
    >>> s.x_train.shape, s.x_val.shape, s.x_test.shape
    ((54000, 28, 28), (6000, 28, 28), (10000, 28, 28))
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from keraslab.errors import KeraslabError

from . import fashion_mnist, imdb, sources
from .sources import DataWarning, cache_dir

__all__ = [
    "DATASETS",
    "DataWarning",
    "DatasetInfo",
    "Splits",
    "cache_dir",
    "canonical_name",
    "describe",
    "load",
    "load_imdb_unsupervised",
    "split_indices",
    "verify",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before loading it (for configs, CLIs and model builders)."""

    name: str
    kind: str  # "image" or "text"
    class_names: tuple[str, ...]
    val_fraction: float  # default share of the training set held out for validation
    description: str
    train_size: int
    test_size: int
    input_shape: tuple[int, ...]  # per example: (28, 28) for images, () for one text
    aliases: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        kind="image",
        class_names=fashion_mnist.CLASS_NAMES,
        val_fraction=0.1,
        description="Zalando's 28x28 grayscale clothing images, 10 classes; float32 in [0, 1]",
        train_size=60000,
        test_size=10000,
        input_shape=(28, 28),
        aliases=("fashion-mnist",),
    ),
    "imdb_reviews": DatasetInfo(
        name="imdb_reviews",
        kind="text",
        class_names=imdb.CLASS_NAMES,
        val_fraction=0.2,
        description="IMDB movie reviews (aclImdb v1), raw text with HTML, negative/positive",
        train_size=25000,
        test_size=25000,
        input_shape=(),
        aliases=("imdb", "imdb-reviews"),
    ),
}

_ALIASES = {alias: info.name for info in DATASETS.values() for alias in (info.name, *info.aliases)}


@dataclass(frozen=True, eq=False)  # eq=False: arrays make field-wise == meaningless
class Splits:
    """One dataset cut into train/val/test, with enough provenance to report where it came from."""

    name: str
    kind: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    val_fraction: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def counts(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"Splits(name={self.name!r}, kind={self.kind!r}, train={c['train']}, val={c['val']}, "
            f"test={c['test']}, val_fraction={self.val_fraction}, source={self.source!r})"
        )


def canonical_name(name: str) -> str:
    """The one spelling used in configs and run directories, whatever the user typed."""
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if key.replace("-", "_") in _ALIASES:
        return _ALIASES[key.replace("-", "_")]
    valid = ", ".join(f"{info.name} (also {', '.join(info.aliases)})" for info in DATASETS.values())
    raise KeraslabError(f"unknown dataset {name!r}; valid names: {valid}", "check the spelling")


def _check_subset(label: str, value, available: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise KeraslabError(f"{label} must be a positive whole number, got {value!r}")
    if value > available:
        raise KeraslabError(
            f"{label}={value} asks for more examples than the {available} available",
            f"use at most {available}, or leave {label} unset for all",
        )
    return int(value)


def split_indices(
    n_train: int,
    n_test: int,
    *,
    seed: int,
    val_fraction: float,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices; exposed so the split can be reproduced without the data.

    The validation set is the first round(n_train * val_fraction) entries of
    `np.random.default_rng(seed).permutation(n_train)`; train is the rest. Every split keeps the
    files' order, so with val_fraction=0 keraslab feeds `model.fit` exactly the arrays plain Keras
    would, and reproduces its numbers bit for bit (training shuffles every epoch anyway; IMDB's
    files are all negatives, then all positives, so no caller may rely on order). Subsets draw
    from their own streams (`default_rng([seed, 1])` for train, `[seed, 2]` for test) so asking
    for a subset never moves the validation split.
    """
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise KeraslabError(f"seed must be a whole number, got {seed!r}")
    if not isinstance(val_fraction, numbers.Real) or not 0 <= float(val_fraction) < 1:
        raise KeraslabError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    perm = np.random.default_rng(int(seed)).permutation(n_train)
    n_val = int(round(n_train * float(val_fraction)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    k = _check_subset("train_subset", train_subset, len(train_idx))
    if k is not None:
        train_idx = np.sort(np.random.default_rng([int(seed), 1]).choice(train_idx, size=k, replace=False))
    test_idx = np.arange(n_test)
    k = _check_subset("test_subset", test_subset, n_test)
    if k is not None:
        test_idx = np.sort(
            np.random.default_rng([int(seed), 2]).choice(n_test, size=k, replace=False)
        )
    return train_idx, val_idx, test_idx


def _images(raw: np.ndarray, idx: np.ndarray) -> np.ndarray:
    x = raw[idx].astype(np.float32)  # fancy indexing copies: the cached uint8 stays untouched
    x /= np.float32(255.0)
    return x


def load(
    name: str,
    *,
    data_dir=None,
    seed: int = 0,
    val_fraction: float | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    offline: bool | None = None,
) -> Splits:
    """Find, verify and split a dataset; repeated calls in one process reuse the parsed files.

    `offline=None` follows env KERASLAB_OFFLINE; `True` never downloads.
    """
    splits, _, _ = _load(
        name,
        data_dir=data_dir,
        seed=seed,
        val_fraction=val_fraction,
        train_subset=train_subset,
        test_subset=test_subset,
        offline=offline,
    )
    return splits


def _load(name, *, data_dir, seed, val_fraction, train_subset, test_subset, offline):
    info = DATASETS[canonical_name(name)]
    vf = info.val_fraction if val_fraction is None else val_fraction
    extra: dict = {}
    if info.name == "fashion_mnist":
        raw, source, search = fashion_mnist.find(data_dir, offline=offline)
        tr, va, te = split_indices(
            len(raw.y_train),
            len(raw.y_test),
            seed=seed,
            val_fraction=vf,
            train_subset=train_subset,
            test_subset=test_subset,
        )
        x_train, y_train = _images(raw.x_train, tr), raw.y_train[tr].astype(np.int64)
        x_val, y_val = _images(raw.x_train, va), raw.y_train[va].astype(np.int64)
        x_test, y_test = _images(raw.x_test, te), raw.y_test[te].astype(np.int64)
        extra["folder"] = str(raw.folder)
    else:
        found, search = imdb.find(data_dir, offline=offline)
        xtr, ytr, xte, yte = imdb.labeled(found)
        source = found.source
        tr, va, te = split_indices(
            len(ytr),
            len(yte),
            seed=seed,
            val_fraction=vf,
            train_subset=train_subset,
            test_subset=test_subset,
        )
        x_train, y_train, x_val, y_val = xtr[tr], ytr[tr], xtr[va], ytr[va]
        x_test, y_test = xte[te], yte[te]
        extra["tree"] = str(found.tree)
        extra["unpacked_to"] = str(found.extracted_to) if found.extracted_to else None
    splits = Splits(
        name=info.name,
        kind=info.kind,
        class_names=list(info.class_names),
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        source=source,
        val_fraction=float(vf),
    )
    return splits, search, extra


def _class_counts(y: np.ndarray, class_names) -> dict[str, int]:
    counts = (
        np.bincount(y, minlength=len(class_names)) if len(y) else np.zeros(len(class_names), int)
    )
    return {c: int(n) for c, n in zip(class_names, counts, strict=True)}


def describe(name: str, data_dir=None, *, offline: bool | None = None) -> dict:
    """A JSON-able account of the data load() gives by default, and of every place looked at."""
    info = DATASETS[canonical_name(name)]
    splits, search, extra = _load(
        info.name,
        data_dir=data_dir,
        seed=0,
        val_fraction=None,
        train_subset=None,
        test_subset=None,
        offline=offline,
    )
    return {
        "name": info.name,
        "kind": info.kind,
        "description": info.description,
        "class_names": list(info.class_names),
        "input_shape": list(splits.input_shape),
        "val_fraction": splits.val_fraction,
        "seed": 0,
        "counts": splits.counts(),
        "class_counts": {
            split: _class_counts(y, info.class_names)
            for split, y in (
                ("train", splits.y_train),
                ("val", splits.y_val),
                ("test", splits.y_test),
            )
        },
        "source": splits.source,
        "cache_dir": str(sources.cache_dir()),
        "looked_at": [a.to_dict() for a in search.attempts],
        **extra,
    }


def verify(name: str, data_dir=None, *, offline: bool | None = None) -> dict:
    """Check the data load() would use, in full, ignoring in-process caches; raise if it is bad."""
    info = DATASETS[canonical_name(name)]
    if info.name == "fashion_mnist":
        return fashion_mnist.verify(data_dir, offline=offline)
    return imdb.verify(data_dir, offline=offline)


def load_imdb_unsupervised(data_dir=None, *, offline: bool | None = None) -> np.ndarray:
    """The 50,000 unlabelled train/unsup reviews (for pretraining a vectorizer, say).

    Kept apart from `Splits` on purpose: these texts have no label and must never leak into
    a labelled split.
    """
    found, _ = imdb.find(data_dir, offline=offline, unsup=True)
    return imdb.group_texts(found, "train/unsup").copy()
