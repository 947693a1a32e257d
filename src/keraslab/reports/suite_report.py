"""The report of a suite: report.md, a self-contained report.html and the PNGs they show.

Everything here is computed from ``summary.json``'s numbers, the runs' histories and test
probabilities; nothing retrains. The "What helped" section is written from the same numbers
(verdicts and ``comparison.verdict_reason``), never canned.
"""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from keraslab.reports import plots
from keraslab.reports.plots import plt

FIGURES = "figures"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
TEMPLATES = Path(__file__).parent / "templates"
GALLERY_IMAGES = 24
GALLERY_TEXTS = 8
SNIPPET_CHARS = 400
LENGTH_BINS = 5  # review-length groups of equal size (quantiles of the test reviews' word counts)
MAX_BARS = 6  # entries in the per-class chart
PALETTE = plt.get_cmap("tab10").colors


# --------------------------------------------------------------------------- formatting


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _pp(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}"


def _p(p) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _ci(pair) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"{_pp(pair[0])} to {_pp(pair[1])}"


def _by_name(summary: dict) -> dict[str, dict]:
    return {e["name"]: e for e in summary["results"]}


def best_entry(summary: dict) -> dict:
    """The most accurate variant or ensemble other than the baseline (the baseline if it is alone)."""
    others = [e for e in summary["results"] if e["name"] != summary["baseline"]]
    return others[0] if others else _by_name(summary)[summary["baseline"]]


# --------------------------------------------------------------------------- tables


def summary_rows(summary: dict) -> list[dict]:
    rows = []
    for rank, e in enumerate(summary["results"], 1):
        d = e.get("difference")
        rows.append({
            "rank": rank,
            "name": e["name"],
            "kind": e["kind"],
            "description": e["description"],
            "accuracy": f"{_pct(e['mean'])} ± {_pct(e['std'])}" if e["std"] is not None else _pct(e["mean"]),
            "per_seed": ", ".join(_pct(a) for a in e["test_accuracy"]),
            "diff": _pp(d["estimate"]) if d else "",
            "seed_ci": _ci(d["seed_ci"]) if d else "",
            "bootstrap_ci": _ci(d["bootstrap_ci"]) if d else "",
            "mcnemar": _p(e.get("mcnemar_p")),
            "verdict": e["verdict"],
            "wall": _duration(e["wall_seconds"]),
        })
    return rows


def target_rows(summary: dict) -> list[dict]:
    """The suite's goals: met or missed, and by how many points."""
    rows = []
    for t in summary.get("targets", []):
        limit = t["max_wall_seconds"]
        rows.append({
            "name": t["name"],
            "goal": f"≥ {_pct(t['accuracy'])} %" + (f" in ≤ {_duration(limit)} per run" if limit else ""),
            "best": t["best"],
            "accuracy": f"{_pct(t['mean'])} ± {_pct(t['std'])}" if t["std"] is not None else _pct(t["mean"]),
            "gap": _pp(t["gap"]),
            "wall": _duration(t["slowest_run_seconds"]) + ("" if t["within_time"] else " (over the limit)"),
            "met": "met" if t["met"] else "missed",
            "miss": "; ".join(([f"{100 * -t['gap']:.2f} pp short"] if t["gap"] < 0 else [])
                              + ([] if t["within_time"] else ["over the time limit"])),
            "tried": t["tried"] if not t["met"] else None,
        })
    return rows


def target_lines(summary: dict) -> list[str]:
    """One line per goal, for the terminal."""
    return [f"target {r['name']} ({r['goal']}): {r['met']}; best {r['best']}, {r['accuracy']} % ({r['gap']} pp), "
            f"slowest run {r['wall']}" for r in target_rows(summary)]


def ensemble_rows(summary: dict) -> list[dict]:
    rows = []
    for e in summary["results"]:
        if e["kind"] != "ensemble":
            continue
        g = e["gain_over_best_member"]
        rows.append({
            "name": e["name"],
            "members": ", ".join(e["members"]) + (f" (weights {', '.join(f'{w:g}' for w in e['weights'])})" if e.get("weights") else ""),
            "mean_gain": _pp(g["mean_gain"]),
            "per_seed": ", ".join(f"{_pp(x)} (vs {m})" for x, m in zip(g["gain"], g["best_member"])),
        })
    return rows


