"""xpgrad.checkpoint: round trips, resuming, failure cases with specific errors, and atomic saves, in .npz and
.safetensors."""

import json
import os
import struct
import zipfile

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.checkpoint import (
    HEADER_KEY,
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    restore_model,
    restore_optimizer,
    save_checkpoint,
)
from xpgrad.cli import main
from xpgrad.data import DataLoader, load_dataset
from xpgrad.errors import XpgradError
from xpgrad.safetensors_io import (
    SafetensorsFileError,
    SafetensorsFileNotFoundError,
    read_safetensors,
    write_safetensors,
)
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


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_resume_from_checkpoint_equals_uninterrupted_training(digits, tmp_path, suffix):
    loss = make_loss("softmax-ce", 10)
    model, opt, loader = _setup(digits)
    straight = fit(model, opt, loss, loader, 4)
    expected = model.state_dict()

    model, opt, loader = _setup(digits)
    first = fit(model, opt, loss, loader, 2)
    save_checkpoint(tmp_path / f"half{suffix}", model, opt, extra={"epoch": 2, "rng": first.rng_state})
    xg.manual_seed(12345)  # disturb every generator before resuming

    ck = load_checkpoint(tmp_path / f"half{suffix}")
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
    data[middle : middle + 8] = b"\xff" * 8
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


# ---- .safetensors checkpoints: the layout (tensors + JSON metadata), the CLI's --save/--load by suffix, errors
# that name the tensor (truncated file, other architecture, wrong shape), atomic saves --------------------------


def test_layout_tensors_and_json_metadata(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, extra={"epoch": 3, "note": "hi"})
    with safetensors.safe_open(str(path), framework="np") as f:  # the file is plain safetensors
        metadata = f.metadata()
        keys = set(f.keys())
        weight = f.get_tensor("param/1.weight")
    assert {"param/0.mean", "param/1.weight", "param/1.bias", "optim/0.m", "optim/0.v"} <= keys
    np.testing.assert_array_equal(weight, model.state_dict()["1.weight"])
    assert set(metadata) == {"format", "version", "model", "optimizer", "extra"}
    assert json.loads(metadata["format"]) == "xpgrad-checkpoint" and json.loads(metadata["version"]) == 1
    assert json.loads(metadata["model"]) == model.config()
    assert json.loads(metadata["extra"]) == {"epoch": 3, "note": "hi"}
    saved_opt = json.loads(metadata["optimizer"])
    assert saved_opt["type"] == "Adam" and saved_opt["steps"] == [3] * len(opt.params)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]  # no pickle anywhere: a JSON header, then bytes
    json.loads(path.read_bytes()[8 : 8 + header_len])

    ck = load_checkpoint(path)
    rebuilt = ck.build_model()
    opt2 = optim.Adam(rebuilt.parameters(), lr=1e-2)
    restore_optimizer(opt2, ck)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(rebuilt.state_dict()[name], value, err_msg=name)
    for st, st2 in zip(opt.state, opt2.state):
        assert st["step"] == st2["step"] == 3
        np.testing.assert_array_equal(st["m"], st2["m"])


def test_npz_and_safetensors_hold_the_same_checkpoint(tmp_path):
    model, opt = trained()
    a = load_checkpoint(save_checkpoint(tmp_path / "ck.npz", model, opt, extra={"epoch": 1}))
    b = load_checkpoint(save_checkpoint(tmp_path / "ck.safetensors", model, opt, extra={"epoch": 1}))
    assert a.model_config == b.model_config and a.extra == b.extra
    assert {k: v for k, v in a.optimizer.items() if k != "buffers"} == {
        k: v for k, v in b.optimizer.items() if k != "buffers"
    }
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    for name in a.optimizer["buffers"]:
        np.testing.assert_array_equal(a.optimizer["buffers"][name], b.optimizer["buffers"][name])
    assert (tmp_path / "ck.npz").read_bytes()[:2] == b"PK" and (tmp_path / "ck.safetensors").read_bytes()[:2] != b"PK"


