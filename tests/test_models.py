"""Models: every family builds at tiny shapes, checks its names and sizes, and saves and loads
back as a `.keras` file predicting exactly what it predicted before (random weights: nothing
downloads)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import steel_keras  # noqa: F401  (sets SM_FRAMEWORK before segmentation-models is imported)
from steel_keras.errors import ConfigError
from steel_keras.losses import BCEDice
from steel_keras.metrics import DicePerClass
from steel_keras.models import (
    build_classifier,
    build_segmenter,
    build_small_cnn,
    classifier_head,
    decoder_block,
    list_backbones,
    list_classifiers,
    list_segmenters,
    load_model,
)
from steel_keras.models._inputs import preprocessing_layer


def images(shape: tuple[int, int], batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, *shape, 1), dtype=np.float32)


def predict(model: keras.Model, x: np.ndarray):
    """Inference as `model.predict` does it, minus the `tf.function` tracing (slow on CI)."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def assert_reloads_exactly(model: keras.Model, x: np.ndarray, tmp_path: Path) -> keras.Model:
    """Save `model`, load it with plain Keras and check the predictions are identical."""
    before = predict(model, x)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    after = predict(restored, x)
    if isinstance(before, dict):
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_array_equal(after[key], before[key])
    else:
        np.testing.assert_array_equal(after, before)
    assert restored.name == model.name
    return restored


# --- names and sizes ---------------------------------------------------------------------


def test_lists_of_names():
    assert list_classifiers()[0] == "xception" and "small_cnn" in list_classifiers()
    assert list_segmenters() == ("unet", "fpn", "linknet", "unet_xception", "unet_separable")
    assert {"resnet18", "efficientnetb3", "seresnext50"} <= set(list_backbones("unet"))
    assert not {"densenet121", "inceptionresnetv2"} & set(list_backbones("fpn"))
    assert list_backbones("unet_xception") == ("xception",)
    assert list_backbones("unet_separable") == ()


@pytest.mark.parametrize(
    ("build", "kwargs", "message"),
    [
        (build_classifier, {"backbone": "vgg"}, "unknown classifier backbone 'vgg': choose one"),
        (build_classifier, {"backbone": "small_cnn", "encoder_weights": "imagenet"}, "small_cnn"),
        (build_classifier, {"encoder_weights": "imagent"}, "None or 'imagenet'"),
        (build_classifier, {"input_shape": (64, 800, 1)}, "at least 71"),
        (build_classifier, {"input_shape": (128, 800, 3)}, r"\(height, width, 1\)"),
        (build_segmenter, {"arch": "deeplab"}, "choose one of unet, fpn, linknet, unet_xception"),
        (build_segmenter, {"backbone": "resnet19"}, "unknown backbone 'resnet19' for unet"),
        (build_segmenter, {"backbone": "densenet121"}, "does not work here"),
        (build_segmenter, {"arch": "unet_separable", "backbone": "resnet18"}, "no backbone"),
        (build_segmenter, {"arch": "unet_xception", "backbone": "resnet18"}, "xception"),
        (build_segmenter, {"arch": "unet_separable", "encoder_weights": "imagenet"}, "pretrain"),
        (build_segmenter, {"input_shape": (128, 810, 1)}, "multiples of 32"),
        (build_segmenter, {"arch": "fpn", "input_shape": (None, None, 1)}, "fixed image size"),
        (build_segmenter, {"arch": "unet_separable", "input_shape": (40, 160, 1)}, "of 16"),
        (build_segmenter, {"arch": "unet_xception", "input_shape": (None, 800, 1)}, "fixed"),
        (build_segmenter, {"arch": "unet_xception", "input_shape": (70, 800, 1)}, "at least 71"),
    ],
)
def test_bad_names_and_sizes_are_config_errors(build, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)


def test_config_error_says_which_sizes_work():
    with pytest.raises(ConfigError) as error:
        build_segmenter("unet", input_shape=(100, 800, 1))
    assert str(error.value) == (
        "unet on resnet18 cannot take images of 100 x 800: height and width multiples of 32 "
        "(or None), e.g. 128 x 800 or 256 x 1600"
    )


# --- the shared input layers ---------------------------------------------------------------


