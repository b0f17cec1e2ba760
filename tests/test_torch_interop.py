"""MLP weights between xpgrad and PyTorch: same logits from the same weights both ways (against real torch
when it is installed; the [test] extra installs it), through state dicts and .safetensors files, and errors
naming the tensor for a different architecture, a truncated file or a wrong shape (these need no torch)."""

import numpy as np
import pytest
import safetensors.numpy

import xpgrad as xg
from xpgrad import nn
from xpgrad.safetensors_io import SafetensorsFileError, write_safetensors
from xpgrad.torch_interop import TorchStateDictError

try:
    import torch
except ImportError:  # the [test] extra installs torch==2.13.0; elsewhere these comparisons skip
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")

TORCH_ACTIVATIONS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "elu": "ELU", "leaky_relu": "LeakyReLU"}


def torch_mlp(sizes, activation="relu", dropout=0.0, dtype=None, seed=0):
    """nn.Sequential(Linear, act, [Dropout], ..., Linear) with torch's own random initialisation."""
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(getattr(torch.nn, TORCH_ACTIVATIONS[activation])())
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers).eval()


def inputs(n, features, dtype="float32", seed=1):
    return np.random.default_rng(seed).standard_normal((n, features)).astype(dtype)


@needs_torch
@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATIONS))
def test_torch_weights_give_the_same_logits_in_xpgrad(activation):
    net = torch_mlp([64, 32, 16, 10], activation)
    model = nn.MLP.from_torch_state_dict(net.state_dict(), activation=activation)
    assert model.sizes == [64, 32, 16, 10] and model.activation == activation
    np.testing.assert_array_equal(model[0].weight.numpy(), net[0].weight.detach().numpy().T)  # (out, in) -> (in, out)
    x = inputs(50, 64)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = model(xg.tensor(x)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got.argmax(1) == expected.argmax(1)).all()


@needs_torch
def test_float64_torch_weights_match_to_rounding():
    net = torch_mlp([8, 5, 3], "tanh", dtype=torch.float64)
    model = nn.MLP.from_torch_state_dict(net.state_dict(), activation="tanh")
    x = inputs(7, 8, "float64")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(xg.tensor(x)).numpy(), expected, rtol=1e-13, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("standardize", [False, True])
def test_xpgrad_weights_give_the_same_logits_in_torch(standardize):
    xg.manual_seed(3)
    x = inputs(40, 64, seed=5) * 3 + 1
    model = nn.MLP([64, 32, 10], activation="sigmoid", dropout=0.2, standardize=standardize)
    if standardize:
        model.fit_standardizer(x)
    model.eval()
    net = torch_mlp([64, 32, 10], "sigmoid", dropout=0.2)
    state = model.to_torch_state_dict()
    assert sorted(state) == sorted(net.state_dict())  # the keys of the same torch Sequential: 0.*, 3.*
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # strict: every key, every shape
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(xg.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


@needs_torch
def test_round_trip_through_safetensors_files(tmp_path):
    import safetensors.torch

    net = torch_mlp([64, 20, 10], "relu")
    torch_file = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(net.state_dict(), str(torch_file))  # what a PyTorch user has
    model = nn.MLP.from_torch_state_dict(torch_file)  # the path works as well as the dict
    back = tmp_path / "back.safetensors"
    write_safetensors(back, model.to_torch_state_dict())
    net2 = torch_mlp([64, 20, 10], "relu", seed=9)
    net2.load_state_dict(safetensors.torch.load_file(str(back)))  # PyTorch reads what xpgrad wrote
    for (name, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), name  # exact: transposes only
    x = torch.from_numpy(inputs(9, 64))
    with torch.no_grad():
        np.testing.assert_array_equal(net2(x).numpy(), net(x).numpy())


@needs_torch
def test_prefix_of_a_module_holding_the_sequential():
    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_mlp([6, 4, 2])

        def forward(self, x):
            return self.net(x)

    clf = Classifier().eval()
    model = nn.MLP.from_torch_state_dict(clf.state_dict(), prefix="net.")
    x = inputs(3, 6)
    with torch.no_grad():
        np.testing.assert_allclose(model(xg.tensor(x)).numpy(), clf(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-6)
    assert sorted(model.to_torch_state_dict(prefix="net.")) == sorted(clf.state_dict())


# ---- errors: plain NumPy state dicts, no torch needed -------------------------------------------------------


def numpy_state(sizes=(4, 3, 2), bias=True, dtype="float32"):
    rng = np.random.default_rng(0)
    state = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        state[f"{2 * i}.weight"] = rng.standard_normal((n_out, n_in)).astype(dtype)
        if bias:
            state[f"{2 * i}.bias"] = rng.standard_normal(n_out).astype(dtype)
    return state


def test_numpy_state_dict_maps_layer_by_layer():
    state = numpy_state((4, 3, 2), dtype="float64")
    model = nn.MLP.from_torch_state_dict(state, activation="tanh")
    x = inputs(5, 4, "float64")
    expected = np.tanh(x @ state["0.weight"].T + state["0.bias"]) @ state["2.weight"].T + state["2.bias"]
    np.testing.assert_allclose(model(xg.tensor(x)).numpy(), expected, rtol=1e-12)
    back = model.to_torch_state_dict()
    assert sorted(back) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], value)
    no_bias = nn.MLP.from_torch_state_dict(numpy_state(bias=False))
    assert not no_bias.has_bias and sorted(no_bias.to_torch_state_dict()) == ["0.weight", "2.weight"]


