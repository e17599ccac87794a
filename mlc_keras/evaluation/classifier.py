"""The expression classifier that judges generated faces (imports images and errors only).

The paper scores generated faces with an expression classifier trained on
REAL labelled faces: an AlexNet-style network (5 convolutions + 3 dense
layers, ReLU, max-pooling, dropout). Here the channel / unit widths are
multiplied by ``width`` (default 0.25 of AlexNet's 96-256-384-384-256 /
4096-4096) and the first convolution's stride follows the image size, so it
trains on small crops and CPUs. ``small`` is a two-convolution CNN for tests.

Inputs are float32 [B, R, R, 3] in [-1, 1] (the generator's range; real
uint8 images go through ``images.to_float``); outputs are logits [B, N].

  train_classifier(images_uint8, labels, num_classes, arch, epochs, seed, flip)
  load_or_train_classifier(cache_dir, dataset_key, train_subjects, images, labels, ...)
  classifier_path(cache_dir, dataset_key, train_subjects, arch, resolution)
  predict_labels(model, images_float)

The cache file is ``<cache_dir>/classifier_<dataset-key>_<split-hash>_<arch>_<R>.keras``
(split hash: the sorted train subjects) with a ``.json`` beside it recording
the training settings; a cached model whose settings differ from the request
is retrained (and replaced atomically).
"""

import hashlib
import json
import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf

from mlc_keras.errors import UserError
from mlc_keras.images import atomic_path, read_json, to_float, write_json_atomic

log = logging.getLogger("mlc_keras")

ARCHITECTURES = ("alexnet", "small")
DEFAULT_WIDTH = {"alexnet": 0.25, "small": 1.0}


class ClassifierError(UserError, ValueError):
    """An unknown architecture or unusable training data."""


def _scaled(n, width):
    return max(4, int(round(n * width)))


