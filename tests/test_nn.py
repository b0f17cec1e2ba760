"""xpgrad.nn: registration, state dicts, init, Dropout, MLP, and a short training run on digits."""

import math

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.data import DataLoader, load_dataset
from xpgrad.errors import XpgradError
from xpgrad.train import accuracy, fit, make_loss


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.Tanh()
        self.head = nn.Sequential(nn.Linear(3, 2, bias=False))
        self.scale = xg.tensor([2.0], requires_grad=True)
        self.note = "not registered"
        self.constant = xg.tensor([1.0])  # no requires_grad: a plain attribute

    def forward(self, x):
        return self.head(self.act(self.fc1(x))) * self.scale


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_registration_names_and_order():
    xg.manual_seed(0)
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "head.0.weight"]
    assert [type(p) for p in net.parameters()] == [xg.Tensor] * 4  # plain Tensors, no subclass
    assert all(p.requires_grad and p.is_leaf for p in net.parameters())
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "act", "head", "head.0"]
    assert net.num_parameters() == 1 + 4 * 3 + 3 + 3 * 2


def test_reassigning_and_deleting_updates_the_registry():
    net = Net()
    net.fc1 = "replaced"
    assert "fc1.weight" not in dict(net.named_parameters())
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    net.extra = nn.Linear(2, 2)
    assert "extra.weight" in dict(net.named_parameters())


def test_shared_parameter_listed_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(seq.parameters()) == 2


def test_non_leaf_parameter_is_rejected():
    m = nn.Module()
    with pytest.raises(ValueError, match="leaf tensor.*mul"):
        m.w = xg.randn(2, 2, requires_grad=True) * 0.1


