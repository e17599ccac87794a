"""The export library: a generator -> a TF Serving SavedModel (checked signatures) + .keras file.

May import inference/loading, data/pipeline, config, images, errors; of
training/ only ``checkpoints.load_run_generator`` (``export_run`` reads a run folder).

``export_generator`` writes
    DIR/<model_name>/<version>/          SavedModel (TF Serving layout)
        assets.extra/tf_serving_warmup_requests
        assets.extra/mlc_keras.json      resolution, expressions, options
    DIR/<model_name>-<version>.keras     the generator as a Keras file

Signatures (all inputs validated: a wrong rank, size or dtype, an expression
id out of range, pixel values outside [-1, 1] or an undecodable image is an
INVALID_ARGUMENT error with a message naming the input; nothing is clamped
silently). A batch of 0 gives an empty batch of the output shapes:

  serving_default
    images       float32 [B, R, R, 3] in [-1, 1]
    expressions  int32 [B], ids into the model's expressions
    -> images    float32 [B, R, R, 3] in [-1, 1] (the final decoder level)
  synthesize_bytes
    image_bytes  string [B]: JPEG/PNG/GIF/BMP bytes of any size up to
                 ``align.DEFAULT_MAX_PIXELS`` (80 MP, read from the header
                 before decoding; the CLI's limit and message), centre square
                 crop, area resize to R: the training pipeline's path
    expressions  int32 [B]
    -> image_bytes string [B]: PNG bytes (REST base64-encodes `_bytes` outputs)
  all_expressions
    images       float32 [B, R, R, 3] in [-1, 1]
    -> images    float32 [B, N, R, R, 3]: every expression, in id order
  composite
    images       float32 [B, S, S, 3] in [-1, 1]: aligned crops at any S >= R
    expressions  int32 [B]
    -> images    float32 [B, S, S, 3]: the crop edited at its own resolution
                 (see ``inference.composite``: the crop's own pixels wherever
                 the model's mask keeps the source)
       change    float32 [B, S, S, 1] in [0, 1]: the model's share per pixel
  edit, composite_edit
    like serving_default and composite, with the expression given as
    targets      float32 [B, N]: weights per expression (a one-hot row is one
                 expression, 0.6/0.4 a blend; rows are normalised to sum 1)
    intensity    float32 [B] in [0, 2]: the change from the input is scaled
                 (0 returns the input, 1 the full expression; SavedModel
                 signatures have no optional inputs, so these are their own)

The version folder is written under a temporary name beside it and renamed
into place only when complete, so a server never picks up half an export;
the ``.tmp-*`` leftovers of a killed export are never taken for a result by
the loaders and are removed by the next export into the same root.
"""

import json
import os
import shutil
import tempfile

import numpy as np

from mlc_keras.images import tf_to_float
from mlc_keras.inference.loading import (MAX_INTENSITY, METADATA_FILE, TEMP_PREFIX,
                                        ExportError, version_numbers)

SIGNATURES = ("serving_default", "synthesize_bytes", "all_expressions", "composite", "edit",
              "composite_edit")
WARMUP_FILE = "tf_serving_warmup_requests"


def _first_dims(tensor, n):
    """The first n dims of tensor's shape, zero-padded: safe for any rank."""
    import tensorflow as tf

    return tf.concat([tf.shape(tensor), tf.zeros([n], tf.int32)], 0)[:n]


