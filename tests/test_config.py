import pytest

from keraslab.config import RunConfig, validate
from keraslab.errors import KeraslabError


def test_unknown_key_is_named():
    with pytest.raises(KeraslabError, match="suite.yaml: unknown key 'training.epoch'"):
        validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "training": {"epoch": 3}}, "suite.yaml")


def test_wrong_type_names_key_and_value():
    with pytest.raises(KeraslabError, match="'training.batch_size'.*'many'"):
        validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "training": {"batch_size": "many"}}, "x")


def test_key_depends_on_every_setting_and_only_on_them():
    a = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp"}, "x")
    b = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp"}, "x")
    c = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "seed": 1}, "x")
    assert a.key() == b.key() != c.key()


def test_key_ignores_settings_left_at_their_defaults():
    """A field added later with a behaviour-preserving default must not orphan finished runs."""
    a = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp"}, "x")
    b = validate(RunConfig, {"dataset": "fashion_mnist", "model": "lesson-mlp", "training": {"epochs": 10}}, "x")
    assert a.key() == b.key()
