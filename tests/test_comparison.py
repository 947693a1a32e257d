"""Statistics of keraslab.comparison against hand-computed cases."""

import json
import math
import time

import numpy as np
import pytest

from keraslab.comparison import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    Interval,
    McNemarResult,
    bootstrap_difference,
    compare,
    ensemble_gain,
    ensemble_probabilities,
    mcnemar_exact,
    paired_seed_difference,
    pooled_mcnemar,
    verdict_reason,
)
from keraslab.errors import KeraslabError


# ------------------------------------------------------------------ builders


def preds_with_counts(both_right: int, b: int, c: int, both_wrong: int, k: int = 2):
    """y_true, baseline and variant labels with exactly these concordance counts."""
    n = both_right + b + c + both_wrong
    y = np.zeros(n, dtype=int)
    wrong = 1 % k
    a = np.concatenate([np.zeros(both_right), np.zeros(b), np.full(c, wrong), np.full(both_wrong, wrong)]).astype(int)
    v = np.concatenate([np.zeros(both_right), np.full(b, wrong), np.zeros(c), np.full(both_wrong, wrong)]).astype(int)
    return y, a, v


def one_hot_probs(pred: np.ndarray, k: int) -> np.ndarray:
    p = np.full((pred.size, k), 0.1 / (k - 1))
    p[np.arange(pred.size), pred] = 0.9
    return p


def noisy_probs(y: np.ndarray, acc: float, k: int, rng) -> np.ndarray:
    """Probabilities whose argmax is right on round(acc*n) random examples, wrong elsewhere."""
    n = y.size
    pred = y.copy()
    wrong = rng.choice(n, size=n - round(acc * n), replace=False)
    pred[wrong] = (y[wrong] + rng.integers(1, k, size=wrong.size)) % k
    return one_hot_probs(pred, k)


# ------------------------------------------------------------------ McNemar


def test_mcnemar_known_discordant_counts():
    y, a, v = preds_with_counts(50, 10, 2, 8)
    r = mcnemar_exact(y, a, v)
    assert (r.b, r.c) == (10, 2)
    # 2 * P(X <= 2 | n=12, p=.5) = 2 * (1 + 12 + 66) / 4096
    assert r.p_value == pytest.approx(2 * 79 / 4096)
    assert r.p_value == pytest.approx(0.0386, abs=1e-4)
    assert r.statistic == 2


def test_mcnemar_is_symmetric_in_direction():
    y, a, v = preds_with_counts(50, 2, 10, 8)
    r = mcnemar_exact(y, a, v)
    assert (r.b, r.c) == (2, 10)
    assert r.p_value == pytest.approx(2 * 79 / 4096)


def test_mcnemar_equal_discordance_p_is_one():
    y, a, v = preds_with_counts(20, 7, 7, 3)
    r = mcnemar_exact(y, a, v)
    assert (r.b, r.c) == (7, 7)
    assert r.p_value == pytest.approx(1.0)


def test_mcnemar_no_discordance_p_is_one():
    y, a, _ = preds_with_counts(20, 0, 0, 5)
    r = mcnemar_exact(y, a, a)
    assert r == McNemarResult(b=0, c=0, statistic=0.0, p_value=1.0)


def test_mcnemar_multiclass_counts_correctness_not_agreement():
    # Both wrong with different wrong labels is concordant (both wrong).
    y = np.array([0, 1, 2, 2, 1])
    a = np.array([0, 2, 0, 2, 1])  # right, wrong, wrong, right, right
    v = np.array([1, 1, 1, 2, 0])  # wrong, right, wrong, right, wrong
    r = mcnemar_exact(y, a, v)
    assert (r.b, r.c) == (2, 1)


def test_mcnemar_rejects_bad_inputs():
    y = np.array([0, 1, 1])
    with pytest.raises(KeraslabError, match="same test set|3 examples"):
        mcnemar_exact(y, [0, 1], [0, 1])
    with pytest.raises(KeraslabError, match="1-D"):
        mcnemar_exact(y, np.eye(3), [0, 1, 1])


def test_pooled_mcnemar_sums_per_seed_counts():
    seeds = [(40, 5, 1, 4), (38, 3, 2, 7), (45, 4, 0, 1)]
    built = [preds_with_counts(*s) for s in seeds]
    # Same y_true for every seed: all test sets here are 50 zeros.
    y = built[0][0]
    r = pooled_mcnemar(y, [a for _, a, _ in built], [v for _, _, v in built])
    assert (r.b, r.c) == (12, 3)
    assert r.p_value == pytest.approx(mcnemar_exact(*preds_with_counts(0, 12, 3, 0)).p_value)
    with pytest.raises(KeraslabError, match="seeds"):
        pooled_mcnemar(y, [built[0][1]], [])


