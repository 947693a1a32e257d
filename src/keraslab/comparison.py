"""Did variant V really beat the baseline?  Statistics on repeated-seed predictions.

Everything here works on plain numpy arrays of labels or softmax probabilities,
never on models, and imports no TensorFlow.  Seeds are aligned by position:
seed ``i`` of the baseline is paired with seed ``i`` of the variant, and all
predictions are on the same test set, in the same order, as ``y_true``.

Two sources of noise, two tests
-------------------------------
* **Test-set noise** (would another test sample of the same size agree?):
  the exact McNemar test on the examples where the two models disagree about
  correctness.  ``b`` counts examples the baseline gets right and the variant
  wrong, ``c`` the reverse; under "no difference" each discordant example is a
  fair coin, so p is the two-sided exact binomial p of ``min(b, c)`` out of
  ``b + c``.  ``pooled_mcnemar`` sums ``b`` and ``c`` over seeds and tests the
  sums.  Pooling treats the ``examples x seeds`` pairs as independent, which
  they are not (every seed is scored on the same test examples, and models
  trained with different seeds make correlated mistakes), so the pooled p is
  optimistic, i.e. too small.  That is why it is never used alone.
* **Seed noise** (would another training run agree?): the mean of the
  per-seed accuracy differences ``variant - baseline`` with a Student-t
  interval over seeds (``paired_seed_difference``).

The test-example bootstrap (``bootstrap_difference``) is reported alongside,
for readers who want an interval on the test-set noise in accuracy units.  In
``compare`` it resamples test examples of the *per-seed* predictions (the same
indices for every seed of both arms), so its estimate is exactly the mean
per-seed accuracy difference, the same number as the seed interval's estimate;
it is not the difference of seed-ensembles, which would be a different model.

Verdict rule (the one reports quote)
------------------------------------
With significance level ``alpha`` (default 0.05):

* **"better"** when both hold:

  1. across test examples: the exact McNemar test on the discordant counts
     pooled over seeds gives ``p < alpha`` and the variant fixes more examples
     than it breaks (``c > b``);
  2. across seeds: with 2 or more seeds, the ``1 - alpha`` Student-t interval
     of the per-seed differences lies entirely above 0 (lower bound > 0).
     With a single seed there is no seed-to-seed evidence, condition 2 is
     skipped and McNemar on that one seed (which is then the pooled test)
     decides alone; the reason sentence says "1 seed" so readers can weigh it.

* **"worse"**: the mirror image (``p < alpha`` with ``b > c``, and the seed
  interval's upper bound < 0 when there are 2 or more seeds).
* **"no detectable difference"** otherwise.  This does not mean the models are
  equal, only that these seeds and this test set cannot tell them apart.

``verdict_reason`` turns a ``Comparison`` into one sentence with the numbers,
e.g. ``+0.41 pp (95% CI +0.12 to +0.70 over 3 seeds), McNemar p=0.003 pooled``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from keraslab.errors import KeraslabError

__all__ = [
    "BETTER",
    "WORSE",
    "NO_DIFFERENCE",
    "Comparison",
    "Interval",
    "McNemarResult",
    "bootstrap_difference",
    "compare",
    "ensemble_gain",
    "ensemble_probabilities",
    "mcnemar_exact",
    "paired_seed_difference",
    "pooled_mcnemar",
    "verdict_reason",
]

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"


# --------------------------------------------------------------------------- results


@dataclass
class McNemarResult:
    """Exact McNemar test.

    ``b``: baseline right and variant wrong; ``c``: baseline wrong and variant
    right.  ``statistic`` is ``min(b, c)``, the binomial test statistic;
    ``p_value`` is two-sided (1.0 when there is no discordant example).
    """

    b: int
    c: int
    statistic: float
    p_value: float


@dataclass
class Interval:
    """A point estimate with a two-sided interval at confidence ``level``.

    ``low``/``high`` are ``nan`` when no interval can be computed (one seed).
    """

    estimate: float
    low: float
    high: float
    level: float


@dataclass
class Comparison:
    """Everything a report or summary.json needs for one variant vs the baseline.

    Accuracies are fractions in [0, 1]; differences are ``variant - baseline``.
    ``std_*`` are sample standard deviations over seeds (``ddof=1``; ``nan``
    with one seed).  ``seed_diff`` is the paired-by-seed t interval;
    ``bootstrap_diff`` is the test-example bootstrap of the same mean per-seed
    difference (see the module docstring).  ``per_class_*_delta`` are means
    over seeds of ``variant - baseline``; a class's precision is undefined
    (``nan``) on a seed where a model never predicts it, and such seeds are
    left out of that class's mean (``nan`` if no seed remains).
    """

    variant: str
    baseline: str
    acc_baseline: list[float]
    acc_variant: list[float]
    mean_baseline: float
    std_baseline: float
    mean_variant: float
    std_variant: float
    seed_diff: Interval
    bootstrap_diff: Interval
    mcnemar_per_seed: list[McNemarResult]
    mcnemar_pooled: McNemarResult
    per_class_precision_delta: list[float]
    per_class_recall_delta: list[float]
    verdict: str
    alpha: float
    n_test: int = 0

    @property
    def n_seeds(self) -> int:
        return len(self.acc_baseline)

    def to_dict(self) -> dict:
        """JSON-able dict: numpy scalars become Python numbers, nan/inf become None.

        Adds ``n_seeds`` and ``verdict_reason`` to the dataclass fields.
        """
        data = asdict(self)
        data["n_seeds"] = self.n_seeds
        data["verdict_reason"] = verdict_reason(self)
        return _jsonable(data)


# --------------------------------------------------------------------------- helpers


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def _labels(name: str, values, n: int | None = None) -> np.ndarray:
    """A 1-D integer label array (optionally of length n)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise KeraslabError(
            f"{name} must be a 1-D array of class labels, got shape {arr.shape}",
            "pass labels such as probs.argmax(axis=1), not probabilities",
        )
    if arr.size == 0:
        raise KeraslabError(f"{name} is empty", "the test set needs at least one example")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.number) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise KeraslabError(f"{name} must hold integer class labels", "pass labels such as probs.argmax(axis=1)")
        arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise KeraslabError(
            f"{name} has {arr.shape[0]} predictions but y_true has {n} examples",
            "predictions must be on the same test set, in the same order, as y_true",
        )
    return arr


