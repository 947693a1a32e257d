"""keraslab: train, compare and improve Keras classifiers, with evidence."""

import os

# TensorFlow's C++ start-up chatter buries the progress bars; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 muted.

    TensorFlow 2.21 writes its C++ start-up logs (oneDNN, CPU features) straight to fd 2 during
    import, ignoring TF_CPP_MIN_LOG_LEVEL; they would bury keraslab's one-line errors. Python
    exceptions from a broken install still surface: they are raised after fd 2 is restored.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
