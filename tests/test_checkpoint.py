"""xpgrad.checkpoint: round trips, resuming, failure cases with specific errors, and atomic saves."""
import json
import os
import zipfile

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.checkpoint import (
    HEADER_KEY, CheckpointError, CheckpointNotFoundError, load_checkpoint, restore_model, restore_optimizer,
    save_checkpoint,
)
from xpgrad.data import DataLoader, load_dataset
from xpgrad.errors import XpgradError
from xpgrad.train import fit, make_loss, set_rng_state


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def trained(seed=0, sizes=(64, 32, 10), steps=3):
    xg.manual_seed(seed)
    model = nn.MLP(list(sizes), dropout=0.1, standardize=True)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = xg.tensor(rng.random((8, sizes[0])))
        y = xg.tensor(rng.integers(0, sizes[-1], 8))
        loss = xg.softmax_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_round_trip_parameters_optimizer_and_header(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ck.npz", model, opt, extra={"epoch": 3, "note": "hi"})
    assert path == tmp_path / "ck.npz"
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only
        header = json.loads(str(raw[HEADER_KEY]))
        assert raw[HEADER_KEY].dtype.kind == "U"
        assert "param/1.weight" in raw.files and "optim/0.m" in raw.files
    assert header["format"] == "xpgrad-checkpoint" and header["model"] == model.config()
    assert header["optimizer"]["type"] == "Adam" and header["extra"] == {"epoch": 3, "note": "hi"}

    ck = load_checkpoint(path)
    rebuilt = ck.build_model()
    assert rebuilt.config() == model.config()
    for (name, a), (name_b, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert name == name_b
        np.testing.assert_array_equal(a, b)
    opt2 = optim.Adam(rebuilt.parameters(), lr=0.5)
    restore_optimizer(opt2, ck)
    assert opt2.lr == opt.lr
    for st, st2 in zip(opt.state, opt2.state):
        assert st["step"] == st2["step"] == 3
        np.testing.assert_array_equal(st["m"], st2["m"])
        np.testing.assert_array_equal(st["v"], st2["v"])
    x = xg.tensor(np.random.default_rng(9).random((4, 64)))
    model.eval()
    rebuilt.eval()
    np.testing.assert_array_equal(model(x).numpy(), rebuilt(x).numpy())


def _setup(digits, seed=3):
    xg.manual_seed(seed)
    model = nn.MLP([64, 32, 10], dropout=0.2, standardize=True).fit_standardizer(digits.train.x)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(digits.train, 64, shuffle=True, seed=seed)
    return model, opt, loader


def test_resume_from_checkpoint_equals_uninterrupted_training(digits, tmp_path):
    loss = make_loss("softmax-ce", 10)
    model, opt, loader = _setup(digits)
    straight = fit(model, opt, loss, loader, 4)
    expected = model.state_dict()

    model, opt, loader = _setup(digits)
    first = fit(model, opt, loss, loader, 2)
    save_checkpoint(tmp_path / "half.npz", model, opt, extra={"epoch": 2, "rng": first.rng_state})
    xg.manual_seed(12345)  # disturb every generator before resuming

    ck = load_checkpoint(tmp_path / "half.npz")
    model2 = ck.build_model()
    opt2 = optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    restore_optimizer(opt2, ck)
    loader2 = DataLoader(digits.train, 64, shuffle=True, seed=999)
    set_rng_state(loader2, ck.extra["rng"])
    resumed = fit(model2, opt2, loss, loader2, 4, start_epoch=ck.extra["epoch"])
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in straight.history[2:]]
    for name, value in model2.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_resume_without_restoring_optimizer_state_differs(digits, tmp_path):
    """The equality above depends on the optimizer state really being restored."""
    loss = make_loss("softmax-ce", 10)
    model, opt, loader = _setup(digits)
    fit(model, opt, loss, loader, 4)
    expected = model.state_dict()
    model, opt, loader = _setup(digits)
    first = fit(model, opt, loss, loader, 2)
    save_checkpoint(tmp_path / "half.npz", model, opt, extra={"rng": first.rng_state})
    ck = load_checkpoint(tmp_path / "half.npz")
    model2 = ck.build_model()
    opt2 = optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)  # fresh velocity
    loader2 = DataLoader(digits.train, 64, shuffle=True)
    set_rng_state(loader2, ck.extra["rng"])
    fit(model2, opt2, loss, loader2, 4, start_epoch=2)
    assert not np.array_equal(model2.state_dict()["1.weight"], expected["1.weight"])


