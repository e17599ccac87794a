"""An expression judge that learns from a few dozen photos: dlib's face
descriptor and the 68 landmarks of each aligned crop, standardised, into a
softmax regression (numpy).

Why: the disjoint-subject judge of a London model may only train on the
held-out subjects (11 people per fold, 22 images); a CNN from scratch does
not learn from that (measured: error 0.64 on real photos, worse than
chance). Landmark geometry (mouth corners, lip spread, cheeks, eye
narrowing) and dlib's descriptor carry the expression with far fewer
examples. May import data/ (alignment, identity) and images.
"""

import numpy as np

from mlc_keras.images import to_uint8


def face_features(images, aligner=None, embedder=None):
    """[N, 128 + 136] features of aligned uint8 crops: the dlib descriptor
    and the landmarks (x, y divided by the crop size). A crop where no face
    is found gets the detector-free landmark fit on the whole crop."""
    from mlc_keras.data import align
    from mlc_keras.data.identity import FaceEmbedder

    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images)
    aligner = aligner or align.get_default_aligner()
    embedder = embedder or FaceEmbedder(detect=False)
    descriptors = embedder.embed(images)
    shapes = []
    for image in images:
        faces = aligner.detect(image)
        if faces:
            points = np.asarray(faces[0].landmarks, np.float64)
        else:
            points = aligner.landmarks_in_box(image, (0, 0, image.shape[1] - 1, image.shape[0] - 1))
        shapes.append((points / float(image.shape[0])).reshape(-1))
    return np.concatenate([descriptors, np.asarray(shapes, np.float32)], axis=1)


class FeatureJudge:
    """Softmax regression on standardised ``face_features``; ``predict``
    returns class ids. ``train_accuracy`` is the fit on its own images."""

    def __init__(self, num_classes, l2=1.0, steps=2000, learning_rate=0.1, seed=0):
        self.num_classes = int(num_classes)
        self.l2, self.steps, self.learning_rate, self.seed = l2, steps, learning_rate, seed
        self.train_accuracy = None

    def fit(self, features, labels):
        x = np.asarray(features, np.float64)
        y = np.asarray(labels, np.int64)
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0) + 1e-6
        z = (x - self.mean) / self.scale
        rng = np.random.default_rng(self.seed)
        w = rng.normal(0, 0.01, (z.shape[1], self.num_classes))
        b = np.zeros(self.num_classes)
        onehot = np.eye(self.num_classes)[y]
        n = len(y)
        for _ in range(self.steps):
            logits = z @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            grad = p - onehot
            w -= self.learning_rate * (z.T @ grad / n + self.l2 * w / n)
            b -= self.learning_rate * grad.mean(axis=0)
        self.w, self.b = w, b
        self.train_accuracy = float(np.mean(self.predict_features(x) == y))
        return self

    def predict_features(self, features):
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        return np.argmax(z @ self.w + self.b, axis=1).astype(np.int32)