def test_assignment_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_state_dict_round_trip_and_independence():
    xg.manual_seed(1)
    a = Net()
    xg.manual_seed(2)
    b = Net()
    state = a.state_dict()
    assert set(state) == {"scale", "fc1.weight", "fc1.bias", "head.0.weight"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert not np.array_equal(state["fc1.weight"], b.fc1.weight.numpy())
    b.load_state_dict(state)
    for name, p in b.named_parameters():
        np.testing.assert_array_equal(p.numpy(), state[name])
    state["fc1.weight"][0, 0] += 100.0  # the state dict is a copy; the model keeps its own data
    assert a.fc1.weight.numpy()[0, 0] != state["fc1.weight"][0, 0]
    assert b.fc1.weight.numpy()[0, 0] != state["fc1.weight"][0, 0]
    x = xg.randn(5, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_errors_name_the_problem_and_change_nothing():
    net = Net()
    before = net.state_dict()
    bad = dict(before)
    bad["fc1.weight"] = np.zeros((5, 3), np.float32)
    with pytest.raises(nn.StateDictError, match=r"fc1\.weight has shape \(5, 3\) in the state but \(4, 3\)"):
        net.load_state_dict(bad)
    missing = {k: v for k, v in before.items() if k != "fc1.bias"}
    with pytest.raises(nn.StateDictError, match="missing 'fc1.bias'"):
        net.load_state_dict(missing)
    with pytest.raises(nn.StateDictError, match="unexpected 'other'"):
        net.load_state_dict({**before, "other": np.zeros(1)})
    err = nn.StateDictError("x")
    assert isinstance(err, XpgradError) and isinstance(err, ValueError)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    net.load_state_dict(missing, strict=False)  # non-strict: loads what is there


def test_linear_shapes_init_and_forward():
    xg.manual_seed(0)
    lin = nn.Linear(200, 300, init="he")
    assert lin.weight.shape == (200, 300) and lin.bias.shape == (300,)
    assert lin.weight.dtype == np.float32
    assert np.all(lin.bias.numpy() == 0)
    assert np.std(lin.weight.numpy()) == pytest.approx(math.sqrt(2 / 200), rel=0.03)
    xav = nn.Linear(200, 300, init="xavier")
    assert np.std(xav.weight.numpy()) == pytest.approx(math.sqrt(1 / 200), rel=0.03)
    x = xg.randn(7, 200)
    y = lin(x)
    assert y._node.name == "linear"  # one xg.linear node
    np.testing.assert_allclose(y.numpy(), x.numpy() @ lin.weight.numpy(), rtol=1e-5, atol=1e-5)
    assert nn.Linear(3, 2, bias=False).bias is None
    with pytest.raises(ValueError, match="unknown init 'lecun'"):
        nn.Linear(3, 2, init="lecun")
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        nn.Linear(0, 2)


def test_init_is_seeded():
    xg.manual_seed(5)
    a = nn.Linear(4, 4).weight.numpy()
    xg.manual_seed(5)
    b = nn.Linear(4, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "activation, std", [("relu", 2.0), ("elu", 2.0), ("leaky-relu", 2.0), ("sigmoid", 1.0), ("tanh", 1.0)]
)
def test_mlp_picks_init_by_activation(activation, std):
    xg.manual_seed(0)
    mlp = nn.MLP([400, 300, 10], activation=activation)
    assert np.std(mlp[0].weight.numpy()) == pytest.approx(math.sqrt(std / 400), rel=0.03)


def test_mlp_structure_and_config_round_trip():
    xg.manual_seed(0)
    mlp = nn.MLP([8, 16, 16, 3], activation="tanh", dropout=0.25, standardize=True)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Standardize", "Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    config = mlp.config()
    assert config == {
        "type": "MLP",
        "sizes": [8, 16, 16, 3],
        "activation": "tanh",
        "dropout": 0.25,
        "init": "auto",
        "bias": True,
        "standardize": True,
    }
    rebuilt = nn.from_config(config)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in mlp.named_parameters()]
    assert set(mlp.state_dict()) == {
        "0.mean",
        "0.scale",
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
        "7.weight",
        "7.bias",
    }
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.MLP([2, 2], activation="swish")
    with pytest.raises(ValueError, match="at least"):
        nn.MLP([2])


def test_standardize_buffers_fit_and_state():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    x[:, 3] = 1.0  # a constant feature stays finite thanks to the floor
    mlp = nn.MLP([4, 3], standardize=True).fit_standardizer(x)
    z = mlp[0](xg.tensor(x)).numpy()
    np.testing.assert_allclose(z[:, :3].mean(axis=0), 0, atol=1e-4)
    sd = x[:, :3].astype(np.float64).std(axis=0)
    np.testing.assert_allclose(z[:, :3].std(axis=0), sd / (sd + 0.1), rtol=1e-4)
    np.testing.assert_array_equal(z[:, 3], 0)
    assert [n for n, _ in mlp.named_parameters()] == ["1.weight", "1.bias"]  # buffers are not trained
    fresh = nn.MLP([4, 3], standardize=True)
    fresh.load_state_dict(mlp.state_dict())
    np.testing.assert_array_equal(fresh[0].mean.numpy(), mlp[0].mean.numpy())
    with pytest.raises(ValueError, match="standardize=False"):
        nn.MLP([4, 3]).fit_standardizer(x)


def test_activation_modules_match_functions():
    x = xg.tensor([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    for module, fn in [
        (nn.ReLU(), xg.relu),
        (nn.Sigmoid(), xg.sigmoid),
        (nn.Tanh(), xg.tanh),
        (nn.LeakyReLU(0.2), lambda t: xg.leaky_relu(t, 0.2)),
        (nn.ELU(0.5), lambda t: xg.elu(t, 0.5)),
    ]:
        np.testing.assert_array_equal(module(x).numpy(), fn(x).numpy())


def test_sequential_follows_changes_after_a_forward():
    """The fused-layer plan is cached, so swapping or deleting a layer must rebuild it."""
    x = xg.tensor(np.random.default_rng(0).standard_normal((4, 3)), dtype="float64")
    model = nn.Sequential(nn.Linear(3, 5, dtype="float64"), nn.ReLU(), nn.Linear(5, 2, dtype="float64"))
    before = model(x).numpy()
    W1, b1, W2, b2 = (p.data for p in model.parameters())
    assert np.allclose(before, np.maximum(x.data @ W1 + b1, 0) @ W2 + b2)
    setattr(model, "1", nn.Sigmoid())  # ReLU -> Sigmoid: the fused activation must change
    assert np.allclose(model(x).numpy(), (1 / (1 + np.exp(-(x.data @ W1 + b1)))) @ W2 + b2)
    setattr(model, "1", nn.Identity())  # no longer fusable: Linear then Identity then Linear
    assert np.allclose(model(x).numpy(), (x.data @ W1 + b1) @ W2 + b2)


def test_dropout_train_and_eval():
    xg.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = xg.ones(400, 500)
    y = drop(x).numpy()
    kept = y != 0
    assert 0.73 < kept.mean() < 0.77
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # inverted dropout
    drop.eval()
    assert drop(x) is x
    xg.manual_seed(0)
    np.testing.assert_array_equal(nn.Dropout(0.25)(x).numpy(), y)  # masks come from the seeded host generator
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nn.Dropout(1.0)


def test_dropout_gradient_uses_the_same_mask():
    xg.manual_seed(3)
    x = xg.ones(6, 7, requires_grad=True)
    y = nn.Dropout(0.5)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())


def test_train_eval_propagate_and_zero_grad():
    mlp = nn.MLP([3, 4, 2], dropout=0.5)
    mlp.eval()
    assert all(not m.training for _, m in mlp.named_modules())
    mlp.train()
    assert all(m.training for _, m in mlp.named_modules())
    mlp(xg.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in mlp.parameters())
    mlp.zero_grad()
    assert all(p.grad is None for p in mlp.parameters())


def test_to_cpu_keeps_tensor_identity():
    mlp = nn.MLP([3, 4, 2])
    params = mlp.parameters()
    assert mlp.to("cpu") is mlp
    assert all(a is b for a, b in zip(params, mlp.parameters()))
    with pytest.raises(ValueError, match="unknown device"):
        mlp.to("tpu")


def test_works_on_array_api_strict_backend():
    pytest.importorskip("array_api_strict")
    with xg.use_backend("array_api_strict"):
        xg.manual_seed(0)
        mlp = nn.MLP([3, 5, 2], standardize=True)
        mlp.fit_standardizer(np.random.default_rng(0).random((10, 3)))
        opt = optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
        x, y = xg.randn(4, 3), xg.tensor(np.array([0, 1, 1, 0]))
        before = mlp.state_dict()
        xg.softmax_cross_entropy(mlp(x), y).backward()
        opt.step()
        after = mlp.state_dict()
        assert type(mlp[1].weight.data).__module__.startswith("array_api_strict")
        assert not np.array_equal(before["1.weight"], after["1.weight"])
        mlp.load_state_dict(before)
        np.testing.assert_array_equal(mlp.state_dict()["1.weight"], before["1.weight"])


def _short_run(digits, seed, epochs=2, loss="softmax-ce"):
    xg.manual_seed(seed)
    model = nn.MLP([digits.num_features, 64, digits.num_classes], standardize=True)
    model.fit_standardizer(digits.train.x)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(digits.train, 32, shuffle=True, seed=seed)
    result = fit(model, opt, make_loss(loss, digits.num_classes), loader, epochs, val=digits.val, test=digits.test)
    return model, result


def test_short_training_run_is_well_above_chance(digits):
    model, result = _short_run(digits, seed=0)
    assert [r.epoch for r in result.history] == [1, 2]
    assert result.history[1].train_loss < result.history[0].train_loss
    assert result.history[-1].test_accuracy > 0.8  # chance is 0.1
    assert accuracy(model, digits.test) == result.history[-1].test_accuracy


@pytest.mark.parametrize("loss", ["hinge", "mse"])
def test_other_losses_train(digits, loss):
    _, result = _short_run(digits, seed=0, epochs=2, loss=loss)
    assert result.history[-1].test_accuracy > 0.7


def test_same_seed_gives_identical_losses(digits):
    _, a = _short_run(digits, seed=7)
    _, b = _short_run(digits, seed=7)
    _, c = _short_run(digits, seed=8)
    losses = lambda r: [e.train_loss for e in r.history]  # noqa: E731
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)


def test_fit_trains_in_training_mode_even_after_eval(digits):
    xg.manual_seed(0)
    model = nn.MLP([digits.num_features, 16, digits.num_classes], dropout=0.5)
    model.eval()
    seen = []
    real_forward = model[2].forward
    model[2].forward = lambda x: (seen.append(model[2].training), real_forward(x))[1]
    opt = optim.SGD(model.parameters(), lr=0.01)
    fit(model, opt, make_loss("softmax-ce", 10), DataLoader(digits.train, 512), 1)
    assert model[2].training and seen[:3] == [True, True, True]


@pytest.mark.parametrize(
    "args, hint",
    [
        ((64, [32], 10), "MLP([64, 32, 10])"),
        ((64, 32, 10), "MLP([64, 32, 10])"),
        ((64,), "MLP([inputs, hidden..., outputs])"),
    ],
)
def test_mlp_sizes_given_as_separate_numbers_say_it_is_one_list(args, hint):
    with pytest.raises(TypeError) as info:
        xg.nn.MLP(*args)
    message = str(info.value)
    assert "sizes is one list" in message and hint in message and "not iterable" not in message
