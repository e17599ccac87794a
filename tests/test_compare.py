"""Side-by-side grids of several runs: layout, refusals, and London pictures
kept out of git checkouts."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tiny import REPO_ROOT, tiny_overrides
from mlc_keras.inference.compare import CompareError, compare_runs
from mlc_keras.config import make_config
from mlc_keras.training.loop import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    common = dict(train_steps=1, checkpoint_every=1, num_samples=0, synthetic_subjects=8,
                  test_fraction=0.25, data_cache=str(tmp / "data"))
    train(make_config(**tiny_overrides(tmp, workdir=str(tmp / "a"), **common)))
    train(make_config(**tiny_overrides(tmp, workdir=str(tmp / "b"), critic_levels="", **common)))
    return tmp


def test_grid_has_a_real_row_and_one_row_per_run(two_runs, tmp_path):
    out = tmp_path / "grid.png"
    grid, names = compare_runs([str(two_runs / "a"), str(two_runs / "b")], ["A", "B"],
                               str(out), num_sources=2, gap=0)
    assert names[:3] == [names[0].split(":")[0] + s for s in (": real", ": A", ": B")]
    assert len(names) == 6 and grid.shape == (6 * 32, 8 * 32, 3)
    # Every row starts with the same source face; a run row differs from the real row.
    for k in (0, 3):
        group = grid[k * 32:(k + 3) * 32]
        np.testing.assert_array_equal(group[:32, :32], group[32:64, :32])
        assert not np.array_equal(group[:32, 32:], group[32:64, 32:])
    assert os.path.isfile(out) and "neutral" in (tmp_path / "grid.png.txt").read_text()


def test_runs_on_other_data_are_refused(two_runs, tmp_path):
    other = tmp_path / "c"  # run a, as if trained on a larger synthetic set
    shutil.copytree(two_runs / "a", other)
    options = json.loads((other / "options.json").read_text())
    options["synthetic_subjects"] = 9
    (other / "options.json").write_text(json.dumps(options))
    with pytest.raises(CompareError, match="synthetic_subjects differ"):
        compare_runs([str(two_runs / "a"), str(other)], ["A", "C"], str(tmp_path / "x.png"))
    with pytest.raises(CompareError, match="1 label"):
        compare_runs([str(two_runs / "a"), str(other)], ["A"], str(tmp_path / "x.png"))


def _with_options(source, folder, **changes):
    shutil.copytree(source, folder)
    options = json.loads((folder / "options.json").read_text())
    options.update(changes)
    (folder / "options.json").write_text(json.dumps(options))
    return str(folder)


def test_another_seed_is_other_data_unless_faces_and_split_are_pinned(two_runs, tmp_path):
    a = str(two_runs / "a")
    # --seed alone draws other synthetic faces and another split: refused
    seed1 = _with_options(two_runs / "a", tmp_path / "s1", seed=1)
    with pytest.raises(CompareError, match="seed, synthetic_seed differ"):
        compare_runs([a, seed1], ["A", "S1"], str(tmp_path / "x.png"))
    # pinned faces (--synthetic_seed) but an unpinned split: still refused
    pinned_faces = _with_options(two_runs / "a", tmp_path / "s1f", seed=1, synthetic_seed=0)
    with pytest.raises(CompareError, match=r"\(seed differ"):
        compare_runs([a, pinned_faces], ["A", "S1"], str(tmp_path / "x.png"))
    # both pinned: the same faces and held-out subjects, so the grid is drawn
    from mlc_keras.inference.loading import load_run

    _, config, _ = load_run(a)
    from mlc_keras.data.prepare import select_pairs

    test = list(select_pairs(config).test_subjects)
    first = _with_options(two_runs / "a", tmp_path / "p0", test_subjects=test, synthetic_seed=0)
    second = _with_options(two_runs / "a", tmp_path / "p1", seed=1, test_subjects=test,
                           synthetic_seed=0)
    grid, names = compare_runs([first, second], ["S0", "S1"], str(tmp_path / "ok.png"),
                               num_sources=1, gap=0)
    assert len(names) == 3 and os.path.isfile(tmp_path / "ok.png")


def test_synthetic_seed_pins_the_faces_whatever_the_training_seed(tmp_path):
    from mlc_keras.config import ConfigError
    from mlc_keras.data.sources.synthetic import render_seed

    base = dict(synthetic_subjects=8)
    assert render_seed(make_config(seed=3, **base)) == 3
    assert render_seed(make_config(seed=3, synthetic_seed=0, **base)) == 0
    with pytest.raises(ConfigError, match="--synthetic_seed=-2"):
        make_config(synthetic_seed=-2, **base)


def test_london_grids_are_refused_inside_a_git_checkout(two_runs, monkeypatch):
    from mlc_keras.inference import loading

    real_load = loading.load_run

    def as_london(workdir):
        generator, config, checkpoint = real_load(workdir)
        return generator, dataclasses.replace(config, dataset="london"), checkpoint

    monkeypatch.setattr(loading, "load_run", as_london)
    with pytest.raises(CompareError, match="must not be committed"):
        compare_runs([str(two_runs / "a")], ["A"], os.path.join(REPO_ROOT, "docs", "x.png"))
    assert not os.path.exists(os.path.join(REPO_ROOT, "docs", "x.png"))


def test_cli_reports_a_missing_run_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.compare",
                           f"--workdirs={tmp_path}/nope", f"--output={tmp_path}/g.png"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr
