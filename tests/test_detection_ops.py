"""Detection ops: the twins agree with each other and with torchvision, which is the reference.

RoIAlign (hand-written in TF) against torchvision.ops.roi_align, forward and
gradient; NMS keep lists; box IoU, box coding and anchor matching against
torchvision.ops.box_iou and torchvision's detection BoxCoder / Matcher;
shared.anchors against torchvision's AnchorGenerator.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

import pytorch_impl.ops as pt_ops
import tensorflow_impl.ops as tf_ops
from shared.anchors import BACKGROUND, IGNORE, anchor_recall, box_iou, cell_anchors, generate_anchors
from shared.specs.detection import AnchorSpec

# ---------------------------------------------------------------- helpers


def _random_boxes(rng, n, lo=0.0, hi=60.0, min_size=1.0, max_size=25.0) -> np.ndarray:
    xy = rng.uniform(lo, hi, size=(n, 2))
    wh = rng.uniform(min_size, max_size, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _roi_case(seed=0, n=3, c=5, h=17, w=23, k=48):
    """Features on 3 images, boxes in image pixels (map stride 1..4) of every kind RoIAlign must handle."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, h, w, c)).astype(np.float32)
    boxes = _random_boxes(rng, k, lo=-10.0, hi=4 * w, min_size=0.3, max_size=40.0)   # many partly outside
    boxes[0] = [-30.0, -30.0, -20.0, -18.0]                    # wholly outside: all samples are zero
    boxes[1] = [2.0, 3.0, 2.4, 3.3]                            # smaller than a feature pixel
    boxes[2] = [0.0, 0.0, 4.0 * w, 4.0 * h]                    # the whole map at scale 0.25
    batch_index = rng.integers(0, n, size=k).astype(np.int64)
    return features, boxes, batch_index


def _torch_roi(features_nhwc, boxes, batch_index, *args):
    """The PyTorch twin on NHWC numpy input, output back to NHWC (as pytorch_impl.tensors converts)."""
    out = pt_ops.roi_align(torch.from_numpy(features_nhwc.transpose(0, 3, 1, 2)), torch.from_numpy(boxes),
                           torch.from_numpy(batch_index), *args)
    return out.numpy().transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- RoIAlign

@pytest.mark.parametrize("sampling_ratio", [1, 2, 4])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_forward_matches_torchvision(sampling_ratio, spatial_scale, aligned):
    features, boxes, batch_index = _roi_case()
    args = ((7, 5), spatial_scale, sampling_ratio, aligned)
    ref = _torch_roi(features, boxes, batch_index, *args)
    # The torch twin is torchvision itself; check the wrapper passes everything through.
    rois = torch.cat([torch.from_numpy(batch_index).float()[:, None], torch.from_numpy(boxes)], dim=1)
    tv = torchvision.ops.roi_align(torch.from_numpy(features.transpose(0, 3, 1, 2)), rois, (7, 5), spatial_scale,
                                   sampling_ratio, aligned)
    np.testing.assert_array_equal(ref, tv.numpy().transpose(0, 2, 3, 1))
    out = tf_ops.roi_align(features, boxes, batch_index, *args).numpy()
    assert out.shape == (len(boxes), 7, 5, features.shape[-1])
    diff = float(np.abs(out - ref).max())
    assert diff <= 1e-5, diff
    assert np.abs(ref).max() > 0.5 and (ref[0] == 0).all(), "the case must pool real values and one empty box"


@pytest.mark.parametrize("sampling_ratio", [1, 2, 4])
def test_roi_align_gradient_matches_torch_autograd(sampling_ratio):
    features, boxes, batch_index = _roi_case(seed=1)
    upstream = np.random.default_rng(2).normal(size=(len(boxes), 4, 4, features.shape[-1])).astype(np.float32)

    x = torch.from_numpy(features.transpose(0, 3, 1, 2)).requires_grad_(True)
    out = pt_ops.roi_align(x, torch.from_numpy(boxes), torch.from_numpy(batch_index), 4, 0.5, sampling_ratio)
    (out * torch.from_numpy(upstream.transpose(0, 3, 1, 2))).sum().backward()
    ref = x.grad.numpy().transpose(0, 2, 3, 1)

    v = tf.Variable(features)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf_ops.roi_align(v, boxes, batch_index, 4, 0.5, sampling_ratio) * upstream)
    grad = tf.convert_to_tensor(tape.gradient(loss, v)).numpy()
    diff = float(np.abs(grad - ref).max())
    assert diff <= 1e-5, diff
    assert np.abs(ref).max() > 0.1 and (ref == 0).any(), "gradient must reach some pixels and not others"


def test_roi_align_in_tf_function_with_unknown_box_count():
    features, boxes, batch_index = _roi_case(seed=3)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 5]), tf.TensorSpec([None, 4]),
                                  tf.TensorSpec([None], tf.int64)])
    def pooled(f, b, i):
        return tf_ops.roi_align(f, b, i, (3, 4), 0.25, 2)

    for k in (len(boxes), 5, 0):
        out = pooled(features, boxes[:k], batch_index[:k]).numpy()
        np.testing.assert_allclose(out, _torch_roi(features, boxes[:k], batch_index[:k], (3, 4), 0.25, 2),
                                   atol=1e-5, rtol=0)
        assert out.shape == (k, 3, 4, 5)


@pytest.mark.parametrize("ops", [pt_ops, tf_ops], ids=["torch", "tensorflow"])
def test_roi_align_rejects_bad_arguments(ops):
    features, boxes, batch_index = _roi_case(n=2, k=4)
    if ops is pt_ops:
        features = torch.from_numpy(features.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"sampling_ratio: expected a positive integer.*received 0.*adaptive"):
        ops.roi_align(features, boxes, batch_index, 7, 1.0, 0)
    with pytest.raises(ValueError, match=r"sampling_ratio: expected a positive integer.*received -1"):
        ops.roi_align(features, boxes, batch_index, 7, 1.0, -1)
    with pytest.raises(ValueError, match=r"features: expected rank 4 \[N, "):
        ops.roi_align(features[0], boxes, batch_index, 7)
    with pytest.raises(ValueError, match=r"boxes: expected shape \[K, 4\].*received shape \[4, 5\]"):
        ops.roi_align(features, np.zeros((4, 5), np.float32), batch_index, 7)
    with pytest.raises(ValueError, match=r"batch_index: expected shape \[4\].*received shape \[3\]"):
        ops.roi_align(features, boxes, batch_index[:3], 7)
    with pytest.raises(ValueError, match=r"batch_index: expected values in \[0, 2\).*received range \[0, 2\]"):
        ops.roi_align(features, boxes, np.array([0, 1, 2, 0]), 7)
    with pytest.raises(ValueError, match=r"output_size: expected a positive int or \(out_h, out_w\); received 0"):
        ops.roi_align(features, boxes, batch_index, 0)
    with pytest.raises(ValueError, match=r"spatial_scale: expected a positive number"):
        ops.roi_align(features, boxes, batch_index, 7, 0.0)


# ---------------------------------------------------------------- box IoU and box coding


def test_box_iou_twins_match_torchvision_and_numpy():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 37), _random_boxes(rng, 53)
    b[:5] = a[:5]                                               # some exact overlaps (IoU 1)
    ref = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for name, got in (("torch", pt_ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()),
                      ("tensorflow", tf_ops.box_iou(a, b).numpy()), ("numpy", box_iou(a, b))):
        assert got.shape == (37, 53) and got.dtype == np.float32, name
        assert np.abs(got - ref).max() <= 1e-6, (name, np.abs(got - ref).max())
    assert (ref > 0).mean() > 0.1 and np.allclose(np.diag(ref[:5, :5]), 1.0)


def _codec_case(seed=0, n=200):
    rng = np.random.default_rng(seed)
    anchors = _random_boxes(rng, n, min_size=4.0, max_size=40.0)
    boxes = _random_boxes(rng, n, min_size=2.0, max_size=60.0)
    return anchors, boxes


def test_encode_boxes_matches_torchvision_box_coder():
    anchors, boxes = _codec_case()
    weights = (10.0, 10.0, 5.0, 5.0)
    ref = det_utils.BoxCoder(weights).encode_single(torch.from_numpy(boxes), torch.from_numpy(anchors)).numpy()
    got_pt = pt_ops.encode_boxes(torch.from_numpy(boxes), torch.from_numpy(anchors), weights).numpy()
    got_tf = tf_ops.encode_boxes(boxes, anchors, weights).numpy()
    scale = np.abs(ref).max()
    assert np.abs(got_pt - ref).max() <= 1e-6 * scale
    assert np.abs(got_tf - ref).max() <= 1e-6 * scale, np.abs(got_tf - ref).max()
    assert np.abs(got_tf - got_pt).max() <= 1e-6 * scale


