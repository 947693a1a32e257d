"""Command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from keraslab import mute_native_stderr
from keraslab.errors import KeraslabError

app = typer.Typer(
    help="Train, compare and improve Keras classifiers, and prove with evidence what improved them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Find, describe and verify the datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="KERASLAB_DATA_DIR",
        help="Folder laid out like shared/data (fashion-mnist/*.gz, imdb/aclImdb_v1.tar.gz). "
        "Default: $KERASLAB_DATA_DIR, then the caches, then download.",
    ),
]


def _per_class_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    for col in ["class", "precision", "recall", "F1", "support"]:
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in metrics["per_class"]:
        table.add_row(c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"]))
    m = metrics["macro_avg"]
    table.add_row("macro avg", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(metrics["n_test"]))
    return table


@app.command()
def train(
    dataset: Annotated[str, typer.Argument(help="fashion-mnist or imdb.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name; see `keraslab models`.")],
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the model's, 10 for the lesson models).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (default: the model's, 32).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Learning rate (default: the model's, 1e-3).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam, adamw, sgd or rmsprop.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (e.g. with --optimizer adamw).")] = None,
    param: Annotated[
        Optional[list[str]], typer.Option("--param", "-p", help="Model parameter KEY=VALUE (YAML value); repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and the validation split.")] = 0,
    val_fraction: Annotated[
        Optional[float], typer.Option(help="Share of the training set held out for validation (default 0.1 images, 0.2 text).")
    ] = None,
    train_subset: Annotated[Optional[int], typer.Option(help="Train on a seeded subset of this many examples.")] = None,
    test_subset: Annotated[Optional[int], typer.Option(help="Evaluate on a seeded subset of this many test examples.")] = None,
    data_dir: DataDir = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    out: Annotated[Optional[Path], typer.Option(help="Exact run directory to create (must not exist).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch progress bars.")] = False,
):
    """Train one model on one dataset, evaluate it on the test set and write a run directory."""
    import yaml

    from keraslab import data, models, pipeline, runs
    from keraslab.config import RunConfig, validate

    name = data.canonical_name(dataset)
    spec = models.get(model, kind=data.DATASETS[name].kind)
    training = dict(spec.training)
    overrides = {
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "optimizer": optimizer, "weight_decay": weight_decay,
    }
    training.update({k: v for k, v in overrides.items() if v is not None})
    model_params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KeraslabError(f"--param {item!r} is not KEY=VALUE", f"parameters of {model}: {spec.params}")
        model_params[key] = yaml.safe_load(value)
    cfg = validate(
        RunConfig,
        {
            "dataset": name, "model": model, "model_params": model_params, "training": training,
            "seed": seed, "val_fraction": val_fraction, "train_subset": train_subset, "test_subset": test_subset,
        },
        "command line",
    )
    target = out or runs.default_run_dir(runs_dir, name, model, seed)
    console.print(f"Training [bold]{model}[/] on [bold]{name}[/], seed {seed}: {cfg.training.model_dump(exclude_none=True)}")
    verbose = 0 if quiet else ("auto" if sys.stdout.isatty() else 2)
    run_dir = pipeline.train_run(cfg, target, data_dir=data_dir, verbose=verbose)
    metrics = runs.Run.open(run_dir).metrics
    console.print(_per_class_table(metrics, f"{model} on {name}: per-class test results"))
    console.print(f"Test accuracy [bold]{metrics['accuracy']:.4f}[/], test loss {metrics['loss']:.4f}")
    console.print(f"Run directory: {run_dir}  (report: {run_dir / 'report.md'})")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `keraslab train`.")],
    data_dir: DataDir = None,
):
    """Reload a run's saved model, re-evaluate it on the test set and check it matches metrics.json."""
    from keraslab import pipeline, runs

    run = runs.Run.open(run_dir)
    fresh, recorded = pipeline.evaluate_run(run, data_dir=data_dir)
    console.print(_per_class_table(fresh, f"{run_dir}: per-class test results (re-evaluated)"))
    console.print(f"Test accuracy {fresh['accuracy']:.4f} (recorded {recorded['accuracy']:.4f}), "
                  f"loss {fresh['loss']:.4f} (recorded {recorded['loss']:.4f})")
    same = fresh["confusion_matrix"] == recorded["confusion_matrix"] and abs(fresh["loss"] - recorded["loss"]) < 1e-4
    if not same:
        raise KeraslabError(
            f"re-evaluation of {run_dir} differs from its metrics.json",
            "the data or library versions changed since training; compare environment.json",
        )
    console.print("Matches metrics.json.")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `keraslab train`.")],
    inputs: Annotated[
        Optional[list[Path]], typer.Argument(help="Image files (image models) or text files with one review per line.")
    ] = None,
    text: Annotated[Optional[list[str]], typer.Option("--text", "-t", help="A review to classify; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
):
    """Classify your own images or reviews with a trained run's model."""
    from keraslab import predicting, runs

    run = runs.Run.open(run_dir)
    results = predicting.predict(run, files=inputs or [], texts=text or [])
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3])
        console.print(f"{r['input']}: [bold]{r['predicted']}[/] ({probs})", markup=True, highlight=False)


@app.command("models")
def list_models():
    """List the registered models with their expected accuracy."""
    from keraslab import models

    table = Table(title="Registered models")
    for col in ["name", "data", "description", "expected"]:
        table.add_column(col)
    for name in models.names():
        spec = models.get(name)
        table.add_row(name, spec.kind, spec.summary, spec.expected)
    console.print(table)


@data_app.command("list")
def data_list():
    """List the datasets keraslab knows."""
    from keraslab import data

    for name, info in data.DATASETS.items():
        console.print(f"{name}: {info.description}")


@data_app.command("info")
def data_info(name: Annotated[str, typer.Argument(help="fashion-mnist or imdb.")], data_dir: DataDir = None):
    """Where a dataset was found, its classes and its split sizes."""
    from keraslab import data

    console.print_json(json.dumps(data.describe(name, data_dir=data_dir)))


@data_app.command("verify")
def data_verify(name: Annotated[str, typer.Argument(help="fashion-mnist or imdb.")], data_dir: DataDir = None):
    """Check a dataset in full (checksums, counts); exit non-zero if anything is wrong."""
    from keraslab import data

    console.print_json(json.dumps(data.verify(name, data_dir=data_dir)))
    console.print("OK")


@app.command("run")
def run_suite(
    suite_file: Annotated[Path, typer.Argument(help="A suite YAML file, e.g. experiments/fashion_mnist_exercise.yaml.")],
    suite_dir: Annotated[Optional[Path], typer.Option(help="Where the suite's runs and report go (default: runs/suites/NAME).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs it would do, train nothing.")] = False,
    force: Annotated[
        Optional[list[str]], typer.Option("--force", help="Rerun this variant (old runs are moved to superseded/); repeatable.")
    ] = None,
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
):
    """Run an experiment suite (variants x seeds), skip finished runs, then compare and report."""
    from keraslab import experiments
    from keraslab.reports import suite_report

    suite = experiments.load(suite_file)
    target = suite_dir or suite.default_dir()
    if dry_run:
        entries = experiments.plan(suite, target, force or [])
        console.print(suite_report.plan_table(suite, entries, experiments.check_buildable(suite)))
        todo = sum(e.state != "done" for e in entries)
        console.print(f"{todo} of {len(entries)} runs to train into {target}; nothing was trained (--dry-run).")
        return
    outcome = experiments.run(suite, target, data_dir=data_dir, force=force or [], quiet=quiet, console=console)
    console.print(suite_report.summary_table(outcome.summary))
    for line in suite_report.target_lines(outcome.summary):
        console.print(line, highlight=False)
    console.print(f"Trained {len(outcome.trained)} run(s), reused {len(outcome.skipped)} finished run(s).")
    console.print(f"Report: {outcome.report['html']} and {outcome.report['markdown']}; numbers: {target / experiments.SUMMARY}")


@app.command("report")
def report_suite(
    suite_dir: Annotated[Path, typer.Argument(help="A suite directory made by `keraslab run`.")],
    data_dir: DataDir = None,
):
    """Re-render a suite's summary.json, report.md and report.html from its finished runs (no training)."""
    from keraslab import experiments
    from keraslab.reports import suite_report

    suite = experiments.open_suite_dir(suite_dir)
    summary, paths = experiments.summarize_and_report(suite, suite_dir, data_dir=data_dir)
    console.print(suite_report.summary_table(summary))
    for line in suite_report.target_lines(summary):
        console.print(line, highlight=False)
    console.print(f"Report: {paths['html']} and {paths['markdown']}")


@app.command("tune")
def tune_search(
    tune_file: Annotated[Path, typer.Argument(help="A search YAML file, e.g. experiments/tune/fashion_mnist_tune_units.yaml.")],
    search_dir: Annotated[Optional[Path], typer.Option(help="Where the search's ledger and report go (default: runs/tune/NAME).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over; the old search is moved to SEARCH_DIR/superseded/, nothing is deleted.")
    ] = False,
    then_run: Annotated[
        Optional[int], typer.Option("--then-run", min=1, help="Retrain the best configuration and the baseline over N seeds "
                                    "and compare them on the test set (a `keraslab run` suite in SEARCH_DIR/then_run).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the search space and schedule, train nothing.")] = False,
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; one line per finished trial.")] = False,
):
    """Run a keras-tuner search from YAML; an interrupted search resumes where it stopped."""
    from keraslab import tuning, tuning_report
    from keraslab.reports import suite_report

    search = tuning.load(tune_file)
    target = search_dir or search.default_dir()
    if dry_run:
        console.print(tuning.describe(search, target))
        console.print(f"Network sizes (parameters, every tuned value lowest / highest): {tuning.check_buildable(search)}")
        console.print("Nothing was trained (--dry-run).")
        return
    outcome = tuning.tune(search, target, data_dir=data_dir, overwrite=overwrite, then_run=then_run, quiet=quiet, console=console)
    console.print(tuning_report.trials_table(search, outcome.entries))
    console.print(f"Trained {len(outcome.trained)} trial(s), kept {len(outcome.entries) - len(outcome.trained)} finished "
                  f"trial(s); stopped: {outcome.stop_reason}.")
    if outcome.best is not None:
        console.print(f"Best: trial {outcome.best['number']}, {search.spec.objective} {outcome.best['score']:.4f}: "
                      f"{outcome.best['hyperparameters']} -> {target / tuning.BEST_VARIANT}", highlight=False)
    if outcome.then_run is not None:
        console.print(suite_report.summary_table(outcome.then_run.summary))
        if outcome.reproduced:
            console.print(tuning_report.reproduced_sentence(outcome.reproduced), highlight=False)
    if outcome.report:
        console.print(f"Report: {outcome.report['html']}; table: {outcome.report['csv']}; ledger: {target / tuning.LEDGER}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2; bugs keep their traceback."""
    if argv is None:  # a real command line, not a test calling main() in-process
        mute_native_stderr()
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="keraslab", standalone_mode=False)
    except KeraslabError as exc:
        print(exc.one_line(), file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("error: interrupted; unfinished runs are not kept as finished", file=sys.stderr)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message())  # a bare command shows its help, as git does
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "keraslab"
        print(f"error: {' '.join(exc.format_message().split())} (see '{where} --help')", file=sys.stderr)
        sys.exit(exc.exit_code)