# ------------------------------------------------------------------ seed interval


def test_paired_seed_difference_hand_computed_t_interval():
    iv = paired_seed_difference([0.80, 0.80, 0.80], [0.81, 0.82, 0.83])
    # diffs 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t_{0.975,2} = 4.302653
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert half == pytest.approx(0.02484, abs=1e-5)
    assert iv.estimate == pytest.approx(0.02)
    assert iv.low == pytest.approx(0.02 - half, abs=1e-6)
    assert iv.high == pytest.approx(0.02 + half, abs=1e-6)
    assert iv.level == 0.95


def test_paired_seed_difference_one_seed_has_nan_bounds():
    iv = paired_seed_difference([0.8], [0.9])
    assert iv.estimate == pytest.approx(0.1)
    assert math.isnan(iv.low) and math.isnan(iv.high)


def test_paired_seed_difference_constant_diffs_zero_width():
    iv = paired_seed_difference([0.5, 0.6], [0.55, 0.65])
    assert iv.low == pytest.approx(0.05) and iv.high == pytest.approx(0.05)


def test_paired_seed_difference_rejects_mismatch():
    with pytest.raises(KeraslabError, match="2 baseline and 1 variant"):
        paired_seed_difference([0.8, 0.9], [0.8])
    with pytest.raises(KeraslabError, match="level"):
        paired_seed_difference([0.8], [0.9], level=95)


# ------------------------------------------------------------------ bootstrap


def two_percent_case():
    # 10,000 examples; A right on 8,000, B right on 8,200 (300 only A, 500 only B).
    return preds_with_counts(7700, 300, 500, 1500, k=3)


def test_bootstrap_covers_known_difference_and_is_narrow():
    y, a, v = two_percent_case()
    iv = bootstrap_difference(y, a, v, n_boot=2000, seed=0)
    assert iv.estimate == pytest.approx(0.02)
    assert iv.low < 0.02 < iv.high
    # sd of per-example difference = sqrt(0.08 - 0.02**2) ~ 0.282 -> se ~ 0.0028 -> 95% half-width ~ 0.0055
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * math.sqrt((0.08 - 0.0004) / 10_000), rel=0.15)
    assert iv.low > 0


def test_bootstrap_is_deterministic_for_a_seed():
    y, a, v = two_percent_case()
    assert bootstrap_difference(y, a, v, seed=7) == bootstrap_difference(y, a, v, seed=7)
    assert bootstrap_difference(y, a, v, seed=7) != bootstrap_difference(y, a, v, seed=8)


def test_bootstrap_is_fast():
    y, a, v = two_percent_case()
    start = time.perf_counter()
    bootstrap_difference(y, a, v, n_boot=2000)
    assert time.perf_counter() - start < 1.0


def test_bootstrap_matches_naive_index_resampling():
    rng = np.random.default_rng(3)
    n, k = 400, 4
    y = rng.integers(0, k, size=n)
    pa = np.stack([noisy_probs(y, 0.7, k, rng).argmax(1) for _ in range(2)])
    pv = np.stack([noisy_probs(y, 0.75, k, rng).argmax(1) for _ in range(2)])
    iv = bootstrap_difference(y, pa, pv, n_boot=8000, seed=1)
    idx = np.random.default_rng(2).integers(0, n, size=(8000, n))
    naive = ((pv[:, idx] == y[idx]).mean(axis=(0, 2)) - (pa[:, idx] == y[idx]).mean(axis=(0, 2)))
    lo, hi = np.quantile(naive, [0.025, 0.975])
    expected = (pv == y).mean() - (pa == y).mean()
    assert iv.estimate == pytest.approx(expected)
    assert iv.low == pytest.approx(lo, abs=0.004)
    assert iv.high == pytest.approx(hi, abs=0.004)


def test_bootstrap_rejects_mismatched_shapes():
    y, a, v = two_percent_case()
    with pytest.raises(KeraslabError):
        bootstrap_difference(y, a, v[:-1])
    with pytest.raises(KeraslabError, match="n_boot"):
        bootstrap_difference(y, a, v, n_boot=0)


# ------------------------------------------------------------------ ensembles


def test_ensemble_probabilities_plain_average():
    p1 = np.array([[0.9, 0.1], [0.2, 0.8]])
    p2 = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(ensemble_probabilities([p1, p2]), [[0.7, 0.3], [0.4, 0.6]])


