"""The suite report: sentences written from the numbers, tables, self-contained HTML, text gallery."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from rich.console import Console

import suite_fakes
from keraslab import experiments
from keraslab.reports import suite_report
from suite_fakes import FakeTraining, write_suite


# --------------------------------------------------------------------------- hand-made summaries


def entry(name, accs, verdict, *, estimate=None, reason="", kind="variant", recall_delta=None, gain=None):
    e = {
        "name": name, "kind": kind, "description": f"{name} network", "test_accuracy": accs,
        "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)), "verdict": verdict,
        "wall_seconds": 10.0, "seeds": [{"seed": i, "test_accuracy": a, "epochs_run": 3} for i, a in enumerate(accs)],
    }
    if verdict != "baseline":
        e["difference"] = {"estimate": estimate, "seed_ci": [estimate - 0.01, estimate + 0.01],
                           "bootstrap_ci": [estimate - 0.005, estimate + 0.005], "level": 0.95}
        e["verdict_reason"] = reason
        e["mcnemar_p"] = 0.01
        e["vs_baseline"] = {"per_class_recall_delta": recall_delta or [0.0, 0.0, 0.0]}
    else:
        e["difference"] = None
    if kind == "ensemble":
        e["gain_over_best_member"] = {"gain": gain, "mean_gain": float(np.mean(gain)), "best_member": ["up"] * len(gain)}
        e["members"] = ["base", "up"]
    return e


def hand_summary():
    results = [
        entry("up", [0.90, 0.91, 0.92], "better", estimate=0.02, reason="+2.00 pp (95% CI +1.00 to +3.00 over 3 seeds), McNemar p<0.001 pooled",
              recall_delta=[0.05, -0.01, 0.0]),
        entry("ens", [0.895, 0.90, 0.905], "no detectable difference", estimate=0.003, kind="ensemble", gain=[-0.01, 0.0, 0.001],
              reason="+0.30 pp (95% CI -0.50 to +1.10 over 3 seeds), McNemar p=0.200 pooled: not significant across test examples (alpha=0.05)"),
        entry("base", [0.88, 0.89, 0.90], "baseline"),
        entry("down", [0.80, 0.81, 0.82], "worse", estimate=-0.08, reason="-8.00 pp (95% CI -9.00 to -7.00 over 3 seeds), McNemar p<0.001 pooled",
              recall_delta=[-0.2, 0.0, -0.03]),
    ]
    return {"suite": "hand", "dataset": "toy", "kind": "image", "baseline": "base", "seeds": [0, 1, 2], "n_test": 1000,
            "alpha": 0.05, "class_names": ["cat", "dog", "cow"], "results": results, "total_wall_seconds": 30.0}


def test_what_helped_is_written_from_the_numbers():
    s = hand_summary()
    helped = suite_report.what_helped(s)
    assert helped["intro"].startswith("The baseline base reached 89.00% test accuracy (± 1.00 over 3 seeds, from 88.00% to 90.00%)")
    titles = [sec["title"] for sec in helped["sections"]]
    assert titles == ["Helped (1)", "Hurt (1)", "No detectable difference (1)"]
    up = helped["sections"][0]["items"][0]
    assert up["name"] == "up" and up["text"].startswith("+2.00 pp (95% CI +1.00 to +3.00 over 3 seeds)")
    assert "largest per-class recall changes: cat +5.00 pp, dog -1.00 pp" in up["text"]
    ens = helped["sections"][2]["items"][0]
    assert "gain over its best member -0.30 pp on average (per seed: -1.00, +0.00, +0.10)" in ens["text"]
    assert helped["conclusion"].startswith("1 of 3 detectably beat the baseline at alpha=0.05; the most accurate of them is up at 91.00% (+2.00 pp)")

    # other numbers, other words: nothing is canned
    s2 = copy.deepcopy(s)
    s2["results"][0].update(verdict="no detectable difference")
    s2["results"][0]["difference"]["estimate"] = 0.025
    helped2 = suite_report.what_helped(s2)
    assert [sec["title"] for sec in helped2["sections"]] == ["Hurt (1)", "No detectable difference (2)"]
    assert helped2["conclusion"].startswith("None of the 3 variants and ensembles detectably beat the baseline")
    assert "largest mean difference was +2.50 pp (up)" in helped2["conclusion"]
    assert "The baseline alone varies by 2.00 pp across seeds; 1 of the 2 undetectable differences is smaller than that." in helped2["conclusion"]


def test_summary_rows_and_terminal_table():
    s = hand_summary()
    rows = suite_report.summary_rows(s)
    assert [r["name"] for r in rows] == ["up", "ens", "base", "down"] and [r["rank"] for r in rows] == [1, 2, 3, 4]
    up = rows[0]
    assert (up["accuracy"], up["diff"], up["seed_ci"], up["mcnemar"], up["verdict"]) == (
        "91.00 ± 1.00", "+2.00", "+1.00 to +3.00", "0.010", "better")
    assert rows[2]["diff"] == "" and rows[2]["verdict"] == "baseline"
    console = Console(record=True, width=160)
    console.print(suite_report.summary_table(s))
    text = console.export_text()
    for name in ["up", "ens (ens.)", "base", "down", "better", "worse", "no detectable difference"]:
        assert name in text


def test_confused_pairs_from_summed_confusion_matrices():
    s = hand_summary()
    by = {e["name"]: e for e in s["results"]}
    by["base"]["confusion_matrix_summed"] = [[90, 9, 1], [30, 60, 0], [0, 0, 99]]
    by["up"]["confusion_matrix_summed"] = [[95, 3, 2], [12, 87, 0], [0, 3, 96]]
    pairs = suite_report.confused_pairs(s, by["up"])
    assert [(p["true"], p["predicted"]) for p in pairs] == [("dog", "cat"), ("cat", "dog"), ("cat", "cow"), ("cow", "dog")]
    assert pairs[0]["baseline"] == "10.0 (33.3%)" and pairs[0]["best"] == "4.0 (13.3%)"  # 3 seeds, 90 dogs


# --------------------------------------------------------------------------- rendered reports (fake runs)


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image-report")
    with pytest.MonkeyPatch.context() as mp:
        suite_fakes.patch(mp, FakeTraining())
        suite = experiments.load(write_suite(tmp))
        outcome = experiments.run(suite, tmp / "s", quiet=True)
    return tmp / "s", outcome


def test_image_report_is_complete_and_self_contained(image_report):
    sd, outcome = image_report
    summary = json.loads((sd / "summary.json").read_text())
    page = (sd / "report.html").read_text()
    md = (sd / "report.md").read_text()
    names = [e["name"] for e in summary["results"]]
    assert set(names) == {"a", "b", "c", "e"}
    for rank, e in enumerate(summary["results"], 1):
        assert f"<td class=\"num\">{rank}</td><td><strong>{e['name']}</strong>" in page
        assert f"| {rank} | {e['name']}" in md
        assert e["verdict"] in page
    assert page.count("data:image/png;base64,") == 7 and "src=\"figures/" not in page
    assert "https://" not in page and "http://" not in page
    for key in ["accuracy", "curves", "cm_base", "cm_best", "cm_diff", "per_class", "gallery"]:
        path = outcome.report[key]
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{path.name})" in md
    for heading in ["## Summary", "## What helped", "## Learning curves", "## Confusion matrices: baseline and best",
                    "## Per class:", "## Most confused class pairs", "## Misclassified test examples", "## Variants",
                    "### Ensembles against their best member", "## Provenance"]:
        assert heading in md
    assert "average of 1×a + 3×c" in md  # the ensemble's weights, described


@pytest.fixture(scope="module")
def text_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-report")
    with pytest.MonkeyPatch.context() as mp:
        suite_fakes.patch(mp, FakeTraining())
        suite = experiments.load(write_suite(tmp, suite_fakes.TEXT_SUITE_YAML))
        experiments.run(suite, tmp / "s", quiet=True)
    return tmp / "s"


def test_text_report_shows_escaped_review_snippets(text_report):
    page = (text_report / "report.html").read_text()
    md = (text_report / "report.md").read_text()
    assert "misclassified.png" not in md and "| # | true | predicted (confidence) | words | review |" in md
    assert "&lt;script&gt;" in page and "<script>" not in page  # review text never becomes markup
    assert "A &lt;b&gt;wonderful&lt;/b&gt; film. I loved it | every minute (review " in page  # <br />: a space
    assert "I loved it \\| every minute (review " in md  # a pipe cannot break the markdown table
    assert page.count("data:image/png;base64,") == 7  # no image gallery for text; accuracy by length instead
    rows = [line for line in md.splitlines() if "(review " in line]
    assert 1 <= len(rows) <= suite_report.GALLERY_TEXTS
    top = json.loads((text_report / "summary.json").read_text())["results"][0]["name"]
    assert f"{top}, seed 0: its most confident mistakes." in md  # the most accurate, even the baseline


def test_text_report_accuracy_by_review_length(text_report):
    md = (text_report / "report.md").read_text()
    assert (text_report / "figures" / "accuracy_by_length.png").is_file()
    section = md.split("## Accuracy by review length", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    header, rows = table[0], table[1:]
    summary = json.loads((text_report / "summary.json").read_text())
    names = [e["name"] for e in summary["results"]]
    assert header.split("|")[3:-1] == [f" {n} " for n in names]
    assert sum(int(r.split("|")[2]) for r in rows) == summary["n_test"]  # every test review in one group
    assert len(rows) == suite_report.LENGTH_BINS


def test_length_rows_groups_reviews_by_word_count():
    x = ["a b", "a b c<br />d", "w " * 10, "w " * 20, "w " * 30, "w " * 40]
    y = np.array([0, 1, 0, 1, 0, 1])
    right = np.eye(2)[y]  # always right
    summary = {"results": [{"name": "right"}, {"name": "wrong"}]}
    rows = suite_report.length_rows(summary, {"right": [right], "wrong": [right[:, ::-1]]}, y, suite_report.word_counts(x), bins=3)
    assert [r["words"] for r in rows] == ["2–4", "10–20", "30–40"]  # "<br />" separates words
    assert [r["n"] for r in rows] == [2, 2, 2]
    assert all(r["acc"]["right"] == 1.0 and r["acc"]["wrong"] == 0.0 for r in rows)
    same = suite_report.length_rows(summary, {"right": [right], "wrong": [right]}, y, suite_report.word_counts(["w w"] * 6))
    assert [(r["words"], r["n"]) for r in same] == [("2–2", 6)]
