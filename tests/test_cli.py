"""The `xpgrad` command line: train / eval / info in-process via main(), error lines, and real subprocesses."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import backend
from xpgrad.checkpoint import load_checkpoint
from xpgrad.cli import main
from xpgrad.train import EpochRecord, Reporter

FAST = ["--hidden", "32", "--batch-size", "64", "--quiet"]
FINAL = re.compile(r"^test accuracy: (0\.\d{4}|1\.0000)$")


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run with every output requested (shared by several tests)."""
    folder = tmp_path_factory.mktemp("run")
    paths = {"ck": folder / "model.npz", "png": folder / "curves.png", "json": folder / "metrics.json"}
    code = main(
        [
            "train",
            "--epochs",
            "2",
            *FAST,
            "--save",
            str(paths["ck"]),
            "--plot",
            str(paths["png"]),
            "--metrics-json",
            str(paths["json"]),
        ]
    )
    assert code == 0
    return paths


def test_train_writes_checkpoint_plot_and_metrics(trained, capsys):
    assert trained["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(trained["json"].read_text())
    for key in ("dataset", "backend", "device", "final", "per_epoch", "loss", "optimizer", "epochs"):
        assert key in metrics
    assert metrics["backend"] == "numpy" and metrics["device"] == "cpu" and metrics["dataset"] == "digits"
    final = metrics["final"]
    for key in ("train_loss", "val_accuracy", "test_accuracy", "seconds", "samples_per_second"):
        assert isinstance(final[key], float), key
    assert [e["epoch"] for e in metrics["per_epoch"]] == [1, 2]
    assert set(metrics["per_epoch"][0]) == {
        "epoch",
        "train_loss",
        "val_accuracy",
        "test_accuracy",
        "seconds",
        "samples_per_second",
    }
    assert final["test_accuracy"] == metrics["per_epoch"][-1]["test_accuracy"] > 0.5
    ck = load_checkpoint(trained["ck"])
    assert ck.model_config["sizes"] == [64, 32, 10] and ck.extra["epoch"] == 2
    assert ck.extra["settings"]["dataset"] == "digits"


def test_train_prints_progress_lines_and_ends_with_test_accuracy(tmp_path, capsys):
    code, out, err = run_main(
        capsys,
        "train",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--seed",
        "1",
        "--save",
        str(tmp_path / "c.npz"),
        "--plot",
        str(tmp_path / "p.png"),
    )
    assert code == 0 and err == []
    assert out[0].startswith("training MLP 64-32-10 (relu")
    assert [line.split()[1] for line in out if line.startswith("epoch")] == ["1", "2"]
    assert f"saved checkpoint to {tmp_path / 'c.npz'}" in out and f"saved plot to {tmp_path / 'p.png'}" in out
    assert FINAL.match(out[-1])


def test_eval_reports_the_saved_models_accuracy(trained, capsys):
    metrics = json.loads(trained["json"].read_text())
    code, out, err = run_main(capsys, "eval", "--load", str(trained["ck"]))
    assert code == 0 and err == []
    assert out[-1] == f"test accuracy: {metrics['final']['test_accuracy']:.4f}"
    code, out, _ = run_main(capsys, "eval", "--load", str(trained["ck"]), "--split", "val")
    assert code == 0 and out[-1] == f"val accuracy: {metrics['final']['val_accuracy']:.4f}"


def _per_epoch_losses(path):
    return [e["train_loss"] for e in json.loads(Path(path).read_text())["per_epoch"]]


def test_same_seed_same_losses_and_resume_matches(tmp_path, capsys):
    common = ["train", *FAST, "--dropout", "0.1", "--optimizer", "sgd", "--seed", "4"]
    assert main([*common, "--epochs", "3", "--metrics-json", str(tmp_path / "a.json")]) == 0
    assert main([*common, "--epochs", "3", "--metrics-json", str(tmp_path / "b.json")]) == 0
    straight = _per_epoch_losses(tmp_path / "a.json")
    assert straight == _per_epoch_losses(tmp_path / "b.json")
    assert len(set(straight)) == 3
    assert main([*common, "--epochs", "3", "--seed", "5", "--metrics-json", str(tmp_path / "c.json")]) == 0
    assert _per_epoch_losses(tmp_path / "c.json") != straight
    # 2 epochs, save, then resume to 3 (settings come from the checkpoint)
    ck = str(tmp_path / "ck.npz")
    assert main([*common, "--epochs", "2", "--save", ck]) == 0
    assert main(["train", "--epochs", "3", "--load", ck, "--quiet", "--metrics-json", str(tmp_path / "r.json")]) == 0
    assert _per_epoch_losses(tmp_path / "r.json") == straight
    capsys.readouterr()


def test_info(capsys):
    code, out, err = run_main(capsys, "info")
    text = "\n".join(out)
    assert code == 0 and err == []
    for key in (
        "backend: numpy",
        "devices: cpu",
        "numpy:",
        "numba:",
        "array-api-compat:",
        "cupy:",
        "kernels (numba):",
        "gpu:",
    ):
        assert key in text


def test_help_and_version_exit_zero(capsys):
    assert main(["--help"]) == 0
    assert main(["train", "--help"]) == 0
    assert main(["--version"]) == 0
    assert "--metrics-json" in capsys.readouterr().out


def _not_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(2))
    return str(path)


