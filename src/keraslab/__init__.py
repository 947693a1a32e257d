"""keraslab: train, compare and improve Keras classifiers, with evidence."""

import os

# TensorFlow's C++ start-up chatter buries the progress bars; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"



def mute_native_stderr() -> None:
    """Send TensorFlow's C++ logs to /dev/null; Python's own stderr keeps the terminal.

    TensorFlow 2.21 writes C++ logs (oneDNN and CPU notices at import, tf.data "NodeDef mentions
    attribute" errors during fit) straight to file descriptor 2, ignoring TF_CPP_MIN_LOG_LEVEL;
    they bury the progress bars and keraslab's one-line errors. This points fd 2 at /dev/null and
    gives `sys.stderr` a duplicate of the real one, so warnings, errors and tracebacks from Python
    still show. Only the command line calls it; set KERASLAB_NATIVE_LOGS=1 to keep the C++ logs.
    """
    import sys

    if os.environ.get("KERASLAB_NATIVE_LOGS"):
        return
    sys.stderr.flush()
    real_stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = real_stderr
