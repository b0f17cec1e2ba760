"""The NCCL path (cupy.cuda.nccl) on real GPUs; skipped, with the reason, on machines without one."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_GPU

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not HAS_GPU,
        reason="needs a real CUDA GPU and CuPy with NCCL (no NVIDIA driver here); "
        "the NCCL collectives cannot run without one",
    ),
]
WORKER = str(Path(__file__).with_name("distributed_worker.py"))


def _mpiexec():
    pytest.importorskip("mpi4py", reason="needs mpi4py and an MPI library: pip install 'xpgrad[mpi]'")
    pytest.importorskip("cupy", reason="needs CuPy: pip install 'xpgrad[cuda13]'")
    from cupy.cuda import nccl

    if not nccl.available:
        pytest.skip("CuPy cannot load NCCL (pip install nvidia-nccl-cu13)")
    import shutil

    found = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return found


def _gpu_count():
    import cupy

    return cupy.cuda.runtime.getDeviceCount()


@pytest.mark.parametrize("ranks", [1, 2])
def test_nccl_collectives_and_buckets(tmp_path, ranks):
    mpiexec = _mpiexec()
    if ranks > _gpu_count():
        pytest.skip(f"{ranks} ranks need {ranks} GPUs; this machine has {_gpu_count()}")
    env = {**os.environ, "XPGRAD_BACKEND": "cupy"}
    done = subprocess.run(
        [mpiexec, "-n", str(ranks), sys.executable, WORKER, "nccl"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(re.findall(r"rank (\d+): ok", done.stdout)) == [str(r) for r in range(ranks)]
    assert "Peer access has been activated" not in done.stderr, "a rank computed on another rank's GPU"
    if ranks > 1:  # the NCCL training loop against the same loop on one GPU
        one = subprocess.run(
            [sys.executable, WORKER, "loop", "one.npz", "adam", "float64"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert one.returncode == 0, one.stderr
        a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "nccl.npz")
        for k in a.files:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-12)


def test_more_ranks_than_gpus_is_an_error_on_every_rank(tmp_path):
    mpiexec = _mpiexec()
    ranks = _gpu_count() + 1
    env = {**os.environ, "XPGRAD_BACKEND": "cupy"}
    done = subprocess.run(
        [mpiexec, "-n", str(ranks), sys.executable, WORKER, "nccl"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "NCCL needs one GPU per rank" in done.stderr
