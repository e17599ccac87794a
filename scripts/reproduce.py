"""Reproduces the whole comparison table (issue 12) with one command.

    python scripts/reproduce.py --budget=full                  # every run; resumable
    python scripts/reproduce.py --budget=full --dry_run        # what would run, nothing else
    python scripts/reproduce.py --budget=full --only='synth_*_s0,london_mlc_*'
    python scripts/reproduce.py --budget=ci                    # tiny shapes, a few steps
    python scripts/reproduce.py --budget=full --report_only    # aggregate what is evaluated

Runs: the methods MLC, pix2pix (configs/pix2pix.flags), StarGAN
(configs/stargan.flags) and copy-the-source (--model=copy) on the synthetic
7-expression set (configs/demo.flags) and on London neutral <-> happy
(configs/london.flags, --test_fraction=0.25), and the critic ablation on the
synthetic set (critics at R/4 only, R/2 only, none, no variation critic:
at 64 px R/4 = 16 and R/2 = 32 stand for the paper's 32 and 64 of 128 px);
each with --seeds (default 0,1,2; copy-the-source, which has no randomness,
with the first seed only). Every run is ``python -m mlc_keras.train``
then ``python -m mlc_keras.evaluate`` in its own process, in
OUTPUT/BUDGET/NAME (e.g. runs/reproduce/full/synth_mlc_s1).

The budget is IMAGES SEEN (training pairs drawn), the same for every method on
a data set: --train_steps = images / (batch_size x n_critic), since one step
is one G update on n_critic batches (mlc_keras/config.py, --train_steps).
Images, not wall time: the count is the same on any machine and under any
load (this one is shared, so wall times are only upper bounds), and every
method gets the same data exposure; the wall time of each run is recorded
beside it (reproduce.json, times.tsv, the table).

Resumable and skipping: a run whose newest checkpoint has reached its steps
AND whose eval/results.json is of that checkpoint is skipped; a trained run
without a current evaluation is only evaluated; anything else trains (resuming
from its checkpoint: kill this script at any time and start it again). The
held-out subjects are pinned per data set (the seed-0 split, in
BUDGET/splits/) so that seeds vary the weights and the data order only, and
every run of a data set shares one data cache and one cached classifier.

The ledger (--ledger, default docs/reproduce/, committed): run folders are
scratch (runs/ is not kept between sittings on a fresh machine), so each run
that finishes its evaluation also leaves LEDGER/BUDGET/NAME.json (its numbers,
its record and the fingerprint of its commands: flags and evaluation options,
paths left out) and LEDGER/BUDGET/curves/NAME.png (loss curves only, no
pictures of faces), and the pinned split goes to LEDGER/BUDGET/splits/. A run
whose ledger entry has the fingerprint the run has now counts as done on any
machine; one whose commands changed since is run again. Commit the ledger and
the table fills across sittings and machines.

At the end (and with --report_only) every evaluated run is aggregated into
BUDGET/report/table.md and table.json: per data set and method, the mean and
the half-width of the 95 % confidence interval over the seeds, Student t with
n - 1 degrees of freedom (n stated per row); and each run's TensorBoard
scalars go to BUDGET/report/curves/NAME.png (scripts/plot_curves.py).
"""

import argparse
import contextlib
import datetime
import fnmatch
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
sys.path.insert(0, REPO_ROOT)

# ----------------------------------------------------------------- the table

DATASETS = {
    # name: preset flags, evaluation flags (one classifier per data set and split)
    "synth": {
        "label": "synthetic, 7 expressions",
        "flags": ["--flagfile=configs/demo.flags"],
        "eval": ["--classifier_epochs=15"],
    },
    "london": {
        "label": "London neutral <-> happy",
        "flags": ["--flagfile=configs/london.flags", "--test_fraction=0.25"],
        # 152 training images: AlexNet needs a lower rate and more epochs (RESULTS.md)
        "eval": ["--classifier_epochs=60", "--classifier_lr=3e-4"],
    },
}

