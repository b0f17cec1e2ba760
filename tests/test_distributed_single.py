"""xpgrad.distributed in one process (no mpiexec): no communication, and the specific errors."""

import sys
import types

import numpy as np
import pytest

import xpgrad as xg
import xpgrad.distributed as dist
from xpgrad import nn, optim
from xpgrad.cli import main
from xpgrad.cli.parallel import Ranks, seed_rank_stream
from xpgrad.creation import generator
from xpgrad.distributed import group as group_module
from xpgrad.distributed.nccl_comm import check_gpu_for_rank
from xpgrad.errors import DTypeError, NotATensorError


def test_one_process_collectives_return_their_input_unchanged():
    assert not dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
    a = np.arange(6.0).reshape(2, 3)
    t = xg.tensor(a.copy())
    assert dist.all_reduce(a) is a and dist.all_reduce(t, op="mean") is t
    np.testing.assert_array_equal(t.numpy(), a)
    assert dist.broadcast(a) is a
    dist.barrier()
    assert dist.all_gather_bytes(b"x") == [b"x"]


def test_one_process_data_parallel_leaves_gradients_as_they_are():
    xg.manual_seed(0)
    net = nn.MLP([3, 4, 2], dtype="float64")
    model = dist.DataParallel(net)
    opt = optim.SGD(net.parameters(), lr=0.1)
    x = xg.tensor(np.ones((5, 3)))
    xg.softmax_cross_entropy(model(x), xg.tensor(np.arange(5) % 2)).backward()
    before = [p.grad for p in net.parameters()]
    stop = dist.RankStop()
    stop.requested = True
    assert model.sync_gradients(loss_sum=2.5, stop=stop) == (5, 2.5)  # 5: the last forward's batch
    assert [p.grad for p in net.parameters()] == before and bool(stop)
    opt.step()
    assert next(name for name, _ in model.named_parameters()) == "module.0.weight"
    assert model.config() == net.config()


def test_bucket_mb_and_module_are_checked():
    with pytest.raises(ValueError, match="bucket_mb must be positive"):
        dist.DataParallel(nn.Linear(2, 2), bucket_mb=0)
    with pytest.raises(TypeError, match="expected a Module"):
        dist.DataParallel(lambda x: x)


def test_buckets_follow_the_size_knob():
    from xpgrad.distributed.parallel import _make_buckets

    params = nn.MLP([100, 100, 100, 10]).parameters()  # float32: 40000, 400, 40000, 400, 4000, 40 bytes
    assert len(_make_buckets(params, 25.0)) == 1
    small = _make_buckets(params, 0.04)  # 41943 bytes, filled from the last parameter
    index = {id(p): i for i, p in enumerate(params)}
    assert [[index[id(p)] for p in b.params] for b in small] == [[5, 4, 3], [2, 1], [0]]


@pytest.mark.parametrize(
    "op, values, error",
    [
        ("max", np.ones(2), ValueError),
        ("mean", np.ones(2, dtype=np.int64), DTypeError),
        ("sum", np.ones(2, dtype=bool), DTypeError),
        ("sum", [1.0, 2.0], NotATensorError),
    ],
)
def test_all_reduce_rejects_what_it_cannot_reduce(op, values, error):
    with pytest.raises(error, match="all_reduce"):
        dist.all_reduce(values, op=op)


def test_broadcast_root_must_be_a_rank():
    with pytest.raises(ValueError, match="root must be a rank from 0 to 0"):
        dist.broadcast(np.ones(2), root=1)


def test_indivisible_batch_names_the_sizes():
    assert dist.local_batch_size(64, 2) == 32
    with pytest.raises(
        dist.IndivisibleBatchError, match="local_batch_size: batch size 63 .* multiple of 2; use 62 or 64"
    ):
        dist.local_batch_size(63, 2)


def test_every_distributed_error_has_a_row_in_docs_errors_md():
    from pathlib import Path

    table = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    errors = [
        c
        for c in vars(dist.errors).values()
        if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == dist.errors.__name__
    ]
    assert len(errors) == 7
    missing = [c.__name__ for c in errors if f"`xpgrad.distributed.{c.__name__}`" not in table]
    assert not missing, f"docs/errors.md has no row for {missing}"


def test_missing_mpi4py_is_a_specific_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(dist.MPINotAvailableError, match=r'pip install "xpgrad\[mpi\]"'):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of auto, mpi, nccl"):
        dist.init_process_group("gloo")


def test_nccl_without_cupy_is_a_specific_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(dist.NCCLNotAvailableError, match="needs CuPy"):
        check_gpu_for_rank(0, 1)


def _fake_cupy(devices):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: devices)
    return types.SimpleNamespace(is_available=lambda: devices > 0, cuda=types.SimpleNamespace(runtime=runtime))


