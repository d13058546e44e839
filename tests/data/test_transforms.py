import math

import numpy as np
import pytest

from ultradet.config import InputConfig
from ultradet.data.transforms import ClipTransform, build_test_transform, draw_train_transform


def test_boxes_follow_resize_and_flip_hand_computed():
    boxes = np.array([[10, 20, 30, 40]], np.float32)
    out, keep = ClipTransform(out_height=50, out_width=200).apply_boxes(boxes, 100, 100)
    np.testing.assert_allclose(out, [[20, 10, 60, 20]])
    out, keep = ClipTransform(out_height=50, out_width=200, flip=True).apply_boxes(boxes, 100, 100)
    np.testing.assert_allclose(out, [[140, 10, 180, 20]])
    assert keep.tolist() == [0]


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    boxes = np.array([[1, 2, 7, 9], [0, 0, 30, 20]], np.float32)
    flip = ClipTransform(out_height=20, out_width=30, flip=True)
    twice = flip.apply_image(flip.apply_image(image).astype(np.uint8))
    np.testing.assert_array_equal(twice, image.astype(np.float32))
    once, _ = flip.apply_boxes(boxes, 20, 30)
    back, _ = flip.apply_boxes(once, 20, 30)
    np.testing.assert_allclose(back, boxes)


def test_empty_boxes_are_dropped_and_keep_indices_reported():
    boxes = np.array([[120, 0, 130, 10], [5, 5, 10, 10], [20, 20, 20, 30]], np.float32)
    out, keep = ClipTransform(out_height=100, out_width=100).apply_boxes(boxes, 100, 100)
    assert keep.tolist() == [1]
    np.testing.assert_allclose(out, [[5, 5, 10, 10]])


def test_contrast_and_brightness_hand_computed():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0] = 100
    image[1] = 200  # mean 150
    out = ClipTransform(out_height=2, out_width=2, contrast=1.5).apply_image(image)
    np.testing.assert_allclose(out[:, 0, 0], [75, 225])
    out = ClipTransform(out_height=2, out_width=2, brightness=0.5).apply_image(image)
    np.testing.assert_allclose(out[:, 0, 0], [50, 100])


def test_train_transform_ranges():
    cfg = InputConfig(fixed_area_train=10_000, scale_train=(0.5, 1.5), color_jitter=0.3, flip_prob=0.5)
    rng = np.random.default_rng(0)
    draws = [draw_train_transform(50, 50, cfg, rng) for _ in range(200)]
    # sqrt(10000 / 2500) = 2 -> sides in [int(50 * 2 * 0.5), int(50 * 2 * 1.5)] = [50, 150]
    assert all(50 <= t.out_height <= 150 and t.out_height == t.out_width for t in draws)
    assert all(0.7 <= t.contrast < 1.3 and 0.7 <= t.brightness < 1.3 for t in draws)
    assert 60 < sum(t.flip for t in draws) < 140


def test_augmentation_keeps_boxes_on_the_lesion():
    # a dark "lesion" on bright tissue; after any drawn transform the box must still cover it
    image = np.full((64, 64, 3), 180, np.uint8)
    image[10:30, 35:60] = 30
    box = np.array([[35, 10, 60, 30]], np.float32)
    cfg = InputConfig(fixed_area_train=64 * 64, scale_train=(0.5, 1.5))
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = draw_train_transform(64, 64, cfg, rng)
        out = t.apply_image(image)
        (x1, y1, x2, y2), = t.apply_boxes(box, 64, 64)[0]
        inner = out[math.ceil(y1) + 1:int(y2) - 1, math.ceil(x1) + 1:int(x2) - 1]
        outside = out.copy()
        outside[int(y1):math.ceil(y2), int(x1):math.ceil(x2)] = np.nan
        assert inner.size and np.nanmean(outside) - inner.mean() > 60


def test_test_transform_is_deterministic_and_sized_by_area():
    t = build_test_transform(64, 64, fixed_area_test=128 * 128, scale_test=1.0)
    assert (t.out_height, t.out_width, t.flip, t.contrast, t.brightness) == (128, 128, False, 1.0, 1.0)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(t.apply_image(image), t.apply_image(image))
    assert build_test_transform(64, 64, fixed_area_test=64 * 64, scale_test=0.5).out_height == 32


@pytest.mark.parametrize("flip", [False, True])
def test_identity_size_keeps_pixels(flip):
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = ClipTransform(out_height=8, out_width=8, flip=flip).apply_image(image)
    np.testing.assert_array_equal(out, (image[:, ::-1] if flip else image).astype(np.float32))


def test_shrinking_a_high_frequency_pattern_is_antialiased():
    # Vertical 1-pixel stripes 0 / 255. Halving the width, PIL's bilinear filter has support 2
    # input pixels either side with triangle weights 1/8, 3/8, 3/8, 1/8: every output pixel is
    # (0 + 255) / 2 = 127.5 (rounded: 127 or 128). Point sampling (cv2 INTER_LINEAR at exactly 2x)
    # would return all-0 or all-255 columns instead.
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, 1::2] = 255
    out = ClipTransform(out_height=16, out_width=16).apply_image(image)
    assert set(np.unique(out[:, 1:-1])) <= {127.0, 128.0}
    # A 1-pixel checkerboard shrunk 4x: the mean grey everywhere, not a moire pattern.
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    small = ClipTransform(out_height=16, out_width=16).apply_image(board)
    assert np.abs(small[2:-2, 2:-2] - 127.5).max() <= 1.0


def test_resize_matches_pil_bilinear():
    from PIL import Image

    image = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in [(20, 29), (60, 90), (37, 20)]:
        ours = ClipTransform(out_height=size[0], out_width=size[1]).apply_image(image)
        pil = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR), np.float32)
        assert np.abs(ours - pil).max() <= 1.0, size