def test_decode_boxes_matches_torchvision_box_coder_including_its_clamp():
    anchors, _ = _codec_case(seed=1)
    deltas = np.random.default_rng(2).normal(0, 2.0, size=anchors.shape).astype(np.float32)
    deltas[:10, 2:] = 40.0                                      # dw/ww = 8 > log(1000/16): clamped
    weights = (1.0, 2.0, 5.0, 5.0)
    ref = det_utils.BoxCoder(weights).decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
    got_pt = pt_ops.decode_boxes(torch.from_numpy(deltas), torch.from_numpy(anchors), weights).numpy()
    got_tf = tf_ops.decode_boxes(deltas, anchors, weights).numpy()
    scale = np.abs(ref).max()
    assert np.abs(got_pt - ref).max() <= 1e-6 * scale
    assert np.abs(got_tf - ref).max() <= 1e-6 * scale, np.abs(got_tf - ref).max() / scale
    widths = anchors[:10, 2] - anchors[:10, 0]
    np.testing.assert_allclose(got_tf[:10, 2] - got_tf[:10, 0], widths * 1000 / 16, rtol=1e-5)


def test_encode_then_decode_is_identity_in_both_twins():
    anchors, boxes = _codec_case(seed=3)
    for ops, wrap in ((pt_ops, torch.from_numpy), (tf_ops, tf.constant)):
        back = np.asarray(ops.decode_boxes(ops.encode_boxes(wrap(boxes), wrap(anchors)), wrap(anchors)))
        np.testing.assert_allclose(back, boxes, atol=1e-4)


@pytest.mark.parametrize("ops", [pt_ops, tf_ops], ids=["torch", "tensorflow"])
def test_box_ops_reject_bad_shapes(ops):
    with pytest.raises(ValueError, match=r"b: expected shape \[N, 4\] \(x1, y1, x2, y2\); received shape \[3, 5\]"):
        ops.box_iou(np.zeros((2, 4), np.float32), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected one anchor per box; received 3 boxes and 2 anchors"):
        ops.encode_boxes(np.ones((3, 4), np.float32), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"weights: expected 4 positive numbers"):
        ops.decode_boxes(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"low, high: expected 0 <= low <= high <= 1; received low=0.6, high=0.5"):
        ops.match_anchors(np.ones((2, 4), np.float32), np.ones((1, 4), np.float32), high=0.5, low=0.6)
    with pytest.raises(ValueError, match=r"scores, classes: expected shape \[3\] each"):
        ops.batched_nms(np.ones((3, 4), np.float32), np.ones(2, np.float32), np.zeros(3, np.int64))


# ---------------------------------------------------------------- anchor matching


def _match_case(seed):
    """Anchors on a 64 px image and boxes that each overlap some anchor (where torchvision's rule is sound)."""
    rng = np.random.default_rng(seed)
    anchors = generate_anchors(AnchorSpec(strides=(8, 16), sizes=((12.0, 20.0), (32.0,)),
                                          aspect_ratios=((0.5, 1.0, 2.0),) * 2), 64)
    gt = _random_boxes(rng, int(rng.integers(1, 7)), hi=50.0, min_size=6.0, max_size=30.0)
    return anchors, gt


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("high,low,allow_low_quality", [(0.5, 0.4, True), (0.5, 0.4, False), (0.7, 0.3, True),
                                                        (0.5, 0.5, False)])
def test_match_anchors_matches_torchvision_matcher(seed, high, low, allow_low_quality):
    anchors, gt = _match_case(seed)
    iou = torchvision.ops.box_iou(torch.from_numpy(gt), torch.from_numpy(anchors))
    ref = det_utils.Matcher(high, low, allow_low_quality)(iou).numpy()
    got_pt = pt_ops.match_anchors(torch.from_numpy(anchors), torch.from_numpy(gt), high, low, allow_low_quality)
    got_tf = tf_ops.match_anchors(anchors, gt, high, low, allow_low_quality).numpy()
    assert got_pt.dtype == torch.int64 and got_tf.dtype == np.int64
    np.testing.assert_array_equal(got_pt.numpy(), ref)
    np.testing.assert_array_equal(got_tf, ref)
    assert (ref >= 0).any() and (ref == BACKGROUND).any()
    if allow_low_quality:        # the low-quality rule only adds matches
        strict = pt_ops.match_anchors(torch.from_numpy(anchors), torch.from_numpy(gt), high, low, False).numpy()
        assert ((ref >= 0) >= (strict >= 0)).all() and (ref >= 0).sum() >= (strict >= 0).sum()


@pytest.mark.parametrize("ops", [pt_ops, tf_ops], ids=["torch", "tensorflow"])
def test_match_anchors_without_boxes_or_overlap(ops):
    anchors = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], np.float32)
    empty = np.asarray(ops.match_anchors(anchors, np.zeros((0, 4), np.float32)))
    np.testing.assert_array_equal(empty, [BACKGROUND] * 3)
    # Box 1 overlaps no anchor: torchvision would match every anchor at IoU 0 (all three) to box 0.
    gt = np.array([[0, 0, 10, 9], [100, 100, 110, 110]], np.float32)
    np.testing.assert_array_equal(np.asarray(ops.match_anchors(anchors, gt)), [0, BACKGROUND, BACKGROUND])
    # IoU 0.45 lies between low and high: ignored; low-quality matching then restores it (best for box 0).
    gt = np.array([[5, 5, 15, 15.0 - 10 * 0.55]], np.float32)
    iou = box_iou(gt, anchors)[0, 1]
    assert 0.4 <= iou < 0.5
    np.testing.assert_array_equal(np.asarray(ops.match_anchors(anchors, gt, allow_low_quality=False)),
                                  [BACKGROUND, IGNORE, BACKGROUND])
    np.testing.assert_array_equal(np.asarray(ops.match_anchors(anchors, gt)), [BACKGROUND, 0, BACKGROUND])


