"""Metrics computed from test-set predictions with scikit-learn, never from batch averages."""

from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

from keraslab.errors import KeraslabError
from keraslab.training import as_input


TTA_TRANSFORMS = {
    "none": (),
    "flip": (lambda x: x[:, :, ::-1],),  # mirror images left-right (axis 2 is the width)
}


def predict_probabilities(
    model: keras.Model, x: np.ndarray, batch_size: int = 1024, tta: str = "none", transforms=None
) -> np.ndarray:
    """Class probabilities (n, k) from a logits model; one logit means [P(class 0), P(class 1)].

    Test-time augmentation: ``tta="flip"`` averages the probabilities of each image and of its
    mirror image (TrainingConfig.tta). `transforms` (a list of functions of the whole array)
    replaces the named ones; the untransformed input is always one of the averaged views.
    """
    views = TTA_TRANSFORMS.get(tta) if transforms is None else tuple(transforms)
    if views is None:
        raise KeraslabError(f"unknown test-time augmentation {tta!r}", f"choose one of: {', '.join(TTA_TRANSFORMS)}")
    probs = _probabilities(model, x, batch_size)
    if not views:
        return probs
    if x.dtype == object or x.dtype.kind in "US" or x.ndim < 3:
        raise KeraslabError("test-time augmentation transforms images; this input is not images", "use tta: none")
    for transform in views:
        probs = probs + _probabilities(model, np.ascontiguousarray(transform(x)), batch_size)
    return probs / (1 + len(views))


def _probabilities(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    logits = model.predict(as_input(x), batch_size=batch_size, verbose=0)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, cross-entropy, per-class precision/recall/F1/support, macro averages, confusion."""
    labels = np.arange(len(class_names))
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "loss": float(log_loss(y_true, probs, labels=labels)),
        "n_test": int(len(y_true)),
        "per_class": per_class,
        "macro_avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "class_names": list(class_names),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
