"""Building blocks shared by every TensorFlow twin.

Each name here has a twin in ``pytorch_impl/layers.py`` and takes the same
arguments in PyTorch's conventions, so model code reads alike in both twins:
explicit padding (Keras ``"same"`` with stride 2 pads (0, 1) on even sizes where
torch pads (1, 1): a 21% logit error on ResNet), BatchNorm momentum as the
weight of the new statistic, and torch's default initialisers.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

ReLU = keras.layers.ReLU


def _torch_default_init(fan_in: int) -> dict:
    # torch's default Conv/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    bound = fan_in ** -0.5
    return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


@keras.saving.register_keras_serializable("twinvision")
class Conv2d(keras.layers.Conv2D):
    """nn.Conv2d's signature on Keras: symmetric explicit zero padding, then a 'valid' conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, kernel_initializer=None, **kwargs):
        init = _torch_default_init(in_channels // groups * kernel_size * kernel_size)
        if kernel_initializer is not None:
            init["kernel_initializer"] = kernel_initializer
        kwargs = {**init, **kwargs}
        super().__init__(out_channels, kernel_size, strides=stride, padding="valid", dilation_rate=dilation,
                         groups=groups, use_bias=bias, **kwargs)
        self.in_channels, self.pad = in_channels, padding

    def call(self, x):  # [N, H, W, C] -> [N, H', W', out_channels]
        if self.pad:
            p = self.pad
            x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        return super().call(x)

    def compute_output_shape(self, input_shape):
        # Keras checks the output size at build time from the unpadded shape; account for our padding.
        n, h, w, c = input_shape
        grow = lambda d: None if d is None else d + 2 * self.pad  # noqa: E731
        return super().compute_output_shape((n, grow(h), grow(w), c))

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias",
                    "data_format"):
            config.pop(key, None)
        return {**config, "in_channels": self.in_channels, "out_channels": self.filters,
                "kernel_size": self.kernel_size[0], "stride": self.strides[0], "padding": self.pad,
                "dilation": self.dilation_rate[0], "groups": self.groups, "bias": self.use_bias}


@keras.saving.register_keras_serializable("twinvision")
class ConvTranspose2d(keras.layers.Conv2DTranspose):
    """nn.ConvTranspose2d's signature and output on Keras.

    torch's output is the full transposed convolution, (H - 1) * stride + kernel_size, with ``padding`` cropped
    from the start and ``padding - output_padding`` from the end. Keras' 'same' padding crops by its forward
    convolution's rule instead, which for an odd total (kernel 3, stride 2) takes the odd pixel from the other
    side: a one-pixel shift of the whole map. So this layer runs Keras' 'valid' transposed conv (the full output)
    and crops exactly as torch does. The kernel is (kh, kw, out, in), torch's (in, out, kh, kw) transposed (the
    weight bridge's ``conv_transpose`` rule); its default initialisation is torch's (fan-in from the output
    channels, as torch computes it for a transposed conv).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, bias: bool = True, kernel_initializer=None, **kwargs):
        if output_padding > padding:
            raise ValueError(f"output_padding: expected at most padding ({padding}), since the extra pixels are "
                             f"cropped from the full output; received {output_padding}")
        init = _torch_default_init(out_channels * kernel_size * kernel_size)
        if kernel_initializer is not None:
            init["kernel_initializer"] = kernel_initializer
        kwargs = {**init, **kwargs}
        super().__init__(out_channels, kernel_size, strides=stride, padding="valid", use_bias=bias, **kwargs)
        self.in_channels, self.pad, self.output_pad = in_channels, padding, output_padding

    def call(self, x):  # [N, H, W, C] -> [N, (H - 1) * s - 2p + k + op, ..., out_channels]
        out = super().call(x)
        if self.pad:
            start, stop = self.pad, self.pad - self.output_pad
            end = -stop if stop else None
            out = out[:, start:end, start:end, :]
        return out

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        size = lambda d: None if d is None else (d - 1) * self.strides[0] - 2 * self.pad + self.kernel_size[0] \
            + self.output_pad  # noqa: E731
        return (n, size(h), size(w), self.filters)

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "kernel_size", "strides", "padding", "output_padding", "dilation_rate", "use_bias",
                    "data_format", "groups"):
            config.pop(key, None)
        return {**config, "in_channels": self.in_channels, "out_channels": self.filters,
                "kernel_size": self.kernel_size[0], "stride": self.strides[0], "padding": self.pad,
                "output_padding": self.output_pad, "bias": self.use_bias}


@keras.saving.register_keras_serializable("twinvision")
class Linear(keras.layers.Dense):
    """nn.Linear's signature and initialisation on Keras."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs):
        kwargs = {**_torch_default_init(in_features), **kwargs}
        super().__init__(out_features, use_bias=bias, **kwargs)
        self.in_features = in_features

    def get_config(self):
        config = super().get_config()
        for key in ("units", "use_bias", "activation"):
            config.pop(key, None)
        return {**config, "in_features": self.in_features, "out_features": self.units, "bias": self.use_bias}


