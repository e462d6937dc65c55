"""ResNet-style classifier and feature extractor (TensorFlow / Keras 3 twin).

Layer ``name=`` strings are the PyTorch attribute names, so every weight maps
to torchvision's ``state_dict`` key (``layer1.0.conv1.weight``) mechanically,
and a torchvision ResNet loads here. Reads line for line like
``pytorch_impl/classification/model.py``; the differences are Keras' NHWC
layout and the ``training`` flag.
"""

from __future__ import annotations

import dataclasses
import weakref

import keras
import numpy as np
from keras import ops
import tensorflow as tf

from shared.specs.classification import ClassificationSpec, ResNetSpec

from ..layers import BatchNorm2d, Conv2d, GlobalPool, Linear, Pool2d, ReLU, Sequential
from ..tensors import check_native, resolve_device, to_native, to_numpy

# torchvision's ResNet initialisation (He normal, fan_out), as pytorch_impl's _init_weights.
HE_FAN_OUT = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


class BasicBlock(keras.layers.Layer):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut.

    ReLU is applied functionally, as in the PyTorch twin (whose int8 quantizer needs it so).
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, spec: ResNetSpec, **kwargs):
        super().__init__(**kwargs)
        eps, mom = spec.bn_eps, spec.bn_momentum
        self.conv1 = Conv2d(in_channels, width, 3, stride, 1, bias=False, kernel_initializer=HE_FAN_OUT, name="conv1")
        self.bn1 = BatchNorm2d(width, eps, mom, name="bn1")
        self.conv2 = Conv2d(width, width, 3, 1, 1, bias=False, kernel_initializer=HE_FAN_OUT, name="conv2")
        self.bn2 = BatchNorm2d(width, eps, mom, name="bn2")
        self.downsample = _shortcut(in_channels, width * self.expansion, stride, spec)

    def call(self, x, training=False):
        identity = x if self.downsample is None else self.downsample(x, training=training)
        out = ops.relu(self.bn1(self.conv1(x), training=training))
        out = self.bn2(self.conv2(out), training=training)
        return ops.relu(out + identity)


class Bottleneck(keras.layers.Layer):
    """1x1 reduce, 3x3 (carrying the stride, torchvision's v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, spec: ResNetSpec, **kwargs):
        super().__init__(**kwargs)
        eps, mom = spec.bn_eps, spec.bn_momentum
        self.conv1 = Conv2d(in_channels, width, 1, 1, 0, bias=False, kernel_initializer=HE_FAN_OUT, name="conv1")
        self.bn1 = BatchNorm2d(width, eps, mom, name="bn1")
        self.conv2 = Conv2d(width, width, 3, stride, 1, bias=False, kernel_initializer=HE_FAN_OUT, name="conv2")
        self.bn2 = BatchNorm2d(width, eps, mom, name="bn2")
        self.conv3 = Conv2d(width, width * self.expansion, 1, 1, 0, bias=False, kernel_initializer=HE_FAN_OUT,
                            name="conv3")
        self.bn3 = BatchNorm2d(width * self.expansion, eps, mom, name="bn3")
        self.downsample = _shortcut(in_channels, width * self.expansion, stride, spec)

    def call(self, x, training=False):
        identity = x if self.downsample is None else self.downsample(x, training=training)
        out = ops.relu(self.bn1(self.conv1(x), training=training))
        out = ops.relu(self.bn2(self.conv2(out), training=training))
        out = self.bn3(self.conv3(out), training=training)
        return ops.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, spec: ResNetSpec) -> Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, bias=False, kernel_initializer=HE_FAN_OUT,
                             name="0"),
                      BatchNorm2d(out_channels, spec.bn_eps, spec.bn_momentum, name="1"), name="downsample")


@keras.saving.register_keras_serializable("twinvision")
class ResNet(keras.Model):
    """Stem, ``len(depths)`` stages named ``layer1``..., global pool, ``fc``.

    Input: images [N, H, W, C] float32. ``call`` returns ``{"logits": [N, classes]}``. ``input_size``
    (H, W): the size the model serves, checked by ``call`` and ``predict`` (global pooling would take any
    size); None for a backbone inside a larger model, which checks its own input.
    """

    def __init__(self, spec: ResNetSpec, input_size: tuple[int, int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.input_size = spec, None if input_size is None else tuple(input_size)
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        eps, mom = spec.bn_eps, spec.bn_momentum
        if spec.stem == "imagenet":
            self.conv1 = Conv2d(spec.in_channels, spec.stem_width, 7, 2, 3, bias=False, kernel_initializer=HE_FAN_OUT,
                                name="conv1")
            self.stem_pool = Pool2d(spec.stem_pool, 3, 2, 1, name="stem_pool")
        else:
            self.conv1 = Conv2d(spec.in_channels, spec.stem_width, 3, 1, 1, bias=False, kernel_initializer=HE_FAN_OUT,
                                name="conv1")
            self.stem_pool = None
        self.bn1 = BatchNorm2d(spec.stem_width, eps, mom, name="bn1")
        self.relu = ReLU(name="relu")
        channels = spec.stem_width
        self.stage_names = []
        for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(channels, width, stride, spec, name=str(j)))
                channels, stride = width * block.expansion, 1
            self.stage_names.append(f"layer{i + 1}")
            setattr(self, f"layer{i + 1}", Sequential(*blocks, name=f"layer{i + 1}"))
        self.head_pool = GlobalPool(spec.head_pool, name="head_pool")
        self.fc = Linear(channels, spec.num_classes, name="fc")

    def forward_features(self, x, training=False) -> list:
        """Every stage's feature map, [N, H_i, W_i, C_i], shallow to deep."""
        x = self.relu(self.bn1(self.conv1(x), training=training))
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        features = []
        for name in self.stage_names:
            x = getattr(self, name)(x, training=training)
            features.append(x)
        return features

    def forward_head(self, x, pre_logits: bool = False):
        """[N, H, W, C] last feature map -> [N, C] pooled features or [N, classes] logits."""
        x = self.head_pool(x)
        return x if pre_logits else self.fc(x)

    def call(self, x, training=False):
        check_native(x, self.spec.in_channels, self.input_size)
        return {"logits": self.forward_head(self.forward_features(x, training=training)[-1])}

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec), "input_size": self.input_size}

    @classmethod
    def from_config(cls, config):
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in config["spec"].items()}
        return cls(ResNetSpec(**spec), config.get("input_size"), name=config.get("name", "resnet"))


