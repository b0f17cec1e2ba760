"""The GPU benchmarks (`xpgrad.bench_gpu`, run by ci/gpu-check) run here on NumPy and the CPU
kernels, so the code a GPU host runs has not rotted by the time a GPU is lent."""

import math

import pytest

from xpgrad import bench_gpu


def test_kernel_benchmark_measures_every_kernel_against_copy_bandwidth():
    result = bench_gpu.run_kernels(bench_gpu.Device("numpy"), sizes=(1 << 12,), rounds=2)
    names = [r["kernel"] for r in result["results"]]
    assert names == [
        "sigmoid_backward",
        "bias_act_backward[relu]",
        "bias_act_forward[relu]",
        "softmax_xent_backward",
        "sgd_update[momentum]",
        "adam_update",
    ]
    for row in result["results"]:
        for key in ("median_s", "gbps", "copy_gbps", "pct_copy", "speedup"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["kernel"], key)
    assert "sigmoid_backward" in bench_gpu.format_kernels(result)


def test_mlp_benchmark_pairs_xpgrad_with_the_hand_written_step():
    result = bench_gpu.run_mlp(bench_gpu.Device("numpy"), configs=("c",), rounds=2)
    entry = result["configs"]["c"]
    assert {"hand_written", "xpgrad", "captured"} <= set(entry)
    assert entry["hand_written"]["ratio_to_hand_written"] == pytest.approx(1.0)
    assert all(r["steps_per_s"] > 0 for r in entry.values())
    assert "xpgrad" in bench_gpu.format_mlp(result)


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="expected 'cupy' or 'numpy', got 'tpu'"):
        bench_gpu.Device("tpu")


def _gpu_check(tmp_path, monkeypatch):
    """ci/gpu-check loaded as a module, writing its outputs under tmp_path."""
    import importlib.machinery
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parent.parent / "ci" / "gpu-check"
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("gpu_check", loader))
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up
    loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    monkeypatch.setattr(module, "ROOT", tmp_path.parent)
    return module


def test_gpu_check_timeout_ends_the_steps_whole_process_group(tmp_path, monkeypatch):
    """A step that times out goes with everything it started (an mpiexec and its ranks would
    otherwise keep the GPU busy through the later steps)."""
    import sys
    import time

    module = _gpu_check(tmp_path, monkeypatch)
    pid_file = tmp_path / "grandchild.pid"
    spawn = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)"
    )
    step = module.Step("hang", [sys.executable, "-c", spawn], True, 5)
    module.run_step(step, seconds_left=60)
    assert step.status == "timeout" and "started" in (tmp_path / "hang.txt").read_text()
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # killed: gone, or a zombie where nobody reaps orphans
        if not _running(grandchild):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the step's grandchild outlived its timeout")


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: signal 0 only tells that the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_gpu_check_summary_reads_what_the_benchmarks_write(tmp_path, monkeypatch):
    """ci/gpu-check's one-line figures parse the JSON the GPU benchmarks write (made here on NumPy),
    so the first GPU run does not end in a KeyError after the minutes it cost."""
    from xpgrad import bench_mlp

    module = _gpu_check(tmp_path, monkeypatch)
    device = bench_gpu.Device("numpy")
    bench_mlp.write_json(bench_gpu.run_kernels(device, sizes=(1 << 10,), rounds=2), str(tmp_path / "kernels.json"))
    bench_mlp.write_json(bench_gpu.run_mlp(device, configs=("c",), rounds=2), str(tmp_path / "mlp.json"))
    assert "sigmoid_backward" in module.kernels_headline("") and "% of copy" in module.kernels_headline("")
    assert module.mlp_headline("").startswith("(c) xpgrad ") and "captured" in module.mlp_headline("")
