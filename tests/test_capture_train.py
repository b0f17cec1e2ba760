"""`xpgrad train --capture` and `fit(capture=True)`: the same training, bit for bit, as eager."""

import json

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.cli import main
from xpgrad.data import ArrayDataset, DataLoader
from xpgrad.train import fit


def _epochs(path):
    data = json.loads(path.read_text())
    return [(e["train_loss"], e["val_accuracy"], e["test_accuracy"]) for e in data["per_epoch"]]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_train_capture_matches_eager(tmp_path, optimizer):
    common = [
        "train",
        "--hidden",
        "32",
        "--batch-size",
        "64",
        "--quiet",
        "--dropout",
        "0.1",
        "--epochs",
        "3",
        "--optimizer",
        optimizer,
    ]
    assert main([*common, "--metrics-json", str(tmp_path / "eager.json")]) == 0
    assert main([*common, "--capture", "--metrics-json", str(tmp_path / "captured.json")]) == 0
    eager, captured = _epochs(tmp_path / "eager.json"), _epochs(tmp_path / "captured.json")
    assert len(eager) == 3 and eager == captured


def test_fit_capture_replays_and_matches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 6)).astype(np.float32)
    y = rng.integers(0, 3, 100)
    results = []
    for capture in (False, True):
        xg.manual_seed(0)
        model = nn.MLP([6, 10, 3], dropout=0.2)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loader = DataLoader(ArrayDataset(x, y), 16, shuffle=True, seed=0)
        result = fit(model, opt, xg.softmax_cross_entropy, loader, 3, capture=capture)
        results.append(([r.train_loss for r in result.history], [p.data.copy() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)
