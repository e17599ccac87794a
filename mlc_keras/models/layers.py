"""Building blocks shared by the generator and the critics.

tensorflow-addons is not used: its InstanceNormalization is
``keras.layers.GroupNormalization(groups=-1)`` (one group per channel: the
same statistics, the same output), which our ``InstanceNormalization``
subclasses to run fused kernels, and its SpectralNormalization is
``keras.layers.SpectralNormalization``. We use our own ``SNConv2D`` for
spectral norm instead: Keras's wrapper overwrites the trainable kernel with
W / sigma on every training call and builds an ``ops.cond`` per call, which
made tracing our train step about 2x slower (its conds took 22 of 30 s at tiny
sizes, measured);
``SNConv2D`` divides by sigma inside the graph as in Miyato et al. (2018).
"""

import contextlib
import contextvars

import keras
from keras import layers, ops

NORMS = ("instance", "batch", "none")

# Set by ``remat_scope`` while networks are built: each ConvNormAct created
# inside it recomputes its conv and norm outputs in the backward pass.
_REMAT = contextvars.ContextVar("mlc_keras_remat", default=False)


@contextlib.contextmanager
def remat_scope(enabled=True):
    """Gradient checkpointing for the ConvNormAct blocks built inside: each
    keeps only its input for the backward pass and recomputes the conv and
    norm outputs there (``keras.remat``: their forward pass runs twice).
    Batch-norm blocks are left out (their moving statistics would be updated
    twice). A construction-time setting, as Keras's own ``RematScope``;
    loading a saved model never uses it."""
    token = _REMAT.set(bool(enabled))
    try:
        yield
    finally:
        _REMAT.reset(token)


# Up to this many images per call instance norm runs one fused batch-norm
# kernel per image (tf.split along the batch shares the input's memory).
_PER_IMAGE_MAX_BATCH = 64


def _fused_norm(x, scale, offset, epsilon):
    """FusedBatchNormV3 in training mode: per-channel statistics over N, H, W
    of NHWC ``x``; ``scale``/``offset`` float32. One kernel forward, one for
    the gradient (oneDNN's on CPU, bfloat16 included)."""
    import tensorflow as tf

    empty = tf.constant([], tf.float32)
    y, *_ = tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=empty,
                                        variance=empty, epsilon=epsilon,
                                        exponential_avg_factor=1.0, data_format="NHWC",
                                        is_training=True)
    return y


def _image_norm(x, scale, offset, epsilon):
    """``_fused_norm`` of one NHWC image. A float32 image is handed to the
    kernel as a batch of H*W/2 tiles of 2 x 1 positions when H*W is even and
    known when traced (a free reshape; the batch statistics over all tiles are
    the image's own; outputs differ by float32 rounding at most). oneDNN spreads its
    batch-norm kernels over the batch: its AVX2 kernel ran 2.7x slower on one
    1 x H x W image than on the tiles (forward plus backward on the default
    model's shapes), while with AVX-512 the two were within 3 %. In bfloat16
    the tiles were 6 % slower with AVX-512 (and AVX2 has no bfloat16 kernel),
    so bfloat16 keeps the image shape (BENCHMARKS.md, issue 14)."""
    import tensorflow as tf

    _, h, w, c = x.shape
    if x.dtype != tf.float32 or h is None or w is None or c is None or (h * w) % 2:
        return _fused_norm(x, scale, offset, epsilon)
    # -1, not H*W/2: under a traced unknown batch the batch-1 branch may be
    # handed a larger batch it does not return (ops.cond in a gradient tape).
    y = _fused_norm(tf.reshape(x, (-1, 2, 1, c)), scale, offset, epsilon)
    return tf.reshape(y, (-1, h, w, c))