@keras.saving.register_keras_serializable(package="mlc_keras")
class ExpressionClassifier(keras.Model):
    """AlexNet-style (``alexnet``) or a small CNN (``small``) expression classifier.

    Args:
      num_classes: expression classes (logits out).
      resolution: input side R (chooses the first conv's kernel and stride).
      arch: "alexnet" or "small".
      width: multiplier of every channel / unit count (None: the arch default).
      dropout: dropout rate before each hidden dense layer's successor.
    """

    def __init__(self, num_classes, resolution, arch="alexnet", width=None, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        if arch not in ARCHITECTURES:
            raise ClassifierError(f"--classifier={arch!r}: expected one of {', '.join(ARCHITECTURES)}")
        self.num_classes = int(num_classes)
        self.resolution = int(resolution)
        self.arch = arch
        self.width = float(DEFAULT_WIDTH[arch] if width is None else width)
        self.dropout_rate = float(dropout)
        w = self.width
        L = keras.layers
        if arch == "alexnet":
            # AlexNet strides by 4 on 224 px; scale the stem with the image size.
            stride = min(4, max(1, self.resolution // 32))
            kernel = 11 if stride == 4 else 2 * stride + 3
            self.features = [
                L.Conv2D(_scaled(96, w), kernel, stride, padding="same", activation="relu", name="conv1"),
                L.MaxPooling2D(3, 2, padding="same", name="pool1"),
                L.Conv2D(_scaled(256, w), 5, padding="same", activation="relu", name="conv2"),
                L.MaxPooling2D(3, 2, padding="same", name="pool2"),
                L.Conv2D(_scaled(384, w), 3, padding="same", activation="relu", name="conv3"),
                L.Conv2D(_scaled(384, w), 3, padding="same", activation="relu", name="conv4"),
                L.Conv2D(_scaled(256, w), 3, padding="same", activation="relu", name="conv5"),
                L.MaxPooling2D(3, 2, padding="same", name="pool5"),
                L.Flatten(name="flatten"),
            ]
            self.head = [
                L.Dropout(self.dropout_rate, name="drop6"),
                L.Dense(_scaled(4096, w), activation="relu", name="fc6"),
                L.Dropout(self.dropout_rate, name="drop7"),
                L.Dense(_scaled(4096, w), activation="relu", name="fc7"),
                L.Dense(self.num_classes, name="fc8"),
            ]
        else:
            self.features = [
                L.Conv2D(_scaled(16, w), 3, padding="same", activation="relu", name="conv1"),
                L.MaxPooling2D(2, name="pool1"),
                L.Conv2D(_scaled(32, w), 3, padding="same", activation="relu", name="conv2"),
                L.MaxPooling2D(2, name="pool2"),
                L.Flatten(name="flatten"),
            ]
            self.head = [
                L.Dropout(self.dropout_rate, name="drop3"),
                L.Dense(_scaled(64, w), activation="relu", name="fc3"),
                L.Dense(self.num_classes, name="fc4"),
            ]

    def call(self, images, training=False):
        x = images
        for layer in self.features + self.head:
            x = layer(x, training=training) if isinstance(layer, keras.layers.Dropout) else layer(x)
        return x

    def build_for_inputs(self):
        self(tf.zeros([1, self.resolution, self.resolution, 3]))
        return self

    def get_config(self):
        return {"num_classes": self.num_classes, "resolution": self.resolution, "arch": self.arch,
                "width": self.width, "dropout": self.dropout_rate, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_classifier(arch, num_classes, resolution, width=None):
    return ExpressionClassifier(num_classes, resolution, arch=arch, width=width,
                                name=f"classifier_{arch}").build_for_inputs()


def train_classifier(images, labels, num_classes, arch="alexnet", epochs=30, seed=0, flip=True,
                     width=None, batch_size=16, learning_rate=None):
    """Trains a fresh classifier on REAL labelled images.

    Args:
      images: uint8 [N, R, R, 3] (the train split's real images only).
      labels: int [N] expression ids.
      num_classes: classes of the model's vocabulary.
      arch: "alexnet" or "small"; width: channel multiplier (None: default).
      epochs: passes over the images; seed: weights, order and flips.
      flip: random horizontal flips (expressions are left-right symmetric).

    Returns:
      the trained ExpressionClassifier (inputs in [-1, 1], logits out).
    """
    images = np.asarray(images)
    labels = np.asarray(labels, np.int32).reshape(-1)
    if images.ndim != 4 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ClassifierError(f"need images [N, R, R, 3] with N labels (N > 0); got "
                              f"{images.shape} and {labels.shape[0]} labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ClassifierError(f"labels must lie in [0, {num_classes - 1}]")
    keras.utils.set_random_seed(int(seed))
    model = build_classifier(arch, num_classes, images.shape[1], width)
    lr = learning_rate or default_learning_rate(arch)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x = to_float(images)
    n = x.shape[0]
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).shuffle(
        n, seed=int(seed), reshuffle_each_iteration=True).batch(batch_size)
    if flip:
        def maybe_flip(batch, y):
            coins = tf.random.uniform([tf.shape(batch)[0], 1, 1, 1], seed=int(seed) + 1)
            return tf.where(coins < 0.5, tf.reverse(batch, [2]), batch), y
        ds = ds.map(maybe_flip)
    history = model.fit(ds.prefetch(2), epochs=int(epochs), verbose=0, shuffle=False)
    model.train_accuracy = float(history.history["accuracy"][-1]) if epochs else float("nan")
    return model


def predict_labels(model, images, batch_size=128):
    """Predicted expression ids int32 [N] for float [-1, 1] (or uint8) images."""
    x = to_float(images)
    if x.shape[0] == 0:
        return np.zeros([0], np.int32)
    out = [np.argmax(model(x[i:i + batch_size], training=False).numpy(), -1)
           for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(out).astype(np.int32)


def split_hash(train_subjects):
    """A short stable hash of the sorted train subjects."""
    text = "\n".join(sorted(str(s) for s in train_subjects))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dataset_key(config, manifest_path=None):
    """A file-name-safe key of the data a classifier is trained on: the data
    set kind plus a hash of the manifest path (which encodes the importer's
    options) or the dataset options, and the expression vocabulary."""
    if manifest_path:
        source = os.path.abspath(manifest_path)
    else:
        source = json.dumps([config.dataset, config.data_dir, config.synthetic_subjects,
                             config.synthetic_resolution, config.import_resolution,
                             config.london_use_templates, config.seed])
    digest = hashlib.sha256(
        (source + "|" + ",".join(config.expressions)).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9]+', '', config.dataset)}-{digest}"


def classifier_path(cache_dir, key, train_subjects, arch, resolution):
    return os.path.join(cache_dir, f"classifier_{key}_{split_hash(train_subjects)}_{arch}_{int(resolution)}.keras")


def _atomic_save(model, path, settings):
    """The model and its settings (``.json`` beside it), each never half-written;
    the settings first, so a model file always has its settings."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        write_json_atomic(path[:-len(".keras")] + ".json", settings, indent=1, sort_keys=False)


def default_learning_rate(arch):
    return 1e-3 if arch == "alexnet" else 2e-3


def load_or_train_classifier(cache_dir, key, train_subjects, images, labels, num_classes,
                             arch="alexnet", epochs=30, seed=0, flip=True, width=None,
                             learning_rate=None):
    """The cached classifier for this data/split/arch/size, trained and saved
    when absent (or cached with other training settings).

    Returns (model, info): info = {"path", "cached": bool (reloaded, not
    trained now), "arch", "epochs", "seed", "flip", "width", "learning_rate", "train_images",
    "train_accuracy"}.
    """
    resolution = int(np.asarray(images).shape[1])
    path = classifier_path(cache_dir, key, train_subjects, arch, resolution)
    settings = {"arch": arch, "epochs": int(epochs), "seed": int(seed), "flip": bool(flip),
                "width": float(DEFAULT_WIDTH[arch] if width is None else width),
                "num_classes": int(num_classes), "train_images": int(len(labels)),
                "learning_rate": float(learning_rate or default_learning_rate(arch))}
    meta_path = path[:-len(".keras")] + ".json"
    if os.path.isfile(path) and os.path.isfile(meta_path):
        try:
            saved = read_json(meta_path)
            if {k: saved.get(k) for k in settings} == settings:
                model = keras.models.load_model(path)
                return model, {**saved, "path": path, "cached": True}
            log.info("cached classifier %s was trained with other settings; retraining", path)
        except (OSError, ValueError) as e:
            log.warning("cached classifier %s unreadable (%s); retraining", path, e)
    model = train_classifier(images, labels, num_classes, arch, epochs, seed, flip, width,
                             learning_rate=settings["learning_rate"])
    settings["train_accuracy"] = model.train_accuracy
    _atomic_save(model, path, settings)
    return model, {**settings, "path": path, "cached": False}