def build_model(spec: ClassificationSpec) -> ResNet:
    model = ResNet(spec.model, spec.input_shape[:2], name="resnet")
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def predict(model: ResNet, images: np.ndarray, *, with_features: bool = False, batch_size: int = 256,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images, as NHWC numpy.

    Returns ``{"logits": [N, classes]}`` and, with ``with_features``, every
    stage's map as ``features.<i>``: [N, H_i, W_i, C_i].
    """
    x_all = to_native(images, channels=model.spec.in_channels, size=model.input_size, device=device)
    forward = _inference_fn(model, with_features)
    chunks: dict[str, list[np.ndarray]] = {}
    with tf.device(resolve_device(device)):
        for start in range(0, x_all.shape[0], batch_size):
            for key, value in forward(x_all[start:start + batch_size]).items():
                chunks.setdefault(key, []).append(to_numpy(value))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def build_functional(spec, K):
    """The spec's ResNet as a functional model of built-in layers of Keras module ``K`` (keras or tf_keras), for
    tensorflow-model-optimization, which takes tf_keras models only (tensorflow_impl/quantize.py).

    Layer names are the canonical (PyTorch) paths, so weights copy in by name.
    Padding is explicit (ZeroPadding2D), as in the subclassed twin.
    """
    from ..quantize import UnsupportedOpError

    m = spec.model
    for field in ("stem_pool", "head_pool"):
        if getattr(m, field) == "l2" and (field == "head_pool" or m.stem == "imagenet"):
            raise UnsupportedOpError(f"model.{field}='l2': L2 pooling has no built-in Keras layer, so "
                                     f"tensorflow-model-optimization cannot quantize it; use 'max' or 'avg'")
    L, eps, momentum = K.layers, m.bn_eps, 1.0 - m.bn_momentum

    def conv_bn(x, name, bn_name, out, k, stride, pad):
        if pad:
            x = L.ZeroPadding2D(pad, name=f"{name}.pad")(x)
        x = L.Conv2D(out, k, strides=stride, use_bias=False, name=name)(x)
        return L.BatchNormalization(momentum=momentum, epsilon=eps, name=bn_name)(x)

    inputs = K.Input(spec.input_shape, name="images")
    stem_k, stem_s, stem_p = (7, 2, 3) if m.stem == "imagenet" else (3, 1, 1)
    x = L.ReLU(name="relu")(conv_bn(inputs, "conv1", "bn1", m.stem_width, stem_k, stem_s, stem_p))
    if m.stem == "imagenet":
        # Zero padding equals torch's -inf padding here: the input is post-ReLU (>= 0).
        x = L.ZeroPadding2D(1, name="stem_pool.pad")(x)
        pool = L.MaxPooling2D if m.stem_pool == "max" else L.AveragePooling2D
        x = pool(3, 2, name="stem_pool")(x)
    channels, expansion = m.stem_width, m.expansion
    for i, (depth, width) in enumerate(zip(m.depths, m.widths)):
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            p = f"layer{i + 1}.{j}"
            if m.block == "bottleneck":
                out = L.ReLU()(conv_bn(x, f"{p}.conv1", f"{p}.bn1", width, 1, 1, 0))
                out = L.ReLU()(conv_bn(out, f"{p}.conv2", f"{p}.bn2", width, 3, stride, 1))
                out = conv_bn(out, f"{p}.conv3", f"{p}.bn3", width * expansion, 1, 1, 0)
            else:
                out = L.ReLU()(conv_bn(x, f"{p}.conv1", f"{p}.bn1", width, 3, stride, 1))
                out = conv_bn(out, f"{p}.conv2", f"{p}.bn2", width, 3, 1, 1)
            identity = x
            if stride != 1 or channels != width * expansion:
                identity = conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", width * expansion, 1, stride, 0)
            x = L.ReLU()(L.Add()([out, identity]))
            channels = width * expansion
    pooled = (L.GlobalMaxPooling2D if m.head_pool == "max" else L.GlobalAveragePooling2D)(name="head_pool")(x)
    logits = L.Dense(m.num_classes, name="fc")(pooled)
    return K.Model(inputs, logits, name="resnet_functional")


FRAMEWORK_SPECIFIC = {
    "build_functional": "tfmot takes tf_keras models only: the same ResNet rebuilt of built-in layers of the Keras "
                        "module it is given; torch's quantization and pruning work on the model itself",
}


_INFERENCE_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_fn(model: ResNet, with_features: bool):
    # One traced graph per model and output set (tf.function), as Keras' predict would use.
    cache = _INFERENCE_FNS.setdefault(model, {})
    if with_features not in cache:
        @tf.function(reduce_retracing=True)
        def forward(x):
            features = model.forward_features(x, training=False)
            out = {"logits": model.forward_head(features[-1])}
            if with_features:
                out.update({f"features.{i}": f for i, f in enumerate(features)})
            return out
        cache[with_features] = forward
    return cache[with_features]
