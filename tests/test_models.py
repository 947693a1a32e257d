"""The whole registry under one contract: build, train a step, save to .keras, reload, same predictions."""

import keras
import numpy as np
import pytest

from keraslab import data, evaluation, models, training
from keraslab.config import TrainingConfig
from keraslab.errors import KeraslabError


@pytest.fixture(scope="module")
def small_splits(shared_data_dir):
    return {
        "image": data.load("fashion_mnist", data_dir=shared_data_dir, train_subset=256, test_subset=64),
        "text": data.load("imdb_reviews", data_dir=shared_data_dir, train_subset=256, test_subset=64),
    }


@pytest.mark.parametrize("name", models.names())
def test_registered_model_trains_saves_and_reloads(name, small_splits, tmp_path):
    spec = models.get(name)
    assert spec.expected, f"{name} must state its expected accuracy"
    splits = small_splits[spec.kind]
    keras.backend.clear_session()
    model = models.build(name, num_classes=len(splits.class_names))
    training.adapt_preprocessing(model, splits.x_train)
    training.compile_model(model, TrainingConfig(epochs=1, batch_size=64))
    before = [w.copy() for w in model.get_weights()]
    model.fit(training.as_input(splits.x_train[:64]), splits.y_train[:64], epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "a step must change weights"
    probs = evaluation.predict_probabilities(model, splits.x_test)
    assert probs.shape == (len(splits.y_test), len(splits.class_names))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(evaluation.predict_probabilities(reloaded, splits.x_test), probs)


def test_unknown_model_lists_the_registered_names():
    with pytest.raises(KeraslabError, match="unknown model 'lesson-mpl'.*lesson-mlp"):
        models.get("lesson-mpl")


def test_image_model_refuses_text_data():
    with pytest.raises(KeraslabError, match="cannot train on text data"):
        models.get("lesson-mlp", kind="text")


def test_unknown_model_parameter_names_the_allowed_ones():
    with pytest.raises(KeraslabError, match="no parameter 'units'.*max_tokens"):
        models.build("tutorial-embedding", num_classes=2, units=3)


def test_lesson_mlp_is_the_lesson_network():
    model = models.build("lesson-mlp", num_classes=10)
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [(l.units, l.activation.__name__) for l in dense] == [
        (256, "relu"), (128, "relu"), (64, "tanh"), (64, "relu"), (10, "linear"),
    ]
    assert isinstance(model.layers[0], keras.layers.Flatten)


def test_review_standardization_drops_html_breaks_and_punctuation():
    from keraslab.models.text import standardize_review

    out = standardize_review(np.array(["Great<br /><br />FILM!! <i>Loved</i> it."]))
    assert out.numpy()[0].decode().split() == ["great", "film", "loved", "it"]


def test_vocabulary_with_unicode_line_separators_survives_save_and_load(tmp_path):
    """Real reviews hold U+0085 and U+2028; Keras splits saved vocabularies on them."""
    texts = ["good\x85film by\u2028me", "bad\x1cmovie can\u2029did", "fine\x0bwork"] * 4
    model = models.build("tutorial-embedding", num_classes=2, max_tokens=50, sequence_length=8)
    training.adapt_preprocessing(model, np.array(texts, dtype=object))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.array(texts[:3], dtype=object)
    np.testing.assert_array_equal(evaluation.predict_probabilities(reloaded, x), evaluation.predict_probabilities(model, x))
