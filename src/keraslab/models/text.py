"""Text classifiers that take raw review strings; their vectorizers are adapted on training text only."""

import re
import string

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keraslab.errors import KeraslabError
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


# --------------------------------------------------------------------------- preprocessing blocks
#
# Everything below is the machinery of the stronger models: a configurable review standardizer,
# a TextVectorization whose adapt() is a one-pass count (same vocabulary and IDF as Keras', several
# times faster on n-grams), and the two layers that turn sparse n-gram vectors into logits.
# Every statistic (vocabulary, IDF, NB log-count ratio) is fitted by training.py on the training
# split only; docs/text_models.md describes each choice.

_PUNCTUATION_CHARS = re.escape(string.punctuation)


@keras.saving.register_keras_serializable(package="keraslab")
class ReviewStandardizer:
    """A configurable, serializable `standardize` for TextVectorization.

    * Unicode separators and control characters always become spaces (see `standardize_review`).
    * ``lowercase``: Unicode-aware lower-casing (``"Élan"`` -> ``"élan"``).
    * ``strip_html``: ``<br />`` and any other tag (up to 100 characters) become a space, and so
      do HTML entities such as ``&amp;`` or ``&#39;``.
    * ``punctuation``: ``"strip"`` removes ASCII punctuation (the TF tutorial's rule: ``don't`` ->
      ``dont``), ``"split"`` keeps each mark as its own token (``great!`` -> ``great !``, so ``!``
      and ``?`` can carry sentiment), ``"keep"`` leaves it attached (``great!`` is one token).
    """

    PUNCTUATION_MODES = ("strip", "split", "keep")

    def __init__(self, lowercase: bool = True, strip_html: bool = True, punctuation: str = "strip"):
        if punctuation not in self.PUNCTUATION_MODES:
            raise ValueError(f"punctuation must be one of {self.PUNCTUATION_MODES}, not {punctuation!r}")
        self.lowercase = bool(lowercase)
        self.strip_html = bool(strip_html)
        self.punctuation = punctuation

    def __call__(self, text):
        text = tf.strings.regex_replace(text, r"[\p{Z}\p{Cc}]+", " ")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        if self.strip_html:
            text = tf.strings.regex_replace(text, r"<[^>]{0,100}>", " ")
            text = tf.strings.regex_replace(text, r"&(#[0-9]{1,6}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});", " ")
        if self.punctuation == "strip":
            text = tf.strings.regex_replace(text, f"[{_PUNCTUATION_CHARS}]", "")
        elif self.punctuation == "split":
            text = tf.strings.regex_replace(text, f"([{_PUNCTUATION_CHARS}])", r" \1 ")
        return text

    def get_config(self) -> dict:
        return {"lowercase": self.lowercase, "strip_html": self.strip_html, "punctuation": self.punctuation}

    @classmethod
    def from_config(cls, config: dict) -> "ReviewStandardizer":
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, ReviewStandardizer) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return "ReviewStandardizer(" + ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()) + ")"


def _ngram_widths(ngrams: int) -> int | None:
    """`ngrams=n` means every n-gram from 1 to n (Keras' own meaning of an integer)."""
    if isinstance(ngrams, bool) or ngrams not in (1, 2, 3):
        raise KeraslabError(f"ngrams must be 1, 2 or 3 (all n-grams up to that length), not {ngrams!r}",
                            "ngrams=2 adds bigrams, ngrams=3 bigrams and trigrams")
    return None if ngrams == 1 else ngrams


def _trim_idf_on_load(lookup) -> None:
    """Work around Keras 3.15 failing to reload a tf_idf vectorizer whose vocabulary is smaller
    than max_tokens (pad_to_max_tokens=True): the IDF weights are saved padded to max_tokens but
    checked against the saved vocabulary's length. Trim them to it; loading pads them again."""
    original = lookup.load_assets

    def load_assets(dir_path):
        if lookup.input_vocabulary is None and hasattr(lookup, "idf_weights_const"):
            with tf.io.gfile.GFile(tf.io.gfile.join(dir_path, "vocabulary.txt"), "r") as f:
                lines = f.read().splitlines()
            while lines and lines[-1] == "":
                lines.pop()
            lookup.idf_weights_const = lookup.idf_weights_const[: len(lines)]
        original(dir_path)

    lookup.load_assets = load_assets


