"""Specification of the semantic-segmentation twins (seed answers 7 and 20): one class per pixel.

Three decoders on the project's ResNet backbone (the classification twin's, classifier removed), each a variant
of the task:

* ``fcn``: fully convolutional network. A 1x1 "score" conv on the deepest map gives class logits at its stride;
  learned transposed convolutions double them back, and with ``skips`` > 0 each shallower stage's own scores are
  added on the way (FCN-8s' skip connections). Without skips, one transposed conv goes straight to full size
  (FCN-32s' coarse output).
* ``unet``: encoder-decoder; at each shallower stage, a 2x2 stride-2 transposed conv to that stage's channel
  count, the stage's map concatenated, two 3x3 conv + BatchNorm + ReLU (channels halve as the size doubles).
* ``deeplab``: atrous spatial pyramid pooling (DeepLab v3's ASPP) on the deepest map: a 1x1 branch, one 3x3
  branch per ``atrous_rates`` entry (dilated convolutions: a wider view for the same weights and output size),
  and an image-pooling branch, concatenated and projected; class logits bilinearly resized to full size.

The loss, in both twins: pixel-wise softmax cross-entropy (optionally class-weighted) plus ``dice_weight`` times
the soft Dice loss, 1 - mean over classes of (2 sum(p y) + s) / (sum p + sum y + s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ParityTolerances, SpecError, TrainSpec, check_choice, check_range
from . import classification
from .classification import ResNetSpec
from .detection import DETECTION_CLASSES, DetectionDataSpec

ARCHS = ("fcn", "unet", "deeplab")
DATASETS = ("scenes", "horses")
SEGMENTATION_CLASSES = ("background", *DETECTION_CLASSES)  # class 0 is background; then the detection set's shapes
DATASET_CLASSES = {"scenes": len(SEGMENTATION_CLASSES), "horses": 2}


@dataclass(frozen=True)
class SegmenterSpec:
    """backbone: the encoder (its ``num_classes`` is unused: the classifier is removed); its stages' strides are
    1, 2, 4, ... with the small stem. skips: how many shallower stages feed the decoder (0 to all of them; the
    deepest map always does). decoder_width: channels of each ASPP branch and of its projection.
    atrous_rates: the dilations of the ASPP's 3x3 branches."""

    arch: str = "fcn"
    backbone: ResNetSpec = field(default_factory=lambda: ResNetSpec(
        depths=(1, 1, 1, 1), widths=(16, 32, 48, 64), stem="small", stem_width=16, num_classes=len(SEGMENTATION_CLASSES)))
    num_classes: int = len(SEGMENTATION_CLASSES)
    skips: int = 3
    decoder_width: int = 32
    atrous_rates: tuple[int, ...] = (2, 4, 6)

    def __post_init__(self) -> None:
        check_choice("model", "arch", self.arch, ARCHS)
        check_range("model", "num_classes", self.num_classes, 2, 1000, integer=True)
        check_range("model", "skips", self.skips, 0, len(self.backbone.depths) - 1, integer=True)
        check_range("model", "decoder_width", self.decoder_width, 1, 4096, integer=True)
        if not isinstance(self.atrous_rates, tuple) or not self.atrous_rates:
            raise SpecError(f"model.atrous_rates: expected a non-empty tuple of integers; received: "
                            f"{self.atrous_rates!r}")
        for i, rate in enumerate(self.atrous_rates):
            check_range("model", f"atrous_rates[{i}]", rate, 1, 64, integer=True)
        if self.arch == "deeplab" and self.skips:
            raise SpecError(f"model.skips: the DeepLab-style decoder reads the deepest map only (its ASPP) and "
                            f"resizes bilinearly; expected 0; received: {self.skips}")
        if self.backbone.stem != "small":
            raise SpecError(f"model.backbone.stem: the segmenters decode every stage back to full size from stride 1; "
                            f"expected 'small'; received: {self.backbone.stem!r}")

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of each backbone stage's map, shallow to deep."""
        return tuple(w * self.backbone.expansion for w in self.backbone.widths)

    @property
    def output_stride(self) -> int:
        """The deepest map's stride in pixels (each stage after the first halves the size)."""
        return 2 ** (len(self.backbone.depths) - 1)


