"""Detection ops of the PyTorch twin: box IoU, box coding, anchor matching, NMS, RoIAlign.

Mostly torchvision.ops behind the signatures that tensorflow_impl/ops shares;
anchors themselves are numpy constants from shared.anchors.
"""

from .boxes import BACKGROUND, BBOX_XFORM_CLIP, BOX_CODER_WEIGHTS, IGNORE, batched_nms, box_iou, decode_boxes, \
    encode_boxes, match_anchors
from .roi_align import roi_align

__all__ = ["BACKGROUND", "BBOX_XFORM_CLIP", "BOX_CODER_WEIGHTS", "IGNORE", "batched_nms", "box_iou", "decode_boxes",
           "encode_boxes", "match_anchors", "roi_align"]