@keras.saving.register_keras_serializable(package="keraslab")
class ReviewVectorizer(layers.TextVectorization):
    """TextVectorization whose `adapt` counts tokens in one vectorized pass.

    Keras' adapt inserts every token of every batch into a hash table; on 25,000 reviews with
    trigrams (17 million tokens, 5 million distinct) that takes minutes on two cores. This adapt
    counts with `tf.unique` per batch and merges the batches, then sets exactly the vocabulary
    Keras would have chosen (most frequent first, ties by token, highest first) and, for
    ``tf_idf``, the same IDF weights ``log(1 + n_docs / (1 + doc_freq))``. Everything else
    (call, saving, loading) is plain TextVectorization.
    """

    def adapt(self, data, batch_size=None, steps=None):
        if isinstance(data, tf.data.Dataset):
            batches = data.take(steps) if steps is not None else data
        elif isinstance(data, (list, tuple, np.ndarray)) or tf.is_tensor(data):
            data = tf.constant(list(data), dtype=tf.string) if isinstance(data, (list, tuple, np.ndarray)) else data
            batches = [data[i : i + 4096] for i in range(0, int(data.shape[0]), 4096)]
        else:
            batches = data
        tf_idf = self._output_mode == "tf_idf"
        uniques, counts, doc_counts, n_docs = [], [], [], 0
        for batch in batches:
            batch = tf.convert_to_tensor(batch, dtype=tf.string)
            if batch.shape.rank == 2:
                batch = tf.squeeze(batch, axis=-1)
            tokens = self._preprocess(batch)
            flat = tokens.flat_values
            unique, index = tf.unique(flat, out_idx=tf.int64)
            size = tf.size(unique, out_type=tf.int64)
            uniques.append(unique)
            counts.append(tf.math.bincount(index, minlength=size, dtype=tf.int64))
            if tf_idf:  # each (document, token) pair once
                pairs, _ = tf.unique(tokens.value_rowids() * size + index, out_idx=tf.int64)
                doc_counts.append(tf.math.bincount(pairs % size, minlength=size, dtype=tf.int64))
            n_docs += int(tokens.nrows())
        if not uniques or sum(int(tf.size(u)) for u in uniques) == 0:
            raise ValueError(f"{self.name}: no tokens to build a vocabulary from")
        unique, index = tf.unique(tf.concat(uniques, 0), out_idx=tf.int64)
        size = tf.size(unique, out_type=tf.int64)
        tokens = unique.numpy()
        total = tf.math.unsorted_segment_sum(tf.concat(counts, 0), index, size).numpy()
        keep = (tokens != b"") & (tokens != b"[UNK]")  # the padding and OOV tokens Keras reserves
        limit = None
        if self._lookup_layer.max_tokens:
            limit = self._lookup_layer.max_tokens - (2 if self._output_mode == "int" else 1)
            if limit < keep.sum():  # sort only what can make the cut: string sorts are the slow part
                keep &= total >= np.partition(total[keep], -limit)[-limit]
        order = np.flatnonzero(keep)[np.lexsort((tokens[keep], total[keep]))[::-1]][:limit]
        idf = None
        if tf_idf:
            df = tf.math.unsorted_segment_sum(tf.concat(doc_counts, 0), index, size).numpy()[order]
            idf = np.log(1.0 + n_docs / (1.0 + df)).astype(keras.config.floatx())
        self.set_vocabulary(tokens[order], idf_weights=idf)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._output_mode == "tf_idf":
            _trim_idf_on_load(self._lookup_layer)


