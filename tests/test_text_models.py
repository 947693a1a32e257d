"""The IMDB text models: preprocessing, training-only statistics (no test leakage), NB ratios, predict.

Every registered text model also goes through tests/test_models.py (build, train a step, save,
reload, identical predictions). These tests use seeded subsets of the real reviews and stay fast.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keraslab import data, evaluation, models, pipeline, predicting, training
from keraslab.config import RunConfig, TrainingConfig
from keraslab.errors import KeraslabError
from keraslab.models.text import (
    NBLinear,
    ReviewStandardizer,
    ReviewVectorizer,
    standardize_review,
    token_count_percentile,
)
from keraslab.runs import Run

NEW_TEXT_MODELS = ["ngram-tfidf-mlp", "nbsvm", "fasttext-bigram", "cnn1d", "bigru"]


@pytest.fixture(scope="module")
def splits(shared_data_dir):
    return data.load("imdb_reviews", data_dir=shared_data_dir, seed=0, train_subset=2000, test_subset=1000)


def _tokens(texts, standardizer):
    return tf.strings.split(standardizer(tf.constant(list(texts)))).numpy()


# --------------------------------------------------------------------------- preprocessing


def test_standardizer_defaults_match_the_tutorial_rule():
    texts = ["Great<br /><br />FILM!! <i>Loved</i> it.", "Don't, ever; watch\u2028THIS.", "caf\u00e9 na\u00efve"]
    ours = [t.decode().split() for t in ReviewStandardizer()(tf.constant(texts)).numpy()]
    tutorial = [t.decode().split() for t in standardize_review(tf.constant(texts)).numpy()]
    assert ours[:2] == tutorial[:2] == [["great", "film", "loved", "it"], ["dont", "ever", "watch", "this"]]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({}, ["great", "film", "loved", "it"]),
        ({"punctuation": "split"}, ["great", "film", "!", "!", "loved", "it", "."]),
        ({"punctuation": "keep"}, ["great", "film!!", "loved", "it."]),
        ({"lowercase": False}, ["Great", "FILM", "Loved", "it"]),
        ({"strip_html": False}, ["greatbr", "br", "film", "ilovedi", "it"]),
    ],
)
def test_standardizer_options(config, expected):
    out = ReviewStandardizer(**config)(tf.constant(["Great<br /><br />FILM!! <i>Loved</i> it."]))
    assert out.numpy()[0].decode().split() == expected


def test_standardizer_unicode_entities_and_separators():
    s = ReviewStandardizer(punctuation="split")
    out = s(tf.constant(["\u00c9COLE &amp; caf\u00e9&#39;s\x85ending\u2029"])).numpy()[0].decode().split()
    assert out == ["\u00e9cole", "caf\u00e9", "s", "ending"]


def test_standardizer_is_serializable_inside_a_vectorizer():
    vec = ReviewVectorizer(max_tokens=50, standardize=ReviewStandardizer(lowercase=False, punctuation="split"))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(vec))
    assert clone._standardize == ReviewStandardizer(lowercase=False, punctuation="split")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_mode": "int", "output_sequence_length": 20},
        {"output_mode": "multi_hot", "ngrams": 3},
        {"output_mode": "count", "ngrams": 2},
        {"output_mode": "tf_idf", "ngrams": 2},
    ],
)
def test_fast_adapt_gives_keras_vocabulary_and_idf(splits, kwargs):
    texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(splits.x_train[:300]))).batch(128)
    ours = ReviewVectorizer(max_tokens=3000, standardize=standardize_review, **kwargs)
    keras_own = keras.layers.TextVectorization(max_tokens=3000, standardize=standardize_review, **kwargs)
    ours.adapt(texts)
    keras_own.adapt(texts)
    assert ours.get_vocabulary() == keras_own.get_vocabulary()
    if kwargs["output_mode"] == "tf_idf":
        np.testing.assert_allclose(
            ours._lookup_layer.idf_weights.numpy(), keras_own._lookup_layer.idf_weights.numpy(), rtol=1e-6
        )


def test_token_count_percentile():
    texts = ["one", "one two", "one two three", "a b c d", "<br />x y z w v"]
    assert token_count_percentile(texts, 50) == 3
    assert token_count_percentile(texts, 100) == 5


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ngrams": 4}, "ngrams must be 1, 2 or 3"),
        ({"punctuation": "drop"}, "punctuation must be one of strip, split, keep"),
        ({"max_tokens": 0}, "max_tokens must be"),
    ],
)
def test_bad_preprocessing_parameters_are_user_errors(params, message):
    with pytest.raises(KeraslabError, match=message):
        models.build("nbsvm", num_classes=2, **params)


def test_ngram_range_reaches_the_vocabulary(splits):
    model = models.build("ngram-tfidf-mlp", num_classes=2, ngrams=3, max_tokens=5000)
    training.adapt_preprocessing(model, splits.x_train[:200])
    widths = {len(t.split()) for t in model.get_layer("vectorize").get_vocabulary()[1:]}
    assert widths == {1, 2, 3}


# --------------------------------------------------------------------------- no test-set leakage


def _adapted_state(name, x_train, y_train, **params):
    """Everything a text model learns from data before its first gradient step."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = models.build(name, num_classes=2, **params)
    training.adapt_preprocessing(model, x_train)
    training.adapt_label_statistics(model, x_train, y_train)
    vec = model.get_layer("vectorize")
    idf = vec._lookup_layer.idf_weights.numpy() if vec.get_config()["output_mode"] == "tf_idf" else None
    return vec.get_vocabulary(), idf, [w.numpy() for w in model.non_trainable_weights], model


