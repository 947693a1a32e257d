"""The one seeding helper: Python, NumPy and TensorFlow seeds plus deterministic ops."""

import keras
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Make a run repeatable on the CPU: same seed, same weights, same batches, same metrics."""
    keras.utils.set_random_seed(seed)  # seeds random, numpy and tensorflow together
    tf.config.experimental.enable_op_determinism()
