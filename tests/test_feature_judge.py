"""The feature judge: softmax regression on face features separates classes a
linear model can separate, and learns neutral vs happy from a few London
subjects (skips visibly without the set)."""

import numpy as np
import pytest

from mlc_keras.evaluation.feature_judge import FeatureJudge


def test_softmax_regression_separates_linear_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (80, 20))
    y = (x[:, 3] - 0.5 * x[:, 7] > 0).astype(int)
    judge = FeatureJudge(2, seed=0).fit(x[:60], y[:60])
    assert judge.train_accuracy > 0.95
    assert np.mean(judge.predict_features(x[60:]) == y[60:]) >= 0.85
    three = FeatureJudge(3).fit(np.repeat(np.eye(3), 5, axis=0) * 4, np.repeat([0, 1, 2], 5))
    assert list(three.predict_features(np.eye(3) * 4)) == [0, 1, 2]


def test_judge_learns_smiles_from_other_london_subjects(aligner):
    from conftest import london_dir
    from mlc_keras.data import align
    from mlc_keras.evaluation.feature_judge import face_features

    root = london_dir()
    subjects = ["001", "002", "003", "004", "005", "006", "007", "008", "009", "010", "011", "012"]
    crops, labels = [], []
    for s in subjects:
        for folder, name, label in (("neutral_front", f"{s}_03.jpg", 0),
                                    ("smiling_front", f"{s}_08.jpg", 1)):
            crops.append(align.align_photo(f"{root}/{folder}/{name}", 128, aligner)[0].image)
            labels.append(label)
    features = face_features(np.stack(crops), aligner)
    assert features.shape == (24, 128 + 136)
    labels = np.asarray(labels)
    judge = FeatureJudge(2).fit(features[:16], labels[:16])  # 8 people
    accuracy = np.mean(judge.predict_features(features[16:]) == labels[16:])  # 4 others
    assert accuracy >= 0.75, accuracy
