"""Data-parallel training under `mpiexec -n 2`: results equal one process, faults end every rank.

Each test starts mpiexec (the mpich wheel's, from the [mpi] extra) as a subprocess under a timeout;
the programs it runs are in distributed_worker.py. One thread per rank keeps two ranks on two cores.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REQUIRED = os.environ.get("XPGRAD_REQUIRE_MPI") == "1"  # CI: fail instead of skipping
if not REQUIRED:
    pytest.importorskip("mpi4py", reason="needs mpi4py and an MPI library: pip install 'xpgrad[mpi]'")
import mpi4py  # noqa: E402, F401  (imported after the skip check so that a missing mpi4py fails in CI)

MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
if MPIEXEC is None:
    message = "mpi4py is installed but no mpiexec was found (pip install mpich)"
    if REQUIRED:
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

WORKER = str(Path(__file__).with_name("distributed_worker.py"))
TIMEOUT = 120  # seconds for one job; a hang fails the test instead of stalling the run
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")}
XPGRAD = [sys.executable, "-c", "import sys, xpgrad.cli as c; sys.exit(c.main())"]
TRAIN = ["train", "--dropout", "0", "--epochs", "3", "--batch-size", "64", "--quiet"]
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def _env():
    return {**os.environ, **ONE_THREAD, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run(command, cwd, ranks=None, timeout=TIMEOUT):
    """Run `command` (under `mpiexec -n ranks` unless ranks is None); the finished process and its seconds."""
    full = ([MPIEXEC, "-n", str(ranks)] if ranks else []) + list(command)
    start = time.perf_counter()
    done = subprocess.run(full, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.perf_counter() - start


def ok(command, cwd, ranks=None):
    done, _ = run(command, cwd, ranks)
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def worst_relative_difference(path_a, path_b, prefix=""):
    a, b = np.load(path_a), np.load(path_b)
    keys = [k for k in a.files if k.startswith(prefix)]
    assert keys and sorted(keys) == sorted(k for k in b.files if k.startswith(prefix))
    return max(float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(a[k])), 1e-30)) for k in keys)


def with_epochs(flags, epochs):
    i = flags.index("--epochs")
    return [*flags[: i + 1], str(epochs), *flags[i + 2 :]]


def accuracy_line(done):
    lines = [line for line in done.stdout.splitlines() if line.startswith("test accuracy:")]
    assert len(lines) == 1, f"expected one 'test accuracy' line (rank 0 only), got:\n{done.stdout}"
    return lines[0]


# ---- equality with one process -----------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cli_two_ranks_train_the_one_process_model(tmp_path, optimizer, dtype):
    flags = [*TRAIN, "--optimizer", optimizer, "--dtype", dtype]
    two = ok([*XPGRAD, *flags, "--save", "two.npz"], tmp_path, ranks=2)
    one = ok([*XPGRAD, *flags, "--save", "one.npz"], tmp_path)
    assert worst_relative_difference(tmp_path / "one.npz", tmp_path / "two.npz", "param/") < TOLERANCE[dtype]
    assert worst_relative_difference(tmp_path / "one.npz", tmp_path / "two.npz", "optim/") < TOLERANCE[dtype]
    assert accuracy_line(two) == accuracy_line(one)


@pytest.mark.parametrize("optimizer, dtype", [("sgd", "float64"), ("adam", "float64"), ("adam", "float32")])
def test_hand_written_data_parallel_loop_equals_one_process(tmp_path, optimizer, dtype):
    ok([sys.executable, WORKER, "loop", "two.npz", optimizer, dtype], tmp_path, ranks=2)
    ok([sys.executable, WORKER, "loop", "one.npz", optimizer, dtype], tmp_path)  # also: no mpi4py imported
    assert worst_relative_difference(tmp_path / "one.npz", tmp_path / "two.npz") < TOLERANCE[dtype]


@pytest.mark.parametrize("ranks", [2, 3])
def test_collectives_and_gradient_sync_on_every_rank(tmp_path, ranks):
    done = ok([sys.executable, WORKER, "collectives"], tmp_path, ranks=ranks)
    assert sorted(re.findall(r"rank (\d+): ok", done.stdout)) == [str(r) for r in range(ranks)]


# ---- files, checkpoints, resume ----------------------------------------------------------


def test_only_rank_zero_writes_files(tmp_path):
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank1").mkdir()
    outputs = ["--save", "model.npz", "--metrics-json", "metrics.json", "--plot", "curves.png"]
    command = [*XPGRAD, "train", "--epochs", "1", "--batch-size", "64", *outputs]
    # two executables, one rank each, in different working folders: relative outputs land apart
    done = subprocess.run(
        [
            MPIEXEC,
            "-n",
            "1",
            "-wdir",
            str(tmp_path / "rank0"),
            *command,
            ":",
            "-n",
            "1",
            "-wdir",
            str(tmp_path / "rank1"),
            *command,
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["curves.png", "metrics.json", "model.npz"]
    assert list((tmp_path / "rank1").iterdir()) == []
    accuracy_line(done)
    assert done.stdout.count("training MLP") == 1 and "data-parallel on 2 ranks (mpi)" in done.stdout


def test_resume_from_a_two_rank_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    # dropout on: every rank's own dropout stream must be saved and restored
    flags = ["train", "--epochs", "4", "--batch-size", "64", "--dtype", "float64", "--quiet"]
    ok([*XPGRAD, *flags, "--save", "full.npz"], tmp_path, ranks=2)
    ok([*XPGRAD, *with_epochs(flags, 2), "--save", "half.npz"], tmp_path, ranks=2)
    ok([*XPGRAD, *flags, "--load", "half.npz", "--save", "resumed.npz"], tmp_path, ranks=2)
    for part in ("param/", "optim/"):
        assert worst_relative_difference(tmp_path / "full.npz", tmp_path / "resumed.npz", part) == 0.0


def test_checkpoint_of_two_ranks_resumes_and_evaluates_in_one_process(tmp_path):
    flags = [*TRAIN, "--dtype", "float64"]
    ok([*XPGRAD, *flags, "--save", "two.npz"], tmp_path, ranks=2)
    ok([*XPGRAD, *with_epochs(flags, 2), "--save", "half.npz"], tmp_path, ranks=2)
    ok([*XPGRAD, *flags, "--load", "half.npz", "--save", "resumed.npz"], tmp_path)  # K = 1 now
    assert worst_relative_difference(tmp_path / "two.npz", tmp_path / "resumed.npz", "param/") < 1e-10
    evaluated = ok([*XPGRAD, "eval", "--load", "two.npz"], tmp_path)
    assert "test accuracy:" in evaluated.stdout


def test_ctrl_c_stops_every_rank_at_the_same_step_and_saves(tmp_path):
    from xpgrad.checkpoint import load_checkpoint

    job = subprocess.Popen(
        [MPIEXEC, "-n", "2", *XPGRAD, "train", "--epochs", "1000", "--batch-size", "64", "--save", "stopped.npz"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in job.stdout:  # rank 0's per-epoch lines
            if line.startswith("epoch"):
                break
        job.send_signal(signal.SIGINT)  # mpiexec forwards it to every rank
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 130, err
    assert err.count("stopping after this batch") == 1 and "interrupted after" in err
    ckpt = load_checkpoint(tmp_path / "stopped.npz")
    assert ckpt.extra["interrupted"] and len(ckpt.extra["rng"]["host_by_rank"]) == 2
    ok([*XPGRAD, "eval", "--load", "stopped.npz"], tmp_path)


# ---- faults: every one ends the job non-zero, quickly, with the cause -------------------


def test_indivisible_batch_is_an_error_before_training(tmp_path):
    done, seconds = run([*XPGRAD, "train", "--batch-size", "63", "--save", "m.npz"], tmp_path, ranks=2)
    assert done.returncode == 2
    assert done.stderr.count("xpgrad: error: --batch-size: batch size 63 is the global batch of all 2 ranks") == 1
    assert "multiple of 2" in done.stderr and "training MLP" not in done.stdout
    assert not (tmp_path / "m.npz").exists() and seconds < 60


def test_exception_on_rank_one_at_step_three_ends_every_rank(tmp_path):
    done, seconds = run([sys.executable, WORKER, "raise-at-step-3"], tmp_path, ranks=2)
    assert done.returncode != 0
    assert "RuntimeError: injected failure on rank 1 at step 3" in done.stderr
    assert "rank 1 of 2 failed" in done.stderr
    assert seconds < 60  # the abort, not the test timeout, ended it


def test_kill_9_of_one_rank_ends_the_job(tmp_path):
    job = subprocess.Popen(
        [MPIEXEC, "-n", "2", sys.executable, WORKER, "steps-forever"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / "pid.1").exists() or not (tmp_path / "pid.1").read_text():
            assert job.poll() is None and time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        time.sleep(0.5)  # let it train a few steps
        os.kill(int((tmp_path / "pid.1").read_text()), signal.SIGKILL)
        killed = time.perf_counter()
        output, _ = job.communicate(timeout=60)
        seconds = time.perf_counter() - killed
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert "signal 9" in output or "KILLED" in output.upper(), output
    assert seconds < 30


def test_rank_dependent_parameter_shape_is_an_error_on_every_rank(tmp_path):
    done, seconds = run([sys.executable, WORKER, "mismatch"], tmp_path, ranks=2)
    assert done.returncode == 3
    for rank in (0, 1):
        assert f"rank {rank} raised ModelMismatchError" in done.stdout
    assert "parameter '0.weight' has shape (4, 9) float32 (numpy) instead of (4, 8)" in done.stdout
    assert seconds < 60