def test_different_architecture_names_the_tensor():
    state = numpy_state((4, 3, 2))
    with pytest.raises(
        TorchStateDictError,
        match=r"tensor '0.weight' has shape \(3, 4\), but sizes \[4, 5, 2\] "
        r"need \(5, 4\)",
    ):
        nn.MLP.from_torch_state_dict(state, sizes=[4, 5, 2])
    with pytest.raises(TorchStateDictError, match=r"holds 2 nn.Linear layers \('0.weight', '2.weight'\), but sizes"):
        nn.MLP.from_torch_state_dict(state, sizes=[4, 3, 3, 2])
    conv = {"0.weight": np.zeros((8, 1, 3, 3), np.float32), "0.bias": np.zeros(8, np.float32)}
    with pytest.raises(
        TorchStateDictError,
        match=r"tensor '0.weight' has shape \(8, 1, 3, 3\); an nn.Linear weight "
        r"is 2-D",
    ):
        nn.MLP.from_torch_state_dict(conv)
    batchnorm = {**state, "1.running_mean": np.zeros(3, np.float32)}
    with pytest.raises(TorchStateDictError, match="tensor '1.running_mean' is not the weight or bias of an nn.Linear"):
        nn.MLP.from_torch_state_dict(batchnorm)
    with pytest.raises(TorchStateDictError, match="tensor 'net.0.weight'.*prefix='net.'"):
        nn.MLP.from_torch_state_dict({f"net.{k}": v for k, v in state.items()})


def test_wrong_shaped_tensor_names_it():
    state = numpy_state((4, 3, 2))
    state["2.weight"] = np.zeros((2, 5), np.float32)
    with pytest.raises(
        TorchStateDictError,
        match=r"tensor '2.weight' has shape \(2, 5\): it takes 5 inputs, but the "
        r"layer before \('0.weight', shape \(3, 4\)\) gives 3",
    ):
        nn.MLP.from_torch_state_dict(state)
    state = numpy_state((4, 3, 2))
    state["0.bias"] = np.zeros(4, np.float32)
    with pytest.raises(
        TorchStateDictError,
        match=r"tensor '0.bias' has shape \(4,\), but '0.weight' \(shape \(3, 4\)\) "
        r"needs \(3,\)",
    ):
        nn.MLP.from_torch_state_dict(state)
    state = numpy_state((4, 3, 2))
    del state["2.bias"]
    with pytest.raises(TorchStateDictError, match="tensor '2.bias' is missing while '0.bias' is present"):
        nn.MLP.from_torch_state_dict(state)
    state = numpy_state((4, 3, 2))
    state["0.weight"] = state["0.weight"].astype(np.int64)
    with pytest.raises(TorchStateDictError, match="tensor '0.weight' has dtype int64"):
        nn.MLP.from_torch_state_dict(state)


def test_truncated_torch_file_names_the_tensor(tmp_path):
    path = tmp_path / "torch.safetensors"
    safetensors.numpy.save_file(numpy_state((4, 3, 2)), str(path))
    path.write_bytes(path.read_bytes()[:-10])  # the last tensor in the file loses its end
    with pytest.raises(SafetensorsFileError, match=r"is truncated: tensor '2.weight' \(shape \(2, 3\), F32\)"):
        nn.MLP.from_torch_state_dict(path)
