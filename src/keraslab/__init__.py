"""keraslab: train, compare and improve Keras classifiers, with evidence."""

__version__ = "0.1.0"