def _level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise KeraslabError(f"confidence level must be between 0 and 1, got {level}", "use e.g. 0.95")
    return level


def _accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y_true == pred))


def _mcnemar_from_counts(b: int, c: int) -> McNemarResult:
    # The exact McNemar test is the two-sided binomial test of min(b, c) out of
    # b + c at p = 1/2; scipy's binomtest gives the same p-value as
    # statsmodels' mcnemar(exact=True) without importing statsmodels (~1.5 s).
    from scipy.stats import binomtest

    b, c = int(b), int(c)
    if b + c == 0:
        return McNemarResult(b=0, c=0, statistic=0.0, p_value=1.0)
    k = min(b, c)
    p = binomtest(k, b + c, 0.5, alternative="two-sided").pvalue
    return McNemarResult(b=b, c=c, statistic=float(k), p_value=float(min(1.0, p)))


def _nanmean_rows(rows: np.ndarray) -> np.ndarray:
    """Column means ignoring nan, nan for all-nan columns, without warnings."""
    finite = ~np.isnan(rows)
    counts = finite.sum(axis=0)
    sums = np.where(finite, rows, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _precision_recall(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall; nan where undefined (no prediction / no example of the class)."""
    cm = np.bincount(y_true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(actual > 0, tp / np.maximum(actual, 1), np.nan)
    return precision, recall


def _std(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.std(arr, ddof=1)) if arr.size >= 2 else float("nan")


# --------------------------------------------------------------------------- ensembles


def ensemble_probabilities(prob_list: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Average of per-member softmax probabilities, each of shape (n, k).

    ``weights`` (one per member, non-negative, not all zero) are normalized to
    sum to 1; without them every member counts equally.
    """
    if len(prob_list) == 0:
        raise KeraslabError("an ensemble needs at least one member", "pass one probability array per member")
    arrays = [np.asarray(p, dtype=float) for p in prob_list]
    shape = arrays[0].shape
    if len(shape) != 2:
        raise KeraslabError(
            f"member probabilities must have shape (n_examples, n_classes), got {shape}",
            "pass softmax outputs, one row per test example",
        )
    for i, arr in enumerate(arrays):
        if arr.shape != shape:
            raise KeraslabError(
                f"ensemble member {i} has probabilities of shape {arr.shape}, member 0 has {shape}",
                "all members must predict the same test set with the same classes",
            )
        if not np.all(np.isfinite(arr)):
            raise KeraslabError(f"ensemble member {i} has non-finite probabilities", "check that training did not diverge")
    stacked = np.stack(arrays)
    if weights is None:
        return stacked.mean(axis=0)
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.shape[0] != len(arrays):
        raise KeraslabError(
            f"got {w.size} ensemble weights for {len(arrays)} members",
            "give exactly one weight per member",
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise KeraslabError(f"ensemble weights must be finite and non-negative, got {w.tolist()}", "use weights >= 0")
    total = w.sum()
    if total <= 0:
        raise KeraslabError("ensemble weights sum to zero", "give at least one member a positive weight")
    return np.tensordot(w / total, stacked, axes=1)


def ensemble_gain(y_true, member_probs: dict[str, list[np.ndarray]], ensemble_probs: list[np.ndarray]) -> dict:
    """Accuracy gain of an ensemble over its best member, per seed and on average.

    ``member_probs[name][i]`` and ``ensemble_probs[i]`` are test probabilities
    for seed ``i``.  On each seed the ensemble is compared with whichever
    member is most accurate *on that seed* (conservative: the ensemble has to
    beat the luckiest member).  Returns a JSON-able dict::

        {"ensemble_acc": [...], "member_acc": {name: [...]},
         "best_member": [name per seed], "best_member_acc": [...],
         "gain": [...], "mean_gain": float}
    """
    y = _labels("y_true", y_true)
    if not member_probs:
        raise KeraslabError("ensemble_gain needs at least one member", "pass {member name: per-seed probabilities}")
    n_seeds = len(ensemble_probs)
    if n_seeds == 0:
        raise KeraslabError("ensemble_gain needs at least one seed", "pass one probability array per seed")
    for name, probs in member_probs.items():
        if len(probs) != n_seeds:
            raise KeraslabError(
                f"member {name!r} has {len(probs)} seeds but the ensemble has {n_seeds}",
                "seeds are paired by position; give every member the same seeds",
            )

    def acc(name: str, probs) -> float:
        p = np.asarray(probs)
        if p.ndim != 2 or p.shape[0] != y.shape[0]:
            raise KeraslabError(
                f"{name} probabilities have shape {p.shape}, expected ({y.shape[0]}, n_classes)",
                "predictions must be on the same test set as y_true",
            )
        return _accuracy(y, p.argmax(axis=1))

    member_acc = {name: [acc(f"member {name!r}", p) for p in probs] for name, probs in member_probs.items()}
    ensemble_acc = [acc("ensemble", p) for p in ensemble_probs]
    best_member, best_acc, gain = [], [], []
    for i in range(n_seeds):
        name = max(member_acc, key=lambda m: member_acc[m][i])
        best_member.append(name)
        best_acc.append(member_acc[name][i])
        gain.append(ensemble_acc[i] - member_acc[name][i])
    return _jsonable(
        {
            "ensemble_acc": ensemble_acc,
            "member_acc": member_acc,
            "best_member": best_member,
            "best_member_acc": best_acc,
            "gain": gain,
            "mean_gain": float(np.mean(gain)),
        }
    )


# --------------------------------------------------------------------------- tests


def mcnemar_exact(y_true, pred_a, pred_b) -> McNemarResult:
    """Exact McNemar test between two label predictions on the same test set.

    ``pred_a`` is the baseline, ``pred_b`` the variant: ``b`` counts examples
    only the baseline gets right, ``c`` examples only the variant gets right.
    """
    y = _labels("y_true", y_true)
    a = _labels("pred_a", pred_a, y.shape[0])
    v = _labels("pred_b", pred_b, y.shape[0])
    right_a, right_b = a == y, v == y
    return _mcnemar_from_counts(np.sum(right_a & ~right_b), np.sum(~right_a & right_b))


def pooled_mcnemar(y_true, preds_a: list, preds_b: list) -> McNemarResult:
    """Exact McNemar test on discordant counts summed over seeds.

    Seed ``i`` of A is paired with seed ``i`` of B.  Pooling treats the
    ``examples x seeds`` pairs as independent; they are not (same test
    examples every seed), so the p-value is optimistic.  Use it together with
    the seed-level interval, as ``compare`` does.
    """
    if len(preds_a) != len(preds_b):
        raise KeraslabError(
            f"baseline has {len(preds_a)} seeds but variant has {len(preds_b)}",
            "seeds are paired by position; run both with the same seeds",
        )
    if len(preds_a) == 0:
        raise KeraslabError("no seeds to compare", "pass one prediction array per seed")
    per_seed = [mcnemar_exact(y_true, a, v) for a, v in zip(preds_a, preds_b)]
    return _mcnemar_from_counts(sum(r.b for r in per_seed), sum(r.c for r in per_seed))


def paired_seed_difference(acc_a: Sequence[float], acc_b: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of per-seed differences ``acc_b - acc_a`` with a Student-t interval.

    With ``s >= 2`` seeds: ``mean +/- t_{(1+level)/2, s-1} * sd / sqrt(s)``
    (``sd`` with ``ddof=1``; zero width when every seed differs by the same
    amount).  With one seed the spread across seeds is unknown, so ``low`` and
    ``high`` are ``nan`` (``None`` in JSON) and only the estimate is given.
    """
    level = _level(level)
    a = np.asarray(acc_a, dtype=float)
    b = np.asarray(acc_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise KeraslabError(
            f"got {a.size} baseline and {b.size} variant accuracies",
            "seeds are paired by position; give one accuracy per seed for both",
        )
    if a.size == 0:
        raise KeraslabError("no seeds to compare", "give at least one accuracy per model")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise KeraslabError("accuracies must be finite numbers", "check the per-seed results")
    diffs = b - a
    mean = float(diffs.mean())
    if diffs.size < 2:
        return Interval(estimate=mean, low=float("nan"), high=float("nan"), level=level)
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, df=diffs.size - 1)) * float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return Interval(estimate=mean, low=mean - half, high=mean + half, level=level)


def bootstrap_difference(y_true, pred_a, pred_b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap over test examples of ``accuracy(b) - accuracy(a)``.

    ``pred_a``/``pred_b`` are label arrays of shape ``(n,)``, or ``(n_seeds, n)``
    for several seeds; then the statistic is the mean over seeds of the
    accuracy difference, and every resample uses the same example indices for
    all seeds of both models.

    Resampling ``n`` examples with replacement and summing each example's
    difference in correctness ``d_i`` is the same, in distribution, as drawing
    multinomial counts over the few distinct values ``d`` can take (3 for one
    seed).  That is how it is computed: exact, not an approximation, and
    independent of ``n`` in cost, so 2000 resamples of 10,000 examples take
    milliseconds.  Deterministic for a given ``seed``.
    """
    level = _level(level)
    n_boot = int(n_boot)
    if n_boot < 1:
        raise KeraslabError(f"n_boot must be at least 1, got {n_boot}", "use e.g. 2000 resamples")
    y = _labels("y_true", y_true)
    a = np.asarray(pred_a)
    v = np.asarray(pred_b)
    if a.shape != v.shape:
        raise KeraslabError(
            f"baseline predictions have shape {a.shape}, variant {v.shape}",
            "both need one label per test example (and the same number of seeds)",
        )
    if a.ndim == 1:
        a, v = a[None, :], v[None, :]
    if a.ndim != 2 or a.shape[0] == 0:
        raise KeraslabError(
            f"predictions must have shape (n,) or (n_seeds, n), got {np.asarray(pred_a).shape}",
            "pass labels such as probs.argmax(axis=1)",
        )
    for i in range(a.shape[0]):
        _labels("pred_a", a[i], y.shape[0])
        _labels("pred_b", v[i], y.shape[0])
    n_seeds, n = a.shape
    # Integer per-example score: (#seeds variant right) - (#seeds baseline right), in [-n_seeds, n_seeds].
    score = (v == y).sum(axis=0).astype(np.int64) - (a == y).sum(axis=0).astype(np.int64)
    estimate = float(score.sum()) / (n * n_seeds)
    values, counts = np.unique(score, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_boot)  # (n_boot, n_distinct)
    boot = (draws @ values) / (n * n_seeds)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high), level=level)


# --------------------------------------------------------------------------- compare


def _decide(seed_diff: Interval, pooled: McNemarResult, n_seeds: int, alpha: float) -> str:
    if pooled.p_value >= alpha or pooled.b == pooled.c:
        return NO_DIFFERENCE
    up = pooled.c > pooled.b
    if n_seeds >= 2:
        if up and not seed_diff.low > 0:
            return NO_DIFFERENCE
        if not up and not seed_diff.high < 0:
            return NO_DIFFERENCE
    return BETTER if up else WORSE


def compare(
    y_true,
    probs_baseline: list[np.ndarray],
    probs_variant: list[np.ndarray],
    *,
    variant: str,
    baseline: str,
    n_classes: int,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare a variant with the baseline from per-seed test probabilities.

    ``probs_*[i]`` has shape ``(n_test, n_classes)`` and is seed ``i``; seeds
    are paired by position.  Intervals are at level ``1 - alpha``; the verdict
    follows the rule in the module docstring.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise KeraslabError(f"alpha must be between 0 and 1, got {alpha}", "use e.g. 0.05")
    n_classes = int(n_classes)
    if n_classes < 2:
        raise KeraslabError(f"n_classes must be at least 2, got {n_classes}", "a classifier needs two or more classes")
    y = _labels("y_true", y_true)
    if y.min() < 0 or y.max() >= n_classes:
        raise KeraslabError(
            f"y_true holds labels outside 0..{n_classes - 1}",
            "labels must be integers 0..n_classes-1; check n_classes",
        )
    if len(probs_baseline) != len(probs_variant):
        raise KeraslabError(
            f"{baseline!r} has {len(probs_baseline)} seeds but {variant!r} has {len(probs_variant)}",
            "seeds are paired by position; run both with the same seeds",
        )
    if len(probs_baseline) == 0:
        raise KeraslabError("no seeds to compare", "pass one probability array per seed")

    def preds(name: str, probs_list) -> np.ndarray:
        out = []
        for i, p in enumerate(probs_list):
            p = np.asarray(p)
            if p.shape != (y.shape[0], n_classes):
                raise KeraslabError(
                    f"{name!r} seed {i} has probabilities of shape {p.shape}, expected ({y.shape[0]}, {n_classes})",
                    "pass test-set softmax outputs, one row per example of y_true",
                )
            out.append(p.argmax(axis=1))
        return np.stack(out)

    pa = preds(baseline, probs_baseline)
    pv = preds(variant, probs_variant)
    n_seeds = pa.shape[0]
    level = 1.0 - alpha

    acc_a = [_accuracy(y, p) for p in pa]
    acc_v = [_accuracy(y, p) for p in pv]
    per_seed = [mcnemar_exact(y, a, v) for a, v in zip(pa, pv)]
    pooled = _mcnemar_from_counts(sum(r.b for r in per_seed), sum(r.c for r in per_seed))
    seed_diff = paired_seed_difference(acc_a, acc_v, level=level)
    boot = bootstrap_difference(y, pa, pv, n_boot=n_boot, level=level, seed=seed)

    prec_d, rec_d = [], []
    for a, v in zip(pa, pv):
        prec_a, rec_a = _precision_recall(y, a, n_classes)
        prec_v, rec_v = _precision_recall(y, v, n_classes)
        prec_d.append(prec_v - prec_a)
        rec_d.append(rec_v - rec_a)

    return Comparison(
        variant=variant,
        baseline=baseline,
        acc_baseline=acc_a,
        acc_variant=acc_v,
        mean_baseline=float(np.mean(acc_a)),
        std_baseline=_std(acc_a),
        mean_variant=float(np.mean(acc_v)),
        std_variant=_std(acc_v),
        seed_diff=seed_diff,
        bootstrap_diff=boot,
        mcnemar_per_seed=per_seed,
        mcnemar_pooled=pooled,
        per_class_precision_delta=[float(x) for x in _nanmean_rows(np.array(prec_d))],
        per_class_recall_delta=[float(x) for x in _nanmean_rows(np.array(rec_d))],
        verdict=_decide(seed_diff, pooled, n_seeds, alpha),
        alpha=alpha,
        n_test=int(y.shape[0]),
    )


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict_reason(cmp: Comparison) -> str:
    """One sentence with the numbers behind ``cmp.verdict``, for reports.

    E.g. ``+0.41 pp (95% CI +0.12 to +0.70 over 3 seeds), McNemar p=0.003 pooled``;
    for "no detectable difference" a short clause says which condition failed.
    """
    sd = cmp.seed_diff
    pct = f"{100 * sd.level:.0f}%"
    n = cmp.n_seeds
    if n >= 2:
        text = f"{_pp(sd.estimate)} pp ({pct} CI {_pp(sd.low)} to {_pp(sd.high)} over {n} seeds), McNemar {_p(cmp.mcnemar_pooled.p_value)} pooled"
    else:
        bd = cmp.bootstrap_diff
        text = f"{_pp(sd.estimate)} pp (1 seed; test-set bootstrap {pct} CI {_pp(bd.low)} to {_pp(bd.high)}), McNemar {_p(cmp.mcnemar_pooled.p_value)}"
    if cmp.verdict == NO_DIFFERENCE:
        pooled = cmp.mcnemar_pooled
        if pooled.p_value >= cmp.alpha or pooled.b == pooled.c:
            text += f": not significant across test examples (alpha={cmp.alpha:g})"
        else:
            text += ": significant across test examples but not consistent across seeds (seed interval includes 0)"
    return text
