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


def test_thresholds_round_trip_through_a_dict():
    th = Thresholds(pixel=[0.4, 0.5, 0.6, 0.7], min_area=[1, 2, 3, 4], label=[0.1] * 4,
                    min_component=9)
    assert Thresholds(**th.to_dict()) == th


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
    masks = predictor.annotations(probs)
    assert masks.image_ids == ["a.jpg", "b.jpg"]  # b.jpg has no mask and is still listed
    assert set(masks.table["ImageId"]) == {"a.jpg"}
    assert masks.table["ClassId"].tolist() == [1, 2, 3, 4]
    mask = decode_rle(masks.masks_of("a.jpg")[1])
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
    assert set(predictor.annotations(probs).table["ImageId"]) == {"a.jpg"}
    predictor.thresholds.label = [1.01] * 4  # a gate nothing passes
    assert predictor.annotations(probs).table.empty


def test_unknown_tta_is_an_error():
    with pytest.raises(ValueError, match="TTA"):
        TwoStagePredictor({"all": None}, (64, 400), tta="rotate")


@pytest.mark.parametrize("size", [(128, 800), (100, 300)])  # an integer factor, and not
def test_training_batches_and_the_predictor_see_identical_pixels(tmp_path, size):
    """The one image path: what a model trains on is what it is served."""
    import keras
    from PIL import Image

    from steel_keras.data.dataset import SteelDataset
    from steel_keras.data.tfdata import classification_dataset, segmentation_dataset

    rng = np.random.default_rng(3)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    (tmp_path / "train_images").mkdir()
    for name in names:
        pixels = rng.integers(0, 256, (256, 1600), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "train_images" / name, quality=90)
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    ds = SteelDataset(tmp_path)
    identity = keras.Sequential([keras.Input((*size, 1)), keras.layers.Activation("linear")])
    predictor = TwoStagePredictor({"all": identity}, size, batch_size=2)
    served = predictor.probabilities(ds, names, split="train").masks
    for pipeline in (classification_dataset, segmentation_dataset):
        trained = np.concatenate([x.numpy() for x, _ in pipeline(ds, names, image_size=size,
                                                                 batch_size=2)])
        assert trained.dtype == served.dtype == np.float32
        np.testing.assert_array_equal(trained, served)


def test_predictor_takes_plain_functions(tmp_path):
    """The predictor knows no files or runtimes: any function of a batch is a model."""
    image = np.full((256, 1600), 40, np.uint8)
    image[64:128, 400:800] = 230

    def bright(batch):  # numpy only: probability 1 where the pixel is bright
        return np.repeat((batch > 0.5).astype(np.float32), 4, axis=-1)

    predictor = TwoStagePredictor({"all": bright}, (64, 400), classifier=lambda b: b.max(
        axis=(1, 2)), cls_size=(32, 200), thresholds=Thresholds(label=[0.5] * 4))
    masks = predictor.predict(_folder_of_images(tmp_path, {"a.jpg": image}), ["a.jpg"])
    assert masks.table["ClassId"].tolist() == [1, 2, 3, 4]
    mask = decode_rle(masks.masks_of("a.jpg")[3])
    assert mask[68:124, 404:796].all() and not mask[:60].any()  # upsampling rounds corners