def test_ensemble_probabilities_weights_are_normalized():
    p1 = np.array([[1.0, 0.0]])
    p2 = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(ensemble_probabilities([p1, p2], weights=[3, 1]), [[0.75, 0.25]])
    np.testing.assert_allclose(ensemble_probabilities([p1, p2], weights=[0, 2]), [[0.0, 1.0]])


@pytest.mark.parametrize(
    "weights, match",
    [([1.0, -0.5], "non-negative"), ([0.0, 0.0], "zero"), ([1.0], "1 ensemble weights for 2 members"), ([1, float("nan")], "finite")],
)
def test_ensemble_probabilities_bad_weights(weights, match):
    p = np.array([[0.5, 0.5]])
    with pytest.raises(KeraslabError, match=match):
        ensemble_probabilities([p, p], weights=weights)


def test_ensemble_probabilities_bad_shapes():
    with pytest.raises(KeraslabError, match="shape"):
        ensemble_probabilities([np.ones((3, 2)) / 2, np.ones((3, 3)) / 3])
    with pytest.raises(KeraslabError, match="at least one"):
        ensemble_probabilities([])
    with pytest.raises(KeraslabError, match="n_examples, n_classes"):
        ensemble_probabilities([np.ones(3)])


def test_ensemble_gain_over_best_member_per_seed():
    y = np.array([0, 1, 0, 1])
    m1 = [one_hot_probs(np.array([0, 1, 1, 0]), 2), one_hot_probs(np.array([0, 1, 0, 0]), 2)]  # 0.50, 0.75
    m2 = [one_hot_probs(np.array([0, 0, 0, 0]), 2), one_hot_probs(np.array([1, 0, 0, 0]), 2)]  # 0.50, 0.25
    ens = [one_hot_probs(np.array([0, 1, 0, 0]), 2), one_hot_probs(np.array([0, 1, 0, 1]), 2)]  # 0.75, 1.00
    out = ensemble_gain(y, {"m1": m1, "m2": m2}, ens)
    assert out["ensemble_acc"] == [0.75, 1.0]
    assert out["member_acc"] == {"m1": [0.5, 0.75], "m2": [0.5, 0.25]}
    assert out["best_member"] == ["m1", "m1"]
    assert out["gain"] == [0.25, 0.25]
    assert out["mean_gain"] == pytest.approx(0.25)
    json.dumps(out)
    with pytest.raises(KeraslabError, match="seeds"):
        ensemble_gain(y, {"m1": m1[:1]}, ens)


# ------------------------------------------------------------------ compare


