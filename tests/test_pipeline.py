import os

import numpy as np
import pytest
from PIL import Image

from mlc_keras.data import pipeline
from mlc_keras.data.manifest import ManifestError, Record, read_manifest, write_manifest
from mlc_keras.data.sources.synthetic import write_synthetic_dataset
from mlc_keras.expressions import EXPRESSIONS

VOCAB = EXPRESSIONS


def records_for(spec):
    """spec: {subject: [expressions]} -> records with fake paths."""
    return [Record(f"/x/{s}_{e}.png", s, e) for s, exprs in spec.items() for e in exprs]


def test_pairs_are_within_a_subject_and_target_the_right_expression():
    recs = records_for({"a": ["neutral", "happy", "sad"], "b": ["neutral", "angry"]})
    pairs, skipped = pipeline.build_pairs(recs, VOCAB, ("a", "b"))
    assert not skipped
    got = set()
    for s, t in zip(pairs.src, pairs.tgt):
        assert pairs.subjects[s] == pairs.subjects[t]
        assert VOCAB[pairs.labels[s]] == "neutral"
        got.add((pairs.subjects[s], VOCAB[pairs.labels[t]]))
    assert got == {("a", "neutral"), ("a", "happy"), ("a", "sad"), ("b", "neutral"), ("b", "angry")}
    no_identity, _ = pipeline.build_pairs(recs, VOCAB, ("a", "b"), identity_pairs=False)
    assert len(no_identity) == 3


def test_any_source_pairs_every_image_with_every_other():
    recs = records_for({"a": ["neutral", "happy", "sad"]})
    pairs, _ = pipeline.build_pairs(recs, VOCAB, ("a",), source_expression="any",
                                    identity_pairs=False)
    assert len(pairs) == 6


def test_subject_without_source_is_an_error_or_skipped():
    recs = records_for({"a": ["neutral", "happy"], "b": ["happy", "sad"]})
    with pytest.raises(pipeline.DataError, match="subject 'b' has no 'neutral' image"):
        pipeline.build_pairs(recs, VOCAB, ("a", "b"))
    pairs, skipped = pipeline.build_pairs(recs, VOCAB, ("a", "b"), skip_bad=True)
    assert skipped == ["b"] and set(pairs.subjects) == {"a"}


def test_split_is_subject_disjoint_seeded_and_honours_the_manifest():
    recs = records_for({f"s{i}": ["neutral", "happy"] for i in range(40)})
    train, test = pipeline.split_subjects(recs, 0.25, seed=1)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 40
    assert 4 <= len(test) <= 18
    assert (train, test) == pipeline.split_subjects(recs, 0.25, seed=1)
    assert test != pipeline.split_subjects(recs, 0.25, seed=2)[1]
    fixed = [Record(r.path, r.subject, r.expression, "test" if r.subject == "s3" else "train")
             for r in recs]
    assert pipeline.split_subjects(fixed, 0.25, seed=1)[1] == ("s3",)


def _stream_setup(n_subjects=5):
    recs = records_for({f"s{i}": ["neutral", "happy", "sad"] for i in range(n_subjects)})
    pairs, _ = pipeline.build_pairs(recs, VOCAB, tuple(f"s{i}" for i in range(n_subjects)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(pairs.paths), 8, 8, 3), dtype=np.uint8)
    return pairs, images


def _take(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_flip_is_identical_for_both_images_of_a_pair():
    pairs, images = _stream_setup()
    # identity pairs have source == target image: after the pair's flip they must still match
    for batch in _take(pipeline.training_dataset(pairs, images, 5, seed=3), 12):
        same = batch["source_label"] == batch["target_label"]
        np.testing.assert_array_equal(batch["source"][same], batch["target"][same])
    flipped = unflipped = 0
    for batch in _take(pipeline.training_dataset(pairs, images, 5, seed=3), 12):
        for src in batch["source"]:
            raw = images[[i for i in range(len(images))]].astype(np.float32) / 127.5 - 1
            if any(np.allclose(src, r) for r in raw):
                unflipped += 1
            elif any(np.allclose(src, r[:, ::-1]) for r in raw):
                flipped += 1
    assert flipped > 5 and unflipped > 5


def test_stream_is_deterministic_and_resumes_at_any_step():
    pairs, images = _stream_setup()
    full = _take(pipeline.training_dataset(pairs, images, 4, seed=7), 10)
    again = _take(pipeline.training_dataset(pairs, images, 4, seed=7), 10)
    resumed = _take(pipeline.training_dataset(pairs, images, 4, seed=7, start_step=6), 4)
    other = _take(pipeline.training_dataset(pairs, images, 4, seed=8), 10)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["source"], b["source"])
    for a, b in zip(full[6:], resumed):  # crosses an epoch boundary (15 pairs, 4 per batch)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["target"], b["target"]) for a, b in zip(full, other))