def _validate_images(images, resolution, at_least=False):
    """Assertions for an NHWC float batch at the model resolution in [-1, 1]
    (``at_least``: any square size >= the resolution).
    Each condition is computable for any input rank, and a later condition
    only fails when the earlier ones hold, so the message names the first
    problem."""
    import tensorflow as tf

    rank_ok = tf.equal(tf.rank(images), 4)
    dims = _first_dims(images, 4)
    if at_least:
        size_ok = (tf.equal(dims[1], dims[2]) & (dims[1] >= resolution) & tf.equal(dims[3], 3))
        wanted = f"[batch, S, S, 3] with S >= {resolution} (an aligned crop at any size)"
    else:
        size_ok = tf.reduce_all(tf.equal(dims[1:], [resolution, resolution, 3]))
        wanted = f"[batch, {resolution}, {resolution}, 3] (NHWC at the model resolution)"
    finite = tf.reduce_all(tf.math.is_finite(images))
    in_range = tf.reduce_all(tf.abs(images) <= 1.0 + 1e-3)
    shape_ok = tf.logical_and(rank_ok, size_ok)
    return [
        tf.debugging.Assert(rank_ok, ["images: expected rank 4 [batch, height, width, 3]"]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), size_ok), [
            f"images: expected {wanted}; got", tf.shape(images)]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(shape_ok), finite),
                            ["images: NaN or inf values"]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(shape_ok), in_range | ~finite), [
            "images: values must lie in [-1, 1] (pixel / 127.5 - 1); got max |value|",
            tf.reduce_max(tf.abs(images))]),
    ]


def _validate_expressions(expressions, batch, num_classes):
    import tensorflow as tf

    rank_ok = tf.equal(tf.rank(expressions), 1)
    batch_ok = tf.equal(_first_dims(expressions, 1)[0], batch)
    in_range = tf.reduce_all((expressions >= 0) & (expressions < num_classes))
    return [
        tf.debugging.Assert(rank_ok, ["expressions: expected rank 1 [batch]"]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), batch_ok), [
            "expressions: one id per image expected (batch sizes differ)"]),
        tf.debugging.Assert(in_range, [f"expressions: ids must lie in [0, {num_classes - 1}]; got",
                                       expressions]),
    ]


def _validate_targets(targets, intensity, batch, num_classes):
    """Assertions for float target vectors [B, N] (non-negative weights with
    a positive sum) and intensities [B] in [0, MAX_INTENSITY]."""
    import tensorflow as tf

    rank_ok = tf.equal(tf.rank(targets), 2)
    dims = _first_dims(targets, 2)
    shape_ok = rank_ok & tf.equal(dims[0], batch) & tf.equal(dims[1], num_classes)
    weights_ok = (tf.reduce_all(tf.math.is_finite(targets)) & tf.reduce_all(targets >= 0.0)
                  & tf.reduce_all(tf.reduce_sum(tf.reshape(targets, [dims[0], -1]), axis=1) > 0.0))
    i_rank_ok = tf.equal(tf.rank(intensity), 1) & tf.equal(_first_dims(intensity, 1)[0], batch)
    i_range_ok = tf.reduce_all((intensity >= 0.0) & (intensity <= MAX_INTENSITY))
    return [
        tf.debugging.Assert(shape_ok, [
            f"targets: expected float [batch, {num_classes}] (one weight per expression, one row "
            "per image); got", tf.shape(targets)]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(shape_ok), weights_ok), [
            "targets: each row must hold finite non-negative weights with a positive sum"]),
        tf.debugging.Assert(i_rank_ok, ["intensity: expected float [batch], one per image; got",
                                        tf.shape(intensity)]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(i_rank_ok), i_range_ok), [
            f"intensity: values must lie in [0, {MAX_INTENSITY:g}]; got", intensity]),
    ]


def _bytes_at(head, start, count, order):
    """Unsigned integers of ``count`` bytes at ``start`` of each row of
    ``head`` (int64 [B, 32]), in ``order`` "big" or "little"."""
    import tensorflow as tf

    columns = [head[:, start + k] for k in range(count)]
    if order == "little":
        columns = columns[::-1]
    value = tf.zeros_like(columns[0])
    for column in columns:
        value = value * 256 + column
    return value


def _magic(head, signature, start=0):
    import tensorflow as tf

    return tf.reduce_all(tf.equal(head[:, start:start + len(signature)],
                                  tf.constant(list(signature), tf.int64)), axis=1)