def _preprocessors():
    import segmentation_models as sm

    apps = keras.applications
    return {
        "xception (tf)": apps.xception.preprocess_input,
        "resnet50 (caffe)": apps.resnet50.preprocess_input,
        "keras efficientnet (none)": apps.efficientnet.preprocess_input,
        "sm efficientnetb3 (torch)": sm.get_preprocessing("efficientnetb3"),
        "sm seresnext50 (torch)": sm.get_preprocessing("seresnext50"),
        "sm resnet18 (0-255)": sm.get_preprocessing("resnet18"),
        "sm vgg16 (caffe)": sm.get_preprocessing("vgg16"),
    }


@pytest.mark.parametrize("name", list(_preprocessors()))
def test_preprocessing_layer_matches_the_backbones_preprocess_input(name):
    preprocess_input = _preprocessors()[name]
    gray = images((3, 5))
    rgb = np.repeat(gray, 3, axis=-1)
    expected = preprocess_input(rgb * 255.0)
    got = keras.ops.convert_to_numpy(preprocessing_layer(preprocess_input)(rgb))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


# --- classifiers ---------------------------------------------------------------------------


def test_small_cnn_multilabel_classifier_reloads_exactly(tmp_path):
    model = build_classifier("small_cnn", input_shape=(64, 128, 1), multilabel=True)
    outputs = predict(model, images((64, 128)))
    assert outputs["has_defect"].shape == (2, 1) and outputs["classes"].shape == (2, 4)
    assert_reloads_exactly(model, images((64, 128)), tmp_path)


def test_mobilenetv2_classifier_reloads_exactly(tmp_path):
    model = build_classifier("mobilenetv2", input_shape=(64, 128, 1))
    assert model.output_shape == (None, 1)
    assert {"gray_to_rgb", "backbone_preprocessing", "mobilenetv2_encoder", "has_defect"} <= {
        layer.name for layer in model.layers
    }
    assert_reloads_exactly(model, images((64, 128)), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["xception", "efficientnetb0", "efficientnetb1", "resnet50"])
def test_application_classifiers_reload_exactly(backbone, tmp_path):
    model = build_classifier(backbone, input_shape=(96, 128, 1), multilabel=True)
    assert_reloads_exactly(model, images((96, 128)), tmp_path)


# --- segmentation-models segmenters -----------------------------------------------------------


def test_sm_unet_multilabel_reloads_exactly(tmp_path):
    model = build_segmenter("unet", "resnet18", input_shape=(64, 96, 1), classes=4)
    assert model.output_shape == (None, 64, 96, 4)
    assert model.get_layer("masks").dtype_policy.name == "float32"
    assert_reloads_exactly(model, images((64, 96)), tmp_path)


def test_sm_fpn_and_linknet_per_class(tmp_path):
    fpn = build_segmenter("fpn", "resnet18", input_shape=(64, 96, 1), classes=1)
    assert fpn.output_shape == (None, 64, 96, 1)
    assert_reloads_exactly(fpn, images((64, 96)), tmp_path)
    # Unet and Linknet are fully convolutional: train on crops, predict any multiple of 32.
    linknet = build_segmenter("linknet", "resnet18", input_shape=(None, None, 1), classes=1)
    assert predict(linknet, images((32, 160))).shape == (2, 32, 160, 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone", ["efficientnetb3", "seresnext50", "resnext50", "inceptionv3", "vgg16", "mobilenet"]
)
def test_sm_backbones_reload_exactly(backbone, tmp_path):
    model = build_segmenter("unet", backbone, input_shape=(96, 128, 1), classes=4)
    assert_reloads_exactly(model, images((96, 128)), tmp_path)


# --- Keras-native segmenters --------------------------------------------------------------------


@pytest.mark.parametrize("size", [(72, 100), (97, 131)])
def test_xception_unet_matches_odd_feature_sizes(size):
    model = build_segmenter("unet_xception", input_shape=(*size, 1), classes=1)
    assert model.output_shape == (None, *size, 1)
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert "Resizing" not in layer_types
    assert {"Cropping2D", "ZeroPadding2D"} & layer_types