@pytest.mark.parametrize("name", ["ngram-tfidf-mlp", "nbsvm", "fasttext-bigram", "cnn1d"])
def test_a_word_only_in_test_reviews_is_not_in_the_vocabulary(splits, name):
    standardizer = ReviewStandardizer()
    train_tokens = {t for doc in _tokens(splits.x_train, standardizer) for t in doc}
    test_only = {t.decode() for doc in _tokens(splits.x_test, standardizer) for t in doc} - {
        t.decode() for t in train_tokens
    }
    assert len(test_only) > 100  # the test reviews have plenty of words the training ones lack

    ngrams = {"ngrams": 1} if name != "cnn1d" else {}  # words: every one fits in the vocabulary
    vocab, _, _, _ = _adapted_state(name, splits.x_train, splits.y_train, max_tokens=400000, **ngrams)
    assert 1000 < len(vocab) < 400000  # not truncated: a test-only word could only be missing by design
    assert not test_only & set(vocab)
    assert {"film", "movie", "great", "bad"} <= set(vocab)


@pytest.fixture(scope="module")
def other_test_set(shared_data_dir):
    """Different test reviews (another seed's subset) with flipped labels."""
    other = data.load("imdb_reviews", data_dir=shared_data_dir, seed=1, train_subset=2000, test_subset=1000)
    return other.x_test, 1 - other.y_test


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ngram-tfidf-mlp", "nbsvm"])
def test_a_run_learns_the_same_statistics_whatever_the_test_set(splits, other_test_set, name, tmp_path):
    """Vocabulary, IDF weights and NB ratios of a whole run (pipeline.train_run) ignore the test set."""
    assert len(set(other_test_set[0]) & set(splits.x_test)) < 100  # mostly other reviews
    states = []
    for i, (x_test, y_test) in enumerate([(splits.x_test, splits.y_test), other_test_set]):
        s = dataclasses.replace(splits, x_val=splits.x_val[:200], y_val=splits.y_val[:200],
                                x_test=x_test, y_test=y_test)
        cfg = RunConfig(dataset="imdb_reviews", model=name, model_params={"max_tokens": 20000},
                        training=TrainingConfig(epochs=1, batch_size=256))
        run = Run.open(pipeline.train_run(cfg, tmp_path / str(i), splits=s, verbose=0))
        model = run.load_model()
        vec = model.get_layer("vectorize")
        idf = vec._lookup_layer.idf_weights.numpy() if name == "ngram-tfidf-mlp" else None
        states.append((vec.get_vocabulary(), idf, [w.numpy() for w in model.non_trainable_weights], model))
    (vocab_a, idf_a, stats_a, model_a), (vocab_b, idf_b, stats_b, model_b) = states
    assert vocab_a == vocab_b
    if idf_a is not None:
        np.testing.assert_array_equal(idf_a, idf_b)
    for a, b in zip(stats_a, stats_b, strict=True):
        np.testing.assert_array_equal(a, b)
    if name == "nbsvm":
        assert np.abs(model_a.get_layer("logits").ratios.numpy()).max() > 1  # set from training data
    # Same seed, same training data: the same model, whichever test set it was evaluated on.
    x = tf.constant(list(splits.x_test[:50]))
    np.testing.assert_allclose(model_a.predict(x, verbose=0), model_b.predict(x, verbose=0), atol=1e-5)