@dataclass(frozen=True)
class SegmentationDataSpec:
    """dataset: ``scenes`` (the detection set's images, each pixel labelled with the class of the object visible
    there, 0 for background: occluded parts belong to the occluder) or ``horses`` (scikit-image's horse
    silhouette, randomly scaled, flipped and placed, filled with one texture over another: a binary set).
    scene: how the scenes are drawn (image size and counts are this spec's)."""

    dataset: str = "scenes"
    image_size: int = 64
    n_train: int = 1500
    n_val: int = 100
    n_test: int = 300
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 4
    min_object_size: float = 0.2
    max_object_size: float = 0.55

    def __post_init__(self) -> None:
        check_choice("data", "dataset", self.dataset, DATASETS)
        check_range("data", "image_size", self.image_size, 16, 1024, integer=True)
        for name in ("n_train", "n_val", "n_test"):
            check_range("data", name, getattr(self, name), 1, 1_000_000, integer=True)
        check_range("data", "seed", self.seed, 0, 2**31 - 1, integer=True)
        self.scene  # the scene spec checks the object settings

    @property
    def scene(self) -> DetectionDataSpec:
        """The detection set's spec these scenes are drawn with."""
        return DetectionDataSpec(image_size=self.image_size, n_train=self.n_train, n_val=self.n_val,
                                 n_test=self.n_test, seed=self.seed, min_objects=self.min_objects,
                                 max_objects=self.max_objects, min_object_size=self.min_object_size,
                                 max_object_size=self.max_object_size)


@dataclass(frozen=True)
class SegmentationLossSpec:
    """class_weights: per-class weights of the cross-entropy (empty: all 1; torch's ``weight`` semantics: the
    mean is taken over the pixels' weights). dice_weight: weight of the soft Dice term (0: cross-entropy alone).
    dice_smooth: the Dice ratio's smoothing constant s."""

    class_weights: tuple[float, ...] = ()
    dice_weight: float = 0.5
    dice_smooth: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.class_weights, tuple):
            raise SpecError(f"loss.class_weights: expected a tuple of numbers; received: {self.class_weights!r}")
        for i, w in enumerate(self.class_weights):
            check_range("loss", f"class_weights[{i}]", w, 0.0, 1e4)
        check_range("loss", "dice_weight", self.dice_weight, 0.0, 100.0)
        check_range("loss", "dice_smooth", self.dice_smooth, 0.0, 1e6)