def test_xception_unet_decoder_stages_are_decoder_blocks():
    model = build_segmenter("unet_xception", input_shape=(72, 100, 1), classes=1)
    x, skip = keras.Input((9, 13, 32)), keras.Input((18, 25, 16))  # 18 x 26 cropped to 18 x 25
    block = keras.Model([x, skip], decoder_block(x, skip, 8, "decoder_stage1"))
    assert block.output_shape == (None, 18, 25, 8)
    names = [layer.name for layer in block.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert all(
        model.get_layer(name).__class__ is block.get_layer(name).__class__
        for name in names
        if name != "decoder_stage1_crop"
    )
    assert isinstance(model.get_layer("decoder_stage1a_relu"), keras.layers.ReLU)


def test_small_cnn_family_shares_the_conv_blocks_and_the_head():
    chapter = build_small_cnn((32, 96, 1))
    library = build_classifier("small_cnn", input_shape=(32, 96, 1))
    assert chapter.count_params() == 99_113
    assert library.count_params() == chapter.count_params() + 128  # max-pooled features too
    conv = [layer.name for layer in chapter.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv == [f"block{i}_conv" for i in range(1, 6)] and all(
        library.get_layer(n).kernel.shape == chapter.get_layer(n).kernel.shape for n in conv
    )
    features = keras.Input((4, 6, 16))
    head = keras.Model(features, classifier_head(features))
    assert [layer.name for layer in head.layers[1:]] == ["pool", "head_dropout", "has_defect"]
    mobile = build_classifier("mobilenetv2", input_shape=(32, 64, 1), multilabel=True)
    assert mobile.get_layer("pool").__class__ is keras.layers.GlobalAveragePooling2D
    assert sorted(mobile.output_names) == ["classes", "has_defect"]


def test_xception_unet_reloads_exactly(tmp_path):
    model = build_segmenter("unet_xception", input_shape=(72, 100, 1), classes=4)
    assert_reloads_exactly(model, images((72, 100)), tmp_path)


def test_separable_unet_reloads_exactly_and_takes_any_multiple_of_16(tmp_path):
    model = build_segmenter("unet_separable", input_shape=(None, None, 1), classes=4)
    assert predict(model, images((48, 96))).shape == (2, 48, 96, 4)
    assert_reloads_exactly(model, images((32, 160)), tmp_path)


# --- compiled models, and loading in a fresh process ----------------------------------------------


def test_compiled_segmenter_reloads_with_its_loss_and_metrics(tmp_path):
    model = build_segmenter("unet_separable", input_shape=(32, 64, 1), classes=4)
    # Eager steps: this checks what is saved, not speed, and tracing a train step takes ~15 s.
    model.compile(
        "adam", BCEDice(pos_weight=(2, 2, 1, 1.5)), metrics=[DicePerClass()], run_eagerly=True
    )
    x = images((32, 64))
    y = (np.random.default_rng(1).random((2, 32, 64, 4)) > 0.8).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    restored = assert_reloads_exactly(model, x, tmp_path)
    assert restored.loss.get_config() == model.loss.get_config()
    restored.run_eagerly = True
    scores = restored.evaluate(x, y, verbose=0, return_dict=True)
    assert scores == model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(scores) == {"loss", "dice"}


def test_a_fresh_process_loads_every_family_after_import_steel_keras_models(tmp_path):
    x = images((96, 128))
    models = [
        build_classifier("small_cnn", input_shape=(96, 128, 1), multilabel=True),
        build_segmenter("unet", "seresnet18", input_shape=(96, 128, 1), classes=1),
        build_segmenter("unet_separable", input_shape=(96, 128, 1), classes=1),
    ]
    models[1].compile("adam", BCEDice(), metrics=[DicePerClass()])
    for i, model in enumerate(models):
        model.save(tmp_path / f"{i}.keras")
        np.save(tmp_path / f"{i}.npy", _as_array(predict(model, x)))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import steel_keras.models
        x = np.load({str(tmp_path / "x.npy")!r})
        for i in range({len(models)}):
            model = keras.saving.load_model({str(tmp_path)!r} + f"/{{i}}.keras")
            out = model(x, training=False)
            if isinstance(out, dict):
                out = np.concatenate([out[key] for key in sorted(out)], axis=-1)
            np.save({str(tmp_path)!r} + f"/{{i}}_loaded.npy", np.asarray(out))
        """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    for i in range(len(models)):
        np.testing.assert_array_equal(
            np.load(tmp_path / f"{i}_loaded.npy"), np.load(tmp_path / f"{i}.npy")
        )


def _as_array(outputs) -> np.ndarray:
    if isinstance(outputs, dict):
        return np.concatenate([outputs[key] for key in sorted(outputs)], axis=-1)
    return outputs


def test_load_model_helper(tmp_path):
    model = build_classifier("small_cnn", input_shape=(32, 64, 1))
    model.save(tmp_path / "classifier.keras")
    restored = load_model(tmp_path / "classifier.keras", compile=False)
    np.testing.assert_array_equal(
        predict(restored, images((32, 64))), predict(model, images((32, 64)))
    )