def per_class_rows(summary: dict, best: dict) -> list[dict]:
    base = _by_name(summary)[summary["baseline"]]
    rows = []
    for i, cls in enumerate(summary["class_names"]):
        rows.append({
            "class": cls,
            "base_recall": _pct(base["recall"][i]),
            "best_recall": _pct(best["recall"][i]),
            "recall_delta": _pp(best["recall"][i] - base["recall"][i]),
            "base_precision": _pct(base["precision"][i]),
            "best_precision": _pct(best["precision"][i]),
            "precision_delta": _pp(best["precision"][i] - base["precision"][i]),
        })
    return rows


def confused_pairs(summary: dict, best: dict, top: int = 8) -> list[dict]:
    """Off-diagonal cells of the confusion matrices (summed over seeds), most frequent first."""
    base = _by_name(summary)[summary["baseline"]]
    a = np.asarray(base["confusion_matrix_summed"], dtype=float)
    b = np.asarray(best["confusion_matrix_summed"], dtype=float)
    n_seeds = len(summary["seeds"])
    totals = a.sum(axis=1)
    names = summary["class_names"]
    cells = [(i, j) for i in range(len(names)) for j in range(len(names)) if i != j and a[i, j] + b[i, j] > 0]
    cells.sort(key=lambda ij: -(a[ij] + b[ij]))
    rows = []
    for i, j in cells[:top]:
        share = lambda m: f"{m[i, j] / n_seeds:.1f} ({100 * m[i, j] / max(totals[i], 1):.1f}%)"  # noqa: E731
        rows.append({"true": names[i], "predicted": names[j], "baseline": share(a), "best": share(b)})
    return rows


def variant_rows(summary: dict) -> list[dict]:
    """The baseline, the other variants, then the ensembles."""
    rows = []
    rank = {"baseline": 0, "variant": 1, "ensemble": 2}
    for e in sorted(summary["results"], key=lambda e: rank["baseline" if e["name"] == summary["baseline"] else e["kind"]]):
        if e["kind"] == "ensemble":
            rows.append({"name": e["name"], "network": e["description"], "training": "no training: averages its members' test probabilities"})
            continue
        t = e["training"]
        parts = [f"{t['optimizer']}", f"lr {t['learning_rate']:g}", f"batch {t['batch_size']}", f"{t['epochs']} epochs"]
        if t.get("weight_decay") is not None:
            parts.append(f"weight decay {t['weight_decay']:g}")
        if t.get("early_stopping"):
            es = t["early_stopping"]
            parts.append(f"early stopping on {es['monitor']} (patience {es['patience']})")
        epochs_run = sorted({s["epochs_run"] for s in e["seeds"]})
        if epochs_run != [t["epochs"]]:
            parts.append("epochs run: " + ", ".join(map(str, epochs_run)))
        rows.append({"name": e["name"], "network": e["description"], "training": ", ".join(parts)})
    return rows


# --------------------------------------------------------------------------- "What helped"


def _class_changes(summary: dict, entry: dict, n: int = 2) -> str:
    deltas = (entry.get("vs_baseline") or {}).get("per_class_recall_delta") or []
    pairs = [(c, d) for c, d in zip(summary["class_names"], deltas) if d is not None and abs(d) >= 0.0005]
    pairs.sort(key=lambda cd: -abs(cd[1]))
    if not pairs:
        return ""
    return "largest per-class recall changes: " + ", ".join(f"{c} {_pp(d)} pp" for c, d in pairs[:n])


