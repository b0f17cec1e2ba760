"""Backend choice (XPGRAD_BACKEND / set_backend), devices, and tensor creation."""

import os
import subprocess
import sys

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import backend


def run_python(code: str, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_default_backend_is_numpy():
    with xg.use_backend("numpy"):
        t = xg.tensor([1.0, 2.0])
    assert type(t.data) is np.ndarray and t.device == "cpu" and t.dtype == np.float32


def test_env_var_picks_array_api_strict():
    out = run_python(
        "import xpgrad as xg; t = xg.tensor([1.0]); print(type(t.data).__module__, xg.get_backend().name)",
        XPGRAD_BACKEND="array_api_strict",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["array_api_strict._array_object", "array_api_strict"]


def test_env_var_unknown_value_names_it_and_the_choices():
    out = run_python("import xpgrad as xg; xg.tensor([1.0])", XPGRAD_BACKEND="tensorflw")
    assert out.returncode != 0
    assert "UnknownBackendError: unknown backend 'tensorflw': expected one of numpy, cupy, auto" in out.stderr


@pytest.mark.parametrize("name", ["nope", "os", "", "numpy; rm"])
def test_set_backend_rejects_unknown_names(name):
    with pytest.raises(xg.UnknownBackendError, match=repr(name).replace("(", r"\(").replace(";", ";")):
        xg.set_backend(name)
    assert xg.get_backend().name in ("numpy", "array_api_strict")


def test_cupy_backend_without_cupy_or_gpu_says_which_and_how_to_install():
    if xg.cupy_gpu_available():
        pytest.skip("a usable GPU is present: the cupy backend works here")
    with pytest.raises((xg.CupyNotInstalledError, xg.NoGPUError)) as info:
        xg.set_backend("cupy")
    message = str(info.value)
    try:
        import cupy  # noqa: F401

        assert "no usable CUDA GPU" in message
    except ImportError:
        assert "CuPy is not installed" in message and 'pip install "xpgrad[cuda13]"' in message
    with pytest.raises(xg.BackendError):
        xg.tensor([1.0], device="cuda")


def test_auto_backend_falls_back_to_numpy_without_gpu():
    if xg.cupy_gpu_available():
        pytest.skip("a usable GPU is present: auto picks cupy here")
    with xg.use_backend("auto") as chosen:
        assert chosen.name == "numpy"


def test_mixing_libraries_in_one_op_raises_naming_op_and_both_places():
    a = xg.tensor([1.0, 2.0])
    with xg.use_backend("array_api_strict"):
        b = xg.tensor([1.0, 2.0])
    for op, fn in [
        ("add", lambda: a + b),
        ("mul", lambda: b * a),
        ("matmul", lambda: a @ b),
        ("concat", lambda: xg.concat([a, b])),
    ]:
        with pytest.raises(
            xg.DeviceMismatchError,
            match=rf"{op}: operands live on different devices: "
            r"(numpy:cpu and array_api_strict:.*|array_api_strict:.* and numpy:cpu)",
        ):
            fn()


def test_to_cpu_is_a_no_op_and_unknown_device_raises():
    t = xg.tensor([1.0], requires_grad=True)
    assert t.to("cpu") is t
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        t.to("tpu")


def test_namespace_lookup_is_cached_by_type():
    backend.namespace_of(np.zeros(1))
    assert np.ndarray in backend._namespaces
    with xg.use_backend("array_api_strict"):
        t = xg.tensor([1.0])
    backend.namespace_of(t.data)
    assert type(t.data) in backend._namespaces


@pytest.mark.parametrize(
    "data,dtype",
    [([1.0, 2.0], np.float32), (3.0, np.float32), ([1, 2], np.int64), (7, np.int64), ([True, False], np.bool_)],
)
def test_tensor_default_dtypes(data, dtype):
    assert xg.tensor(data).dtype == dtype


def test_arrays_keep_their_dtype_and_are_copied():
    arr = np.arange(3, dtype=np.float64)
    t = xg.tensor(arr)
    assert t.dtype == np.float64
    arr[0] = 42
    assert t.numpy()[0] == 0
    assert xg.tensor(arr, dtype="float32").dtype == np.float32


def test_creation_functions():
    assert xg.zeros(2, 3).shape == (2, 3) and xg.zeros((2, 3)).numpy().sum() == 0
    assert xg.ones(4).numpy().tolist() == [1.0] * 4
    assert xg.full((2,), 7.5).tolist() == [7.5, 7.5]
    x = xg.tensor([[1.0, 2.0]], dtype="float64")
    assert xg.zeros_like(x).dtype == np.float64 and xg.ones_like(x).tolist() == [[1.0, 1.0]]
    assert xg.arange(4).tolist() == [0, 1, 2, 3] and xg.arange(4).dtype == np.int64
    assert xg.arange(0.0, 1.0, 0.5).dtype == np.float32
    assert xg.randn(3, 2).dtype == np.float32 and xg.rand(5).numpy().min() >= 0


def test_manual_seed_makes_random_tensors_reproducible():
    xg.manual_seed(123)
    a = xg.randn(4).numpy().copy()
    xg.manual_seed(123)
    b = xg.randn(4).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, xg.randn(4).numpy())


def test_conversions():
    t = xg.tensor([[1.5, 2.5]], requires_grad=True)
    assert np.asarray(t).tolist() == [[1.5, 2.5]]
    assert t.tolist() == [[1.5, 2.5]] and t.shape == (1, 2) and t.ndim == 2
    assert t[0, 1].item() == 2.5 and isinstance(t[0, 1].item(), float)
    with pytest.raises(ValueError, match=r"item: only one-element tensors .* shape \(1, 2\)"):
        t.item()
    d = t.detach()
    assert d.is_leaf and not d.requires_grad and d.data is t.data


def test_ops_on_array_api_strict_stay_there():
    with xg.use_backend("array_api_strict"):
        x = xg.tensor([[1.0, -2.0]], requires_grad=True)
    y = xg.relu(x).sum()
    y.backward()
    assert type(x.grad.data).__module__.startswith("array_api_strict")
    assert x.grad.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize(
    "name, meant", [("torch", "array_api_compat.torch"), ("cuda", "cupy"), ("gpu", "cupy"), ("cuda:0", "cupy")]
)
def test_backend_names_newcomers_try_suggest_the_one_they_mean(name, meant):
    with pytest.raises(xg.UnknownBackendError) as info:
        xg.set_backend(name)
    assert f"did you mean {meant!r}?" in str(info.value)


def test_new_gpu_data_goes_to_the_current_gpu(monkeypatch):
    """Plain "cuda" and no device mean CuPy's current GPU, the one each rank made its own under
    mpiexec; GPU 0 there put every rank's tensors on GPU 0 (its NCCL communicator on another)."""
    import types

    from xpgrad import creation

    asked = []
    cuda = types.SimpleNamespace(Device=lambda device=None: asked.append(device))
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    assert backend.parse_device("cuda") == ("cuda", None) and backend.parse_device("cuda:1") == ("cuda", 1)
    creation._cupy_device(None)
    creation._cupy_device(2)
    assert asked == [None, 2]
