"""Two-stage pipeline: post-processing, threshold search, TTA, predictor on real tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from steel_keras.pipeline import (
    Probabilities,
    Thresholds,
    TwoStagePredictor,
    apply_min_area,
    flip_tta,
    gate_masks,
    postprocess,
    remove_small_components,
    resize_probabilities,
    search_thresholds,
)
from steel_keras.rle import decode_rle


def test_remove_small_components_keeps_big_ones():
    mask = np.zeros((20, 20), bool)
    mask[1:3, 1:3] = True  # 4 px
    mask[10:18, 10:18] = True  # 64 px
    out = remove_small_components(mask, 5)
    assert out[10:18, 10:18].all() and not out[1:3, 1:3].any()
    np.testing.assert_array_equal(remove_small_components(mask, 0), mask)


def test_postprocess_gate_pixel_and_min_area():
    prob = np.zeros((256, 1600, 4), np.float32)
    prob[:10, :10, 0] = 0.9  # 100 px of class 1
    prob[:50, :50, 2] = 0.6  # 2500 px of class 3
    th = Thresholds(pixel=[0.5, 0.5, 0.7, 0.5], min_area=[200, 0, 0, 0], label=[0.5] * 4)
    out = postprocess(prob, np.array([0.9]), th)
    assert out[..., 0].sum() == 0  # under min area
    assert out[..., 2].sum() == 0  # under the class-3 pixel threshold
    th.pixel[2] = 0.5
    assert postprocess(prob, np.array([0.9]), th)[..., 2].sum() == 2500
    assert postprocess(prob, np.array([0.4]), th).sum() == 0  # the gate closes
    assert postprocess(prob, None, th)[..., 2].sum() == 2500  # no gate


def test_postprocess_scales_areas_to_full_size():
    prob = np.zeros((64, 400, 4), np.float32)  # 1/16 of the pixels
    prob[:10, :10, 3] = 1.0  # 100 px here = 1600 px at full size
    keep = postprocess(prob, None, Thresholds(min_area=[0, 0, 0, 1500]))
    drop = postprocess(prob, None, Thresholds(min_area=[0, 0, 0, 1700]))
    assert keep[..., 3].sum() == 100 and drop.sum() == 0


def test_postprocess_is_gate_then_components_then_min_area():
    """postprocess is the exercises' steps in order, at the segmenter's resolution."""
    rng = np.random.default_rng(0)
    prob = rng.random((32, 200, 4)).astype(np.float32) ** 3  # scattered specks and a few blobs
    prob[5:15, 20:60, 1] = 0.9
    th = Thresholds(pixel=[0.5, 0.6, 0.7, 0.4], min_area=[0, 4000, 9000, 500],
                    label=[0.5, 0.2, 0.5, 0.9], min_component=320)
    gate = np.array([0.6, 0.3, 0.4, 0.95])
    scale = 32 * 200 / (256 * 1600)
    masks = gate_masks(prob >= np.array(th.pixel), gate, th.label)
    masks = np.stack([remove_small_components(masks[..., c], round(320 * scale))
                      for c in range(4)], axis=-1)
    expected = apply_min_area(masks, [a * scale for a in th.min_area])
    out = postprocess(prob, gate, th)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out[..., 1].sum() >= 400 and not out[..., 2].any()


def test_apply_min_area_and_gate_masks_leave_their_input_alone():
    masks = np.ones((2, 3, 4), bool)
    assert apply_min_area(masks, [7, 6, 0, 6]).sum(axis=(0, 1)).tolist() == [0, 6, 6, 6]
    assert gate_masks(masks, np.array([0.5]), [0.6, 0.5, 0.4, 0.5]).sum() == 18
    assert masks.all() and masks.dtype == bool


def test_flip_tta_flips_each_axis_back_and_averages():
    batch = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    rows = np.arange(3, dtype=np.float32)[None, :, None, None]

    def predict(x):  # depends on the row, so a missing flip-back shows
        return x + rows

    both = flip_tta(predict, batch, axes=(2, 1))
    np.testing.assert_allclose(both, (3 * batch + rows + rows + rows[:, ::-1]) / 3)
    np.testing.assert_array_equal(flip_tta(predict, batch, axes=()), predict(batch))
    scores = flip_tta(lambda x: x.reshape(2, -1).sum(axis=1, keepdims=True), batch, (2,), False)
    np.testing.assert_allclose(scores, batch.reshape(2, -1).sum(axis=1, keepdims=True))


def test_resize_probabilities_to_full_size():
    prob = np.zeros((64, 400, 4), np.float32)
    prob[:32, :, 1] = 1.0
    full = resize_probabilities(prob)
    assert full.shape == (256, 1600, 4)
    assert full[:120, :, 1].min() > 0.99 and full[136:, :, 1].max() < 0.01


def test_thresholds_save_and_load(tmp_path):
    th = Thresholds(pixel=[0.4, 0.5, 0.6, 0.7], min_area=[1, 2, 3, 4], label=[0.1] * 4,
                    min_component=9)
    assert Thresholds.load(th.save(tmp_path / "t.json")) == th


def test_search_finds_the_separating_thresholds():
    rng = np.random.default_rng(0)
    n, h, w = 12, 16, 100
    truth = np.zeros((n, h, w, 4), np.uint8)
    truth[:6, 4:12, 20:60, 2] = 1  # six images with a class-3 defect
    masks = rng.uniform(0, 0.35, (n, h, w, 4)).astype(np.float32)  # background noise
    masks[..., 2] += truth[..., 2] * 0.5  # defects at 0.5-0.85
    masks[6:, :2, :5, 2] = 0.95  # small false positives on clean images
    gate = np.where(np.arange(n) < 6, 0.9, 0.2)[:, None]
    probs = Probabilities([f"{i}.jpg" for i in range(n)], gate, masks)
    th, record = search_thresholds(probs, truth)
    assert th.pixel[2] == 0.4
    assert th.label[2] >= 0.3 or th.min_area[2] >= 300  # the false positives go
    assert record["per_class"]["3"]["dice"] == pytest.approx(1.0)
    assert record["mean_dice"] == pytest.approx(1.0)
    # Classes with no defects at all: best to predict nothing.
    for c in (0, 1, 3):
        assert record["per_class"][str(c + 1)]["dice"] == pytest.approx(1.0)


def _bright_pixel_segmenter(size):
    """A real 1x1-conv Keras model: probability sigmoid(20 (x - 0.5)) on every class channel."""
    import keras

    inputs = keras.Input((*size, 1))
    conv = keras.layers.Conv2D(4, 1, activation="sigmoid", name="bright")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 4), 20.0, np.float32), np.full(4, -10.0, np.float32)])
    return model


def _folder_of_images(root, images):
    """A Kaggle-layout folder with only ``test_images/``, written as real JPEGs."""
    from PIL import Image

    from steel_keras.data.dataset import SteelDataset

    (root / "test_images").mkdir(parents=True)
    for name, array in images.items():
        Image.fromarray(array).convert("RGB").save(root / "test_images" / name, quality=95)
    return SteelDataset(root)


def test_predictor_end_to_end_with_tta_and_full_size_rles(tmp_path):
    image = np.full((256, 1600), 40, np.uint8)
    image[64:128, 400:800] = 230  # a bright patch: 64 x 400 px
    images = {"a.jpg": image, "b.jpg": np.full((256, 1600), 40, np.uint8)}
    predictor = TwoStagePredictor({"all": _bright_pixel_segmenter((64, 400))}, (64, 400),
                                  tta="flips")
    probs = predictor.probabilities(_folder_of_images(tmp_path, images), ["a.jpg", "b.jpg"])
    assert probs.masks.shape == (2, 64, 400, 4) and probs.gate is None
    rles = predictor.rles(probs)
    assert set(rles) == {"a.jpg"} and set(rles["a.jpg"]) == {1, 2, 3, 4}
    mask = decode_rle(rles["a.jpg"][1])
    assert abs(int(mask.sum()) - 64 * 400) < 0.05 * 64 * 400
    assert mask[96, 600] == 1 and mask[10, 10] == 0


def test_predictor_gate_uses_classifier_probabilities(tmp_path):
    import keras

    size = (64, 400)
    inputs = keras.Input((*size, 1))
    pooled = keras.layers.GlobalMaxPooling2D()(inputs)
    dense = keras.layers.Dense(1, activation="sigmoid")
    classifier = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.array([[20.0]], np.float32), np.array([-10.0], np.float32)])
    image = np.full((256, 1600), 40, np.uint8)
    image[64:128, 400:800] = 230
    predictor = TwoStagePredictor({"all": _bright_pixel_segmenter(size)}, size,
                                  classifier=classifier, cls_size=size,
                                  thresholds=Thresholds(label=[0.5] * 4))
    probs = predictor.probabilities(_folder_of_images(tmp_path, {"a.jpg": image}), ["a.jpg"])
    assert probs.gate.shape == (1, 1) and probs.gate[0, 0] > 0.99
    assert set(predictor.rles(probs)) == {"a.jpg"}
    predictor.thresholds.label = [1.01] * 4  # a gate nothing passes
    assert predictor.rles(probs) == {}


def test_unknown_tta_is_an_error():
    with pytest.raises(ValueError, match="TTA"):
        TwoStagePredictor({"all": None}, (64, 400), tta="rotate")
