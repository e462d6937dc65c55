"""Mask R-CNN-style instance segmenter (PyTorch twin): the detection twin's Faster R-CNN-style detector plus a
mask head on RoIAlign features (torchvision's ``MaskRCNN``: ``MaskRCNNHeads`` and ``MaskRCNNPredictor``).

The mask head pools ``mask.roi_output_size`` bins from the RoI head's feature level, runs 3x3 conv + ReLU
layers, a 2x2 stride-2 transposed conv + ReLU and a 1x1 conv to one logit per foreground class (torchvision's
predictor has one for the background too, which no loss ever reads). As the box head it is bound to the batch's
features in training mode (``mask_head`` in the outputs; the loss picks its RoIs) and runs on every proposal
slot in eval mode (``mask_logits`` [N, P, S, S, K], channels last like every output here). The Keras twin in
``tensorflow_impl/instance_segmentation/model.py`` reads line for line alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection import faster_rcnn
from ..detection.faster_rcnn import FasterRCNN, RPNExport
from ..layers import Conv2d, ConvTranspose2d, ModuleList
from ..ops import roi_align
from ..tensors import batched_outputs


class MaskHead(nn.Module):
    """RoIAlign, ``mask.layers`` 3x3 conv + ReLU, a x2 transposed conv + ReLU, 1x1 conv to K class logits."""

    def __init__(self, in_channels: int, stride: int, spec: InstanceSegmentationSpec):
        super().__init__()
        m = spec.mask
        self.stride, self.output_size, self.sampling_ratio = stride, m.roi_output_size, m.sampling_ratio
        widths = (in_channels, *m.layers)
        self.convs = ModuleList([Conv2d(a, b, 3, 1, 1) for a, b in zip(widths, widths[1:])])
        self.upsample = ConvTranspose2d(widths[-1], widths[-1], 2, 2, 0)
        self.logits = Conv2d(widths[-1], spec.model.num_classes, 1, 1, 0)
        # torchvision's MaskRCNNHeads / MaskRCNNPredictor initialisation: He normal (fan_out), zero bias.
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def forward(self, feature: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """feature [N, C, H, W] (the RoI level), boxes [N, R, 4] x1y1x2y2 pixels -> mask logits [N, R, S, S, K]."""
        n, r = boxes.shape[0], boxes.shape[1]
        batch_index = torch.arange(n, device=boxes.device).repeat_interleave(r)
        x = roi_align(feature, boxes.reshape(-1, 4), batch_index, self.output_size, 1.0 / self.stride,
                      self.sampling_ratio, True)                                      # [N * R, C, h, w]
        for conv in self.convs:
            x = F.relu(conv(x))
        x = self.logits(F.relu(self.upsample(x)))                                     # [N * R, K, S, S]
        return x.permute(0, 2, 3, 1).reshape(n, r, x.shape[2], x.shape[3], x.shape[1])


class MaskRCNN(FasterRCNN):
    """The two-stage detector (``FasterRCNN``: its outputs, its ``forward_features`` / ``forward_head`` split)
    and ``mask_head`` on its RoI level. Eval mode adds ``mask_logits`` [N, P, S, S, K], the masks of every
    proposal slot; training mode adds ``mask_head``, bound to this batch's features: boxes [N, R, 4] -> logits
    [N, R, S, S, K] (``compute_loss`` runs it on the positive RoIs it picks)."""

    def __init__(self, spec: InstanceSegmentationSpec):
        super().__init__(spec)
        self.mask_head = MaskHead(self.roi_channels, self.roi_stride, spec)

    def forward_after_rpn(self, feature: torch.Tensor, rpn: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward_after_rpn(feature, rpn)
        if self.training:
            out["mask_head"] = lambda boxes: self.mask_head(feature, boxes)
        else:
            out["mask_logits"] = self.mask_head(feature, out["proposals"])
        return out


def build_model(spec: InstanceSegmentationSpec) -> MaskRCNN:
    """The Mask R-CNN-style model of ``spec`` (weights from torch's RNG; the harness seeds it)."""
    return MaskRCNN(spec)


def export_view(model: MaskRCNN, spec: InstanceSegmentationSpec):
    """The part an exported graph holds, and its output keys: backbone, RPN and the RoI level's map
    (``spec.export_limit``)."""
    return RPNExport(model), RPNExport.output_keys


def finish_export(model: MaskRCNN, spec: InstanceSegmentationSpec, exported: dict[str, np.ndarray]) -> dict:
    """Every eval-mode output from the export view's (any backend's): proposals, box and mask heads run here."""
    return faster_rcnn.finish_export(model, exported)


def predict(model: MaskRCNN, images: np.ndarray, *, with_features: bool = False, batch_size: int = 32,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images (``spec.output_keys``), as numpy; with ``with_features`` every
    anchor level's map too, as ``features.<l>`` [N, H_l, W_l, C_l]."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)
