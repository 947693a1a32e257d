"""The tables and report of a search: trials.csv, a self-contained report.html, figures/*.png and
the terminal table. Everything is computed from the ledger (trials.jsonl); nothing retrains."""

from __future__ import annotations

import base64
import csv
import math
import os
from pathlib import Path

import numpy as np
from jinja2 import Environment, StrictUndefined

FIGURES = "figures"
REPORT_HTML = "report.html"


# --------------------------------------------------------------------------- rows


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def hp_names(search) -> list[str]:
    return list(search.space.hps)


def rows(search, entries: list[dict]) -> tuple[list[str], list[dict]]:
    """(columns, one dict per trial) for the CSV and the HTML table."""
    obj = search.spec.objective
    hb = search.spec.algorithm.name == "hyperband"
    names = hp_names(search)
    cols = ["trial", "trial_id", "status", obj, f"best_epoch_{obj}", "epochs", "epochs_run", "kept_after_epoch"]
    if hb:
        cols += ["bracket", "round", "from_epoch", "continues_trial"]
    cols += names + ["seconds", "rss_mb", "peak_rss_mb", "session"]
    out = []
    for e in entries:
        r = {
            "trial": e["number"], "trial_id": e["trial_id"], "status": e["status"], obj: e["score"],
            f"best_epoch_{obj}": e["best_epoch_score"], "epochs": e["total_epochs"], "epochs_run": e["epochs_run"],
            "kept_after_epoch": e["kept_epoch"] + 1, "seconds": e["seconds"], "rss_mb": e.get("rss_mb"),
            "peak_rss_mb": e.get("peak_rss_mb"), "session": e.get("session"),
        }
        if hb:
            h = e.get("hyperband") or {}
            parent = h.get("trial_id")
            r.update({"bracket": h.get("bracket"), "round": h.get("round"), "from_epoch": h.get("initial_epoch"),
                      "continues_trial": None if parent is None else int(parent) + 1})
        for n in names:
            r[n] = e["hyperparameters"].get(n)
        out.append(r)
    return cols, out


def write_csv(search, search_dir: Path, entries: list[dict]) -> Path:
    cols, data = rows(search, entries)
    path = Path(search_dir) / "trials.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in data:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    os.replace(tmp, path)
    return path


def trials_table(search, entries: list[dict], limit: int = 15):
    """The best trials as a rich Table for the terminal."""
    from rich.table import Table

    from keraslab.tuning import best_entry

    obj = search.spec.objective
    done = [e for e in entries if e["status"] == "completed"]
    sign = -1 if search.direction == "max" else 1
    done.sort(key=lambda e: (sign * e["score"], e["number"]))
    best = best_entry(search, entries)
    table = Table(title=f"Search {search.name}: {len(entries)} trial(s), best {len(done[:limit])} by {obj}")
    table.add_column("#", justify="right")
    table.add_column(obj, justify="right")
    table.add_column("epochs", justify="right")
    for n in hp_names(search):
        table.add_column(n, justify="right")
    table.add_column("time", justify="right")
    for e in done[:limit]:
        style = "bold green" if best and e["number"] == best["number"] else None
        table.add_row(str(e["number"]), f"{e['score']:.4f}", str(e["total_epochs"]),
                      *[_fmt(e["hyperparameters"].get(n)) for n in hp_names(search)], f"{e['seconds']:.0f} s",
                      style=style)
    return table


# --------------------------------------------------------------------------- figures


def _plt():
    from keraslab.reports.plots import plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _completed(entries):
    return [e for e in entries if e["status"] == "completed"]


def scores_figure(search, entries, path: Path) -> Path:
    plt = _plt()
    done = _completed(entries)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    x = [e["number"] for e in done]
    y = [e["score"] for e in done]
    sc = ax.scatter(x, y, c=[e["total_epochs"] for e in done], cmap="viridis", s=28, zorder=3)
    best, run = [], None
    for e in done:
        if run is None or (e["score"] > run if search.direction == "max" else e["score"] < run):
            run = e["score"]
        best.append(run)
    ax.step(x, best, where="post", color="tab:red", lw=1.2, label="best so far")
    failed = [e["number"] for e in entries if e["status"] != "completed"]
    for f in failed:
        ax.axvline(f, color="grey", lw=0.8, ls=":")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(search.spec.objective)
    ax.set_title(f"{search.spec.objective} per trial (colour: epochs trained)")
    ax.legend(loc="lower right" if search.direction == "max" else "upper right")
    fig.colorbar(sc, ax=ax, label="epochs")
    return _save(fig, path)