def fused_instance_norm(x, gamma, beta, epsilon):
    """Instance norm of NHWC ``x`` with a batch known when traced (at most
    ``_PER_IMAGE_MAX_BATCH``), any float dtype, statistics in float32, float32
    ``gamma`` and ``beta`` of shape [C]: one fused batch-norm kernel per image
    (a batch of one is one instance; see ``_image_norm``) instead of separate
    mean / variance / scale ops. The same statistics as ``GroupNormalization(groups=-1)``: the
    biased variance over H and W of each image and channel."""
    import tensorflow as tf

    gamma = tf.cast(gamma, tf.float32)
    beta = tf.cast(beta, tf.float32)
    batch = x.shape[0]
    if batch == 1:
        return _image_norm(x, gamma, beta, epsilon)
    parts = tf.split(x, batch, axis=0)
    return tf.concat([_image_norm(p, gamma, beta, epsilon) for p in parts], axis=0)


@keras.saving.register_keras_serializable(package="mlc_keras")
class InstanceNormalization(layers.GroupNormalization):
    """Instance norm (one group per channel) for NHWC feature maps.

    The same layer, weights and result as ``GroupNormalization(groups=-1)``,
    computed by fused batch-norm kernels on the TensorFlow backend: under
    ``mixed_bfloat16`` Keras's GroupNormalization casts every activation to
    float32 and back and runs about ten element-wise ops each way, which took
    a third of a bfloat16 step's non-convolution time on an AMX Xeon
    (BENCHMARKS.md, issue 14). The variables stay float32 (``autocast`` off:
    the fused kernel takes float32 scale and offset beside bfloat16 inputs).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        kwargs.pop("groups", None)
        kwargs.setdefault("autocast", False)
        super().__init__(groups=-1, epsilon=epsilon, **kwargs)

    def call(self, inputs):
        if (keras.backend.backend() != "tensorflow" or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or not (self.scale and self.center)):
            return super().call(inputs)
        x = ops.cast(inputs, self.compute_dtype)
        batch = x.shape[0]
        if batch is not None:
            if batch <= _PER_IMAGE_MAX_BATCH:
                return fused_instance_norm(x, self.gamma, self.beta, self.epsilon)
            return super().call(x)
        # A batch unknown when traced (the serving signatures): one image takes
        # the fused kernel, more take GroupNormalization's ops.
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        return ops.cond(ops.equal(ops.shape(x)[0], 1),
                        lambda: _image_norm(x, gamma, beta, self.epsilon),
                        lambda: super(InstanceNormalization, self).call(x))

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("groups", None)
        return cfg


def normalization(kind, name):
    """Returns a normalisation layer (or None) for NHWC feature maps."""
    if kind == "instance":
        return InstanceNormalization(epsilon=1e-5, name=name)
    if kind == "batch":
        return layers.BatchNormalization(name=name)
    if kind == "none":
        return None
    raise ValueError(f"norm {kind!r}: expected one of {NORMS}")


def tile_condition(condition, height, width):
    """[B, N] -> [B, height, width, N]: the expression code as channels."""
    c = ops.reshape(condition, (-1, 1, 1, ops.shape(condition)[-1]))
    return ops.tile(ops.cast(c, "float32"), (1, height, width, 1))


def downsample_images(images, size):
    """Area-average [B, H, W, C] images to [B, size, size, C]; H must be a
    multiple of size (the decoder levels always are)."""
    height = images.shape[1]
    if height == size:
        return images
    factor = height // size
    if factor * size != height:
        raise ValueError(f"cannot downsample {height} px images to {size} px")
    return ops.average_pool(images, pool_size=factor, strides=factor, padding="valid")


def warp_images(images, flow):
    """Backward warp with bilinear sampling: ``out[p] = images[p + flow[p]]``.

    The flow is in fractions of the image size (dy as a share of the height,
    dx of the width), so one flow field predicted at R moves a crop of any
    size S the same way once it is resized to S. Samples outside the image
    take the nearest border pixel. Differentiable in both arguments (the
    gradient to the flow comes through the bilinear weights).

    Args:
      images: [B, H, W, C] float.
      flow: [B, H, W, 2] float (dy, dx) in fractions of H and W.

    Returns:
      [B, H, W, C] float32.
    """
    y0, x0, wy, wx, gather, height, width = _sampling_grid(images, flow)
    wy, wx = wy[..., None], wx[..., None]
    y1 = ops.minimum(y0 + 1, height - 1)
    x1 = ops.minimum(x0 + 1, width - 1)
    top = gather(y0, x0) * (1.0 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1.0 - wx) + gather(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def _sampling_grid(images, flow):
    """Where ``out[p] = images[p + flow[p]]`` samples (clipped to the image):
    (y0, x0 int32 [B, H, W]: the sample's top-left pixel; wy, wx float32
    [B, H, W]: its fractional offset; gather(yy, xx) -> [B, H, W, C] of
    ``images`` at integer positions; height, width)."""
    images = ops.cast(images, "float32")
    flow = ops.cast(flow, "float32")
    shape = ops.shape(images)
    height, width = shape[1], shape[2]
    h, w = ops.cast(height, "float32"), ops.cast(width, "float32")
    rows = ops.arange(height, dtype="float32")[None, :, None]
    cols = ops.arange(width, dtype="float32")[None, None, :]
    y = ops.clip(rows + flow[..., 0] * h, 0.0, h - 1.0)
    x = ops.clip(cols + flow[..., 1] * w, 0.0, w - 1.0)
    y0, x0 = ops.floor(y), ops.floor(x)
    flat = ops.reshape(images, (shape[0], -1, shape[3]))

    def gather(yy, xx):
        index = ops.reshape(yy * width + xx, (shape[0], -1, 1))
        return ops.reshape(ops.take_along_axis(flat, index, axis=1),
                           (shape[0], height, width, shape[3]))

    return (ops.cast(y0, "int32"), ops.cast(x0, "int32"), y - y0, x - x0, gather, height,
            width)


def _keys_weights(t, a=-0.5):
    """Keys' cubic convolution weights of the four taps at offsets -1, 0, 1, 2
    for a fractional position ``t`` in [0, 1) (a = -0.5: Catmull-Rom)."""
    def near(d):  # |d| <= 1
        return (a + 2.0) * d ** 3 - (a + 3.0) * d ** 2 + 1.0

    def far(d):  # 1 < |d| < 2
        return a * d ** 3 - 5.0 * a * d ** 2 + 8.0 * a * d - 4.0 * a

    return far(1.0 + t), near(t), near(1.0 - t), far(2.0 - t)


def warp_images_cubic(images, flow):
    """``warp_images`` with bicubic (Keys, Catmull-Rom) sampling: the same
    motion, but a sub-pixel shift blurs far less (at half a pixel, bilinear
    sampling averages two pixels; this keeps 9/8 of the nearer pair and
    subtracts 1/8 of the outer pair). For compositing at full resolution,
    where the sharp crop is moved; training keeps the bilinear warp. At a
    whole-pixel shift it returns the pixels themselves. Not clipped: the
    cubic can overshoot the input's range by a little."""
    y0, x0, fy, fx, gather, height, width = _sampling_grid(images, flow)
    wy, wx = _keys_weights(fy[..., None]), _keys_weights(fx[..., None])
    out = 0.0
    for i, wyi in enumerate(wy):
        yy = ops.clip(y0 + (i - 1), 0, height - 1)
        row = 0.0
        for j, wxj in enumerate(wx):
            row = row + gather(yy, ops.clip(x0 + (j - 1), 0, width - 1)) * wxj
        out = out + row * wyi
    return out


def shifted_taps_conv(x, kernel):
    """A stride-1 "same" convolution with an odd kernel, computed as ONE 1x1
    matmul to every tap's outputs followed by shifted sums of those outputs.

    y[h, w] = sum_ij x[h + i - kh // 2, w + j - kw // 2] @ kernel[i, j]
            = sum_ij pad(x @ kernel[i, j])[h + i, w + j]

    Same result as ``conv2d(x, kernel, padding="same")`` (up to float
    summation order). Worth it for wide kernels with few output channels:
    oneDNN runs a 7x7 convolution to 3-4 outputs at batch 1 at about
    1 GFLOP/s on the CPUs measured (BENCHMARKS.md), where the matmul to
    kh * kw * out channels runs at matmul speed and the 49 shifted slices
    only add [B, H, W, out] each.

    Args:
      x: [B, H, W, Cin].
      kernel: [kh, kw, Cin, Cout] with kh and kw odd.

    Returns:
      [B, H, W, Cout].
    """
    kh, kw, cin, cout = (int(d) for d in kernel.shape)
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"shifted_taps_conv needs an odd kernel, got {kh}x{kw}")
    taps = ops.reshape(ops.transpose(kernel, (2, 0, 1, 3)), (cin, kh * kw * cout))
    z = ops.matmul(x, ops.cast(taps, x.dtype))  # [B, H, W, kh * kw * cout]
    ph, pw = kh // 2, kw // 2
    z = ops.pad(z, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    out = None
    for i in range(kh):
        for j in range(kw):
            k = (i * kw + j) * cout
            part = z[:, i:i + height, j:j + width, k:k + cout]
            out = part if out is None else out + part
    return out


def _taps_call(conv, inputs):
    y = shifted_taps_conv(inputs, conv.kernel)
    if conv.use_bias:
        y = y + ops.cast(conv.bias, y.dtype)
    return conv.activation(y) if conv.activation is not None else y


def wide_head(conv, inputs, training=False):
    """``conv(inputs)`` for a built ``keras.layers.Conv2D`` (stride 1,
    "same", odd kernel), computed with ``shifted_taps_conv`` for ONE image
    outside training. The same variables and outputs as calling the layer
    (the layer stays a plain Conv2D, so saved weights load unchanged).

    Used for the generator's 7x7 image head (3-4 outputs), where oneDNN's
    batch-1 kernel is the anomaly. 7x7, 64 -> 4 channels at 128 px, measured
    in one run on 2 AMD EPYC cores (BENCHMARKS.md, "The batch-1 fix"):
    batch 1 260 ms as a Conv2D and 48 ms as shifted taps; batch 2 72 ms vs
    97 ms; batch 16 forward and backward 2.6 s vs 8.4 s. So only batch 1
    outside training takes the taps (an ``ops.cond`` when the batch size is
    unknown at tracing time, as in the serving signatures).
    """
    if training or not conv.built:
        return conv(inputs)
    batch = inputs.shape[0]
    if batch is not None:
        return _taps_call(conv, inputs) if batch == 1 else conv(inputs)
    return ops.cond(ops.equal(ops.shape(inputs)[0], 1), lambda: _taps_call(conv, inputs),
                    lambda: conv(inputs))


def _l2_normalize(x):
    return x / ops.sqrt(ops.sum(ops.square(x)) + 1e-12)


@keras.saving.register_keras_serializable(package="mlc_keras")
class SNConv2D(layers.Layer):
    """Conv2D ('same' padding) whose kernel is divided by its largest singular
    value, estimated by one power iteration per training call.

    The estimate u is a non-trainable variable updated only when training;
    gradients flow through sigma (u, v held constant), as in the SN-GAN paper.
    """

    def __init__(self, filters, kernel_size, strides=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.use_bias = use_bias

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(
            shape=(k, k, input_shape[-1], self.filters), name="kernel",
            initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.bias = (self.add_weight(shape=(self.filters,), name="bias", initializer="zeros")
                     if self.use_bias else None)
        self.u = self.add_weight(shape=(1, self.filters), name="u", trainable=False,
                                 initializer=keras.initializers.RandomNormal(stddev=1.0),
                                 aggregation="only_first_replica")

    def normalized_kernel(self, training=False):
        # The power iteration runs in float32 whatever the compute dtype
        # (under mixed precision the kernel arrives here already cast).
        kernel = self.kernel
        w = ops.reshape(ops.cast(kernel, "float32"), (-1, self.filters))
        u = ops.cast(self.u, "float32")
        v = _l2_normalize(ops.matmul(u, ops.transpose(w)))
        u_new = _l2_normalize(ops.matmul(v, w))
        u_new = ops.stop_gradient(u_new)
        v = ops.stop_gradient(v)
        sigma = ops.sum(ops.matmul(v, w) * u_new)
        if training:
            self.u.assign(ops.cast(u_new, self.u.dtype))
        return kernel / ops.cast(sigma, kernel.dtype)

    def call(self, x, training=None):
        return self.conv_with(x, self.normalized_kernel(bool(training)))

    def conv_with(self, x, kernel):
        """The convolution (+ bias) with a given (normalised) kernel."""
        y = ops.conv(ops.cast(x, kernel.dtype), kernel, strides=self.strides, padding="same")
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                   use_bias=self.use_bias)
        return cfg


class ConvNormAct(layers.Layer):
    """Conv (or transposed conv) -> optional norm -> activation."""

    def __init__(self, filters, kernel_size, strides=1, transpose=False, norm="instance",
                 activation="relu", spectral_norm=False, use_bias=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.transpose = transpose
        self.norm = norm
        self.activation_name = activation
        self.spectral_norm = spectral_norm
        # batch norm updates its moving statistics in the forward pass, which a
        # recomputation would repeat
        self.remat = _REMAT.get() and norm != "batch"
        conv_cls = layers.Conv2DTranspose if transpose else layers.Conv2D
        bias = (norm == "none") if use_bias is None else use_bias
        if spectral_norm and not transpose:
            self.conv = SNConv2D(filters, kernel_size, strides=strides, use_bias=bias, name="conv")
        elif spectral_norm:
            raise ValueError("spectral_norm is implemented for Conv2D only")
        else:
            self.conv = conv_cls(filters, kernel_size, strides=strides, padding="same",
                                 use_bias=bias,
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                                 name="conv")
        self.norm_layer = normalization(norm, "norm")
        if activation == "lrelu":
            self.act = layers.LeakyReLU(negative_slope=0.2)
        elif activation in (None, "linear"):
            self.act = None
        else:
            self.act = layers.Activation(activation)

    def call(self, x, training=None):
        if not self.remat:
            return self._forward(x, None, training)
        # The spectral-norm kernel (and its power-iteration update) is computed
        # once, outside the recomputed part.
        if self.spectral_norm and not self.conv.built:
            self.conv.build(x.shape)
        kernel = self.conv.normalized_kernel(bool(training)) if self.spectral_norm else None
        if kernel is None:
            return keras.remat(lambda t: self._forward(t, None, training))(x)
        return keras.remat(lambda t, k: self._forward(t, k, training))(x, kernel)

    def _forward(self, x, kernel, training):
        if kernel is not None:
            x = self.conv.conv_with(x, kernel)
        elif self.spectral_norm:
            x = self.conv(x, training=training)
        else:
            x = self.conv(x)
        if self.norm_layer is not None:
            x = self.norm_layer(x, training=training)
        if self.act is not None:
            x = self.act(x)
        return x

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                   transpose=self.transpose, norm=self.norm, activation=self.activation_name,
                   spectral_norm=self.spectral_norm)
        return cfg


class ResidualBlock(layers.Layer):
    """Two 3x3 convs with a skip: x + F(x)."""

    def __init__(self, filters, norm="instance", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.norm = norm
        self.first = ConvNormAct(filters, 3, norm=norm, activation="relu", name="a")
        self.second = ConvNormAct(filters, 3, norm=norm, activation=None, name="b")

    def call(self, x, training=None):
        return x + self.second(self.first(x, training=training), training=training)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, norm=self.norm)
        return cfg