def test_different_architecture_is_a_clear_error(tmp_path):
    model, opt = trained(sizes=(64, 32, 10))
    save_checkpoint(tmp_path / "ck.npz", model, opt)
    ck = load_checkpoint(tmp_path / "ck.npz")
    other = nn.MLP([64, 16, 10], standardize=True)
    before = other.state_dict()
    with pytest.raises(CheckpointError, match=r"different architecture: MLP sizes 64-32-10.*MLP sizes 64-16-10"):
        restore_model(other, ck)
    np.testing.assert_array_equal(other.state_dict()["1.weight"], before["1.weight"])
    plain = nn.Sequential(nn.Linear(64, 5))  # no config: the state dict comparison catches it
    with pytest.raises(CheckpointError, match="does not fit the model.*missing '0.weight'"):
        restore_model(plain, ck)
    with pytest.raises(CheckpointError, match="optimizer state does not fit.*'Adam'"):
        restore_optimizer(optim.SGD(model.parameters(), lr=0.1), ck)


def test_checkpoint_without_optimizer(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path / "m.npz", model)
    ck = load_checkpoint(tmp_path / "m.npz")
    assert ck.optimizer is None
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        restore_optimizer(optim.Adam(model.parameters()), ck)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nope.npz does not exist") as info:
        load_checkpoint(tmp_path / "nope.npz")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CheckpointError)
    assert isinstance(info.value, XpgradError) and isinstance(info.value, ValueError)
    with pytest.raises(CheckpointNotFoundError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 30])
def test_truncated_file(tmp_path, keep):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_corrupt_bytes_inside_the_archive(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param/1.weight.npy")
    middle = info.header_offset + 200  # inside that member's data
    data[middle:middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, weights=np.arange(3))
    with pytest.raises(CheckpointError, match="not an xpgrad checkpoint.*no '__xpgrad__' entry.*weights"):
        load_checkpoint(npz)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an .npz \\(zip\\) archive"):
        load_checkpoint(text)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_checkpoint(empty)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{HEADER_KEY: np.array(json.dumps({"format": "something-else"}))})
    with pytest.raises(CheckpointError, match="header has no format 'xpgrad-checkpoint'"):
        load_checkpoint(wrong)
    newer = tmp_path / "newer.npz"
    np.savez(newer, **{HEADER_KEY: np.array(json.dumps({"format": "xpgrad-checkpoint", "version": 99}))})
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(newer)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{HEADER_KEY: np.array([{"format": "xpgrad-checkpoint"}], dtype=object)})
    with pytest.raises(CheckpointError, match="corrupt"):  # never unpickled
        load_checkpoint(pickled)


def _assert_previous_intact(path, expected, folder):
    ck = load_checkpoint(path)
    for name, value in expected.items():
        np.testing.assert_array_equal(ck.params[name], value)
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left behind


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = trained(seed=0)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    expected = model.state_dict()
    newer, newer_opt = trained(seed=1)
    real_savez = np.savez

    def half_then_fail(file, **arrays):
        real_savez(file, **dict(list(arrays.items())[:2]))  # some bytes reach the temporary file
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, newer, newer_opt)
    _assert_previous_intact(path, expected, tmp_path)

    def interrupted(file, **arrays):
        file.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, newer, newer_opt)
    _assert_previous_intact(path, expected, tmp_path)


def test_failed_rename_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = trained(seed=0)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    expected = model.state_dict()
    newer, newer_opt = trained(seed=1)

    def failing_replace(src, dst):
        raise PermissionError("replace refused")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(PermissionError):
        save_checkpoint(path, newer, newer_opt)
    _assert_previous_intact(path, expected, tmp_path)
    monkeypatch.undo()
    save_checkpoint(path, newer, newer_opt)  # and a normal save does replace it
    np.testing.assert_array_equal(load_checkpoint(path).params["1.weight"], newer.state_dict()["1.weight"])