def what_helped(summary: dict) -> dict:
    """Sentences built from the verdicts and their numbers, grouped: helped, hurt, undetectable."""
    base = _by_name(summary)[summary["baseline"]]
    n_seeds = len(summary["seeds"])
    accs = base["test_accuracy"]
    intro = (
        f"The baseline {summary['baseline']} reached {_pct(base['mean'])}% test accuracy"
        + (f" (± {_pct(base['std'])} over {n_seeds} seeds, from {_pct(min(accs))}% to {_pct(max(accs))}%)" if n_seeds > 1 else " (1 seed)")
        + f" on {summary['n_test']:,} test examples."
    )
    groups = {"better": [], "worse": [], "no detectable difference": []}
    for e in summary["results"]:
        if e["name"] == summary["baseline"]:
            continue
        text = e["verdict_reason"]
        extra = _class_changes(summary, e)
        if extra:
            text += f"; {extra}"
        if e["kind"] == "ensemble":
            g = e["gain_over_best_member"]
            text += f"; gain over its best member {_pp(g['mean_gain'])} pp on average (per seed: {', '.join(_pp(x) for x in g['gain'])})"
        groups[e["verdict"]].append({"name": e["name"], "description": e["description"], "text": text})
    sections = [
        {"title": f"Helped ({len(groups['better'])})", "items": groups["better"]},
        {"title": f"Hurt ({len(groups['worse'])})", "items": groups["worse"]},
        {"title": f"No detectable difference ({len(groups['no detectable difference'])})", "items": groups["no detectable difference"]},
    ]
    others = [e for e in summary["results"] if e["name"] != summary["baseline"]]
    if groups["better"]:
        top = max((e for e in others if e["verdict"] == "better"), key=lambda e: e["mean"])
        conclusion = (
            f"{len(groups['better'])} of {len(others)} detectably beat the baseline at alpha={summary['alpha']:g}; "
            f"the most accurate of them is {top['name']} at {_pct(top['mean'])}% ({_pp(top['difference']['estimate'])} pp)."
        )
    elif others:
        largest = max(others, key=lambda e: e["difference"]["estimate"])
        conclusion = (
            f"None of the {len(others)} variants and ensembles detectably beat the baseline at alpha={summary['alpha']:g} "
            f"with {n_seeds} seed(s) and this test set; the largest mean difference was {_pp(largest['difference']['estimate'])} pp "
            f"({largest['name']})."
        )
    else:
        conclusion = "The suite has only the baseline; there is nothing to compare."
    if n_seeds > 1 and others:
        spread = max(accs) - min(accs)
        undetectable = [e for e in others if e["verdict"] == "no detectable difference"]
        smaller = [e for e in undetectable if abs(e["difference"]["estimate"]) < spread]
        if smaller:
            conclusion += (
                f" The baseline alone varies by {100 * spread:.2f} pp across seeds; "
                f"{len(smaller)} of the {len(undetectable)} undetectable differences "
                f"{'is' if len(smaller) == 1 else 'are'} smaller than that."
            )
    return {"intro": intro, "sections": [s for s in sections if s["items"]], "conclusion": conclusion}


# --------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_figure(summary: dict, path: Path) -> Path:
    entries = summary["results"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(entries) + 1.5))
    base_mean = _by_name(summary)[summary["baseline"]]["mean"]
    for row, e in enumerate(reversed(entries)):
        color = {"better": "tab:green", "worse": "tab:red", "baseline": "tab:blue"}.get(e["verdict"], "tab:gray")
        accs = 100 * np.asarray(e["test_accuracy"])
        ax.scatter(accs, np.full(accs.shape, row), color=color, alpha=0.6, s=25, zorder=3)
        ax.plot([100 * e["mean"]] * 2, [row - 0.3, row + 0.3], color=color, lw=2.5, zorder=4)
    ax.axvline(100 * base_mean, color="tab:blue", ls="--", lw=1, label="baseline mean")
    ax.set_yticks(range(len(entries)), [e["name"] for e in reversed(entries)])
    ax.set_xlabel("Test accuracy (%): dots are seeds, bars are means")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Test accuracy per seed")
    return _save(fig, path)


def _mean_curve(histories: list[dict], key: str) -> np.ndarray | None:
    series = [h[key] for h in histories if h.get(key)]
    if not series:
        return None
    length = max(len(s) for s in series)
    out = np.full(length, np.nan)
    for i in range(length):
        vals = [s[i] for s in series if len(s) > i]
        out[i] = np.mean(vals)
    return out