# Method rows: (name, label, flags, critics): critics "both" / "low" / "high" /
# None (the flags clear them); R/4 and R/2 are the decoder levels below the output.
COMPARISON = (
    ("copy", "copy the source", ["--model=copy", "--critic_levels="], None),
    ("pix2pix", "pix2pix", ["--flagfile=configs/pix2pix.flags"], None),
    ("stargan", "StarGAN", ["--flagfile=configs/stargan.flags"], None),
    ("mlc", "MLC (critics at R/4 and R/2)", [], "both"),
)
ABLATION = (
    ("mlc", "MLC: critics at R/4 and R/2 (paper: 32 + 64)", [], "both"),
    ("critlow", "critic at R/4 only (paper: 32)", [], "low"),
    ("crithigh", "critic at R/2 only (paper: 64)", [], "high"),
    ("nocritic", "no critic networks", ["--flagfile=configs/ablation_none.flags"], None),
    ("novariation", "photo critics only (no variation critic)",
     ["--flagfile=configs/ablation_no_variation.flags"], "both"),
)

# Images seen per run. full: synthetic 64,000 = 4,000 steps of 16 for MLC and
# pix2pix (85 epochs of the 756 training pairs; RESULTS.md's runs had 16,000,
# where neither baseline had learned the expression code), 800 StarGAN steps
# of 5 x 16; London 32,000 = 4,000 steps of 8 (210 epochs of its 152 pairs).
# ci: a few images through tiny networks, for tests.
BUDGETS = {
    "full": {"synth": 64000, "london": 32000},
    "ci": {"synth": 8, "london": 8},
}
CI_SHAPES = ["--resolution=32", "--g_channels=8", "--g_res_blocks=1", "--d_channels=8",
             "--feature_channels=8", "--batch_size=4", "--num_samples=2"]
CI_DATA = {"synth": ["--synthetic_subjects=6", "--test_fraction=0.2"], "london": []}
CI_EVAL = ["--classifier=small", "--classifier_epochs=1", "--two_sample_epochs=1",
           "--kid_subsets=5"]

# (key, results.json path, column heading, scale)
METRICS = (
    ("paper_generated_error", "classification.generated.overall", "gen. err % (paper clf)", 100),
    ("judge_generated_error", "expression_judge.generated.overall", "gen. err % (judge)", 100),
    ("judge_real_error", "expression_judge.real.overall", "real err % (judge)", 100),
    ("two_sample_accuracy", "two_sample.accuracy", "real-vs-gen acc", 1),
    ("identity_distance", "identity.verification.generated_vs_source_mean", "identity dist", 1),
    ("verification_rate", "identity.verification.generated_verification_rate", "verified %", 100),
    ("sharpness_ratio", "sharpness.mean", "sharpness", 1),
    ("kid_x1e3", "realism.kid", "KID x1e3", 1000),
    ("ssim", "fidelity.ssim.mean", "SSIM", 1),
    ("psnr", "fidelity.psnr.mean", "PSNR dB", 1),
    ("l1", "fidelity.l1.mean", "L1", 1),
)
CURVE_PREFIXES = ("G/", "D/", "critic/", "E/", "lr/g_optimizer")


class ReproduceError(Exception):
    """Bad input to this script; printed as one line."""


# ----------------------------------------------------------------- runs


class Run:
    """One (data set, method, seed) of the table."""

    def __init__(self, dataset, group, method, label, flags, critics, seed):
        self.dataset, self.group, self.method, self.label = dataset, group, method, label
        self.flags, self.critics, self.seed = list(flags), critics, int(seed)
        self.name = f"{dataset}_{method}_s{seed}"


def plan(seeds):
    """Every run of the table, in the order they run: seed by seed, so that a
    partial table has whole rows of the first seeds."""
    runs, seen = [], set()
    for seed in seeds:
        deterministic = seed != seeds[0]  # copy-the-source has no randomness: one run
        for dataset in DATASETS:
            rows = [("comparison",) + r for r in COMPARISON]
            if dataset == "synth":
                rows += [("ablation",) + r for r in ABLATION]
            for group, method, label, flags, critics in rows:
                if method == "copy" and deterministic:
                    continue
                run = Run(dataset, group, method, label, flags, critics, seed)
                if run.name not in seen:  # MLC is both a comparison and an ablation row
                    seen.add(run.name)
                    runs.append(run)
    return runs


