"""Text classifiers that take raw review strings; their vectorizers are adapted on training text only."""

import re
import string

import keras
import tensorflow as tf
from keras import layers

from keraslab.models.registry import register

# Punctuation as a regex character class; HTML line breaks go first so "<br />" leaves no "br".
_PUNCTUATION = "[%s]" % re.escape(string.punctuation)


@keras.saving.register_keras_serializable(package="keraslab")
def standardize_review(text):
    """Lower-case, drop `<br />` and other HTML tags, strip punctuation (the TF tutorial's rule).

    Unicode separators and control characters (U+0085, U+2028, ...) become spaces: Keras saves a
    vocabulary one token per line and splits it back on them, so a token holding one would come
    back as two and the saved model would refuse to load ("repeated term").
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"[\p{Z}\p{Cc}]+", " ")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, r"<[^>]{0,100}>", " ")
    return tf.strings.regex_replace(text, _PUNCTUATION, "")


def _head(num_classes: int) -> layers.Dense:
    return layers.Dense(1 if num_classes == 2 else num_classes, name="logits")


@register(
    "tutorial-embedding",
    kind="text",
    expected="IMDB test accuracy about 0.86-0.87 (10 epochs); about 1-2 minutes on 2 CPU cores",
    training={"epochs": 10, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam"},
)
def tutorial_embedding(
    num_classes: int = 2,
    max_tokens: int = 10000,
    sequence_length: int = 250,
    embedding_dim: int = 16,
    dropout: float = 0.2,
):
    """The TensorFlow text-classification tutorial: TextVectorization, Embedding, average pooling."""
    return keras.Sequential(
        [
            keras.Input(shape=(), dtype="string", name="review"),
            layers.TextVectorization(
                max_tokens=max_tokens,
                standardize=standardize_review,
                output_mode="int",
                output_sequence_length=sequence_length,
                name="vectorize",
            ),
            layers.Embedding(max_tokens, embedding_dim, name="embedding"),
            layers.Dropout(dropout),
            layers.GlobalAveragePooling1D(),
            layers.Dropout(dropout),
            _head(num_classes),
        ],
        name="tutorial_embedding",
    )
