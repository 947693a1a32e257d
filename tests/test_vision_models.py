"""The Fashion-MNIST models beyond the lesson: their recipes, parameters and one real run each way.

tests/test_models.py already builds, trains a step, saves and reloads every registered model."""

import keras
import numpy as np
import pytest

from keraslab import evaluation, models, pipeline, runs
from keraslab.config import RunConfig, TrainingConfig
from keraslab.errors import KeraslabError

NEW_MODELS = ["mlp-bn-dropout", "cnn-small", "vgg-bn", "resnet-small"]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_registered_recipe_is_a_valid_training_config_and_expectation_is_stated(name):
    spec = models.get(name, kind="image")
    cfg = TrainingConfig.model_validate(spec.training)
    assert cfg.batch_size == 128 and cfg.lr_schedule is not None
    assert "Fashion-MNIST test accuracy" in spec.expected and "CPU cores" in spec.expected
    assert spec.summary


@pytest.mark.parametrize("name", NEW_MODELS)
def test_model_takes_28x28_images_and_ends_in_float32_logits(name):
    keras.backend.clear_session()
    model = models.build(name, num_classes=10)
    assert tuple(model.input_shape) == (None, 28, 28)
    assert tuple(model.output_shape) == (None, 10)
    assert model.get_layer("logits").activation.__name__ == "linear"
    assert model.get_layer("logits").dtype_policy.name == "float32"
    assert models.build(name, num_classes=2).output_shape == (None, 1)


def test_vgg_bn_parameters_shape_the_network():
    keras.backend.clear_session()
    small = models.build("vgg-bn", num_classes=10, width=8, blocks=2, convs_per_block=1, head="gap", dense=0)
    convs = [l for l in small.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16]
    assert any(isinstance(l, keras.layers.GlobalAveragePooling2D) for l in small.layers)
    with pytest.raises(KeraslabError, match="head 'avg'"):
        models.build("vgg-bn", num_classes=10, head="avg")
    with pytest.raises(KeraslabError, match="blocks=4"):
        models.build("vgg-bn", num_classes=10, blocks=4)


def test_resnet_small_has_residual_additions_per_block():
    keras.backend.clear_session()
    model = models.build("resnet-small", num_classes=10, width=8, blocks_per_stage=[2, 1, 1])
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 4


def test_mlp_widths_are_a_parameter():
    keras.backend.clear_session()
    model = models.build("mlp-bn-dropout", num_classes=10, widths=[64, 32])
    dense = [l.units for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert dense == [64, 32, 10]


def test_a_recipe_run_with_augmentation_schedule_smoothing_and_tta_evaluates_the_same_after_reload(shared_data_dir, tmp_path):
    """The whole path with every feature on: run directory, then `keraslab evaluate` reproduces it."""
    spec = models.get("vgg-bn")
    training = {**spec.training, "epochs": 1}
    cfg = RunConfig(dataset="fashion_mnist", model="vgg-bn", model_params={"width": 8}, training=training,
                    seed=0, train_subset=600, test_subset=200)
    assert cfg.training.augmentation.active and cfg.training.tta == "flip"
    out = pipeline.train_run(cfg, tmp_path / "run", data_dir=shared_data_dir, verbose=0)
    run = runs.Run.open(out)
    assert run.config["training"]["tta"] == "flip"
    assert "learning_rate" in run.history
    fresh, recorded = pipeline.evaluate_run(run, data_dir=shared_data_dir)
    assert fresh["confusion_matrix"] == recorded["confusion_matrix"]
    assert fresh["loss"] == pytest.approx(recorded["loss"], abs=1e-6)
    saved = run.load_model()
    assert not any("augment" in l.name for l in saved._flatten_layers())
    probs = np.load(out / runs.PROBABILITIES)
    x = pipeline.load_splits(cfg, shared_data_dir).x_test
    np.testing.assert_allclose(evaluation.predict_probabilities(saved, x, tta="flip"), probs, atol=1e-6)