@keras.saving.register_keras_serializable(package="keraslab")
class NBLinear(layers.Layer):
    """Logits ``x @ (r * w) + b``: a linear model on n-gram features scaled by NB log-count ratios.

    ``r`` (non-trainable, one column per logit) is the log-count ratio of Wang & Manning (2012),
    ``r = log((p / |p|_1) / (q / |q|_1))`` with ``p = alpha + sum of x over positive training
    reviews`` and ``q`` the same over negative ones (one-vs-rest for more than two classes). It
    starts at 1 (a plain linear model) and is set by :meth:`adapt_with_labels`, which
    `training.fit` calls with the training split only. ``w`` starts at ``kernel_init``, so before
    any training step the model is already the NB classifier ``sign(x @ r + b)`` scaled by it.
    Accepts dense or sparse (``TextVectorization(sparse=True)``) input.
    """

    def __init__(self, units: int = 1, alpha: float = 1.0, kernel_init: float = 0.0,
                 l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.alpha = float(alpha)
        self.kernel_init = float(kernel_init)
        self.l2 = float(l2)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.ratios = self.add_weight(
            name="ratios", shape=(dim, self.units), initializer="ones", trainable=False
        )
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self.units),
            initializer=keras.initializers.Constant(self.kernel_init),
            regularizer=keras.regularizers.L2(self.l2) if self.l2 else None,
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        weights = self.ratios * self.kernel
        inputs = tf.cast(inputs, weights.dtype)  # TextVectorization's multi-hot vectors are int64
        if isinstance(inputs, tf.SparseTensor):
            return tf.sparse.sparse_dense_matmul(inputs, weights) + self.bias
        return tf.matmul(inputs, weights) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def adapt_with_labels(self, batches) -> None:
        """Set ``r`` from ``(features, labels)`` batches of the TRAINING split (and nothing else)."""
        sums = None
        classes = max(2, self.units)
        for features, labels in batches:
            onehot = tf.one_hot(tf.cast(labels, tf.int32), classes, dtype=tf.float32)
            if isinstance(features, tf.SparseTensor):
                part = tf.sparse.sparse_dense_matmul(tf.cast(features, tf.float32), onehot, adjoint_a=True)
            else:
                part = tf.matmul(tf.cast(features, tf.float32), onehot, transpose_a=True)
            part = part.numpy().astype(np.float64)
            sums = part if sums is None else sums + part
        if sums is None:
            raise ValueError(f"{self.name}: no training data to compute NB log-count ratios from")
        if self.units == 1:
            p, q = sums[:, 1:2], sums[:, 0:1]  # positive class is label 1
        else:
            p, q = sums, sums.sum(axis=1, keepdims=True) - sums
        p, q = p + self.alpha, q + self.alpha
        r = np.log((p / p.sum(axis=0)) / (q / q.sum(axis=0)))
        self.ratios.assign(r.astype(self.ratios.dtype))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "alpha": self.alpha,
                "kernel_init": self.kernel_init, "l2": self.l2}


