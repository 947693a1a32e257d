"""keraslab: train, compare and improve Keras classifiers, with evidence."""

import os

# TensorFlow's C++ start-up chatter buries the progress bars; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