def test_cupy_rank_without_a_gpu_is_a_specific_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    with pytest.raises(dist.NoGPUForRankError, match="sees no usable GPU"):
        check_gpu_for_rank(0, 1)


def test_more_ranks_than_gpus_on_a_node_is_a_specific_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(2))
    assert [check_gpu_for_rank(r, 2) for r in range(2)] == [0, 1]
    with pytest.raises(dist.NoGPUForRankError, match="3 ranks on this node but only 2 GPU"):
        check_gpu_for_rank(2, 3)


def test_launcher_environment_gives_rank_and_size(monkeypatch):
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (group_module.launched_rank(), group_module.launched_world_size()) == (0, 1)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert (group_module.launched_rank(), group_module.launched_world_size()) == (3, 4)


def test_dropout_streams_differ_by_rank_and_come_from_the_seed():
    def first_draws(rank, saved=None, epoch=0):
        xg.manual_seed(7)
        seed_rank_stream(Ranks(rank, 3), 7, saved, epoch)
        return generator().random(4)

    rank0, rank1, rank2 = first_draws(0), first_draws(1), first_draws(2)
    np.testing.assert_array_equal(rank0, np.random.default_rng(7).random(4))  # rank 0: the one-process stream
    assert not np.array_equal(rank1, rank0) and not np.array_equal(rank2, rank1)
    np.testing.assert_array_equal(first_draws(1), rank1)  # derived from the seed and the rank only
    assert not np.array_equal(first_draws(1, saved={}, epoch=5), rank1)  # resumed without states: epoch in key
    state = np.random.default_rng(99).bit_generator.state
    np.testing.assert_array_equal(
        first_draws(1, saved={"host_by_rank": [None, state, None]}), np.random.default_rng(99).random(4)
    )


