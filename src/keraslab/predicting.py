"""Predictions on users' own images and reviews with a finished run's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keraslab import data, inputs
from keraslab.errors import KeraslabError
from keraslab.evaluation import predict_probabilities
from keraslab.runs import Run


def predict(run: Run, *, files: list[Path], texts: list[str]) -> list[dict]:
    """One record per input: its name, the predicted class and every class's probability."""
    info = data.DATASETS[data.canonical_name(run.config["dataset"])]
    class_names = list(info.class_names)
    if info.kind == "image":
        if texts:
            raise KeraslabError(
                f"{run.path} holds an image model ({run.config['model']}); it cannot classify --text",
                "pass image files (PNG, JPEG) instead, or a run trained on imdb",
            )
        if not files:
            raise KeraslabError("no input given", "pass one or more image files after the run directory")
        x = np.stack([inputs.load_image(f) for f in files])
        names = [str(f) for f in files]
    else:
        for f in files:
            if Path(f).suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}:
                raise KeraslabError(
                    f"{f} looks like an image but {run.path} holds a text model ({run.config['model']})",
                    "pass --text \"...\" or a text file with one review per line",
                )
        reviews = inputs.read_texts(texts, files)
        x = np.array(reviews, dtype=object)
        names = [r if len(r) <= 60 else r[:57] + "..." for r in reviews]
    probs = predict_probabilities(run.load_model(), x)
    return [
        {
            "input": name,
            "predicted": class_names[int(p.argmax())],
            "probabilities": {c: round(float(v), 6) for c, v in zip(class_names, p)},
        }
        for name, p in zip(names, probs)
    ]