@keras.saving.register_keras_serializable(package="keraslab")
class BagOfEmbeddings(layers.Layer):
    """fastText's document vector: the mean of the embeddings of a review's n-grams.

    Input: a (sparse or dense) count vector over the n-gram vocabulary, as
    ``TextVectorization(output_mode="count", sparse=True)`` gives; output ``counts @ E / sum(counts)``.
    The average runs over every n-gram of the review with no truncation; an empty review gives zeros.
    """

    def __init__(self, output_dim: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(int(input_shape[-1]), self.output_dim), initializer="uniform"
        )

    def call(self, inputs):
        inputs = tf.cast(inputs, self.embeddings.dtype)
        if isinstance(inputs, tf.SparseTensor):
            summed = tf.sparse.sparse_dense_matmul(inputs, self.embeddings)
            n = tf.reshape(tf.sparse.reduce_sum(inputs, axis=1), (-1, 1))  # static shape for the next layer
        else:
            summed = tf.matmul(inputs, self.embeddings)
            n = tf.reduce_sum(inputs, axis=1, keepdims=True)
        return summed / tf.maximum(n, 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


# --------------------------------------------------------------------------- stronger models

#: 85th percentile of the token counts of the 25,000 training reviews under the default
#: standardization (lower-case, HTML and punctuation stripped): 50% have at most 172 tokens,
#: 75% 280, 85% 371, 90% 452, 95% 589, 99% 903 (mean 231). `token_count_percentile` recomputes it.
SEQUENCE_LENGTH_P85 = 371


def token_count_percentile(texts, q: float = 85, standardize=None) -> int:
    """The q-th percentile of the number of tokens per text after standardization (training texts!)."""
    standardize = standardize or ReviewStandardizer()
    counts = tf.strings.split(standardize(tf.constant(list(texts), dtype=tf.string))).row_lengths()
    return int(np.percentile(counts.numpy(), q))


def _vectorizer(*, max_tokens, ngrams, output_mode, lowercase, strip_html, punctuation,
                sequence_length=None, sparse=False) -> ReviewVectorizer:
    kwargs = {}
    if output_mode == "int":
        kwargs["output_sequence_length"] = sequence_length
    else:  # a fixed width, so the layers after it know their input size
        kwargs.update(pad_to_max_tokens=True, sparse=sparse)
    if punctuation not in ReviewStandardizer.PUNCTUATION_MODES:
        raise KeraslabError(f"punctuation must be one of {', '.join(ReviewStandardizer.PUNCTUATION_MODES)}, "
                            f"not {punctuation!r}", "strip removes it, split makes each mark a token, keep leaves it")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 3:
        raise KeraslabError(f"max_tokens must be a whole number of at least 3, not {max_tokens!r}")
    if output_mode == "int" and (isinstance(sequence_length, bool) or not isinstance(sequence_length, int)
                                 or sequence_length < 1):
        raise KeraslabError(f"sequence_length must be a positive whole number, not {sequence_length!r}")
    return ReviewVectorizer(
        max_tokens=max_tokens,
        standardize=ReviewStandardizer(lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
        ngrams=_ngram_widths(ngrams),
        output_mode=output_mode,
        name="vectorize",
        **kwargs,
    )


def _review_input():
    return keras.Input(shape=(), dtype="string", name="review")


@register(
    "ngram-tfidf-mlp",
    kind="text",
    expected=(
        "IMDB test accuracy 0.899 ± 0.004 (3 seeds, all 25,000 training reviews, experiments/imdb_best.yaml); "
        "about 1.5 min on 2 CPU cores"
    ),
    training={"epochs": 5, "batch_size": 256, "learning_rate": 1e-2, "optimizer": "adam"},
)
def ngram_tfidf_mlp(
    num_classes: int = 2,
    ngrams: int = 2,
    max_tokens: int = 50000,
    hidden_units: int = 16,
    dropout: float = 0.5,
    normalize: bool = True,
    lowercase: bool = True,
    strip_html: bool = True,
    punctuation: str = "strip",
):
    """Bag of n-grams (1..ngrams) with TF-IDF weights, dropout and a small dense head (DLwP's bigram model)."""
    stack = [
        _review_input(),
        _vectorizer(max_tokens=max_tokens, ngrams=ngrams, output_mode="tf_idf",
                    lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
    ]
    if normalize:  # long and short reviews on one scale
        stack.append(layers.UnitNormalization(name="l2_normalize"))
    stack.append(layers.Dropout(dropout))
    if hidden_units:
        stack += [layers.Dense(hidden_units, activation="relu", name="hidden"), layers.Dropout(dropout)]
    stack.append(_head(num_classes))
    return keras.Sequential(stack, name="ngram_tfidf_mlp")


@register(
    "nbsvm",
    kind="text",
    expected=(
        "IMDB test accuracy 0.922 ± 0.0002 (3 seeds, all 25,000 training reviews, experiments/imdb_best.yaml; "
        "0.918-0.919 with the default 20% held out); about 1 min on 2 CPU cores"
    ),
    training={"epochs": 6, "batch_size": 256, "learning_rate": 1e-3, "optimizer": "adam"},
)
def nbsvm(
    num_classes: int = 2,
    ngrams: int = 3,
    max_tokens: int = 200000,
    alpha: float = 1.0,
    l2: float = 0.0,
    lowercase: bool = True,
    strip_html: bool = True,
    punctuation: str = "strip",
):
    """NB-weighted logistic regression on binary n-grams (Wang & Manning 2012, NBSVM-style)."""
    return keras.Sequential(
        [
            _review_input(),
            _vectorizer(max_tokens=max_tokens, ngrams=ngrams, output_mode="multi_hot", sparse=True,
                        lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
            NBLinear(1 if num_classes == 2 else num_classes, alpha=alpha, l2=l2, name="logits"),
        ],
        name="nbsvm",
    )


@register(
    "fasttext-bigram",
    kind="text",
    expected=(
        "IMDB test accuracy 0.906 ± 0.002 (3 seeds, all 25,000 training reviews, experiments/imdb_best.yaml); "
        "3.5-6.5 min on 2 CPU cores"
    ),
    training={"epochs": 5, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam"},
)
def fasttext_bigram(
    num_classes: int = 2,
    ngrams: int = 2,
    max_tokens: int = 200000,
    embedding_dim: int = 50,
    dropout: float = 0.0,
    lowercase: bool = True,
    strip_html: bool = True,
    punctuation: str = "strip",
):
    """fastText (Joulin et al. 2016): the mean embedding of a review's uni- and bigrams, then a linear head."""
    stack = [
        _review_input(),
        _vectorizer(max_tokens=max_tokens, ngrams=ngrams, output_mode="count", sparse=True,
                    lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
        BagOfEmbeddings(embedding_dim, name="mean_embedding"),
    ]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(_head(num_classes))
    return keras.Sequential(stack, name="fasttext_bigram")


@register(
    "cnn1d",
    kind="text",
    expected=(
        "IMDB test accuracy 0.864-0.871 (one seed; 0.871 with the default early stopping); 200 s CPU time, "
        "10 min wall measured while the 2-core CPU was shared (load 10-15)"
    ),
    training={"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam",
              "early_stopping": {"monitor": "val_accuracy", "patience": 1, "restore_best_weights": True}},
)
def cnn1d(
    num_classes: int = 2,
    max_tokens: int = 20000,
    sequence_length: int = SEQUENCE_LENGTH_P85,
    embedding_dim: int = 128,
    filters: int = 128,
    kernel_size: int = 7,
    strides: int = 3,
    dropout: float = 0.5,
    lowercase: bool = True,
    strip_html: bool = True,
    punctuation: str = "strip",
):
    """keras-io's text CNN: Embedding, two strided Conv1D, global max pooling, a dense layer."""
    return keras.Sequential(
        [
            _review_input(),
            _vectorizer(max_tokens=max_tokens, ngrams=1, output_mode="int", sequence_length=sequence_length,
                        lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
            layers.Embedding(max_tokens, embedding_dim, name="embedding"),
            layers.Dropout(dropout),
            layers.Conv1D(filters, kernel_size, strides=strides, padding="valid", activation="relu"),
            layers.Conv1D(filters, kernel_size, strides=strides, padding="valid", activation="relu"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(filters, activation="relu"),
            layers.Dropout(dropout),
            _head(num_classes),
        ],
        name="cnn1d",
    )


@register(
    "bigru",
    kind="text",
    expected=(
        "IMDB test accuracy 0.857 (one seed, 3 epochs); 410 s CPU time, 14 min wall measured while the "
        "2-core CPU was shared (load 5-7)"
    ),
    training={"epochs": 3, "batch_size": 64, "learning_rate": 1e-3, "optimizer": "adam"},
)
def bigru(
    num_classes: int = 2,
    max_tokens: int = 20000,
    sequence_length: int = SEQUENCE_LENGTH_P85,
    embedding_dim: int = 64,
    units: int = 32,
    dropout: float = 0.3,
    lowercase: bool = True,
    strip_html: bool = True,
    punctuation: str = "strip",
):
    """Bidirectional GRU over the first `sequence_length` tokens (85th percentile of training lengths)."""
    return keras.Sequential(
        [
            _review_input(),
            _vectorizer(max_tokens=max_tokens, ngrams=1, output_mode="int", sequence_length=sequence_length,
                        lowercase=lowercase, strip_html=strip_html, punctuation=punctuation),
            layers.Embedding(max_tokens, embedding_dim, mask_zero=True, name="embedding"),
            layers.Bidirectional(layers.GRU(units), name="bigru"),
            layers.Dropout(dropout),
            _head(num_classes),
        ],
        name="bigru",
    )
