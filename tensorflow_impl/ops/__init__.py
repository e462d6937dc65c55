"""Detection ops of the TensorFlow twin: box IoU, box coding, anchor matching, NMS, RoIAlign.

tf.image.non_max_suppression where TensorFlow has the op; IoU, box coding,
matching and RoIAlign written in TF ops, checked against torchvision.ops.
Anchors themselves are numpy constants from shared.anchors.
"""

from .boxes import BACKGROUND, BBOX_XFORM_CLIP, BOX_CODER_WEIGHTS, IGNORE, batched_nms, box_iou, decode_boxes, \
    encode_boxes, match_anchors
from .roi_align import roi_align

__all__ = ["BACKGROUND", "BBOX_XFORM_CLIP", "BOX_CODER_WEIGHTS", "IGNORE", "batched_nms", "box_iou", "decode_boxes",
           "encode_boxes", "match_anchors", "roi_align"]
