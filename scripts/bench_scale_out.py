"""Scale-out figures for BENCHMARKS.md: TFRecord input throughput and the peak memory of a command.

    # (a) how fast the streamed input delivers batches, against the train step's rate
    python scripts/bench_scale_out.py input --data_dir=/tmp/synth50k --batch_size=16 \
        --batches=300 --step_seconds=12.13
    # (b) peak RSS (and its growth over time) of any command, e.g. training from that set
    python scripts/bench_scale_out.py rss -- python -m mlc_keras.train --dataset=tfrecord ...
    # (b') fit RSS = a + b * pairs over in-memory runs and extrapolate to a size
    python scripts/bench_scale_out.py fit --points=7000:2.1,14000:2.9 --at=50000

Prints the figures; writes nothing. Imports mlc_keras only in ``input``.
"""

import argparse
import os
import subprocess
import sys
import threading
import time


def input_throughput(args):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    from mlc_keras.data import tfrecord

    records = tfrecord.open_set(args.data_dir)
    before = _status_kb("VmRSS")
    ds = records.training_dataset(args.batch_size, seed=0)
    iterator = iter(ds)
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
    batch["source"].numpy()
    seconds = time.perf_counter() - start
    batches_per_s = args.batches / seconds
    print(f"set: {records.folder} ({records.num_train_pairs:,} training pairs, "
          f"{len(records.files('train'))} shards, stored at {records.resolution} px)")
    print(f"input: {args.batches} batches of {args.batch_size} in {seconds:.1f} s = "
          f"{batches_per_s:.2f} batches/s = {batches_per_s * args.batch_size:.1f} pairs/s "
          f"(after {args.warmup} warm-up batches)")
    print(f"memory of this process: {before / 1e6:.2f} GB before the pipeline was built, "
          f"{_status_kb('VmRSS') / 1e6:.2f} GB after, peak {_status_kb('VmHWM') / 1e6:.2f} GB")
    if args.step_seconds:
        ratio = batches_per_s * args.step_seconds
        print(f"train step: {args.step_seconds:.2f} s/step = {1 / args.step_seconds:.3f} batches/s; "
              f"input / consumption = {ratio:.0f}x (target >= 10x: "
              f"{'met' if ratio >= 10 else 'NOT met'})")


def _status_kb(field, pid="self"):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _tree_rss_kb(pid):
    """RSS (kB) of ``pid`` and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def peak_rss(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        sys.exit("rss: give the command after --")
    samples = []
    proc = subprocess.Popen(command)
    start = time.time()
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.time() - start, _tree_rss_kb(proc.pid)))
            done.wait(args.interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    if not samples:
        sys.exit("rss: no sample taken")
    peak = max(kb for _, kb in samples)
    elapsed = time.time() - start
    print(f"command: {' '.join(command)}")
    print(f"exit status {code} after {elapsed:.0f} s; peak RSS {peak / 1e6:.2f} GB "
          f"({peak / 2 ** 20:.2f} GiB) over {len(samples)} samples every {args.interval} s")
    for fraction in (0.25, 0.5, 0.75, 1.0):
        window = [kb for t, kb in samples if t <= fraction * elapsed]
        if window:
            print(f"  peak over the first {int(fraction * 100)} % of the run: {max(window) / 1e6:.2f} GB")
    sys.exit(code)


def fit(args):
    points = [tuple(float(v) for v in p.split(":")) for p in args.points.split(",")]
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    base = mean_y - slope * mean_x
    print(f"RSS = {base:.2f} GB + {slope * 1000:.3f} GB per 1,000 pairs (least squares over {n} runs)")
    print(f"at {args.at:,.0f} pairs: {base + slope * args.at:.1f} GB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("input", help="TFRecord input throughput")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--step_seconds", type=float, default=0.0,
                   help="seconds per train step to compare with (0: no comparison)")
    p.set_defaults(run=input_throughput)
    p = sub.add_parser("rss", help="peak RSS of a command and its children")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(run=peak_rss)
    p = sub.add_parser("fit", help="linear fit of RSS against pairs, extrapolated")
    p.add_argument("--points", required=True, help="pairs:GB,pairs:GB,...")
    p.add_argument("--at", type=float, default=50000)
    p.set_defaults(run=fit)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