def test_cli_saves_and_resumes_by_suffix(tmp_path, capsys):
    common = ["train", "--hidden", "16", "--batch-size", "64", "--quiet", "--optimizer", "sgd", "--seed", "2"]
    assert main([*common, "--epochs", "2", "--metrics-json", str(tmp_path / "a.json")]) == 0
    ck = tmp_path / "run.safetensors"
    assert main([*common, "--epochs", "1", "--save", str(ck)]) == 0
    assert ck.read_bytes()[:2] != b"PK" and load_checkpoint(ck).extra["epoch"] == 1
    assert (
        main(["train", "--epochs", "2", "--load", str(ck), "--quiet", "--metrics-json", str(tmp_path / "b.json")]) == 0
    )
    assert main(["eval", "--load", str(ck)]) == 0

    def losses(name):
        return [e["train_loss"] for e in json.loads((tmp_path / name).read_text())["per_epoch"]]

    assert losses("b.json") == losses("a.json")
    capsys.readouterr()


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_names_the_first_tensor_cut_off(tmp_path, keep):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt)
    data = path.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    cut = 8 + header_len + int((len(data) - 8 - header_len) * keep)  # inside the tensor bytes
    path.write_bytes(data[:cut])
    header = json.loads(data[8 : 8 + header_len])
    first_cut = min(
        (info["data_offsets"][1], name)
        for name, info in header.items()
        if name != "__metadata__" and info["data_offsets"][1] > cut - 8 - header_len
    )[1]
    with pytest.raises(CheckpointError, match=f"is truncated: tensor '{first_cut}'"):
        load_checkpoint(path)


@pytest.mark.parametrize("size", [0, 5, 40])
def test_file_cut_inside_the_header(tmp_path, size):
    model, _ = trained()
    path = save_checkpoint(tmp_path / "ck.safetensors", model)
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(CheckpointError, match="not a .safetensors file|truncated"):
        load_checkpoint(path)


def test_other_architecture_names_the_tensor(tmp_path):
    model, opt = trained(sizes=(64, 32, 10))
    ck = load_checkpoint(save_checkpoint(tmp_path / "ck.safetensors", model, opt))
    other = nn.MLP([64, 16, 10], standardize=True)
    with pytest.raises(
        CheckpointError,
        match=r"different architecture.*tensor '1.weight' has shape \(64, 32\) in "
        r"the checkpoint but \(64, 16\) in the model",
    ):
        restore_model(other, ck)


def test_wrong_shaped_tensor_names_it(tmp_path):
    model, _ = trained()
    path = save_checkpoint(tmp_path / "ck.safetensors", model)
    arrays, metadata = read_safetensors(path)
    arrays["param/4.bias"] = np.zeros(9, dtype=np.float32)  # the config still says 10 classes
    write_safetensors(path, arrays, metadata)
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"4.bias has shape \(9,\) in the state but \(10,\) in the model"):
        ck.build_model()


def test_plain_weights_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "torch.safetensors"
    safetensors.numpy.save_file({"0.weight": np.zeros((3, 2), dtype=np.float32)}, str(path))
    with pytest.raises(CheckpointError, match="not an xpgrad checkpoint.*from_torch_state_dict"):
        load_checkpoint(path)
    bad = tmp_path / "bad.safetensors"
    safetensors.numpy.save_file({"a": np.zeros(2)}, str(bad), metadata={"format": "{not json"})
    with pytest.raises(CheckpointError, match="metadata field 'format' is not JSON"):
        load_checkpoint(bad)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_leaves_the_previous_file(tmp_path, monkeypatch, failing):
    model, opt = trained(seed=0)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt)
    before = path.read_bytes()
    newer, newer_opt = trained(seed=1)

    def fail(*args):
        raise KeyboardInterrupt  # after the new bytes reached the temporary file

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, newer, newer_opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]  # the temporary file is gone


def test_write_safetensors_refuses_non_numbers_and_reads_report_missing_files(tmp_path):
    with pytest.raises(SafetensorsFileError, match="tensor 'names' has dtype <U3"):
        write_safetensors(tmp_path / "x.safetensors", {"names": np.array(["abc"])})
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SafetensorsFileNotFoundError, match="does not exist") as info:
        read_safetensors(tmp_path / "missing.safetensors")
    assert isinstance(info.value, FileNotFoundError)