def parse_flags(args):
    """The training flags ``args`` resolve to (absl FlagValues; not validated,
    TensorFlow not imported). Relative flagfiles are read from the repo root."""
    from absl import flags

    from mlc_keras import config as config_lib

    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    with _cwd(REPO_ROOT):
        rest = fv.read_flags_from_files(list(args), force_gnu=False)
    fv(["reproduce"] + rest)
    return fv


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class Settings:
    def __init__(self, budget, output, images, london_dir, seeds, ledger=None):
        self.budget, self.images, self.london_dir, self.seeds = budget, images, london_dir, seeds
        custom = images != BUDGETS[budget]
        folder = budget if not custom else (
            f"{budget}_images_" + "_".join(f"{k}{v}" for k, v in sorted(images.items())))
        self.root = os.path.join(output, folder)
        self.ledger = os.path.join(ledger, folder) if ledger else None

    def data_available(self, dataset):
        if dataset != "london":
            return True, ""
        path = self.london_dir or os.path.join(REPO_ROOT, "..", "shared", "data", "london")
        path = os.path.abspath(path)
        if os.path.isdir(os.path.join(path, "neutral_front")):
            return True, ""
        return False, f"London set not found at {path} (--london_dir)"

    def base_args(self, run):
        """Data preset (+ tiny shapes for ci) + method flags + critic levels."""
        args = list(DATASETS[run.dataset]["flags"])
        if run.dataset == "london" and self.london_dir:
            args.append(f"--data_dir={os.path.abspath(self.london_dir)}")
        if self.budget == "ci":
            args += CI_SHAPES + CI_DATA[run.dataset]
        args += run.flags
        if run.critics is not None:
            r = parse_flags(args).resolution
            levels = {"both": f"{r // 4},{r // 2}", "low": f"{r // 4}", "high": f"{r // 2}"}
            args.append(f"--critic_levels={levels[run.critics]}")
        return args

    def schedule(self, run):
        """(train_steps, pairs per step, images seen): images / (batch x n_critic),
        rounded up; --model=copy trains nothing (0 steps)."""
        fv = parse_flags(self.base_args(run))
        per_step = fv.batch_size * fv.n_critic
        if fv.model == "copy":
            return 0, per_step, 0
        steps = max(1, math.ceil(self.images[run.dataset] / per_step))
        return steps, per_step, steps * per_step

    def workdir(self, run):
        return os.path.join(self.root, run.name)

    def split_file(self, dataset):
        """Where the pinned split is kept: the ledger's copy when there is a
        ledger (so every sitting and machine holds out the same subjects)."""
        return os.path.join(self.ledger or self.root, "splits", f"{dataset}.json")

    def ledger_file(self, run):
        return os.path.join(self.ledger, f"{run.name}.json") if self.ledger else None

    def ledger_curves(self, run):
        return os.path.join(self.ledger, "curves", f"{run.name}.png") if self.ledger else None

    def fingerprint(self, run):
        """What decides a run's numbers: its training flags and evaluation
        options, machine paths left out (workdir, caches, data folder)."""
        paths = ("--workdir=", "--data_cache=", "--data_dir=", "--classifier_cache=")
        split = pinned_split(self, run) if os.path.isfile(self.split_file(run.dataset)) else None
        train = [a for a in self.train_args(run, split or ["<pinned>"])
                 if not a.startswith(paths)]
        return {"train": train, "evaluate": [a for a in self.eval_args(run)
                                             if not a.startswith(paths)]}

    def data_cache(self, dataset):
        return os.path.join(self.root, "data", dataset)

    def train_args(self, run, test_subjects):
        steps, _, _ = self.schedule(run)
        every = lambda fraction: max(1, int(steps * fraction))  # noqa: E731
        args = self.base_args(run) + [
            f"--workdir={self.workdir(run)}", f"--seed={run.seed}",
            f"--train_steps={max(steps, 1)}", f"--data_cache={self.data_cache(run.dataset)}",
            f"--test_subjects={','.join(test_subjects)}",
            # 16 checkpoints (a kill loses at most 1/16 of a run), 160 curve points, 4 grids
            f"--checkpoint_every={every(1 / 16)}", f"--summary_every={every(1 / 160)}",
            f"--sample_every={every(1 / 4)}", "--verbose=2"]
        if run.dataset == "synth":
            # the synthetic faces are drawn from a seed too: pin them, so that
            # the seeds vary only the weights and the data order
            args.append("--synthetic_seed=0")
        return args

    def eval_args(self, run):
        args = [f"--workdir={self.workdir(run)}",
                f"--classifier_cache={os.path.join(self.root, 'classifiers')}"]
        args += DATASETS[run.dataset]["eval"]
        if self.budget == "ci":
            args += CI_EVAL
        return args