def _header_checks(image_bytes, max_pixels):
    """Assertions on a rank-1 batch of encoded images, from their headers
    alone (nothing is decoded): each is a JPEG, PNG, GIF or BMP, declares a
    non-empty size, and at most ``max_pixels`` pixels (``align.load_image``'s
    limit and wording: a small file may declare a huge image, and decoding
    it would cost the server gigabytes). Sizes: PNG IHDR bytes 16-24
    big-endian, GIF bytes 6-10 and BMP bytes 18-26 little-endian, JPEG its
    SOF segment (``tf.image.extract_jpeg_shape``)."""
    import tensorflow as tf

    from mlc_keras.data.align import PIXEL_LIMIT_MESSAGE

    with tf.name_scope("image_bytes_header"):
        padded = image_bytes + tf.constant(b"\0" * 32)  # short inputs read as zeros
        head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 32), tf.uint8,
                                        fixed_length=32), tf.int64)
        is_png = _magic(head, b"\x89PNG\r\n\x1a\n") & _magic(head, b"IHDR", 12)
        is_gif = _magic(head, b"GIF8")
        is_bmp = _magic(head, b"BM")
        is_jpeg = _magic(head, b"\xff\xd8\xff")
        known = is_png | is_gif | is_bmp | is_jpeg

        def signed32(v):
            return tf.abs(tf.where(v >= 2 ** 31, v - 2 ** 32, v))

        bmp_core = tf.equal(_bytes_at(head, 14, 4, "little"), 12)  # OS/2 1.x: 16-bit sizes
        bmp_w = tf.where(bmp_core, _bytes_at(head, 18, 2, "little"),
                         signed32(_bytes_at(head, 18, 4, "little")))
        bmp_h = tf.where(bmp_core, _bytes_at(head, 20, 2, "little"),
                         signed32(_bytes_at(head, 22, 4, "little")))

        def jpeg_size(args):
            raw, jpeg = args
            return tf.cond(jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(raw)[:2], tf.int64),
                           lambda: tf.zeros([2], tf.int64))

        jpeg_hw = tf.map_fn(jpeg_size, (image_bytes, is_jpeg),
                            fn_output_signature=tf.TensorSpec([2], tf.int64))
        width = tf.where(is_png, _bytes_at(head, 16, 4, "big"),
                         tf.where(is_gif, _bytes_at(head, 6, 2, "little"),
                                  tf.where(is_bmp, bmp_w, jpeg_hw[:, 1])))
        height = tf.where(is_png, _bytes_at(head, 20, 4, "big"),
                          tf.where(is_gif, _bytes_at(head, 8, 2, "little"),
                                   tf.where(is_bmp, bmp_h, jpeg_hw[:, 0])))
        pixels = width * height
        empty = known & ((width <= 0) | (height <= 0))
        too_many = known & ~empty & (pixels > max_pixels)

        def first(mask):  # the first True (0 when none; the batch may be empty)
            return tf.argmax(tf.concat([tf.cast(mask, tf.int32), [0]], 0), output_type=tf.int32)

        width, height, pixels = (tf.concat([v, tf.zeros([1], tf.int64)], 0)
                                 for v in (width, height, pixels))
        i, j, k = first(~known), first(empty), first(too_many)
        name = "image_bytes[{}]"
        limit = PIXEL_LIMIT_MESSAGE.format(name=name, width="{}", height="{}", pixels="{}",
                                           limit=max_pixels)
        return [
            tf.debugging.Assert(tf.reduce_all(known), [tf.strings.format(
                name + ": undecodable bytes (not a JPEG, PNG, GIF or BMP image)", [i])]),
            tf.debugging.Assert(~tf.reduce_any(empty), [tf.strings.format(
                name + " declares an empty size {}x{}",
                [j, tf.gather(width, j), tf.gather(height, j)])]),
            tf.debugging.Assert(~tf.reduce_any(too_many), [tf.strings.format(
                limit, [k, tf.gather(width, k), tf.gather(height, k), tf.gather(pixels, k)])]),
        ]


def _unless_empty(batch, run, empty):
    """``run()``, or ``empty()`` for a batch of 0: the generator is never
    called on an empty batch, whose outputs are known without it."""
    import tensorflow as tf

    return tf.cond(batch > 0, run, empty)