def test_info_reports_mpi_and_nccl(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "mpi4py: 4." in out or "mpi4py: not installed" in out
    mpi_line = next(line for line in out.splitlines() if line.startswith("mpi: "))
    assert "MPICH" in mpi_line or "Open MPI" in mpi_line or "not available" in mpi_line
    assert any(line.startswith("nccl: ") for line in out.splitlines())
    assert not dist.is_initialized()


def test_train_dtype_flag(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--dtype", "float64", "--quiet", "--save", str(path)]) == 0
    assert np.load(path)["param/1.weight"].dtype == np.float64
    assert main(["train", "--dtype", "float16"]) == 2
    assert "--dtype: invalid choice" in capsys.readouterr().err


# ---- the NCCL communicator against a stand-in with cupy.cuda.nccl's signatures ---------------
# (the real one needs GPUs: tests/test_distributed_nccl.py; this checks the calls' arguments
# against CuPy's cupy_backends/cuda/libs/nccl.pyx: allReduce(sendbuf, recvbuf, count, datatype,
# op, stream), broadcast(sendbuff, recvbuff, count, datatype, root, stream), abort())


class _FakeNcclError(RuntimeError):
    pass


class _FakeCudaError(RuntimeError):
    pass


class _FakeEvent:
    """Recorded on a stream whose work finishes after `polls` queries of `done`."""

    def __init__(self, polls):
        self.left = polls

    @property
    def done(self):
        self.left -= 1
        return self.left < 0


class _FakeStream:
    ptr = 4242
    polls = 0  # how many times `done` reads False before the work is finished

    def record(self):
        return _FakeEvent(self.polls)


class _FakeCommunicator:
    def __init__(self, ndev, commId, rank):
        assert isinstance(commId, bytes) and len(commId) == 128
        self.init = (ndev, commId, rank)
        self.calls, self.aborted, self.fail = [], False, False

    async_error = None  # set: what the next check_async_error raises (a peer failed mid-collective)

    def check_async_error(self):
        if self.async_error is not None:
            raise self.async_error

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        if self.fail == "unknown code":  # CuPy's NcclError message table lacks NCCL's newer codes
            raise KeyError(8)
        if self.fail:
            raise _FakeNcclError("NCCL_ERROR_REMOTE_ERROR")
        self.calls.append(("allReduce", sendbuf, recvbuf, count, datatype, op, stream))

    def broadcast(self, sendbuff, recvbuff, count, datatype, root, stream):
        self.calls.append(("broadcast", sendbuff, recvbuff, count, datatype, root, stream))

    def abort(self):
        self.aborted = True


def _fake_nccl_cupy(monkeypatch):
    nccl = types.SimpleNamespace(
        available=True,
        NcclError=_FakeNcclError,
        NcclCommunicator=_FakeCommunicator,
        get_unique_id=lambda: bytes(range(128)),
        NCCL_SUM=0,
        NCCL_INT8=0,
        NCCL_UINT8=1,
        NCCL_INT32=2,
        NCCL_UINT32=3,
        NCCL_INT64=4,
        NCCL_UINT64=5,
        NCCL_FLOAT16=6,
        NCCL_FLOAT32=7,
        NCCL_FLOAT64=8,
    )
    used = []
    device = types.SimpleNamespace(use=lambda: None)
    stream = _FakeStream()
    cuda = types.SimpleNamespace(
        nccl=nccl,
        Device=lambda i: used.append(i) or device,
        get_current_stream=lambda: stream,
        runtime=types.SimpleNamespace(CUDARuntimeError=_FakeCudaError),
    )
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    return used


class _FakeDeviceArray:
    """Enough of a CuPy array for the communicator: dtype, size, data.ptr, reshape(-1) and view."""

    __module__ = "cupy._core.core"

    def __init__(self, size, dtype, ptr=None):
        self.size, self.dtype = size, np.dtype(dtype)
        self.data = types.SimpleNamespace(ptr=1000 + size if ptr is None else ptr)

    def reshape(self, shape):
        return self

    def view(self, dtype):
        dtype = np.dtype(dtype)
        return _FakeDeviceArray(self.size * self.dtype.itemsize // dtype.itemsize, dtype, self.data.ptr)

    @property
    def real(self):
        return np.zeros(0, self.dtype).real


class _HostComm:
    rank, size = 1, 2

    def __init__(self):
        self.broadcasts = []
        self.barriers = 0

    def barrier(self):
        self.barriers += 1

    def broadcast(self, array, root):
        self.broadcasts.append((array.copy(), root))
        array[:] = np.arange(128, dtype=np.uint8)  # rank 0's id arrives


def test_nccl_communicator_calls_follow_cupys_signatures(monkeypatch):
    from xpgrad.distributed.nccl_comm import NCCLCommunicator

    used = _fake_nccl_cupy(monkeypatch)
    host = _HostComm()
    comm = NCCLCommunicator(host, device=3)
    assert used == [3] and host.broadcasts[0][1] == 0  # the unique id comes from rank 0 over MPI
    assert comm.comm.init == (2, bytes(range(128)), 1)
    comm.all_reduce_sum(_FakeDeviceArray(10, np.float32))
    comm.broadcast(_FakeDeviceArray(6, np.float64), root=1)  # any dtype goes as bytes
    comm.all_reduce_sum(_FakeDeviceArray(2, np.complex64))  # real and imaginary parts, as cupyx.distributed
    assert comm.comm.calls == [
        ("allReduce", 1010, 1010, 10, 7, 0, 4242),
        ("broadcast", 1006, 1006, 48, 1, 1, 4242),
        ("allReduce", 1002, 1002, 4, 7, 0, 4242),
    ]
    with pytest.raises(DTypeError, match="all_reduce under NCCL: expected one of int8, .* arrays, got int16"):
        comm.all_reduce_sum(_FakeDeviceArray(2, np.int16))


def test_a_failed_nccl_call_aborts_the_communicator(monkeypatch):
    from xpgrad.distributed.nccl_comm import NCCLCommunicator

    _fake_nccl_cupy(monkeypatch)
    comm = NCCLCommunicator(_HostComm(), device=0)
    comm.comm.fail = True
    with pytest.raises(dist.CommunicationError, match="NCCL allReduce failed on rank 1 of 2: NCCL_ERROR_REMOTE_ERROR"):
        comm.all_reduce_sum(_FakeDeviceArray(4, np.float32))
    assert comm.comm.aborted
    comm.comm.fail, comm.comm.aborted = "unknown code", False
    with pytest.raises(dist.CommunicationError, match="NCCL allReduce failed"):
        comm.all_reduce_sum(_FakeDeviceArray(4, np.float32))
    assert comm.comm.aborted


def test_nccl_barrier_polls_the_gpu_work_and_aborts_on_an_async_error(monkeypatch):
    """barrier waits on an event, checking NCCL's asynchronous error between naps: a peer's failure
    aborts the communicator instead of blocking in a stream synchronize."""
    from xpgrad.distributed.nccl_comm import NCCLCommunicator

    _fake_nccl_cupy(monkeypatch)
    host = _HostComm()
    comm = NCCLCommunicator(host, device=0)
    stream = sys.modules["cupy"].cuda.get_current_stream()  # the fake's
    stream.polls = 3
    comm.barrier()
    assert host.barriers == 1 and not comm.comm.aborted
    comm.comm.async_error = _FakeNcclError("NCCL_ERROR_REMOTE_ERROR")
    with pytest.raises(dist.CommunicationError, match="NCCL barrier failed on rank 1 of 2: NCCL_ERROR_REMOTE_ERROR"):
        comm.barrier()
    assert comm.comm.aborted and host.barriers == 1  # the MPI barrier is never reached