def hyperparameters_figure(search, entries, path: Path) -> Path:
    plt = _plt()
    done = _completed(entries)
    hps = list(search.space.hps.values())
    n = len(hps)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.1 * nrows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, hp in zip(axes.flat, hps):
        pts = [(e["hyperparameters"][hp.name], e["score"], e["total_epochs"]) for e in done if hp.name in e["hyperparameters"]]
        if not pts:
            ax.set_title(f"{hp.name} (never active)")
            continue
        vals, ys, eps = zip(*pts)
        if hp.kind == "choice" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            cats = [str(v) for v in hp.spec.values]
            xs = np.array([cats.index(str(v)) for v in vals]) + rng.uniform(-0.15, 0.15, len(vals))
            ax.set_xticks(range(len(cats)), cats, rotation=30 if max(map(len, cats)) > 6 else 0)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        else:
            from matplotlib.ticker import MaxNLocator, NullFormatter

            xs = np.array(vals, dtype=float)
            if hp.log:
                from matplotlib.ticker import FuncFormatter

                ax.set_xscale("log")
                short = FuncFormatter(lambda v, _: f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e"))
                ax.xaxis.set_major_formatter(short)
                # Within about a decade there is no major tick: label the minor ones, compactly.
                narrow = hp.spec.max / hp.spec.min < 20
                ax.xaxis.set_minor_formatter(short if narrow else NullFormatter())
                ax.tick_params(axis="x", which="minor", labelsize=7)
            elif hp.kind == "int" or (hp.kind == "choice" and all(isinstance(v, int) for v in vals)):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.scatter(xs, ys, c=eps, cmap="viridis", s=22)
        ax.set_title(hp.name)
        ax.set_ylabel(search.spec.objective)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{search.spec.objective} against each hyperparameter (colour: epochs trained)")
    return _save(fig, path)


def epochs_time_figure(search, entries, path: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    x = [e["number"] for e in entries]
    inherited = [e["total_epochs"] - e["epochs_run"] for e in entries]
    a1.bar(x, inherited, color="lightgrey", label="continued from parent")
    a1.bar(x, [e["epochs_run"] for e in entries], bottom=inherited, color="tab:blue", label="trained in this trial")
    a1.set_xlabel("trial")
    a1.set_ylabel("epochs")
    a1.set_title("Epochs per trial")
    a1.legend(fontsize=8)
    a2.bar(x, [e["seconds"] for e in entries], color="tab:orange")
    a2.set_xlabel("trial")
    a2.set_ylabel("seconds")
    a2.set_title("Time per trial")
    return _save(fig, path)


def memory_figure(search, entries, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    x = [e["number"] for e in entries]
    ax.plot(x, [e.get("rss_mb") or np.nan for e in entries], marker="o", ms=3, label="resident after the trial")
    ax.plot(x, [e.get("peak_rss_mb") or np.nan for e in entries], ls="--", label="peak so far (process)")
    ax.set_xlabel("trial")
    ax.set_ylabel("MiB")
    ax.set_title("Memory per trial (a new process starts at each resume)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def brackets_figure(search, entries, path: Path) -> Path:
    """Hyperband: each bracket's trials by epochs trained, lines from a trial to its continuation."""
    plt = _plt()
    by_id = {e["trial_id"]: e for e in entries}
    # Trials come bracket by bracket; a bracket number repeats with hyperband_iterations, so a new
    # group starts when the bracket number changes or a round-0 trial follows a later round.
    groups: list[tuple[int, list[dict]]] = []
    for e in entries:
        h = e.get("hyperband")
        if h is None:
            continue
        if not groups or groups[-1][0] != h["bracket"] or (
                h["round"] == 0 and any(x["hyperband"]["round"] > 0 for x in groups[-1][1])):
            groups.append((h["bracket"], []))
        groups[-1][1].append(e)
    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False, sharey=True, sharex=True)
    for ax, (b, members) in zip(axes.flat, groups):
        for e in members:
            if e["status"] != "completed":
                continue
            h = e["hyperband"]
            ax.scatter(e["total_epochs"], e["score"], color=f"C{h['round']}", s=26, zorder=3)
            parent = by_id.get(h["trial_id"]) if h["trial_id"] is not None else None
            if parent is not None and parent["status"] == "completed":
                ax.plot([parent["total_epochs"], e["total_epochs"]], [parent["score"], e["score"]], color="grey", lw=0.8)
        rounds = sorted({e["hyperband"]["round"] for e in members})
        ax.set_title(f"bracket {b}: {len(members)} trials, {len(rounds)} round(s)")
        ax.set_xlabel("epochs trained")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel(search.spec.objective)
    from matplotlib.ticker import MaxNLocator

    axes.flat[0].set_xlim(0, search.spec.budget.max_epochs + 0.5)
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Hyperband brackets (colour: round; lines: a trial continued in the next round)")
    return _save(fig, path)


def write_figures(search, search_dir: Path, entries: list[dict]) -> dict[str, Path]:
    fig_dir = Path(search_dir) / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    if _completed(entries):
        out["scores"] = scores_figure(search, entries, fig_dir / "scores.png")
        out["hyperparameters"] = hyperparameters_figure(search, entries, fig_dir / "hyperparameters.png")
    if entries:
        out["epochs_time"] = epochs_time_figure(search, entries, fig_dir / "epochs_time.png")
        if search.spec.algorithm.name == "hyperband":
            out["brackets"] = brackets_figure(search, entries, fig_dir / "brackets.png")
        out["memory"] = memory_figure(search, entries, fig_dir / "memory.png")
    return out


# --------------------------------------------------------------------------- HTML


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Search {{ name }}</title>
<style>
body{font-family:system-ui,-apple-system,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
tr.best td{background:#e6f4e6;font-weight:bold} tr.failed td{color:#999}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:12px}
img{max-width:100%} .note{background:#fff6dd;padding:.5em .8em;border-left:4px solid #e0b000}
.verdict-better{color:#087a08;font-weight:bold}.verdict-worse{color:#b00;font-weight:bold}
</style></head><body>
<h1>Search {{ name }}</h1>
{% if description %}<p>{{ description }}</p>{% endif %}
<table>
{% for k, v in facts %}<tr><th class="l">{{ k }}</th><td class="l">{{ v }}</td></tr>
{% endfor %}</table>
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}

{% if best %}
<h2>Best trial</h2>
<p>Trial {{ best.number }} (id {{ best.trial_id }}): <strong>{{ objective }} {{ "%.4f"|format(best.score) }}</strong>
after {{ best.total_epochs }} epoch(s){% if best.best_epoch_score is not none %} (best epoch seen:
{{ "%.4f"|format(best.best_epoch_score) }}, the number keras-tuner would report){% endif %}.</p>
<table>{% for k, v in best.hyperparameters.items() %}<tr><th class="l">{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
<p>Exported as <code>best_variant.yaml</code>, a suite file for <code>keraslab run</code>; its variant block:</p>
<pre>{{ variant_yaml }}</pre>
{% endif %}

{% if then_run %}
<h2>Retrained on the test set (--then-run {{ then_run.seeds|length }})</h2>
<p>{{ then_run.sentence }}</p>
<table><tr><th class="l">variant</th><th>test accuracy % (mean ± std)</th><th>Δ pp vs baseline [95% CI over seeds]</th>
<th>bootstrap CI</th><th>McNemar p</th><th class="l">verdict</th></tr>
{% for r in then_run.rows %}<tr><td class="l">{{ r.name }}</td><td>{{ r.acc }}</td><td>{{ r.diff }}</td><td>{{ r.boot }}</td>
<td>{{ r.p }}</td><td class="l verdict-{{ r.verdict }}">{{ r.verdict }}</td></tr>{% endfor %}</table>
{% if reproduced %}<p>{{ reproduced }}</p>{% endif %}
<p>Full suite report: <code>{{ then_run.report }}</code></p>
{% endif %}

{% for title, uri in images %}<h2>{{ title }}</h2><img src="{{ uri }}" alt="{{ title }}">
{% endfor %}

<h2>All trials</h2>
<table><tr>{% for c in columns %}<th{% if c in left %} class="l"{% endif %}>{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr class="{{ r._class }}">{% for c in columns %}<td{% if c in left %} class="l"{% endif %}>{{ r[c] }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>Score = the {{ objective }} of the weights each trial keeps (the epoch EarlyStopping restored, else the last).
Files: <code>trials.csv</code>, <code>trials.jsonl</code> (the ledger), <code>best.json</code>, <code>best_variant.yaml</code>.</p>
</body></html>
"""


def _uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _then_run_rows(summary: dict) -> list[dict]:
    out = []
    for e in summary["results"]:
        d = e.get("difference")
        std = f" ± {100 * e['std']:.2f}" if e.get("std") is not None else ""
        def ci(pair):
            if not pair or pair[0] is None or (isinstance(pair[0], float) and math.isnan(pair[0])):
                return "n/a"
            return f"[{100 * pair[0]:+.2f}, {100 * pair[1]:+.2f}]"
        out.append({
            "name": e["name"], "acc": f"{100 * e['mean']:.2f}{std}",
            "diff": "" if d is None else f"{100 * d['estimate']:+.2f} {ci(d.get('seed_ci'))}",
            "boot": "" if d is None else ci(d.get("bootstrap_ci")),
            "p": "" if e.get("mcnemar_p") is None else f"{e['mcnemar_p']:.3g}",
            "verdict": e["verdict"],
        })
    return out


def reproduced_sentence(rep: dict | None) -> str:
    if not rep:
        return ""
    if not rep.get("checked"):
        return f"Reproduction of the trial not checked: {rep['reason']}."
    if rep["reproduced"]:
        return (f"The retrained tuned variant with the search's seed {rep['seed']} repeated the trial epoch for epoch "
                f"({rep['objective']} {', '.join(f'{v:.4f}' for v in rep['retrained_history'])}): the number found "
                "by the search is the number of the exported configuration.")
    return (f"The retrained tuned variant with the search's seed {rep['seed']} did NOT repeat the trial: "
            f"{rep['objective']} per epoch {rep['retrained_history']} vs {rep['trial_history']} in the search.")


def write_all(search, search_dir: Path, entries: list[dict], state: dict, *, then_run=None, reproduced=None) -> dict:
    """trials.csv, figures/*.png and report.html; returns their paths."""
    import yaml

    from keraslab.tuning import best_entry, planned, variant_block

    search_dir = Path(search_dir)
    csv_path = write_csv(search, search_dir, entries)
    figs = write_figures(search, search_dir, entries)
    best = best_entry(search, entries)
    cols, data = rows(search, entries)
    for r, e in zip(data, entries):
        r["_class"] = "best" if best and e["number"] == best["number"] else ("failed" if e["status"] != "completed" else "")
        for c in cols:
            r[c] = _fmt(r[c])
    s = search.spec
    trials_planned, epochs_planned = planned(search)
    a = s.algorithm
    algo = a.name + "".join(f", {k} {v}" for k, v in a.model_dump(exclude_none=True).items() if k != "name")
    facts = [
        ("dataset", f"{search.dataset}, {'all' if s.train_subset is None else f'{s.train_subset:,}'} training examples, "
                    f"validation share {s.val_fraction if s.val_fraction is not None else 'default'} (the test set is never used)"),
        ("algorithm", algo),
        ("objective", f"{s.objective} ({search.direction})"),
        ("budget", f"max_epochs {s.budget.max_epochs}, max_trials {s.budget.max_trials or 'none'}, "
                   f"max_minutes {s.budget.max_minutes or 'none'}; plans {trials_planned} trials / {epochs_planned} epochs"),
        ("seed", str(s.seed)),
        ("trials", f"{len(entries)} ({sum(e['status'] == 'completed' for e in entries)} completed) over "
                   f"{state.get('sessions', 1)} session(s); {sum(e['seconds'] for e in entries) / 60:.1f} minutes of trials"),
        ("stopped because", state.get("stop_reason") or "interrupted"),
        ("search file", str(search.file)),
    ]
    notes = list(search.warnings) + list(state.get("notes") or [])
    titles = {"scores": "Score per trial", "hyperparameters": "Score against each hyperparameter",
              "epochs_time": "Epochs and time per trial", "brackets": "Hyperband brackets", "memory": "Memory per trial"}
    images = [(titles[k], _uri(p)) for k, p in figs.items()]
    tr = None
    if then_run is not None and then_run.summary is not None:
        summ = then_run.summary
        tuned = next((e for e in summ["results"] if e["name"] == "tuned"), None)
        sentence = (f"{len(summ['seeds'])} seed(s), {summ['n_test']:,} test examples. "
                    + (tuned.get("verdict_reason") or "") if tuned else "")
        tr = {"seeds": summ["seeds"], "rows": _then_run_rows(summ), "sentence": sentence,
              "report": str(then_run.report["html"]) if then_run.report else ""}
    variant_yaml = yaml.safe_dump({"tuned": variant_block(search, best)}, sort_keys=False, default_flow_style=None,
                                  width=110) if best else ""
    env = Environment(autoescape=True, undefined=StrictUndefined)
    page = env.from_string(_TEMPLATE).render(
        name=search.name, description=s.description, facts=facts, notes=notes, best=best, objective=s.objective,
        variant_yaml=variant_yaml, then_run=tr, reproduced=reproduced_sentence(reproduced), images=images,
        columns=cols, rows=data, left={"status", "trial_id"} | {n for n, hp in search.space.hps.items() if hp.kind == "choice"},
    )
    path = search_dir / REPORT_HTML
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return {"html": path, "csv": csv_path, "figures": figs}


__all__ = ["rows", "write_csv", "trials_table", "write_figures", "write_all", "reproduced_sentence"]