def serving_functions(generator, detail=None):
    """{signature name: (fn, input_signature)} for the generator; ``detail``
    is the composite signatures' fine-detail gate (``inference.composite``;
    None: its default, 0: off), fixed in the graph.

    Inputs are declared with unknown rank and reshaped to their static shapes
    only after the checks ran: with tf.ensure_shape, Grappler inferred the
    rank backwards and folded the rank check away (measured)."""
    import tensorflow as tf

    from mlc_keras.data.align import DEFAULT_MAX_PIXELS as max_pixels
    from mlc_keras.data.pipeline import decode_image_bytes, square_resize
    from mlc_keras.inference.composite import check_detail, composite

    detail = check_detail(detail)

    r, n = generator.resolution, generator.num_classes

    def synthesize(images, expressions):
        condition = tf.one_hot(expressions, n, dtype=tf.float32)
        return _unless_empty(tf.shape(images)[0],
                             lambda: generator((images, condition), training=False)[0],
                             lambda: tf.zeros([0, r, r, 3], tf.float32))

    def serving_default(images, expressions):
        checks = _validate_images(images, r)
        checks += _validate_expressions(expressions, _first_dims(images, 1)[0], n)
        with tf.control_dependencies(checks):
            images = tf.reshape(tf.identity(images), [-1, r, r, 3])
            expressions = tf.reshape(tf.identity(expressions), [-1])
            return {"images": synthesize(images, expressions)}

    def synthesize_bytes(image_bytes, expressions):
        checks = [tf.debugging.Assert(tf.equal(tf.rank(image_bytes), 1), [
            "image_bytes: expected rank 1 [batch] of encoded images"])]
        checks += _validate_expressions(expressions, _first_dims(image_bytes, 1)[0], n)
        with tf.control_dependencies(checks):
            image_bytes = tf.reshape(tf.identity(image_bytes), [-1])
            expressions = tf.reshape(tf.identity(expressions), [-1])
        # The headers are read (size limit) before any image is decoded.
        with tf.control_dependencies(_header_checks(image_bytes, max_pixels)):
            image_bytes = tf.identity(image_bytes)
        pixels = tf.map_fn(lambda b: square_resize(decode_image_bytes(b), r), image_bytes,
                           fn_output_signature=tf.TensorSpec([r, r, 3], tf.uint8),
                           name="image_bytes_decode")
        images = tf_to_float(pixels)
        out = synthesize(images, expressions)
        out = tf.cast(tf.clip_by_value(tf.round((out + 1.0) * 127.5), 0, 255), tf.uint8)
        png = tf.map_fn(tf.io.encode_png, out, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"image_bytes": png}

    def all_expressions(images):
        with tf.control_dependencies(_validate_images(images, r)):
            images = tf.reshape(tf.identity(images), [-1, r, r, 3])
        b = tf.shape(images)[0]
        tiled = tf.repeat(images, n, axis=0)
        ids = tf.tile(tf.range(n, dtype=tf.int32), [b])
        out = synthesize(tiled, ids)
        return {"images": tf.reshape(out, [b, n, r, r, 3])}

    def composite_signature(images, expressions):
        checks = _validate_images(images, r, at_least=True)
        checks += _validate_expressions(expressions, _first_dims(images, 1)[0], n)
        with tf.control_dependencies(checks):
            images = tf.identity(images)
            images = tf.reshape(images, [-1, tf.shape(images)[1], tf.shape(images)[2], 3])
            expressions = tf.reshape(tf.identity(expressions), [-1])
        shape = tf.shape(images)

        def run():
            out, change = composite(generator, images, tf.one_hot(expressions, n, dtype=tf.float32),
                                    detail=detail)
            return {"images": out, "change": change}

        def empty():
            return {"images": tf.zeros([0, shape[1], shape[2], 3], tf.float32),
                    "change": tf.zeros([0, shape[1], shape[2], 1], tf.float32)}

        return _unless_empty(shape[0], run, empty)

    def edit_inputs(images, targets, intensity, at_least=False):
        checks = _validate_images(images, r, at_least=at_least)
        checks += _validate_targets(targets, intensity, _first_dims(images, 1)[0], n)
        with tf.control_dependencies(checks):
            images = tf.identity(images)
            images = tf.reshape(images, [-1, tf.shape(images)[1], tf.shape(images)[2], 3])
            targets = tf.reshape(tf.identity(targets), [-1, n])
            targets = targets / tf.reduce_sum(targets, axis=1, keepdims=True)
            intensity = tf.reshape(tf.identity(intensity), [-1])
        return images, targets, intensity

    def edit(images, targets, intensity):
        images, targets, intensity = edit_inputs(images, targets, intensity)
        images = tf.reshape(images, [-1, r, r, 3])
        return {"images": _unless_empty(
            tf.shape(images)[0],
            lambda: generator((images, targets, intensity), training=False)[0],
            lambda: tf.zeros([0, r, r, 3], tf.float32))}

    def composite_edit(images, targets, intensity):
        images, targets, intensity = edit_inputs(images, targets, intensity, at_least=True)
        shape = tf.shape(images)

        def run():
            out, change = composite(generator, images, targets, intensity, detail=detail)
            return {"images": out, "change": change}

        def empty():
            return {"images": tf.zeros([0, shape[1], shape[2], 3], tf.float32),
                    "change": tf.zeros([0, shape[1], shape[2], 1], tf.float32)}

        return _unless_empty(shape[0], run, empty)

    # Unknown rank: the graph itself checks rank and sizes with clear messages.
    images_spec = tf.TensorSpec(None, tf.float32, name="images")
    ids_spec = tf.TensorSpec(None, tf.int32, name="expressions")
    edit_specs = [images_spec, tf.TensorSpec(None, tf.float32, name="targets"),
                  tf.TensorSpec(None, tf.float32, name="intensity")]
    return {
        "edit": (edit, edit_specs),
        "composite_edit": (composite_edit, edit_specs),
        "serving_default": (serving_default, [images_spec, ids_spec]),
        "synthesize_bytes": (synthesize_bytes,
                             [tf.TensorSpec(None, tf.string, name="image_bytes"), ids_spec]),
        "all_expressions": (all_expressions, [images_spec]),
        "composite": (composite_signature, [images_spec, ids_spec]),
    }