def test_nb_ratios_are_wang_and_manning_log_count_ratios(splits):
    x, y = splits.x_train[:500], splits.y_train[:500]
    _, _, _, model = _adapted_state("nbsvm", x, y, max_tokens=3000, alpha=1.0)
    features = model.get_layer("vectorize")(tf.constant(list(x)))
    f = tf.sparse.to_dense(features).numpy().astype(np.float64)
    assert set(np.unique(f)) <= {0.0, 1.0}  # binarized n-gram indicators
    p = 1.0 + f[y == 1].sum(axis=0)
    q = 1.0 + f[y == 0].sum(axis=0)
    expected = np.log((p / p.sum()) / (q / q.sum()))
    np.testing.assert_allclose(model.get_layer("logits").ratios.numpy()[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_nb_linear_multiclass_uses_one_vs_rest_ratios():
    layer = NBLinear(units=3, alpha=1.0)
    layer.build((None, 4))
    features = tf.constant([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=tf.float32)
    labels = tf.constant([0, 1, 2, 0])
    layer.adapt_with_labels([(features, labels)])
    r = layer.ratios.numpy()
    assert r.shape == (4, 3)
    assert r[0, 0] > 0 > r[0, 1]  # feature 0 only in class 0
    assert r[2, 2] > 0 > r[2, 0]
    out = layer(features)
    assert out.shape == (4, 3)


# --------------------------------------------------------------------------- learning and saving


def test_tf_idf_model_with_a_small_vocabulary_reloads(tmp_path):
    """Keras 3.15 cannot reload a padded tf_idf vectorizer whose vocabulary is under max_tokens."""
    texts = np.array(["a good film", "a bad film", "good good acting", "bad plot"] * 3, dtype=object)
    model = models.build("ngram-tfidf-mlp", num_classes=2, max_tokens=1000, hidden_units=0)
    training.adapt_preprocessing(model, texts)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded.predict(tf.constant(list(texts)), verbose=0),
                                  model.predict(tf.constant(list(texts)), verbose=0))


@pytest.mark.parametrize("name", NEW_TEXT_MODELS)
def test_text_model_states_its_figures_and_training_defaults(name):
    spec = models.get(name, kind="text")
    assert spec.expected and spec.training
    TrainingConfig(**spec.training)  # the defaults are valid settings
    assert {"lowercase", "strip_html", "punctuation", "max_tokens"} <= set(spec.params)


# --------------------------------------------------------------------------- predict on raw strings


@pytest.fixture(scope="module")
def nbsvm_run(splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "nbsvm"
    cfg = RunConfig(dataset="imdb_reviews", model="nbsvm", training=TrainingConfig(**models.get("nbsvm").training),
                    train_subset=2000, test_subset=1000)
    small = dataclasses.replace(splits, x_val=splits.x_val[:500], y_val=splits.y_val[:500])
    return Run.open(pipeline.train_run(cfg, out, splits=small, verbose=0))


LONG_REVIEW = " ".join(["A wonderful, moving film with superb acting."] * 20000)  # ~140,000 words


def test_predict_on_raw_strings(nbsvm_run):
    texts = [
        "An absolute masterpiece: wonderful acting, a superb script. I loved every minute.",
        "Awful. Boring, stupid plot, terrible acting; the worst film I have seen. A waste of time.",
        "",  # empty: the model sees no known n-gram and answers its prior (bias only)
        LONG_REVIEW,
        "Superb<br /><br />film!",
        "Un film magnifique, une \u0153uvre bouleversante. \u7d20\u6674\u3089\u3057\u3044\u6620\u753b\u3002",
    ]
    records = predicting.predict(nbsvm_run, files=[], texts=[t for t in texts if t])
    assert [r["predicted"] for r in records[:2]] == ["positive", "negative"]
    for r in records:
        p = r["probabilities"]
        assert set(p) == {"negative", "positive"} and sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    assert records[2]["predicted"] == "positive"  # the long review repeats praise
    assert len(records[2]["input"]) == 60  # shown shortened

    model = nbsvm_run.load_model()
    probs = evaluation.predict_probabilities(model, np.array(texts, dtype=object))
    assert np.isfinite(probs).all() and probs.shape == (len(texts), 2)
    # The empty review gets the bias alone; HTML breaks are spaces.
    bias = float(model.get_layer("logits").bias.numpy()[0])
    assert probs[2, 1] == pytest.approx(1 / (1 + np.exp(-bias)), abs=1e-6)
    same = evaluation.predict_probabilities(model, np.array(["Superb film!"], dtype=object))
    np.testing.assert_allclose(probs[4], same[0], atol=1e-6)


def test_predict_refuses_empty_text_and_non_utf8_files(nbsvm_run, tmp_path):
    with pytest.raises(KeraslabError, match="is empty"):
        predicting.predict(nbsvm_run, files=[], texts=["   "])
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Un tr\u00e8s beau film\n".encode("latin-1"))
    with pytest.raises(KeraslabError, match="not UTF-8"):
        predicting.predict(nbsvm_run, files=[latin1], texts=[])
    utf8 = tmp_path / "reviews.txt"
    utf8.write_text("Un tr\u00e8s beau film\n\nA dull <b>mess</b>.\n", encoding="utf-8")
    assert len(predicting.predict(nbsvm_run, files=[utf8], texts=[])) == 2


def test_nbsvm_run_learns_and_records_its_preprocessing(nbsvm_run):
    config = json.loads((nbsvm_run.path / "config.json").read_text())
    assert config["model"] == "nbsvm" and config["train_subset"] == 2000
    assert nbsvm_run.metrics["accuracy"] >= 0.80  # 2,000 training reviews; chance is 0.5
    vec = nbsvm_run.load_model().get_layer("vectorize").get_config()
    assert vec["ngrams"] == 3 and vec["output_mode"] == "multi_hot"
    assert vec["standardize"].get_config() == {"lowercase": True, "strip_html": True, "punctuation": "strip"}
