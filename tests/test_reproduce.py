"""scripts/reproduce.py: the plan and its budget rule (images seen ->
steps), the dry-run listing, skipping finished runs, the mean +- 95 % CI
(Student t, n - 1 dof) and the report; the CI budget end to end (slow)."""

import json
import math
import os
import subprocess
import sys

import pytest

from tiny import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import reproduce  # noqa: E402


def settings(tmp_path, budget="ci", ledger=None):
    return reproduce.Settings(budget, str(tmp_path / "out"), dict(reproduce.BUDGETS[budget]),
                              str(tmp_path / "no_london"), [0, 1, 2], ledger)


def run_named(name, seeds=(0, 1, 2)):
    return next(r for r in reproduce.plan(list(seeds)) if r.name == name)


def finish(s, name, results, step=None, seconds=60.0):
    """Fakes a trained and evaluated run folder."""
    run = run_named(name)
    step = s.schedule(run)[0] if step is None else step
    workdir = s.workdir(run)
    os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(os.path.join(workdir, "checkpoints", "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "ckpt-{step}"\nall_model_checkpoint_paths: "ckpt-{step}"\n')
    with open(os.path.join(workdir, "eval", "results.json"), "w") as f:
        json.dump({"step": step, **results}, f)
    with open(os.path.join(workdir, "reproduce.json"), "w") as f:
        json.dump({"train_seconds": seconds, "images_seen": 8}, f)
    return run


def test_plan_has_every_row_and_seed_once():
    names = [r.name for r in reproduce.plan([0, 1, 2])]
    assert len(names) == len(set(names)) == 32  # 30 trained runs + copy once per data set
    for dataset, methods in (("synth", ("pix2pix", "stargan", "mlc", "critlow", "crithigh",
                                        "nocritic", "novariation")),
                             ("london", ("pix2pix", "stargan", "mlc"))):
        for method in methods:
            assert all(f"{dataset}_{method}_s{s}" in names for s in (0, 1, 2))
        assert f"{dataset}_copy_s0" in names and f"{dataset}_copy_s1" not in names
    assert not any(n.startswith("london_crit") for n in names)
    assert names.index("synth_mlc_s2") > names.index("london_mlc_s0")  # seed by seed


def test_budget_is_images_seen_divided_by_pairs_per_step(tmp_path):
    full = settings(tmp_path, "full")
    assert full.schedule(run_named("synth_mlc_s0")) == (4000, 16, 64000)
    assert full.schedule(run_named("synth_stargan_s0")) == (800, 80, 64000)  # n_critic 5
    assert full.schedule(run_named("london_pix2pix_s1")) == (4000, 8, 32000)
    assert full.schedule(run_named("london_copy_s0")) == (0, 8, 0)
    ci = settings(tmp_path)
    assert ci.schedule(run_named("synth_mlc_s0")) == (2, 4, 8)
    assert ci.schedule(run_named("synth_stargan_s0")) == (1, 20, 20)  # at least one step
    args = ci.base_args(run_named("synth_critlow_s0"))
    assert "--resolution=32" in args and args[-1] == "--critic_levels=8"
    assert full.base_args(run_named("synth_crithigh_s0"))[-1] == "--critic_levels=32"


def test_dry_run_lists_runs_states_and_commands_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = reproduce.main(["--budget=full", f"--output={out}", "--only=synth_*_s0,london_mlc_s1",
                           f"--london_dir={tmp_path / 'no_london'}", "--dry_run",
                           f"--ledger={tmp_path / 'ledger'}"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists() and not (tmp_path / "ledger").exists()
    lines = text.splitlines()
    listed = [line.split()[0] for line in lines if line and not line.startswith((" ", "budget"))]
    assert listed[:-1] == ["synth_copy_s0", "synth_pix2pix_s0", "synth_stargan_s0",
                           "synth_mlc_s0", "synth_critlow_s0", "synth_crithigh_s0",
                           "synth_nocritic_s0", "synth_novariation_s0", "london_mlc_s1"]
    assert "synth_stargan_s0         train     new, 800 steps; 800 steps x 80 pairs = 64,000" \
        in text
    assert "--flagfile=configs/stargan.flags" in text and "--train_steps=800" in text
    assert "london_mlc_s1            skip      London set not found" in text
    assert "9 run(s) selected, 8 to train or evaluate; nothing was run." in text


def test_finished_runs_are_skipped_and_stale_evaluations_redone(tmp_path, capsys, monkeypatch):
    s = settings(tmp_path)
    run = finish(s, "synth_mlc_s0", {})
    assert reproduce.state(s, run) == ("done", "trained to step 2 and evaluated")
    stale = finish(s, "synth_pix2pix_s0", {}, step=2)
    with open(os.path.join(s.workdir(stale), "eval", "results.json"), "w") as f:
        json.dump({"step": 1}, f)
    assert reproduce.state(s, stale)[0] == "evaluate"
    halfway = finish(s, "synth_nocritic_s0", {}, step=1)
    assert reproduce.state(s, halfway) == ("train", "resumes at step 1 of 2")

    def no_process(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    code = reproduce.main(["--budget=ci", f"--output={tmp_path / 'out'}", "--only=synth_mlc_s0",
                           f"--london_dir={tmp_path / 'no_london'}", "--no_curves", "--ledger="])
    assert code == 0
    assert "synth_mlc_s0: done (trained to step 2 and evaluated)" in capsys.readouterr().out


def test_ledger_keeps_finished_runs_after_their_folders_are_gone(tmp_path, capsys, monkeypatch):
    """A run folder is scratch; the ledger entry (numbers + fingerprint) is
    what a later sitting on a fresh machine finds, and a changed command
    invalidates it."""
    import shutil

    ledger = tmp_path / "ledger"
    s = settings(tmp_path, ledger=str(ledger))
    run = finish(s, "synth_mlc_s0", {"classification": {"generated": {"overall": 0.25}}})
    assert reproduce.state(s, run)[0] == "record"  # finished here, not yet in the ledger

    def no_process(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    argv = ["--budget=ci", f"--output={tmp_path / 'out'}", f"--ledger={ledger}",
            f"--london_dir={tmp_path / 'no_london'}", "--no_curves"]
    assert reproduce.main(argv + ["--only=synth_mlc_s0"]) == 0
    entry = json.load(open(ledger / "ci" / "synth_mlc_s0.json"))
    assert entry["step"] == 2 and entry["results"]["classification"]["generated"]["overall"] == 0.25
    assert "--seed=0" in entry["fingerprint"]["train"]
    assert not any(a.startswith("--workdir=") for a in entry["fingerprint"]["train"])

    shutil.rmtree(s.workdir(run))  # a fresh machine: no run folder
    assert reproduce.state(s, run) == ("done", "in the ledger")
    capsys.readouterr()
    assert reproduce.main(argv + ["--only=synth_mlc_s0"]) == 0
    assert "synth_mlc_s0: done (in the ledger)" in capsys.readouterr().out
    table = json.load(open(tmp_path / "out" / "ci" / "report" / "table.json"))
    assert table["runs"]["synth_mlc_s0"]["source"] == "ledger"
    assert math.isclose(table["runs"]["synth_mlc_s0"]["metrics"]["paper_generated_error"], 25.0)

    # London is absent here, but its ledger entries still count
    london = run_named("london_copy_s0")
    assert reproduce.state(s, london)[0] == "skip"
    with open(ledger / "ci" / "london_copy_s0.json", "w") as f:
        json.dump({"results": {"step": 0}, "fingerprint": s.fingerprint(london)}, f)
    assert reproduce.state(s, london) == ("done", "in the ledger")

    # a command that changed since the entry was written: the run is not done
    entry["fingerprint"]["train"].append("--l1_weight=1")
    with open(ledger / "ci" / "synth_mlc_s0.json", "w") as f:
        json.dump(entry, f)
    assert reproduce.state(s, run) == ("train", "new, 2 steps")
    (ledger / "ci" / "synth_mlc_s0.json").write_text("{not json")
    with pytest.raises(reproduce.ReproduceError, match="synth_mlc_s0.json: not readable JSON"):
        reproduce.state(s, run)


def test_mean_and_student_t_interval():
    stat = reproduce.mean_ci([0.1, 0.2, 0.3])
    assert stat["n"] == 3 and math.isclose(stat["mean"], 0.2) and math.isclose(stat["sd"], 0.1)
    assert math.isclose(stat["t"], 4.3027, rel_tol=1e-4)  # t(0.975, 2 dof)
    assert math.isclose(stat["ci95"], 4.3027 * 0.1 / math.sqrt(3), rel_tol=1e-4)
    assert math.isclose(stat["low"], 0.2 - stat["ci95"]) and math.isclose(stat["high"],
                                                                           0.2 + stat["ci95"])
    two = reproduce.mean_ci([1.0, 2.0, None, float("nan")])  # missing values are left out
    assert two["n"] == 2 and math.isclose(two["ci95"], 12.7062 * math.sqrt(0.5) / math.sqrt(2),
                                          rel_tol=1e-4)
    one = reproduce.mean_ci([5.0])
    assert one["mean"] == 5.0 and one["ci95"] is None
    assert reproduce.mean_ci([])["mean"] is None
    assert [round(reproduce._T975[d - 1], 3) for d in (1, 2, 4)] == [12.706, 4.303, 2.776]


def test_report_aggregates_every_evaluated_run(tmp_path):
    s = settings(tmp_path)
    for seed, error in enumerate((0.1, 0.2, 0.3)):
        finish(s, f"synth_mlc_s{seed}", {"classification": {"generated": {"overall": error}},
                                         "fidelity": {"ssim": {"mean": 0.9}}}, seconds=120.0)
    finish(s, "synth_pix2pix_s0", {"classification": {"generated": {"overall": 0.5}}})
    folder = reproduce.write_report(s, reproduce.plan(s.seeds), curves=False)
    table = json.load(open(os.path.join(folder, "table.json")))
    rows = {(r["dataset"], r["group"], r["method"]): r for r in table["rows"]}
    mlc = rows[("synth", "comparison", "mlc")]
    assert mlc["n"] == 3 and mlc["seeds"] == [0, 1, 2]
    assert math.isclose(mlc["metrics"]["paper_generated_error"]["mean"], 20.0)
    assert math.isclose(mlc["metrics"]["train_minutes"]["mean"], 2.0)
    assert rows[("synth", "ablation", "mlc")]["n"] == 3
    assert rows[("synth", "comparison", "pix2pix")]["n"] == 1
    assert rows[("london", "comparison", "mlc")]["n"] == 0
    assert len(table["missing"]) == 32 - 4
    text = open(os.path.join(folder, "table.md")).read()
    half = 4.3027 * 10.0 / math.sqrt(3)
    assert f"| MLC (critics at R/4 and R/2) | 3 | 8 | 2.0 | 20.0 ± {half:.1f} |" in text
    assert "| pix2pix | 1 | 8 | 1.0 | 50.0 |" in text
    assert "0.900 ± 0.000" in text and "4 of 32 runs evaluated" in text


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(reproduce.ReproduceError, match="--only=nothing_like_this: matches no run"):
        reproduce.main(["--budget=ci", f"--output={tmp_path}", "--only=nothing_like_this",
                        "--dry_run"])
    with pytest.raises(reproduce.ReproduceError, match="--seeds=a: expected integers"):
        reproduce.parse_args(["--seeds=a"])
    with pytest.raises(reproduce.ReproduceError, match="--images=synth=0"):
        reproduce.parse_args(["--images=synth=0"])
    _, custom = reproduce.parse_args(["--budget=full", "--images=synth=1000",
                                      f"--output={tmp_path}"])
    assert custom.images == {"synth": 1000, "london": 32000}
    assert custom.root.endswith("full_images_london32000_synth1000")


@pytest.mark.slow
def test_ci_budget_trains_evaluates_then_skips(tmp_path):
    """One tiny run through the real commands, then a second invocation that
    finds it finished (about 2 minutes on 2 shared cores)."""
    command = [sys.executable, os.path.join(REPO_ROOT, "scripts", "reproduce.py"),
               "--budget=ci", f"--output={tmp_path}", "--only=synth_mlc_s0",
               f"--london_dir={tmp_path / 'no_london'}", f"--ledger={tmp_path / 'ledger'}"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    workdir = tmp_path / "ci" / "synth_mlc_s0"
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["step"] == 2 and results["classification"]["generated"]["n"] > 0
    record = json.loads((workdir / "reproduce.json").read_text())
    assert record["images_seen"] == 8 and record["train_seconds"] > 0
    assert (tmp_path / "ci" / "report" / "curves" / "synth_mlc_s0.png").stat().st_size > 0
    entry = json.loads((tmp_path / "ledger" / "ci" / "synth_mlc_s0.json").read_text())
    assert entry["results"]["step"] == 2 and entry["record"]["images_seen"] == 8
    assert (tmp_path / "ledger" / "ci" / "curves" / "synth_mlc_s0.png").stat().st_size > 0
    assert (tmp_path / "ledger" / "ci" / "splits" / "synth.json").is_file()
    table = (tmp_path / "ci" / "report" / "table.md").read_text()
    assert "| MLC (critics at R/4 and R/2) | 1 | 8 |" in table
    log_size = (workdir / "train.log").stat().st_size
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "synth_mlc_s0: done" in second.stdout
    assert (workdir / "train.log").stat().st_size == log_size
