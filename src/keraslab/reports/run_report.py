"""The short markdown report of one run, written beside its PNGs."""

from __future__ import annotations

from pathlib import Path

from keraslab.reports import plots

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "learning_curves.png"


def per_class_table(metrics: dict) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c in metrics["per_class"]:
        rows.append(
            f"| {c['class']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
        )
    m = metrics["macro_avg"]
    rows.append(f"| **macro average** | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {metrics['n_test']} |")
    return "\n".join(rows)


def write(run_dir: Path, config: dict, metrics: dict, history: dict, env: dict) -> Path:
    title = f"{config['model']} on {config['dataset']} (seed {config['seed']})"
    plots.confusion_matrix(metrics["confusion_matrix"], metrics["class_names"], run_dir / CONFUSION_PNG,
                           title=f"{config['model']}: row-normalized confusion matrix")
    plots.learning_curves(history, run_dir / CURVES_PNG, title=f"{config['model']}: learning curves")
    t = config["training"]
    epochs_run = len(history.get("loss", []))
    text = f"""# {title}

**Test accuracy {metrics['accuracy']:.4f}** · test cross-entropy {metrics['loss']:.4f} · {metrics['n_test']:,} test examples · {epochs_run} epochs · training and evaluation took {env['wall_seconds']:.0f} s

Settings: optimizer {t['optimizer']}, learning rate {t['learning_rate']:g}, batch size {t['batch_size']}, epochs {t['epochs']}{', weight decay ' + format(t['weight_decay'], 'g') if t.get('weight_decay') else ''}; validation fraction {config.get('val_fraction')}; model parameters {config.get('model_params') or 'defaults'}.

## Per-class results on the test set

{per_class_table(metrics)}

## Confusion matrix

![Row-normalized confusion matrix]({CONFUSION_PNG})

## Learning curves

![Learning curves]({CURVES_PNG})

## Provenance

- command: `{' '.join(env.get('command') or [])}`
- keraslab commit: `{env.get('git_commit')}`
- packages: {', '.join(f'{k} {v}' for k, v in env.get('packages', {}).items())}; Python {env.get('python')}
- data: {env.get('data_source', '')}
- files: `config.json` (resolved settings), `environment.json`, `history.json`, `metrics.json`, `probabilities.npy` (test set, columns in class order), `model.keras`, `tensorboard/`
"""
    path = run_dir / "report.md"
    path.write_text(text)
    return path