@keras.saving.register_keras_serializable("twinvision")
class BatchNorm2d(keras.layers.BatchNormalization):
    """BatchNorm with PyTorch's numerics.

    Keras' momentum is the weight of the *old* statistic: 0.9 here is torch's
    0.1. Both normalise with the biased batch variance, but torch updates the
    running variance with the unbiased one (times n / (n - 1)) and Keras with
    the biased one; this layer does what torch does, so running statistics
    stay equal through training.
    """

    def __init__(self, num_features: int, eps: float, momentum: float, **kwargs):
        for key in ("axis", "epsilon"):
            kwargs.pop(key, None)
        kwargs.pop("momentum", None)
        super().__init__(axis=-1, epsilon=eps, momentum=1.0 - momentum, **kwargs)
        self.num_features, self.torch_momentum = num_features, momentum

    def call(self, x, training=False):  # [N, H, W, C] -> same
        # A frozen layer (trainable False) normalises with its running statistics in training too: Keras'
        # own rule for BatchNormalization, and what the PyTorch twin's frozen layers do in eval mode.
        if not training or not self.trainable:
            return super().call(x, training=False)
        if x.dtype != tf.float32:  # mixed precision: statistics in float32, as Keras' own layer and torch do
            return tf.cast(self.call(tf.cast(x, tf.float32), training=True), x.dtype)
        mean, var = ops.moments(x, axes=[0, 1, 2])
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
        unbiased = var * n / tf.maximum(n - 1.0, 1.0)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + unbiased * (1.0 - m))
        return ops.batch_normalization(x, mean, var, axis=-1, offset=self.beta, scale=self.gamma,
                                       epsilon=self.epsilon)

    def get_config(self):
        config = super().get_config()
        return {**config, "num_features": self.num_features, "eps": self.epsilon, "momentum": self.torch_momentum}


@keras.saving.register_keras_serializable("twinvision")
class Sequential(keras.layers.Layer):
    """nn.Sequential on Keras: children named "0", "1", ... as torch names them.

    Children must be built with ``name=str(index)`` so that their weights map to
    torch's ``<parent>.<index>.<param>`` keys.
    """

    def __init__(self, *layers, **kwargs):
        super().__init__(**kwargs)
        for i, layer in enumerate(layers):
            if layer.name != str(i):
                raise ValueError(f"Sequential child {i} must be named {str(i)!r} to match torch's key; "
                                 f"received name {layer.name!r}")
        self.children = list(layers)

    def call(self, x, training=False):
        for layer in self.children:
            # Keras passes `training` on only to layers whose call() takes it.
            x = layer(x, training=training)
        return x

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, i):
        return self.children[i]


@keras.saving.register_keras_serializable("twinvision")
class ModuleList(keras.layers.Layer):
    """nn.ModuleList on Keras: an indexable holder of children named "0", "1", ..., never called itself.

    Children must be built with ``name=str(index)`` so that their weights map to
    torch's ``<parent>.<index>.<param>`` keys (a detector's per-level heads).
    """

    def __init__(self, layers=(), **kwargs):
        super().__init__(**kwargs)
        layers = list(layers)
        for i, layer in enumerate(layers):
            if layer.name != str(i):
                raise ValueError(f"ModuleList child {i} must be named {str(i)!r} to match torch's key; "
                                 f"received name {layer.name!r}")
        self.children = layers
        self.built = True   # a container has no variables of its own; its children build when called

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, i):
        return self.children[i]

    def __iter__(self):
        return iter(self.children)


@keras.saving.register_keras_serializable("twinvision")
class Pool2d(keras.layers.Layer):
    """Local pooling of one of three kinds with torch's semantics (see pytorch_impl.layers.Pool2d).

    The padding is explicit: zeros for avg (torch's ``count_include_pad``) and
    for l2; for max, the smallest value of the input. Every window holds at
    least one real cell, so that equals torch's ignoring of padded cells (as a
    -inf fill would), and it keeps the graph finite: a -inf constant gave the
    int8 converters (TFLite, ONNX Runtime) a quantization scale of about 1e36
    for the stem's pool, which zeroed every activation after it.
    """

    def __init__(self, kind: str, kernel_size: int, stride: int, padding: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.kernel_size, self.stride, self.padding = kind, kernel_size, stride, padding

    def call(self, x):  # [N, H, W, C] -> [N, H', W', C]
        k, s, p = self.kernel_size, self.stride, self.padding
        if p:
            fill = ops.min(x) if self.kind == "max" else 0.0
            x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=fill)
        if self.kind == "max":
            return ops.max_pool(x, k, s, padding="valid")
        if self.kind == "avg":
            return ops.average_pool(x, k, s, padding="valid")
        # torch's lp_pool2d: (sign(s) * relu(|s|) * k*k) ** 0.5 with s the window mean of x^2.
        out = ops.average_pool(x * x, k, s, padding="valid")
        out = ops.sign(out) * ops.relu(ops.abs(out)) * float(k * k)
        # Square root with a zero (not NaN) gradient for all-zero windows, as torch gives.
        positive = out > 0
        return ops.where(positive, ops.sqrt(ops.where(positive, out, 1.0)), 0.0)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}


def resize_bilinear(x, size: tuple[int, int]):
    """[N, H, W, C] -> [N, *size, C], bilinear with half-pixel centres and no antialiasing (``tf.image.resize``'s
    default sampling): torch's ``interpolate(mode="bilinear", align_corners=False)``, so the twins resize alike
    both ways. (``align_corners=True`` would map the corner pixels onto each other instead, and Keras' antialias
    option widens the kernel when shrinking.)"""
    return ops.image.resize(x, tuple(size), interpolation="bilinear", antialias=False)


@keras.saving.register_keras_serializable("twinvision")
class GlobalPool(keras.layers.Layer):
    """Global spatial pooling to one vector per image: max, avg, or l2 (sqrt(mean(x^2) + 1e-12))."""

    eps = 1e-12

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def call(self, x):  # [N, H, W, C] -> [N, C]
        if self.kind == "max":
            return ops.max(x, axis=(1, 2))
        if self.kind == "avg":
            return ops.mean(x, axis=(1, 2))
        return ops.sqrt(ops.mean(x * x, axis=(1, 2)) + self.eps)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


FRAMEWORK_SPECIFIC = {
    "BatchNorm2d.forward": "Keras updates the running variance with the biased batch variance, torch with the "
                           "unbiased one: this call does what torch does; torch's own forward needs no override",
}