@dataclass(frozen=True)
class SegmentationSpec:
    model: SegmenterSpec = field(default_factory=SegmenterSpec)
    data: SegmentationDataSpec = field(default_factory=SegmentationDataSpec)
    loss: SegmentationLossSpec = field(default_factory=SegmentationLossSpec)
    train: TrainSpec = field(default_factory=lambda: TrainSpec(optimizer="adam", lr=0.003, weight_decay=0.0,
                                                               epochs=10, batch_size=32))
    tolerances: ParityTolerances = field(default_factory=lambda: segmentation_tolerances())
    # The pretrained backbone: the trained body of run ``body_from`` (compare.stages.train.Initialisation), its
    # tensors ``body_keys`` stored under ``body_prefix`` here; None: every weight from the seeded initialisation.
    body_from: str | None = None
    body_keys: tuple[str, ...] = ("conv1.", "bn1.", "layer")
    body_prefix: str = "backbone."
    task: str = "semantic_segmentation"
    output_keys: tuple[str, ...] = ("logits",)

    def __post_init__(self) -> None:
        check_choice("semantic_segmentation", "task", self.task, ("semantic_segmentation",))
        check_choice("semantic_segmentation", "body_from", self.body_from, (None, "classification"))
        weights = self.loss.class_weights
        if weights and len(weights) != self.model.num_classes:
            raise SpecError(f"loss.class_weights: expected one weight per class ({self.model.num_classes}); "
                            f"received {len(weights)}: {weights!r}")
        size, stride = self.data.image_size, self.model.output_stride
        if size % stride:
            raise SpecError(f"data.image_size: the backbone's deepest stride is {stride}, so the size must be a "
                            f"multiple of it; received: {size}")

    def check_data_matches(self) -> None:
        """Raise unless the model's class count fits the chosen data set (checked before training)."""
        n = DATASET_CLASSES[self.data.dataset]
        if self.model.num_classes != n:
            raise ValueError(f"model.num_classes: the {self.data.dataset!r} data set has {n} classes; "
                             f"received: {self.model.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one NHWC image."""
        s = self.data.image_size
        return (s, s, self.model.backbone.in_channels)


def segmentation_tolerances() -> ParityTolerances:
    """The default tolerances, with the L2 and L3 probes sized for a per-pixel network.

    L2 compares 2 images (base.py: ``gradient_images``). L3 runs 6 steps, not 20: with a ReLU on every pixel, the
    float32 trajectory itself is chaotic. Measured on the tiny models (32 px, SGD at 0.01): with batches of 32,
    the FCN in float32 drifts from the same FCN in float64 by 1e-6 of the loss at step 9 and 6e-5 at step 20 in
    PyTorch, 1e-4 in TensorFlow (the twins then differ by 2e-4 while both follow float64 as closely as float32
    can); with the preset's batches of 8 the U-Net's and DeepLab's twins reach 1e-5 apart by steps 18-19. By
    step 6 every model's twins are within 1e-6 at either batch size (at most 9e-7), a tenth of the 1e-5
    tolerance.
    """
    return ParityTolerances(gradient_images=2, training_steps=6)


def _tiny_backbone() -> ResNetSpec:
    return ResNetSpec(depths=(1, 1, 1), widths=(8, 16, 16), stem="small", stem_width=8, num_classes=len(SEGMENTATION_CLASSES))


def _tiny(arch: str, **model) -> SegmentationSpec:
    """Seconds-scale: 32 px scenes, a 3-stage 8/16/16-channel backbone (strides 1, 2, 4)."""
    return SegmentationSpec(
        model=SegmenterSpec(arch=arch, backbone=_tiny_backbone(), skips=0 if arch == "deeplab" else 2,
                            decoder_width=8, atrous_rates=(2, 3), **model),
        data=SegmentationDataSpec(image_size=32, n_train=256, n_val=32, n_test=64, max_objects=3,
                                  min_object_size=0.3, max_object_size=0.6),
        # 12 epochs of 8 (2.5 s): held-out mIoU 0.25 (all background scores 0.12); 4 epochs of 32 reached 0.17.
        train=TrainSpec(optimizer="adam", lr=0.003, weight_decay=0.0, epochs=12, batch_size=8),
        tolerances=segmentation_tolerances(),
    )


def tiny() -> SegmentationSpec:
    return _tiny("fcn")


def tiny_unet() -> SegmentationSpec:
    return _tiny("unet")


def tiny_deeplab() -> SegmentationSpec:
    return _tiny("deeplab")


def standard_backbone() -> ResNetSpec:
    """The classification task's standard ResNet (4 stages, 16 to 128 channels, strides 1 to 8 with its small
    stem), so that its trained body loads here: the segmenters start from what it learnt about the same shapes
    on the same textures (32 px crops of one object there, 64 px scenes here)."""
    return classification.standard().model


def _standard(arch: str, **model) -> SegmentationSpec:
    """The report's models: 64 px scenes of 1 to 4 objects (13 to 35 px across), 4,000 of them; the classification
    model's trained body; Adam at 0.002, cosine, 10 epochs of 8 images.

    Measured (PyTorch, FCN, held-out mIoU): from scratch on 1,500 scenes, 0.49 after 10 epochs of 32 at 0.003
    and 0.72 after 30 at 0.01 (training loss 0.08: it had learnt the training set); from the classification
    body, 0.68 after 15 epochs on 1,500 scenes, and on 4,000: 0.77 with batches of 32 (0.003), 0.79 with 16
    (0.003), 0.81 with 8 (0.002, 128 s), where the weakest classes are the thin-tipped star and triangle and the
    boundary band (boundary IoU 0.58). Larger objects (0.25-0.6 of the image) did not help (0.72 at batch 32).
    """
    return SegmentationSpec(
        model=SegmenterSpec(arch=arch, backbone=standard_backbone(), skips=0 if arch == "deeplab" else 3, **model),
        data=SegmentationDataSpec(n_train=4000),
        train=TrainSpec(optimizer="adam", lr=0.002, weight_decay=0.0, epochs=10, batch_size=8),
        body_from="classification",
    )


def standard() -> SegmentationSpec:
    """The report's FCN: scores from every stage (FCN-8s' skips, here down to stride 1)."""
    return _standard("fcn")


def standard_unet() -> SegmentationSpec:
    return _standard("unet")


def standard_deeplab() -> SegmentationSpec:
    return _standard("deeplab")


__all__ = ["ARCHS", "DATASETS", "DATASET_CLASSES", "SEGMENTATION_CLASSES", "SegmentationDataSpec",
           "SegmentationLossSpec", "SegmentationSpec", "SegmenterSpec", "standard", "standard_deeplab",
           "standard_unet", "tiny", "tiny_deeplab", "tiny_unet"]