def synthetic(acc_base: float, acc_var: float, n_seeds: int = 3, n: int = 2000, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    base = [noisy_probs(y, acc_base, k, rng) for _ in range(n_seeds)]
    var = [noisy_probs(y, acc_var, k, rng) for _ in range(n_seeds)]
    return y, base, var, k


def run(y, base, var, k, **kw):
    return compare(y, base, var, variant="v", baseline="base", n_classes=k, n_boot=500, **kw)


def test_compare_clearly_better():
    y, base, var, k = synthetic(0.80, 0.88)
    cmp = run(y, base, var, k)
    assert cmp.verdict == BETTER
    assert cmp.acc_baseline == pytest.approx([0.80] * 3)
    assert cmp.acc_variant == pytest.approx([0.88] * 3)
    assert cmp.seed_diff.estimate == pytest.approx(0.08)
    assert cmp.bootstrap_diff.estimate == pytest.approx(0.08)
    assert cmp.mcnemar_pooled.b == sum(r.b for r in cmp.mcnemar_per_seed)
    assert cmp.mcnemar_pooled.p_value < 1e-6
    assert all(d > 0 for d in cmp.per_class_recall_delta)
    reason = verdict_reason(cmp)
    assert reason.startswith("+8.00 pp (95% CI")
    assert "over 3 seeds" in reason and "McNemar p<0.001 pooled" in reason


def test_compare_clearly_worse():
    y, base, var, k = synthetic(0.88, 0.80)
    cmp = run(y, base, var, k)
    assert cmp.verdict == WORSE
    assert verdict_reason(cmp).startswith("-8.00 pp")


def test_compare_identical_is_no_detectable_difference():
    y, base, _, k = synthetic(0.85, 0.85)
    cmp = run(y, base, [p.copy() for p in base], k)
    assert cmp.verdict == NO_DIFFERENCE
    assert cmp.mcnemar_pooled == McNemarResult(0, 0, 0.0, 1.0)
    assert cmp.seed_diff.estimate == 0.0
    assert "not significant" in verdict_reason(cmp)


def test_compare_significant_pooled_but_inconsistent_seeds_is_no_difference():
    # Per-seed differences +6, -2, +3 pp on 1000 examples: pooled b=20, c=90 is
    # overwhelming, but the seed t interval (mean 2.3 pp, sd 4.0 pp) includes 0.
    counts = [(800, 0, 60, 140), (800, 20, 0, 180), (800, 0, 30, 170)]
    built = [preds_with_counts(*c) for c in counts]
    y = built[0][0]
    base = [one_hot_probs(a, 2) for _, a, _ in built]
    var = [one_hot_probs(v, 2) for _, _, v in built]
    cmp = compare(y, base, var, variant="v", baseline="base", n_classes=2, n_boot=200)
    assert (cmp.mcnemar_pooled.b, cmp.mcnemar_pooled.c) == (20, 90)
    assert cmp.mcnemar_pooled.p_value < 1e-10
    assert cmp.seed_diff.low < 0 < cmp.seed_diff.high
    assert cmp.verdict == NO_DIFFERENCE
    assert "not consistent across seeds" in verdict_reason(cmp)


def test_compare_single_seed_uses_mcnemar_alone():
    y, base, var, k = synthetic(0.80, 0.88, n_seeds=1)
    cmp = run(y, base, var, k)
    assert cmp.verdict == BETTER
    assert math.isnan(cmp.seed_diff.low) and math.isnan(cmp.std_baseline)
    assert "1 seed" in verdict_reason(cmp)
    d = cmp.to_dict()
    assert d["seed_diff"]["low"] is None and d["std_baseline"] is None
    assert d["n_seeds"] == 1


def test_compare_to_dict_is_json():
    y, base, var, k = synthetic(0.80, 0.88, n_seeds=2, n=500)
    d = run(y, base, var, k).to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["verdict"] == BETTER
    assert back["variant"] == "v" and back["baseline"] == "base"
    assert len(back["mcnemar_per_seed"]) == 2
    assert set(back["seed_diff"]) == {"estimate", "low", "high", "level"}
    assert back["n_test"] == 500 and back["alpha"] == 0.05
    assert isinstance(back["verdict_reason"], str)


def test_compare_per_class_deltas_hand_computed():
    y = np.array([0, 0, 1, 1])
    base = [one_hot_probs(np.array([0, 1, 1, 1]), 3)]  # precision [1, 2/3, nan], recall [1/2, 1, nan]
    var = [one_hot_probs(np.array([0, 0, 1, 1]), 3)]  # precision [1, 1, nan],   recall [1, 1, nan]
    cmp = compare(y, base, var, variant="v", baseline="base", n_classes=3, n_boot=100)
    assert cmp.per_class_precision_delta[:2] == pytest.approx([0.0, 1 / 3])
    assert cmp.per_class_recall_delta[:2] == pytest.approx([0.5, 0.0])
    assert math.isnan(cmp.per_class_precision_delta[2]) and math.isnan(cmp.per_class_recall_delta[2])
    assert cmp.to_dict()["per_class_recall_delta"][2] is None


def test_compare_alpha_sets_interval_level():
    y, base, var, k = synthetic(0.80, 0.88, n_seeds=3, n=500)
    cmp = run(y, base, var, k, alpha=0.01)
    assert cmp.seed_diff.level == pytest.approx(0.99)
    assert cmp.bootstrap_diff.level == pytest.approx(0.99)
    assert verdict_reason(cmp).split("(")[1].startswith("99% CI")


def test_compare_rejects_bad_inputs():
    y, base, var, k = synthetic(0.8, 0.8, n_seeds=2, n=100)
    with pytest.raises(KeraslabError, match="seeds"):
        run(y, base, var[:1], k)
    with pytest.raises(KeraslabError, match="shape"):
        compare(y, base, var, variant="v", baseline="base", n_classes=k + 1)
    with pytest.raises(KeraslabError, match="labels outside"):
        compare(y, base, var, variant="v", baseline="base", n_classes=2)
    with pytest.raises(KeraslabError, match="alpha"):
        run(y, base, var, k, alpha=1.5)


def test_interval_is_plain_dataclass():
    assert Interval(0.1, 0.0, 0.2, 0.95).estimate == 0.1


def test_mcnemar_agrees_with_statsmodels_exact():
    from statsmodels.stats.contingency_tables import mcnemar

    for b, c in [(10, 2), (0, 5), (7, 7), (31, 18), (1, 0), (120, 95)]:
        r = mcnemar_exact(*preds_with_counts(3, b, c, 4))
        ref = mcnemar([[3, b], [c, 4]], exact=True)
        assert r.statistic == ref.statistic
        assert r.p_value == pytest.approx(min(1.0, ref.pvalue), rel=1e-12)