def _truncated(tmp_path, trained):
    path = tmp_path / "cut.npz"
    path.write_bytes(trained["ck"].read_bytes()[:300])
    return str(path)


ERROR_CASES = {
    "bad hidden": (lambda t, c: ["train", "--hidden", "10,abc"], 2, "argument --hidden: expected comma-separated"),
    "negative lr": (lambda t, c: ["train", "--lr", "-1"], 2, "argument --lr: expected a positive number"),
    "bad epochs": (lambda t, c: ["train", "--epochs", "many"], 2, "argument --epochs"),
    "zero batch": (lambda t, c: ["train", "--batch-size", "0"], 2, "argument --batch-size"),
    "bad momentum": (lambda t, c: ["train", "--optimizer", "sgd", "--momentum", "1.5"], 2, r"\[0, 1\)"),
    "momentum with adam": (lambda t, c: ["train", "--momentum", "0.5"], 2, "--momentum applies to --optimizer sgd"),
    "bad dropout": (lambda t, c: ["train", "--dropout", "1"], 2, "argument --dropout"),
    "unknown loss": (lambda t, c: ["train", "--loss", "l1"], 2, "argument --loss: invalid choice: 'l1'"),
    "unknown optimizer": (lambda t, c: ["train", "--optimizer", "rmsprop"], 2, "invalid choice: 'rmsprop'"),
    "unknown activation": (lambda t, c: ["train", "--activation", "swish"], 2, "unknown activation 'swish'"),
    "unknown dataset": (lambda t, c: ["train", "--dataset", "cifar"], 2, "unknown dataset 'cifar'"),
    "unknown flag": (lambda t, c: ["train", "--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    "mnist without data dir": (lambda t, c: ["train", "--dataset", "mnist"], 1, "give data_dir \\(--data-dir\\)"),
    "missing data dir": (
        lambda t, c: ["train", "--dataset", "mnist", "--data-dir", str(t / "nowhere")],
        1,
        "data folder .*nowhere for dataset .mnist. does not exist",
    ),
    "empty data dir": (
        lambda t, c: ["train", "--dataset", "fashion-mnist", "--data-dir", str(t)],
        1,
        "expected .*train-images-idx3-ubyte",
    ),
    "unknown backend": (lambda t, c: ["train", "--backend", "nosuchlib"], 1, "unknown backend 'nosuchlib'"),
    "missing checkpoint": (lambda t, c: ["train", "--load", str(t / "none.npz")], 1, "none.npz does not exist"),
    "truncated checkpoint": (lambda t, c: ["train", "--load", _truncated(t, c)], 1, "truncated or corrupt"),
    "not a checkpoint": (lambda t, c: ["train", "--load", _not_checkpoint(t)], 1, "not an xpgrad checkpoint"),
    "other architecture": (
        lambda t, c: ["train", "--load", str(c["ck"]), "--hidden", "64"],
        1,
        "different architecture: it has hidden 32 but --hidden 64",
    ),
    "other dataset shape": (
        lambda t, c: ["eval", "--load", str(c["ck"]), "--dataset", "spiral"],
        1,
        "different architecture: its model takes 64 inputs",
    ),
    "save folder missing": (lambda t, c: ["train", "--save", str(t / "no" / "x.npz")], 2, "folder .* does not exist"),
    "save to a folder": (lambda t, c: ["train", "--save", str(t)], 2, "is a folder"),
    "plot format": (lambda t, c: ["train", "--plot", str(t / "curves.gif")], 2, "must end in .png, .pdf or .svg"),
    "eval without load": (lambda t, c: ["eval"], 2, "the following arguments are required: --load"),
    "eval missing file": (lambda t, c: ["eval", "--load", str(t / "gone.npz")], 1, "gone.npz does not exist"),
    "no command": (lambda t, c: [], 2, "missing command"),
    "unknown command": (lambda t, c: ["fly"], 2, "invalid choice: 'fly'"),
    "bench without target": (lambda t, c: ["bench"], 2, "bench needs a target"),
    "bench bad sizes": (lambda t, c: ["bench", "kernels", "--sizes", "1,x"], 2, "argument --sizes"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_cases_print_one_line_and_exit_nonzero(case, tmp_path, trained, capsys):
    make_argv, expected_code, pattern = ERROR_CASES[case]
    code, out, err = run_main(capsys, *make_argv(tmp_path, trained))
    assert code == expected_code
    assert len(err) == 1, err
    assert err[0].startswith("xpgrad: error: ")
    assert re.search(pattern, err[0]), err[0]
    assert not any(line.startswith("test accuracy") for line in out)


def test_bad_environment_backend_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("XPGRAD_BACKEND", "bogus")
    code, _, err = run_main(capsys, "train", "--epochs", "1", *FAST)
    assert code == 1 and len(err) == 1 and err[0].startswith("xpgrad: error: unknown backend 'bogus'")


def test_backend_flag_is_restored_after_the_command(capsys):
    before = xg.get_backend().name
    assert main(["info", "--backend", "numpy"]) == 0
    assert xg.get_backend().name == before
    capsys.readouterr()


@pytest.mark.skipif(xg.cupy_gpu_available(), reason="a GPU is present: --backend cupy works")
def test_cupy_backend_without_gpu_is_one_error_line(capsys):
    code, _, err = run_main(capsys, "train", "--backend", "cupy", *FAST)
    assert code == 1 and len(err) == 1 and "cupy" in err[0].lower() and err[0].startswith("xpgrad: error: ")


def test_bench_mlp_passes_the_plot_path(monkeypatch, capsys):
    import xpgrad.bench_mlp as bench_mlp

    calls = []
    monkeypatch.setattr(bench_mlp, "cli_mlp", lambda **kwargs: calls.append(kwargs) or 0)
    assert main(["bench", "mlp", "--threads", "1", "--plot", "steps.png"]) == 0
    assert calls == [{"sizes": None, "json_path": None, "threads": 1, "plot_path": "steps.png"}]


def test_bench_calls_the_target_function(monkeypatch, capsys):
    calls = []
    fake = type(sys)("xpgrad.bench_kernels")
    fake.run = lambda **kwargs: calls.append(kwargs) or 3
    monkeypatch.setitem(sys.modules, "xpgrad.bench_kernels", fake)
    assert main(["bench", "kernels", "--sizes", "10,1000", "--json", "k.json", "--threads", "2"]) == 3
    assert calls == [{"sizes": [10, 1000], "json_path": "k.json", "threads": 2}]
    fake.run = lambda **kwargs: [{"rows": 1}]  # a non-int result means success
    assert main(["bench", "kernels"]) == 0


def test_graph_is_dispatched_to_viz(capsys):
    code, out, _ = run_main(capsys, "graph", "--example", "apple", "--out", "-")
    assert code == 0 and out[0].startswith("digraph")
    code, _, err = run_main(capsys, "graph", "--example", "nope")
    assert code == 2 and len(err) == 1 and err[0].startswith("xpgrad: error: argument --example")


def test_progress_bar_on_a_terminal(capsys):
    pytest.importorskip("tqdm")
    rep = Reporter(use_bar=True)
    tick = rep.epoch_start(1, 2, 3)
    for _ in range(3):
        tick(1)
    rep.epoch_end(EpochRecord(1, 0.5, 0.9, 0.8, 0.1, 1000.0))
    out, err = capsys.readouterr()
    assert out == "" and "epoch 1/2" in err and "val acc 0.9000" in err


# ---- real subprocesses ----------------------------------------------------------------------


def _command():
    script = Path(sys.executable).parent / "xpgrad"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys, xpgrad.cli as c; sys.exit(c.main())"]


def _env():
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_subprocess_train_and_error():
    done = subprocess.run(
        [*_command(), "train", "--epochs", "1", "--hidden", "32"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("epoch   1  loss")  # plain per-epoch lines when not on a terminal
    assert FINAL.match(lines[-1])
    assert "Traceback" not in done.stderr
    bad = subprocess.run([*_command(), "train", "--lr", "0"], capture_output=True, text=True, timeout=60, env=_env())
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["xpgrad: error: argument --lr: expected a positive number, got '0'"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_subprocess_ctrl_c_saves_a_checkpoint(tmp_path):
    ck = tmp_path / "ck.npz"
    proc = subprocess.Popen(
        [*_command(), "train", "--epochs", "100000", "--hidden", "16", "--save", str(ck)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("epoch   2"):
                break
        else:
            pytest.fail("no epoch line within 60 s")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping after this batch" in err
    assert out.splitlines()[-2] == f"saved checkpoint to {ck}"
    assert FINAL.match(out.splitlines()[-1])
    saved = load_checkpoint(ck)
    assert saved.extra["interrupted"] is True and saved.extra["epoch"] >= 2
    assert len(saved.extra["history"]) == saved.extra["epoch"]


def test_info_with_a_bad_environment_backend(monkeypatch, capsys):
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("XPGRAD_BACKEND", "bogus")
    code, out, err = run_main(capsys, "info")
    assert code == 1 and "backend: unusable (from XPGRAD_BACKEND=bogus)" in out
    assert len(err) == 1 and err[0].startswith("xpgrad: error: unknown backend 'bogus'")


def test_small_models_train_with_one_blas_thread(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from xpgrad import nn
    from xpgrad.train import blas_threads_for

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    small, large = nn.MLP([64, 256, 10]), nn.MLP([784, 1000, 10])
    with blas_threads_for(small, 32):
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
    assert type(blas_threads_for(large, 100)).__name__ == "nullcontext"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's choice wins
    assert type(blas_threads_for(small, 32)).__name__ == "nullcontext"


def _write_idx(path, array):
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_mnist_folder_train_and_eval_remember_the_data_dir(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    for stem, n in (("train", 120), ("t10k", 30)):
        _write_idx(data / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    ck = str(tmp_path / "m.npz")
    code, out, err = run_main(
        capsys, "train", "--dataset", "mnist", "--data-dir", str(data), "--epochs", "1", "--hidden", "8", "--save", ck
    )
    assert code == 0 and err == [] and "784-8-10" in out[0] and FINAL.match(out[-1])
    code, out, err = run_main(capsys, "eval", "--load", ck)  # no --data-dir: the checkpoint's folder
    assert code == 0 and out[0].startswith("mnist test split: 30 samples") and FINAL.match(out[-1])
    code, _, err = run_main(capsys, "eval", "--load", ck, "--data-dir", str(tmp_path / "elsewhere"))
    assert code == 1 and "elsewhere" in err[0]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_train_on_array_api_strict_backend(capsys, optimizer):
    try:
        code, out, err = run_main(
            capsys,
            "train",
            "--backend",
            "array_api_strict",
            "--epochs",
            "2",
            "--hidden",
            "256",
            "--optimizer",
            optimizer,
            "--quiet",
        )
    finally:
        xg.set_backend(None)
    assert code == 0, err
    assert FINAL.match(out[-1]) and float(out[-1].split()[-1]) > 0.5


def test_augment_shift_on_a_dataset_without_images_is_one_error_line(capsys):
    code, _, err = run_main(capsys, "train", "--dataset", "spiral", "--augment", "shift", *FAST)
    assert code == 2  # a usage error, before any training
    assert len(err) == 1 and "--augment shift: dataset spiral holds no images" in err[0]