def test_every_pair_is_visited_once_per_epoch():
    pairs, images = _stream_setup(n_subjects=4)  # 12 pairs
    seen = []
    for batch in _take(pipeline.training_dataset(pairs, images, 4, seed=0, flip=False), 3):
        seen += [(int(s), int(t)) for s, t in zip(batch["source_label"], batch["target_label"])]
    assert len(seen) == 12
    label_pairs = sorted((int(pairs.labels[s]), int(pairs.labels[t]))
                         for s, t in zip(pairs.src, pairs.tgt))
    assert sorted(seen) == label_pairs


def test_value_range_and_dtypes():
    pairs, images = _stream_setup()
    batch = _take(pipeline.training_dataset(pairs, images, 3, seed=0), 1)[0]
    assert batch["source"].dtype == np.float32 and batch["source"].shape == (3, 8, 8, 3)
    assert batch["source"].min() >= -1 and batch["source"].max() <= 1
    assert batch["target_label"].dtype == np.int32


def test_decode_resizes_and_crops_square(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 200  # the centre square is bright
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = pipeline.decode_images([str(tmp_path / "wide.png")], 8)
    assert out.shape == (1, 8, 8, 3) and out.min() == 200


def test_tiff_and_extensionless_gif_decode_like_pil(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "KA.HA1.29.tiff")  # JAFFE naming
    Image.fromarray(pixels).save(tmp_path / "subject01.happy", format="GIF")  # Yale naming
    gif = np.asarray(Image.open(tmp_path / "subject01.happy").convert("RGB"))
    out = pipeline.decode_images([str(tmp_path / "KA.HA1.29.tiff"),
                                  str(tmp_path / "subject01.happy")], 8)
    np.testing.assert_array_equal(out[0], pixels)
    np.testing.assert_array_equal(out[1], gif)


def test_corrupt_image_is_named_or_skipped(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(pipeline.DataError, match="bad.png"):
        pipeline.check_images([str(good), str(bad)])
    assert pipeline.check_images([str(good), str(bad)], skip_bad=True) == {str(bad)}


def test_manifest_round_trip_and_errors(tmp_path):
    manifest = write_synthetic_dataset(str(tmp_path / "syn"), 2, 16, seed=0)
    recs = read_manifest(manifest)
    assert len(recs) == 2 * len(EXPRESSIONS) and all(os.path.isfile(r.path) for r in recs)
    out = write_manifest(str(tmp_path / "copy" / "m.csv"), recs)
    assert read_manifest(out) == recs
    (tmp_path / "bad.csv").write_text("path,subject,expression\nx.png,a,grumpy\n")
    with pytest.raises(Exception, match="unknown expression 'grumpy'"):
        read_manifest(str(tmp_path / "bad.csv"), check_files=False)
    (tmp_path / "cols.csv").write_text("file,subject\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(str(tmp_path / "cols.csv"))
    (tmp_path / "missing.csv").write_text("path,subject,expression\nnope.png,a,happy\n")
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "missing.csv"))


def test_flow_targets_travel_with_their_pair_and_flip_with_it():
    pairs, images = _stream_setup()
    rng = np.random.default_rng(4)
    flows = rng.normal(0, 0.05, (len(pairs), 8, 8, 2)).astype(np.float32)
    raw = images.astype(np.float32) / 127.5 - 1
    seen = {"flipped": 0, "unflipped": 0}
    for batch in _take(pipeline.training_dataset(pairs, images, 5, seed=3, flows=flows), 12):
        assert batch["flow_target"].shape == (5, 8, 8, 2)
        for src, tgt, flow in zip(batch["source"], batch["target"], batch["flow_target"]):
            for k in range(len(pairs)):
                s, t = raw[pairs.src[k]], raw[pairs.tgt[k]]
                if np.allclose(src, s) and np.allclose(tgt, t):
                    np.testing.assert_allclose(flow, flows[k])
                    seen["unflipped"] += 1
                    break
                if np.allclose(src, s[:, ::-1]) and np.allclose(tgt, t[:, ::-1]):
                    mirrored = flows[k][:, ::-1] * np.array([1.0, -1.0], np.float32)
                    np.testing.assert_allclose(flow, mirrored)
                    seen["flipped"] += 1
                    break
            else:
                raise AssertionError("an element matches no pair")
    assert seen["flipped"] > 5 and seen["unflipped"] > 5
    # without flows the element keeps its four keys
    assert "flow_target" not in _take(pipeline.training_dataset(pairs, images, 5, seed=3), 1)[0]


def test_flipped_flow_moves_the_flipped_image_the_same_way():
    from mlc_keras.models.layers import warp_images

    rng = np.random.default_rng(5)
    image = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    flow = rng.normal(0, 0.1, (1, 8, 8, 2)).astype(np.float32)
    moved_then_flipped = warp_images(image, flow).numpy()[:, :, ::-1]
    flipped_then_moved = warp_images(image[:, :, ::-1].copy(), pipeline.flip_flows(flow)).numpy()
    np.testing.assert_allclose(flipped_then_moved, moved_then_flipped, atol=1e-5)


def test_pair_flows_follow_the_landmarks_and_need_them():
    import dataclasses

    from mlc_keras.data.register import landmark_flow

    recs = records_for({"a": ["neutral", "happy"]})
    pairs, _ = pipeline.build_pairs(recs, VOCAB, ("a",))  # a->a (identity) and a->a happy
    with pytest.raises(pipeline.DataError, match="carry no face landmarks"):
        pipeline.pair_flows(pairs, 16)
    rng = np.random.default_rng(6)
    points = rng.uniform(8, 24, (len(pairs.paths), 68, 2)).astype(np.float32)
    pairs = dataclasses.replace(pairs, points=points, crop_size=32)
    flows = pipeline.pair_flows(pairs, 16)
    assert flows.shape == (len(pairs), 16, 16, 2)
    for k, (s, t) in enumerate(zip(pairs.src, pairs.tgt)):
        if s == t:
            assert not flows[k].any()
        else:
            np.testing.assert_allclose(flows[k], landmark_flow(points[s], points[t], 32, 16))
            assert np.abs(flows[k]).max() > 0


def test_read_landmarks_names_what_is_missing(tmp_path):
    import json

    from mlc_keras.data.manifest import LANDMARKS_NAME, read_landmarks

    manifest = tmp_path / "manifest.csv"
    paths = [str(tmp_path / "images" / "1_neutral.png"), str(tmp_path / "images" / "1_happy.png")]
    with pytest.raises(ManifestError, match="no face landmarks beside manifest"):
        read_landmarks(manifest, paths)
    points = np.arange(136, dtype=np.float32).reshape(68, 2)
    (tmp_path / LANDMARKS_NAME).write_text(json.dumps(
        {"crop_size": 256, "points": {"1_neutral.png": points.tolist()}}))
    with pytest.raises(ManifestError, match="has no entry '1_happy.png'"):
        read_landmarks(manifest, paths)
    size, table = read_landmarks(manifest, paths[:1])
    assert size == 256 and table.shape == (1, 68, 2)
    np.testing.assert_array_equal(table[0], points)


def _mouth(gap, width=40.0):
    """68 landmarks with the mouth corners ``width`` apart and the inner lips
    (61-63 over 67-65) ``gap`` apart; the other points are irrelevant."""
    points = np.zeros((68, 2), np.float32)
    points[48], points[54] = (0.0, 0.0), (width, 0.0)
    for upper, lower, x in ((61, 67, 10.0), (62, 66, 20.0), (63, 65, 30.0)):
        points[upper], points[lower] = (x, -gap / 2), (x, gap / 2)
    return points


def test_mouth_openness_is_the_inner_lip_gap_over_the_mouth_width():
    got = pipeline.mouth_openness(np.stack([_mouth(0.0), _mouth(4.0), _mouth(6.0, width=30.0)]))
    np.testing.assert_allclose(got, [0.0, 0.1, 0.2], atol=1e-6)


def test_open_mouth_filter_drops_only_closed_targets_of_the_named_class():
    recs = records_for({"a": ["neutral", "happy"], "b": ["neutral", "happy"], "c": ["neutral", "happy"]})
    vocab = ("neutral", "happy")
    pairs, _ = pipeline.build_pairs(recs, vocab, ("a", "b", "c"), source_expression="any",
                                    identity_pairs=False)
    open_by_path = {"/x/a_happy.png": 0.2, "/x/b_happy.png": 0.01, "/x/c_happy.png": 0.05}
    openness = [open_by_path.get(p, 0.0) for p in pairs.paths]
    kept, dropped = pipeline.keep_mouth_targets(pairs, openness, 0.05, open_ids=[1])
    assert dropped == {"open": 1, "closed": 0} and len(kept) == 5
    got = {(kept.paths[s], kept.paths[t]) for s, t in zip(kept.src, kept.tgt)}
    assert ("/x/b_neutral.png", "/x/b_happy.png") not in got
    # b's closed smile still teaches the way back to neutral; c sits at the threshold.
    assert ("/x/b_happy.png", "/x/b_neutral.png") in got
    assert ("/x/c_neutral.png", "/x/c_happy.png") in got
    for s, t in zip(kept.src, kept.tgt):  # indices still point at the right labels
        assert kept.subjects[s] == kept.subjects[t] and kept.labels[s] != kept.labels[t]
    with pytest.raises(pipeline.DataError, match="no training target of class 1"):
        pipeline.keep_mouth_targets(pairs, openness, 0.5, open_ids=[1])


def test_closed_mouth_filter_keeps_only_closed_targets_of_the_named_class():
    recs = records_for({"a": ["neutral", "happy"], "b": ["neutral", "happy"], "c": ["neutral", "happy"]})
    pairs, _ = pipeline.build_pairs(recs, ("neutral", "happy"), ("a", "b", "c"),
                                    source_expression="any", identity_pairs=False)
    open_by_path = {"/x/a_happy.png": 0.2, "/x/b_happy.png": 0.01, "/x/c_happy.png": 0.05}
    openness = [open_by_path.get(p, 0.0) for p in pairs.paths]
    kept, dropped = pipeline.keep_mouth_targets(pairs, openness, 0.05, closed_ids=[1])
    assert dropped == {"open": 0, "closed": 2} and len(kept) == 4  # a's smile and c's (at the threshold counts as open)
    got = {(kept.paths[s], kept.paths[t]) for s, t in zip(kept.src, kept.tgt)}
    assert ("/x/b_neutral.png", "/x/b_happy.png") in got
    assert ("/x/a_neutral.png", "/x/a_happy.png") not in got
    assert ("/x/a_happy.png", "/x/a_neutral.png") in got  # the way back is kept
    for s, t in zip(kept.src, kept.tgt):
        assert kept.subjects[s] == kept.subjects[t] and kept.labels[s] != kept.labels[t]
    with pytest.raises(pipeline.DataError, match="--closed_mouth_targets: no training target"):
        pipeline.keep_mouth_targets(pairs, openness, 0.005, closed_ids=[1])


def test_open_and_closed_filters_apply_together_to_different_classes():
    vocab = ("neutral", "happy", "sad")
    recs = records_for({"a": list(vocab), "b": list(vocab)})
    pairs, _ = pipeline.build_pairs(recs, vocab, ("a", "b"), source_expression="neutral",
                                    identity_pairs=False)
    open_by_path = {"/x/a_happy.png": 0.2, "/x/b_happy.png": 0.01,
                    "/x/a_sad.png": 0.2, "/x/b_sad.png": 0.01}
    openness = [open_by_path.get(p, 0.0) for p in pairs.paths]
    kept, dropped = pipeline.keep_mouth_targets(pairs, openness, 0.05, open_ids=[1], closed_ids=[2])
    assert dropped == {"open": 1, "closed": 1}
    got = {(kept.paths[s], kept.paths[t]) for s, t in zip(kept.src, kept.tgt)}
    assert got == {("/x/a_neutral.png", "/x/a_happy.png"), ("/x/b_neutral.png", "/x/b_sad.png")}
    with pytest.raises(ValueError, match="both"):
        pipeline.keep_mouth_targets(pairs, openness, 0.05, open_ids=[1], closed_ids=[1])


def test_open_mouth_targets_flag_filters_the_training_pairs_only(tmp_path):
    import json

    from mlc_keras.config import ConfigError, make_config, validate
    from mlc_keras.data.manifest import LANDMARKS_NAME
    from mlc_keras.data.prepare import select_pairs

    (tmp_path / "images").mkdir()
    recs, points = [], {}
    for subject, gap in (("s1", 8.0), ("s2", 0.5), ("s3", 0.5)):
        for expression in ("neutral", "happy"):
            path = tmp_path / "images" / f"{subject}_{expression}.png"
            Image.new("RGB", (16, 16), (120, 90, 60)).save(path)
            recs.append(Record(str(path), subject, expression))
            points[path.name] = _mouth(gap if expression == "happy" else 0.0).tolist()
    write_manifest(str(tmp_path / "manifest.csv"), recs)
    (tmp_path / LANDMARKS_NAME).write_text(json.dumps({"crop_size": 16, "points": points}))
    common = dict(dataset="manifest", data_dir=str(tmp_path), expressions=("neutral", "happy"),
                  source_expression="any", identity_pairs=False, test_subjects=("s3",))
    plain = select_pairs(validate(make_config(**common)))
    only_open = select_pairs(validate(make_config(open_mouth_targets=("smile",), **common)))
    assert len(plain.train_pairs) == 4 and len(only_open.train_pairs) == 3
    assert len(only_open.test_pairs) == len(plain.test_pairs) == 2  # s3's closed smile stays
    with pytest.raises(ConfigError, match="--open_mouth_targets=sad: sad not among --expressions"):
        validate(make_config(open_mouth_targets=("sad",), **common))
    with pytest.raises(ConfigError, match="--mouth_open_threshold=1.5: must lie in"):
        validate(make_config(open_mouth_targets=("happy",), mouth_open_threshold=1.5, **common))
    only_closed = select_pairs(validate(make_config(closed_mouth_targets=("happy",), **common)))
    assert len(only_closed.train_pairs) == 3  # s1's open smile dropped, s2's closed one kept
    got = {(only_closed.train_pairs.paths[s], only_closed.train_pairs.paths[t])
           for s, t in zip(only_closed.train_pairs.src, only_closed.train_pairs.tgt)}
    assert not any(src.endswith("s1_neutral.png") for src, _ in got)
    with pytest.raises(ConfigError, match="both name happy"):
        validate(make_config(open_mouth_targets=("happy",), closed_mouth_targets=("smile",), **common))


def test_pair_flows_fold_only_the_pairs_whose_mouth_closes():
    import dataclasses

    from mlc_keras.data.register import landmark_flow

    recs = records_for({"a": ["neutral", "happy"]})
    pairs, _ = pipeline.build_pairs(recs, VOCAB, ("a",), source_expression="any",
                                    identity_pairs=False)
    points = np.zeros((len(pairs.paths), 68, 2))
    rng = np.random.default_rng(7)
    for i, label in enumerate(pairs.labels):
        gap = 8.0 if VOCAB[label] == "happy" else 0.0  # the smile shows teeth
        points[i, :48] = np.stack([rng.uniform(10, 118, 48), rng.uniform(10, 60, 48)], 1)
        points[i, 48], points[i, 54], points[i, 60], points[i, 64] = (44, 90), (84, 90), (47, 90), (81, 90)
        points[i, 49:54] = [(x, 84) for x in (50, 57, 64, 71, 78)]
        points[i, 55:60] = [(x, 98) for x in (78, 71, 64, 57, 50)]
        points[i, 61:64] = [(x, 90 - gap / 2) for x in (56, 64, 72)]
        points[i, 65:68] = [(x, 90 + gap / 2) for x in (72, 64, 56)]
    pairs = dataclasses.replace(pairs, points=points.astype(np.float32), crop_size=128)
    assert pipeline.count_closing(pairs) == 1  # happy -> neutral, not neutral -> happy
    folded, plain = pipeline.pair_flows(pairs, 32, fold=True), pipeline.pair_flows(pairs, 32)
    for k, (s, t) in enumerate(zip(pairs.src, pairs.tgt)):
        np.testing.assert_allclose(folded[k], landmark_flow(pairs.points[s], pairs.points[t], 128, 32, fold=True))
        closes = VOCAB[pairs.labels[s]] == "happy"
        assert np.array_equal(folded[k], plain[k]) != closes
