"""Keeping memory flat when one process trains many models (suites, searches).

``keras.backend.clear_session()`` is not enough: Keras 3's TensorFlow optimizer sums gradients
through the default distribution strategy's ``all_reduce``, a ``tf.custom_gradient``. Traced in
graph mode, every call registers a ``CustomGradient-<n>`` function in TensorFlow's process-wide
gradient registry, and that function's closure holds the traced train step, so every ``fit``
keeps its graphs (about 6-8 MiB for a small MLP) alive forever. :func:`release_graphs` removes
the entries a block of training added; once its model is gone nothing can ask for those gradients
again. Results are unchanged (tested); memory stays flat (benchmarks/tune_memory.py,
docs/tuning.md).
"""

from __future__ import annotations

import gc
import os
import resource
from contextlib import contextmanager


def fresh_session() -> None:
    """Free the previous model's graphs and variables."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def _gradient_registry() -> dict | None:
    """TensorFlow's process-wide registry of gradient functions (private API; None if it moved)."""
    try:
        from tensorflow.python.framework import ops

        registry = ops.gradient_registry._registry
    except Exception:  # another TensorFlow: keep going without the fix
        return None
    return registry if isinstance(registry, dict) else None


def custom_gradient_names() -> set[str]:
    """The ``CustomGradient-<n>`` entries now in TensorFlow's gradient registry."""
    return {str(n) for n in (_gradient_registry() or {}) if str(n).startswith("CustomGradient-")}


@contextmanager
def release_graphs():
    """Drop the custom-gradient functions registered inside the block (see the module's docstring)."""
    before = custom_gradient_names()
    try:
        yield
    finally:
        registry = _gradient_registry()
        if registry is not None:
            for name in custom_gradient_names() - before:
                registry.pop(name, None)
        gc.collect()


def rss_mb() -> tuple[float | None, float]:
    """(current, peak) resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        current = None
    return current, peak