def _warmup_requests(model_name, resolution, path, num_classes):
    """Writes one PredictRequest per signature in TF Serving's warm-up format
    (TFRecord of PredictionLog); skipped with a note when
    tensorflow-serving-api is not installed."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        return False
    import io

    import tensorflow as tf
    from PIL import Image

    zeros = np.zeros((1, resolution, resolution, 3), np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.full((resolution, resolution, 3), 128, np.uint8)).save(buf, "PNG")
    inputs = {
        "serving_default": {"images": zeros, "expressions": np.zeros([1], np.int32)},
        "synthesize_bytes": {"image_bytes": np.array([buf.getvalue()], object),
                             "expressions": np.zeros([1], np.int32)},
        "all_expressions": {"images": zeros},
        "composite": {"images": np.zeros((1, 2 * resolution, 2 * resolution, 3), np.float32),
                      "expressions": np.zeros([1], np.int32)},
    }
    one_hot = np.zeros([1, num_classes], np.float32)
    one_hot[0, 0] = 1.0
    inputs["edit"] = {"images": zeros, "targets": one_hot, "intensity": np.ones([1], np.float32)}
    inputs["composite_edit"] = dict(inputs["edit"], images=inputs["composite"]["images"])
    with tf.io.TFRecordWriter(path) as writer:
        for signature, tensors in inputs.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in tensors.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return True


def _check_output(output):
    if os.path.exists(output) and not os.path.isdir(output):
        raise ExportError(f"--output={output}: a file, not a folder (the export root, where "
                          "<model_name>/<version>/ is written)")


def remove_leftovers(*folders):
    """Removes ``.tmp-*`` files and folders (what a killed export leaves)
    from ``folders``; returns the paths removed. No loader takes them for a
    result (``loading.TEMP_PREFIX``); this only reclaims the space. Two
    exports into one root at the same moment are not supported."""
    removed = []
    for folder in folders:
        names = os.listdir(folder) if os.path.isdir(folder) else []
        for name in names:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    continue
            removed.append(path)
    return removed


def next_version(model_dir):
    return max(version_numbers(model_dir), default=0) + 1


def export_generator(generator, config, output, model_name="mlc", version=None, detail=None):
    """Writes the SavedModel version folder and the .keras file atomically;
    ``detail``: the composite signatures' fine-detail gate (None: the
    default), recorded in the metadata as ``composite_detail``.

    Returns {"saved_model": path, "keras": path, "warmup": bool}.
    """
    import keras

    from mlc_keras.config import to_json

    from mlc_keras.inference.composite import check_detail

    detail = check_detail(detail)
    _check_output(output)
    model_dir = os.path.join(output, model_name)
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--output={output}: cannot create {model_dir} "
                          f"({e.strerror or e})") from e
    remove_leftovers(output, model_dir)
    version = int(version) if version else next_version(model_dir)
    if version <= 0:
        raise ExportError(f"--version={version}: must be a positive integer")
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise ExportError(f"{final} already exists; pick another --version (versions are immutable "
                          "once a server may have loaded them)")
    tmp = tempfile.mkdtemp(dir=model_dir, prefix=f".tmp-{version}-")
    keras_path = os.path.join(output, f"{model_name}-{version}.keras")
    keras_tmp = os.path.join(output, f".tmp-{model_name}-{version}.keras")
    try:
        archive = keras.export.ExportArchive()
        archive.track(generator)
        for name, (fn, spec) in serving_functions(generator, detail).items():
            archive.add_endpoint(name=name, fn=fn, input_signature=spec)
        saved = os.path.join(tmp, "model")
        archive.write_out(saved, verbose=False)
        extra = os.path.join(saved, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        warm = _warmup_requests(model_name, generator.resolution, os.path.join(extra, WARMUP_FILE),
                                generator.num_classes)
        with open(os.path.join(extra, METADATA_FILE), "w") as f:
            json.dump({"resolution": generator.resolution,
                       "expressions": list(config.expressions),
                       "levels": list(generator.levels),
                       "signatures": list(SIGNATURES),
                       "composite_detail": detail,
                       "options": json.loads(to_json(config))}, f, indent=1)
        generator.save(keras_tmp)
        os.replace(saved, final)  # the version appears complete or not at all
        os.replace(keras_tmp, keras_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.exists(keras_tmp):
            os.remove(keras_tmp)
    return {"saved_model": final, "keras": keras_path, "warmup": warm}


def with_precision(generator, precision):
    """A copy of ``generator`` computing in ``precision`` (float32, bfloat16,
    float16; Keras's mixed policies: float32 weights, images in and out in
    float32), with the same weights."""
    from mlc_keras.models.precision import policy_name, policy_scope

    if generator.dtype_policy.name == policy_name(precision):
        return generator
    config = dict(generator.get_config())
    config.pop("dtype", None)  # take the policy of the scope
    with policy_scope(precision):
        copy = type(generator).from_config(config)
    copy.build_for_inputs()
    copy.set_weights(generator.get_weights())
    return copy


def export_run(workdir, output, model_name="mlc", version=None, checkpoint=None,
               precision="float32", detail=None):
    """Exports the generator of a training run folder (its newest checkpoint,
    or ``checkpoint``) or, with no workdir, the model shipped in the package,
    computing in ``precision`` (a bfloat16 variant serves faster on CPUs
    with AMX); returns what ``export_generator`` returns."""
    from mlc_keras import config as config_lib
    from mlc_keras.training.checkpoints import load_run_generator

    if not output:
        raise ExportError("--output is required (the export root folder)")
    _check_output(output)  # before the model is loaded
    if not workdir:
        from mlc_keras import weights
        from mlc_keras.inference.loading import load_generator

        if checkpoint:
            raise ExportError("--checkpoint needs --workdir (the shipped model has no checkpoints)")
        generator = load_generator(weights.path())
        config = config_lib.from_dict(weights.info()["options"])
    else:
        generator, config = load_run_generator(workdir, checkpoint)
    if precision not in ("float32", "bfloat16", "float16"):
        raise ExportError(f"--mixed_precision={precision}: expected float32, bfloat16 or float16")
    generator = with_precision(generator, precision)
    return export_generator(generator, config, output, model_name, version, detail)