def learning_curves_figure(summary: dict, histories: dict[str, list[dict]], path: Path) -> Path:
    """Validation (solid) and training (dotted) loss and accuracy per epoch, mean over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [e["name"] for e in summary["results"] if e["kind"] == "variant"]
    for n, name in enumerate(names):
        color = PALETTE[n % len(PALETTE)]
        for ax, metric in zip(axes, ["loss", "accuracy"]):
            for key, style in [(f"val_{metric}", "-o"), (metric, ":.")]:
                curve = _mean_curve(histories.get(name, []), key)
                if curve is None:
                    continue
                label = name if key.startswith("val_") else None
                ax.plot(range(1, len(curve) + 1), curve, style, color=color, label=label, markersize=3, lw=1.5)
    for ax, metric in zip(axes, ["loss", "accuracy"]):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: validation (solid), training (dotted)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Learning curves, mean over {len(summary['seeds'])} seed(s)")
    return _save(fig, path)


def _row_normalized(cm) -> np.ndarray:
    cm = np.asarray(cm, dtype=float)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


def confusion_difference_figure(summary: dict, best: dict, path: Path) -> Path:
    base = _by_name(summary)[summary["baseline"]]
    diff = _row_normalized(best["confusion_matrix_summed"]) - _row_normalized(base["confusion_matrix_summed"])
    names = summary["class_names"]
    k = len(names)
    limit = max(float(np.abs(diff).max()), 0.01)
    size = max(4.5, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(diff, cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(f"{best['name']} minus {summary['baseline']}\n(row shares; blue diagonal = better recall)", fontsize=10)
    for i in range(k):
        for j in range(k):
            if abs(diff[i, j]) >= 0.005:
                ax.text(j, i, f"{diff[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(diff[i, j]) > 0.6 * limit else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def per_class_figure(summary: dict, path: Path) -> Path:
    names = summary["class_names"]
    entries = [_by_name(summary)[summary["baseline"]]] + [e for e in summary["results"] if e["name"] != summary["baseline"]]
    entries = entries[:MAX_BARS]
    k = len(names)
    width = 0.8 / len(entries)
    fig, axes = plt.subplots(2, 1, figsize=(max(7, 0.9 * k + 2), 7), sharex=True)
    for ax, metric in zip(axes, ["recall", "precision"]):
        for n, e in enumerate(entries):
            ax.bar(np.arange(k) + (n - (len(entries) - 1) / 2) * width, 100 * np.asarray(e[metric]), width,
                   label=e["name"], color=PALETTE[n % len(PALETTE)])
        values = np.concatenate([100 * np.asarray(e[metric]) for e in entries])
        ax.set_ylim(max(0, values.min() - 10), 100)
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("Per-class recall and precision on the test set (mean over seeds)")
    axes[0].legend(fontsize=8, ncol=min(3, len(entries)))
    axes[1].set_xticks(range(k), names, rotation=30, ha="right")
    return _save(fig, path)


def _mistakes(y: np.ndarray, probs: np.ndarray, limit: int) -> list[int]:
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:limit].tolist()


def gallery_figure(x: np.ndarray, y: np.ndarray, probs: np.ndarray, names: list[str], idx: list[int], path: Path, title: str) -> Path:
    cols = 6
    rows = max(1, math.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.3))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), idx):
        ax.imshow(np.asarray(x[i]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        p = int(probs[i].argmax())
        ax.set_title(f"true: {names[int(y[i])]}\npred: {names[p]} ({probs[i, p]:.2f})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


_BREAK = re.compile(r"<br\s*/?>")  # the IMDB reviews' line breaks, glued to the words around them


def word_counts(texts) -> np.ndarray:
    """Words per review, `<br />` counting as a space."""
    return np.array([len(_BREAK.sub(" ", str(t)).split()) for t in texts])


def length_rows(summary: dict, probs: dict[str, list[np.ndarray]], y: np.ndarray, words: np.ndarray,
                bins: int = LENGTH_BINS) -> list[dict]:
    """Test accuracy (mean over seeds) of every entry within review-length groups of equal size;
    `words` holds each test review's word count (:func:`word_counts`)."""
    edges = np.unique(np.quantile(words, np.linspace(0, 1, bins + 1)))
    group = np.clip(np.searchsorted(edges, words, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for g in range(max(len(edges) - 1, 1)):  # one group when every review has the same length
        mask = group == g
        if not mask.any():
            continue
        hi = int(words[mask].max())
        row = {"words": f"{int(words[mask].min())}–{hi}", "n": int(mask.sum()), "acc": {}}
        for e in summary["results"]:
            row["acc"][e["name"]] = float(np.mean([(p[mask].argmax(1) == y[mask]).mean() for p in probs[e["name"]]]))
        rows.append(row)
    return rows


def length_figure(summary: dict, rows: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(rows))
    for i, e in enumerate(summary["results"]):
        style = "--" if e["kind"] == "ensemble" else "-"
        ax.plot(x, [100 * r["acc"][e["name"]] for r in rows], style, marker="o", color=PALETTE[i % len(PALETTE)], label=e["name"])
    ax.set_xticks(x, [f"{r['words']}\n({r['n']})" for r in rows], fontsize=8)
    ax.set_xlabel("review length in words (test reviews in the group)")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title("Accuracy by review length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _snippet(text: str) -> str:
    text = _BREAK.sub(" ", str(text))
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"


# --------------------------------------------------------------------------- writing


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md_cell
    return env


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write(
    suite_dir: Path,
    summary: dict,
    *,
    histories: dict[str, list[dict]],
    probs: dict[str, list[np.ndarray]],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, Path]:
    """Write figures/, report.md and report.html into `suite_dir`; returns their paths."""
    suite_dir = Path(suite_dir)
    fig_dir = suite_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = summary["class_names"]
    best = best_entry(summary)
    base = _by_name(summary)[summary["baseline"]]
    seed0 = summary["seeds"][0]

    figures = []

    def add(key: str, title: str, path: Path, caption: str = ""):
        figures.append({"key": key, "title": title, "file": f"{FIGURES}/{path.name}", "path": path, "caption": caption})

    add("accuracy", "Test accuracy per seed", accuracy_figure(summary, fig_dir / "accuracy.png"))
    add("curves", "Learning curves", learning_curves_figure(summary, histories, fig_dir / "learning_curves.png"))
    add("cm_base", f"Baseline: {base['name']}", plots.confusion_matrix(
        base["confusion_matrix_summed"], names, fig_dir / "confusion_baseline.png",
        title=f"{base['name']} (baseline), all seeds"))
    if best["name"] != base["name"]:
        add("cm_best", f"Best: {best['name']}", plots.confusion_matrix(
            best["confusion_matrix_summed"], names, fig_dir / "confusion_best.png", title=f"{best['name']} (best), all seeds"))
        add("cm_diff", "Difference", confusion_difference_figure(summary, best, fig_dir / "confusion_difference.png"))
    add("per_class", "Per-class recall and precision", per_class_figure(summary, fig_dir / "per_class.png"))

    y = np.asarray(y_test)
    top = summary["results"][0]  # the gallery shows the most accurate model's mistakes, the baseline too
    top_probs = probs[top["name"]][0]
    gallery_title = f"{top['name']}, seed {seed0}: its most confident mistakes"
    texts, lengths = [], []
    if summary["kind"] == "image":
        idx = _mistakes(y, top_probs, GALLERY_IMAGES)
        if idx:
            add("gallery", "Misclassified test images", gallery_figure(
                x_test, y, top_probs, names, idx, fig_dir / "misclassified.png", gallery_title))
    else:
        words = word_counts(x_test)
        for i in _mistakes(y, top_probs, GALLERY_TEXTS):
            p = int(top_probs[i].argmax())
            texts.append({"index": i, "true": names[int(y[i])], "predicted": names[p],
                          "confidence": f"{top_probs[i, p]:.2f}", "text": _snippet(x_test[i]),
                          "words": int(words[i])})
        lengths = length_rows(summary, probs, y, words)
        add("lengths", "Accuracy by review length", length_figure(summary, lengths, fig_dir / "accuracy_by_length.png"))

    first_env = {}
    first_run = base["seeds"][0].get("run_dir")
    if first_run and (suite_dir / first_run / "environment.json").is_file():
        import json

        first_env = json.loads((suite_dir / first_run / "environment.json").read_text())
    context = {
        "s": summary,
        "best": best,
        "base": base,
        "rows": summary_rows(summary),
        "ensembles": ensemble_rows(summary),
        "targets": target_rows(summary),
        "per_class": per_class_rows(summary, best),
        "pairs": confused_pairs(summary, best),
        "variants": variant_rows(summary),
        "helped": what_helped(summary),
        "figures": {f["key"]: f for f in figures},
        "gallery_title": gallery_title,
        "gallery_model": top["name"],
        "texts": texts,
        "lengths": lengths,
        "env": first_env,
        "total_wall": _duration(summary["total_wall_seconds"]),
        "n_runs": sum(len(e["seeds"]) for e in summary["results"] if e["kind"] == "variant"),
        "pct": _pct,
        "pp": _pp,
    }
    env = _env()
    md = env.get_template("suite_report.md.j2").render(**context)
    for f in figures:
        f["uri"] = _data_uri(f["path"])
    page = env.get_template("suite_report.html.j2").render(**context)
    _atomic_write(suite_dir / REPORT_MD, md)
    _atomic_write(suite_dir / REPORT_HTML, page)
    return {"markdown": suite_dir / REPORT_MD, "html": suite_dir / REPORT_HTML, **{f["key"]: f["path"] for f in figures}}


# --------------------------------------------------------------------------- terminal


def summary_table(summary: dict):
    """The summary as a rich Table for the terminal."""
    from rich.table import Table

    table = Table(title=f"Suite {summary['suite']} on {summary['dataset']}: {len(summary['seeds'])} seed(s), "
                        f"{summary['n_test']:,} test examples, alpha {summary['alpha']:g}")
    table.add_column("#", justify="right")
    table.add_column("variant", no_wrap=True)
    table.add_column("test acc %", justify="right")
    table.add_column("Δ pp [95% CI over seeds]", justify="right")
    table.add_column("McNemar p", justify="right")
    table.add_column("verdict")
    table.add_column("time", justify="right")
    style = {"better": "green", "worse": "red", "baseline": "bold"}
    for r in summary_rows(summary):
        name = r["name"] + (" (ens.)" if r["kind"] == "ensemble" else "")
        diff = f"{r['diff']} [{r['seed_ci']}]" if r["diff"] else ""
        table.add_row(str(r["rank"]), name, r["accuracy"], diff, r["mcnemar"],
                      f"[{style.get(r['verdict'], 'default')}]{r['verdict']}[/]", r["wall"])
    return table


def plan_table(suite, entries, param_counts: dict[str, int] | None = None):
    """What `keraslab run --dry-run` would do, as a rich Table."""
    from rich.table import Table

    table = Table(title=f"Suite {suite.name}: {len(entries)} runs ({len(suite.variants)} variants × {len(suite.seeds)} seeds)")
    for col in ["variant", "seed", "state", "run directory", "network", "params", "training"]:
        table.add_column(col)
    for e in entries:
        v = suite.variants[e.run.variant]
        t = v.training
        training = f"{t.optimizer} lr {t.learning_rate:g}, batch {t.batch_size}, {t.epochs} epochs"
        if t.weight_decay is not None:
            training += f", wd {t.weight_decay:g}"
        if t.early_stopping is not None:
            training += f", early stop ({t.early_stopping.monitor}, {t.early_stopping.patience})"
        count = f"{param_counts[v.name]:,}" if param_counts else ""
        table.add_row(v.name, str(e.run.seed), e.state, str(e.path), v.describe(), count, training)
    return table