def checkpoint_step(workdir):
    """The step of the run's newest checkpoint (from the manager's index), or None."""
    index = os.path.join(workdir, "checkpoints", "checkpoint")
    try:
        with open(index, encoding="utf-8") as f:
            for line in f:
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    return int(name.rsplit("-", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def evaluated_step(workdir):
    try:
        with open(os.path.join(workdir, "eval", "results.json"), encoding="utf-8") as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_finished(workdir):
    """(eval/results.json, reproduce.json or {}) of an evaluated run folder."""
    with open(os.path.join(workdir, "eval", "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    record = {}
    if os.path.isfile(os.path.join(workdir, "reproduce.json")):
        with open(os.path.join(workdir, "reproduce.json"), encoding="utf-8") as f:
            record = json.load(f)
    return results, record


def ledger_entry(settings, run):
    """The run's ledger entry if it has the run's current fingerprint, else None."""
    path = settings.ledger_file(run)
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproduceError(f"ledger entry {path}: not readable JSON ({e})") from None
    if entry.get("fingerprint") != settings.fingerprint(run):
        return None
    return entry


def write_ledger(settings, run):
    """Copies the numbers of an evaluated run (results.json, reproduce.json,
    fingerprint) and its curve sheet into the ledger, atomically."""
    path = settings.ledger_file(run)
    if not path:
        return None
    from mlc_keras.images import write_json_atomic

    results, record = read_finished(settings.workdir(run))
    entry = {"name": run.name, "step": results.get("step"), "results": results,
             "record": record, "fingerprint": settings.fingerprint(run)}
    write_json_atomic(path, entry, indent=1)
    return path


def state(settings, run):
    """("done" | "record" | "evaluate" | "train" | "skip", detail); "record":
    finished here but not yet copied to the ledger."""
    available, why = settings.data_available(run.dataset)
    if not available:
        if ledger_entry(settings, run) is not None:
            return "done", "in the ledger"
        return "skip", why
    steps, _, _ = settings.schedule(run)
    workdir = settings.workdir(run)
    at = checkpoint_step(workdir)
    if at is not None and at >= steps:
        if evaluated_step(workdir) == at:
            if settings.ledger and ledger_entry(settings, run) is None:
                return "record", f"trained to step {at} and evaluated; not in the ledger yet"
            return "done", f"trained to step {at} and evaluated"
        return "evaluate", f"trained to step {at}; not evaluated at it"
    if ledger_entry(settings, run) is not None:
        return "done", "in the ledger"
    if at is not None:
        return "train", f"resumes at step {at} of {steps}"
    return "train", f"new, {steps} steps"


# ----------------------------------------------------------------- running


def pinned_split(settings, run):
    """The held-out subjects of ``run``'s data set: the seed-0 split of its
    preset, computed once and kept in BUDGET/splits/DATASET.json."""
    path = settings.split_file(run.dataset)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)["test"]
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()  # as the commands do: oneDNN on, TensorFlow's C++ log noise hidden
    from mlc_keras import config as config_lib
    from mlc_keras.data.prepare import prepare_training_data

    fv = parse_flags(settings.base_args(run) + [
        "--seed=0", f"--data_cache={settings.data_cache(run.dataset)}",
        f"--workdir={os.path.join(settings.root, 'splits', 'unused')}"])
    with _cwd(REPO_ROOT):
        data = prepare_training_data(config_lib.config_from_flags(fv))
    split = {"test": [str(s) for s in data.test_subjects],
             "train": [str(s) for s in data.train_subjects],
             "note": "the seed-0 split of the preset; every seed and method of this data set "
                     "holds out these subjects (--test_subjects)"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(split, f, indent=1)
    os.replace(path + ".tmp", path)
    return split["test"]


_CHILD = []


def _terminate(signum, frame):
    for child in _CHILD:
        if child.poll() is None:
            child.terminate()
    raise SystemExit(128 + signum)


def run_logged(command, log_path, echo):
    """Runs ``command`` from the repo root, appending its output to ``log_path``
    (and echoing it); returns (exit code, seconds, the output's tail)."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.time()
    tail = []
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        _CHILD.append(proc)
        try:
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-20:]
                if echo:
                    sys.stdout.write("    " + line)
                    sys.stdout.flush()
            code = proc.wait()
        finally:
            _CHILD.remove(proc)
    return code, time.time() - start, "".join(tail)


def _record(workdir, **updates):
    """Merges ``updates`` into WORKDIR/reproduce.json (seconds are added up
    over sittings)."""
    path = os.path.join(workdir, "reproduce.json")
    record = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    for key, value in updates.items():
        if key.endswith("_seconds"):
            record[key] = round(record.get(key, 0.0) + value, 1)
        else:
            record[key] = value
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def execute(settings, run, echo=False):
    """Trains (or resumes) and evaluates one run as needed; returns
    (status, message)."""
    what, detail = state(settings, run)
    if what in ("done", "skip"):
        return what, detail
    if what == "record":
        record_finished(settings, run)
        return "ran", f"{detail}: copied to {settings.ledger_file(run)}"
    workdir = settings.workdir(run)
    os.makedirs(workdir, exist_ok=True)
    steps, per_step, images = settings.schedule(run)
    times = os.path.join(settings.root, "times.tsv")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    _record(workdir, name=run.name, dataset=run.dataset, method=run.method, seed=run.seed,
            budget=settings.budget, train_steps=steps, pairs_per_step=per_step,
            images_seen=images, machine=f"{platform.node()} {os.cpu_count()} CPUs")

    def phase(label, stem, module, args):
        """Runs ``python -m module args``, logged to WORKDIR/<stem>.log; its wall
        time goes to the run's record (<stem>_seconds) and to times.tsv."""
        code, seconds, tail = run_logged([sys.executable, "-m", module] + args,
                                         os.path.join(workdir, f"{stem}.log"), echo)
        _record(workdir, **{f"{stem}_seconds": seconds})
        with open(times, "a", encoding="utf-8") as f:
            f.write(f"{run.name}\t{stamp}\t{label}\t{seconds:.1f}\texit={code}\n")
        return code, tail

    if what == "train":
        code, tail = phase("train", "train", "mlc_keras.train",
                           settings.train_args(run, pinned_split(settings, run)))
        if code != 0:
            return "failed", f"training exited with {code}: {_last_line(tail)}"
        reached = checkpoint_step(workdir)
        if reached is None or reached < steps:
            return "failed", f"training stopped before step {steps}: {_last_line(tail)}"
    code, tail = phase("evaluate", "eval", "mlc_keras.evaluate", settings.eval_args(run))
    if code != 0:
        return "failed", f"evaluation exited with {code}: {_last_line(tail)}"
    record_finished(settings, run)
    return "ran", f"trained to step {checkpoint_step(workdir)} and evaluated"


def record_finished(settings, run):
    """The ledger entry and curve sheet of a run just evaluated here."""
    if not settings.ledger:
        return
    write_ledger(settings, run)
    write_curves(settings.workdir(run), settings.ledger_curves(run))


def write_curves(workdir, path):
    """The run's TensorBoard scalars as one PNG at ``path`` (atomic); False
    when the run has none."""
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()
    from mlc_keras.images import atomic_path
    from plot_curves import read_scalars, write_sheet

    series = read_scalars(workdir, prefixes=CURVE_PREFIXES)
    if not series:
        return False
    with atomic_path(path, suffix=".png") as tmp:
        write_sheet(series, tmp)
    return True


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


# ----------------------------------------------------------------- aggregation

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom
# (scipy.stats.t.ppf(0.975, df) when SciPy is installed is used instead).
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile(dof):
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, dof))
    except ImportError:
        return _T975[dof - 1] if dof <= len(_T975) else 1.96


def mean_ci(values):
    """{"n", "mean", "sd" (n - 1), "t", "ci95" (half-width t * sd / sqrt(n)),
    "low", "high", "values"} over the finite ``values``; no interval for n < 2."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(values)
    out = {"n": n, "values": values, "mean": None, "sd": None, "t": None, "ci95": None,
           "low": None, "high": None}
    if not n:
        return out
    mean = sum(values) / n
    out["mean"] = mean
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        t = t_quantile(n - 1)
        half = t * sd / math.sqrt(n)
        out.update(sd=sd, t=t, ci95=half, low=mean - half, high=mean + half)
    return out


def _get(results, dotted):
    value = results
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def collect(settings, runs):
    """{run name: {"run", "metrics", "record"}} for every evaluated run."""
    found = {}
    for run in runs:
        workdir = settings.workdir(run)
        at = evaluated_step(workdir)
        source = "run folder"
        if at is not None and at == checkpoint_step(workdir):
            results, record = read_finished(workdir)
        else:
            entry = ledger_entry(settings, run)
            if entry is None:
                continue
            results, record, source = entry["results"], entry.get("record", {}), "ledger"
        metrics = {}
        for key, path, _, scale in METRICS:
            value = _get(results, path)
            metrics[key] = None if value is None else value * scale
        minutes = record.get("train_seconds")
        metrics["train_minutes"] = None if minutes is None else minutes / 60.0
        metrics["images_seen"] = record.get("images_seen")
        found[run.name] = {"run": run, "metrics": metrics, "record": record,
                           "step": results.get("step"), "source": source}
    return found


def aggregate(found, runs, seeds):
    """[{dataset, group, method, label, n, seeds, metrics: {key: mean_ci}}] in table order."""
    rows = []
    keys = [m[0] for m in METRICS] + ["train_minutes", "images_seen"]
    order = []
    for run in runs:
        for group in ((run.group,) if run.method != "mlc" or run.dataset != "synth"
                      else ("comparison", "ablation")):
            key = (run.dataset, group, run.method)
            if key not in order:
                order.append(key)
    for dataset, group, method in order:
        members = [f for f in found.values() if f["run"].dataset == dataset
                   and f["run"].method == method]
        label = next(r.label for r in runs if r.dataset == dataset and r.method == method)
        if group == "ablation" and method == "mlc":
            label = ABLATION[0][1]
        rows.append({
            "dataset": dataset, "group": group, "method": method, "label": label,
            "seeds": sorted(f["run"].seed for f in members),
            "expected_seeds": list(seeds),
            "n": len(members),
            "metrics": {k: mean_ci([f["metrics"].get(k) for f in members]) for k in keys},
        })
    return rows


def _cell(stat, digits, interval=True):
    if stat["mean"] is None:
        return "-"
    if stat["ci95"] is None or not interval:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


DIGITS = {"paper_generated_error": 1, "judge_generated_error": 1, "judge_real_error": 1,
          "two_sample_accuracy": 3, "identity_distance": 3, "verification_rate": 1,
          "sharpness_ratio": 2, "kid_x1e3": 3, "ssim": 3, "psnr": 2, "l1": 4,
          "train_minutes": 1}


def markdown(rows, settings, total_runs, evaluated):
    lines = [f"# Comparison table, budget `{settings.budget}`", "",
             f"Written by `python scripts/reproduce.py --budget={settings.budget}` on "
             f"{datetime.date.today().isoformat()}; {evaluated} of {total_runs} runs evaluated "
             f"(seeds {','.join(map(str, settings.seeds))}).", "",
             "Each cell: mean ± half-width of the 95 % confidence interval over training seeds "
             "(Student t with n - 1 degrees of freedom: t = 4.30 for n = 3); a bare number has "
             "n = 1 (no interval). The held-out subjects, the classifier and the judges are "
             "the same for every seed (split of seed 0), so the interval is over training "
             "randomness only. Budget in images seen: "
             + ", ".join(f"{DATASETS[d]['label']} {v:,}" for d, v in settings.images.items())
             + ".", ""]
    heads = ["run", "n", "images", "train min (mean)"] + [m[2] for m in METRICS]
    keys = ["train_minutes"] + [m[0] for m in METRICS]
    for dataset in DATASETS:
        for group, title in (("comparison", "methods"), ("ablation", "critic ablation")):
            part = [r for r in rows if r["dataset"] == dataset and r["group"] == group]
            if not part:
                continue
            lines += [f"## {DATASETS[dataset]['label']}: {title}", "",
                      "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
            for r in part:
                images = r["metrics"]["images_seen"]["mean"]
                cells = [r["label"], str(r["n"]), "-" if images is None else f"{images:,.0f}"]
                cells += [_cell(r["metrics"][k], DIGITS.get(k, 3), k != "train_minutes")
                          for k in keys]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["Columns: gen. err (paper clf): expression error of the paper-protocol "
              "classifier on generated faces; gen./real err (judge): the disjoint-subject "
              "judge on generated faces / real photos; real-vs-gen acc: two-sample test "
              "accuracy (0.5 = indistinguishable); identity dist: dlib distance generated <-> "
              "source (verified %: under dlib's 0.6); sharpness: variance of the Laplacian "
              "generated / source; KID on dlib descriptors; SSIM / PSNR / L1 against the real "
              "target. Per-run values: table.json; curves: curves/NAME.png.", ""]
    return "\n".join(lines)


def write_report(settings, runs, curves=True):
    """Aggregates every evaluated run; writes BUDGET/report/{table.md,table.json}
    and the curve sheets. Returns the report folder."""
    found = collect(settings, runs)
    rows = aggregate(found, runs, settings.seeds)
    folder = os.path.join(settings.root, "report")
    os.makedirs(folder, exist_ok=True)
    table = {"budget": settings.budget, "images_per_run": settings.images,
             "seeds": settings.seeds, "rows": rows,
             "runs": {name: {"dataset": f["run"].dataset, "method": f["run"].method,
                             "seed": f["run"].seed, "step": f["step"], "metrics": f["metrics"],
                             "record": f["record"], "source": f["source"]}
                      for name, f in found.items()},
             "missing": [r.name for r in runs if r.name not in found]}
    with open(os.path.join(folder, "table.json"), "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    with open(os.path.join(folder, "table.md"), "w", encoding="utf-8") as f:
        f.write(markdown(rows, settings, len(runs), len(found)))
    if curves:
        import shutil

        for name, f in found.items():
            target = os.path.join(folder, "curves", f"{name}.png")
            kept = settings.ledger_curves(f["run"])
            if f["source"] == "run folder":
                write_curves(settings.workdir(f["run"]), target)
            elif kept and os.path.isfile(kept):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(kept, target)
    return folder


# ----------------------------------------------------------------- command


def _lock(root):
    """An exclusive lock on BUDGET/.lock (released when this process ends,
    even when killed): two sittings never train the same run at once."""
    import fcntl

    os.makedirs(root, exist_ok=True)
    handle = open(os.path.join(root, ".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise ReproduceError(f"another reproduce.py is running on {root}") from None
    return handle


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full",
                        help="full: the real budget (images seen, see above); ci: tiny "
                             "networks and a few images, for tests")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "runs", "reproduce"),
                        help="runs go to OUTPUT/BUDGET/NAME (default runs/reproduce)")
    parser.add_argument("--only", default="",
                        help="comma-separated glob patterns of run names, e.g. 'synth_*_s0' "
                             "(names: DATASET_METHOD_sSEED; --dry_run lists them)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--images", default="",
                        help="override the budget's images seen: synth=N,london=N (the runs "
                             "go to their own folder)")
    parser.add_argument("--ledger", default=os.path.join(REPO_ROOT, "docs", "reproduce"),
                        help="where each finished run's numbers and curves are kept for good "
                             "(LEDGER/BUDGET/NAME.json; default docs/reproduce, committed); "
                             "'' for none")
    parser.add_argument("--london_dir", default="",
                        help="the London set (default ../shared/data/london)")
    parser.add_argument("--dry_run", action="store_true",
                        help="list each selected run, its state and its commands; run nothing")
    parser.add_argument("--report_only", action="store_true",
                        help="only aggregate the evaluated runs into the report")
    parser.add_argument("--no_curves", action="store_true", help="skip the curve PNGs")
    parser.add_argument("--verbose", action="store_true", help="echo the runs' output")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ReproduceError(f"--seeds={args.seeds}: expected integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ReproduceError(f"--seeds={args.seeds}: expected distinct integers such as 0,1,2")
    images = dict(BUDGETS[args.budget])
    for item in filter(None, (s.strip() for s in args.images.split(","))):
        key, _, value = item.partition("=")
        if key not in images or not value.isdigit() or int(value) < 1:
            raise ReproduceError(f"--images={args.images}: expected synth=N,london=N with "
                                 "positive N")
        images[key] = int(value)
    return args, Settings(args.budget, os.path.abspath(args.output), images,
                          args.london_dir, seeds,
                          os.path.abspath(args.ledger) if args.ledger else None)


def select(runs, only):
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    if not patterns:
        return runs
    chosen = [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
    if not chosen:
        raise ReproduceError(f"--only={only}: matches no run (names such as "
                             f"{runs[0].name}, {runs[-1].name}; --dry_run lists them)")
    return chosen


def main(argv=None):
    args, settings = parse_args(sys.argv[1:] if argv is None else argv)
    every = plan(settings.seeds)
    runs = select(every, args.only)
    if args.dry_run:
        print(f"budget {settings.budget}: images seen per run "
              + ", ".join(f"{k} {v:,}" for k, v in settings.images.items())
              + f"; runs in {settings.root}")
        for run in runs:
            what, detail = state(settings, run)
            if what == "skip":
                print(f"{run.name:24s} skip      {detail}")
                continue
            steps, per_step, images = settings.schedule(run)
            print(f"{run.name:24s} {what:9s} {detail}; {steps} steps x {per_step} pairs = "
                  f"{images:,} images")
            if what == "train":
                split = ("<the pinned split>" if not os.path.isfile(settings.split_file(run.dataset))
                         else ",".join(pinned_split(settings, run)))
                print("    python -m mlc_keras.train "
                      + " ".join(settings.train_args(run, [split])))
            if what in ("train", "evaluate"):
                print("    python -m mlc_keras.evaluate " + " ".join(settings.eval_args(run)))
        todo = sum(state(settings, r)[0] in ("train", "evaluate", "record") for r in runs)
        print(f"{len(runs)} run(s) selected, {todo} to train or evaluate; nothing was run.")
        return 0
    lock = _lock(settings.root)
    failures = []
    if not args.report_only:
        signal.signal(signal.SIGTERM, _terminate)
        for i, run in enumerate(runs, 1):
            what, detail = state(settings, run)
            print(f"[{i}/{len(runs)}] {run.name}: {what} ({detail})", flush=True)
            if what in ("done", "skip"):
                continue
            status, message = execute(settings, run, echo=args.verbose)
            print(f"[{i}/{len(runs)}] {run.name}: {status}: {message}", flush=True)
            if status == "failed":
                failures.append(f"{run.name}: {message} (log: {settings.workdir(run)})")
    folder = write_report(settings, every, curves=not args.no_curves)
    print(f"report: {os.path.join(folder, 'table.md')}")
    lock.close()
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReproduceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