def test_match_anchors_in_tf_function_with_unknown_box_count():
    anchors, gt = _match_case(5)
    fn = tf.function(lambda g: tf_ops.match_anchors(anchors, g), input_signature=[tf.TensorSpec([None, 4])])
    np.testing.assert_array_equal(fn(gt).numpy(), pt_ops.match_anchors(torch.from_numpy(anchors),
                                                                      torch.from_numpy(gt)).numpy())
    np.testing.assert_array_equal(fn(gt[:0]).numpy(), np.full(len(anchors), BACKGROUND))


# ---------------------------------------------------------------- NMS


def _nms_case(seed, n=300, classes=4, lo=0.0):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, n, lo=lo, hi=lo + 80.0, min_size=5.0, max_size=30.0)
    scores = rng.permutation(n).astype(np.float32) / n + 0.01     # distinct: no ties to order
    labels = rng.integers(0, classes, size=n).astype(np.int64)
    return boxes, scores, labels


def _reference_nms(boxes, scores, labels, iou_threshold):
    """Per-class torchvision.ops.nms, merged by score: what batched NMS means, without the offset trick."""
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        kept = torchvision.ops.nms(torch.from_numpy(boxes[idx]), torch.from_numpy(scores[idx]), iou_threshold)
        keep += idx[kept.numpy()].tolist()
    return sorted(keep, key=lambda i: -scores[i])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_twins_keep_the_same_boxes_in_the_same_order(seed, iou_threshold):
    boxes, scores, labels = _nms_case(seed)
    ref = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels),
                                      iou_threshold).tolist()
    got_pt = pt_ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels),
                                iou_threshold, max_output=1000)
    got_tf = tf_ops.batched_nms(boxes, scores, labels, iou_threshold, max_output=1000)
    assert got_pt.dtype == torch.int64 and got_tf.dtype == tf.int64
    assert got_pt.tolist() == ref == got_tf.numpy().tolist()
    assert ref == _reference_nms(boxes, scores, labels, iou_threshold)
    assert 20 < len(ref) < len(boxes), "the case must suppress some boxes and keep many"
    top = tf_ops.batched_nms(boxes, scores, labels, iou_threshold, max_output=10).numpy().tolist()
    assert top == ref[:10] == pt_ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                                 torch.from_numpy(labels), iou_threshold, 10).tolist()


@pytest.mark.parametrize("ops", [pt_ops, tf_ops], ids=["torch", "tensorflow"])
def test_batched_nms_keeps_classes_apart_with_negative_coordinates(ops):
    # Decoded boxes run past the image's top-left edge before clipping; classes must still not suppress each other.
    boxes, scores, labels = _nms_case(7, lo=-120.0)
    got = np.asarray(ops.batched_nms(boxes, scores, labels, 0.5, 1000)).tolist()
    assert got == _reference_nms(boxes, scores, labels, 0.5)
    assert np.asarray(ops.batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                      np.zeros(0, np.int64), 0.5, 10)).shape == (0,)


def test_batched_nms_in_tf_function():
    boxes, scores, labels = _nms_case(8)
    fn = tf.function(lambda b, s, c: tf_ops.batched_nms(b, s, c, 0.5, 50),
                     input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None]), tf.TensorSpec([None], tf.int64)])
    assert fn(boxes, scores, labels).numpy().tolist() == _reference_nms(boxes, scores, labels, 0.5)[:50]


# ---------------------------------------------------------------- anchors (shared, numpy)


def _torchvision_anchors(spec: AnchorSpec, image_size: int) -> np.ndarray:
    gen = AnchorGenerator(sizes=spec.sizes, aspect_ratios=spec.aspect_ratios)
    images = ImageList(torch.zeros(1, 3, image_size, image_size), [(image_size, image_size)])
    maps = [torch.zeros(1, 1, image_size // s, image_size // s) for s in spec.strides]
    return gen(images, maps)[0].numpy()


def test_anchors_are_torchvision_anchors_moved_to_cell_centres():
    # Sizes and ratios whose half-extents are whole pixels, so torchvision's rounding changes nothing.
    spec = AnchorSpec(strides=(8, 16), sizes=((16.0, 32.0), (64.0,)), aspect_ratios=((0.25, 1.0, 4.0),) * 2)
    ours = generate_anchors(spec, 64)
    shift = np.concatenate([np.full((8 * 8 * 6, 1), 4.0), np.full((4 * 4 * 3, 1), 8.0)])   # stride / 2
    np.testing.assert_array_equal(ours - shift, _torchvision_anchors(spec, 64))
    # General ratios: the same order, with torchvision's extents rounded to whole pixels.
    spec = AnchorSpec(strides=(8, 16), sizes=((12.0, 20.0), (28.0,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    diff = generate_anchors(spec, 64) - np.concatenate([np.full((8 * 8 * 6, 1), 4.0), np.full((4 * 4 * 3, 1), 8.0)])
    assert np.abs(diff - _torchvision_anchors(spec, 64)).max() <= 0.5


def test_anchor_centres_sizes_and_order():
    spec = AnchorSpec(strides=(4,), sizes=((8.0, 16.0),), aspect_ratios=((0.5, 2.0),))
    anchors = generate_anchors(spec, (8, 12))                  # a 2 x 3 grid, 4 anchors per cell
    assert anchors.shape == (2 * 3 * 4, 4) and anchors.dtype == np.float32
    cells = anchors.reshape(2, 3, 4, 4)                         # (y, x, anchor, coordinate)
    centres = (cells[..., :2] + cells[..., 2:]) / 2
    np.testing.assert_allclose(centres[1, 2], [[10.0, 6.0]] * 4)   # ((x + 0.5) * 4, (y + 0.5) * 4)
    w = cells[0, 0, :, 2] - cells[0, 0, :, 0]
    h = cells[0, 0, :, 3] - cells[0, 0, :, 1]
    np.testing.assert_allclose(w * h, [64, 256, 64, 256], rtol=1e-6)              # area = size ** 2
    np.testing.assert_allclose(h / w, [0.5, 0.5, 2.0, 2.0], rtol=1e-6)            # ratio-major, size-minor
    np.testing.assert_allclose(cell_anchors((8.0,), (1.0,)), [[-4, -4, 4, 4]])
    assert spec.num_anchors_per_location == (4,)


def test_anchor_recall_on_a_hand_made_case():
    anchors = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)
    gt = [np.array([[0, 0, 10, 10],            # IoU 1 with anchor 0
                    [12, 0, 22, 10]], np.float32),   # IoU 8 / 12 = 0.667 with anchor 1
          np.array([[0, 0, 10, 20],            # IoU 0.5 with anchor 0: counts at 0.5
                    [30, 30, 40, 40]], np.float32)]  # no anchor overlaps
    assert anchor_recall(anchors, gt, 0.5) == 0.75
    assert anchor_recall(anchors, gt, 0.6) == 0.5
    assert anchor_recall(anchors, np.concatenate(gt), 0.7) == 0.25
    with pytest.raises(ValueError, match=r"gt_boxes: expected at least one ground-truth box"):
        anchor_recall(anchors, np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match=r"gt_boxes\[1\]: expected shape \[N, 4\]"):
        anchor_recall(anchors, [gt[0], np.zeros((2, 3), np.float32)])

