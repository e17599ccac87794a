"""The local multi-worker launcher: N ``python -m mlc_keras.train`` processes on 127.0.0.1, one TF_CONFIG each.

For trying multi-worker training on one machine (a cluster sets TF_CONFIG
itself; see README "Scale out"). Every worker's output is streamed with a
``[worker N]`` prefix; when one exits with an error the others are stopped
and its exit code is returned.

May import errors only (the workers are separate processes).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from mlc_keras.errors import UserError

STOP_GRACE_SECONDS = 10.0


class LaunchError(UserError, ValueError):
    """The launcher's own arguments are unusable."""


def free_ports(count, host="127.0.0.1"):
    """``count`` distinct TCP ports that were free on ``host`` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(ports, host="127.0.0.1"):
    """One TF_CONFIG string per worker of a cluster on ``host``:``ports`` (worker 0 is the chief)."""
    cluster = {"worker": [f"{host}:{p}" for p in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(len(ports))]


def _exit_code(returncode):
    """A process's exit status as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(processes):
    """SIGTERM to every live worker (its process group), SIGKILL after the grace period."""
    live = [p for p in processes if p.poll() is None]
    for p in live:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + STOP_GRACE_SECONDS
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(num_workers, train_args, stream=None, python=None, env=None, poll_seconds=0.2):
    """Runs ``python -m mlc_keras.train TRAIN_ARGS --strategy=multi_worker`` as
    ``num_workers`` workers of one local cluster; returns 0 when all succeed,
    else the exit code of the first that failed (the others are stopped).

    ``stream``: where the prefixed lines go (default stdout).
    """
    if num_workers < 1:
        raise LaunchError(f"--workers={num_workers}: must be at least 1")
    stream = stream or sys.stdout
    lock = threading.Lock()
    base_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    args = [python or sys.executable, "-m", "mlc_keras.train", *train_args, "--strategy=multi_worker"]
    processes, readers = [], []

    def forward(index, pipe):
        for line in iter(pipe.readline, ""):
            with lock:
                stream.write(f"[worker {index}] {line if line.endswith(chr(10)) else line + chr(10)}")
                stream.flush()
        pipe.close()

    try:
        for index, config in enumerate(tf_configs(free_ports(num_workers))):
            p = subprocess.Popen(args, env={**base_env, "TF_CONFIG": config}, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
                                 errors="backslashreplace", start_new_session=True)
            processes.append(p)
            reader = threading.Thread(target=forward, args=(index, p.stdout), daemon=True)
            reader.start()
            readers.append(reader)
        while True:
            codes = [p.poll() for p in processes]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                index, code = failed[0]
                with lock:
                    stream.write(f"[launch] worker {index} exited with status {_exit_code(code)}; "
                                 "stopping the others\n")
                    stream.flush()
                _stop(processes)
                return _exit_code(code)
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        _stop(processes)
        return 130
    finally:
        _stop(processes)
        for reader in readers:
            reader.join(timeout=5)
