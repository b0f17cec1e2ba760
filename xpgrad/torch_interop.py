"""Moving MLP weights between xpgrad and PyTorch, without importing torch.

PyTorch's ``nn.Linear`` keeps its weight as (out_features, in_features) and computes
``x @ W.T + b``; xpgrad's `Linear` keeps (in_features, out_features) and computes ``x @ W + b``.
An MLP is the same ``nn.Sequential`` list of layers on both sides, so the state-dict keys match:

    torch:  nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))    0.weight (32, 64), 0.bias, 2.weight ...
    xpgrad: xg.nn.MLP([64, 32, 10], activation="relu")                          0.weight (64, 32), 0.bias, 2.weight ...

    model = xg.nn.MLP.from_torch_state_dict(torch_model.state_dict())          # or a .safetensors path
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in model.to_torch_state_dict().items()})

A torch file written with ``safetensors.torch.save_file(torch_model.state_dict(), path)`` loads
with ``from_torch_state_dict(path)``; ``write_safetensors(path, model.to_torch_state_dict())``
(`xpgrad.safetensors_io`) writes one that ``safetensors.torch.load_file`` reads back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import XpgradError
from .nn import MLP, Linear, Standardize
from .safetensors_io import read_safetensors

_KEY = re.compile(r"^(\d+)\.(weight|bias)$")
_FLOATS = ("float16", "float32", "float64")

Layer = tuple[int, np.ndarray, np.ndarray | None]  # (Sequential index, weight (out, in), bias or None)


class TorchStateDictError(XpgradError, ValueError):
    """A PyTorch state dict does not describe an nn.Sequential of nn.Linear layers (or not the one expected)."""


def mlp_from_torch_state_dict(
    state: object,
    activation: str = "relu",
    *,
    sizes: Sequence[int] | None = None,
    dropout: float = 0.0,
    prefix: str = "",
    dtype: str | None = None,
    device: object = None,
) -> MLP:
    """An xpgrad `MLP` with the weights of a torch ``nn.Sequential`` of ``nn.Linear`` layers.

    `state`: the torch model's ``state_dict()`` (torch tensors or NumPy arrays by key) or the
    path of a .safetensors file holding it. The layer sizes come from the weights' shapes; a
    state dict does not record the activation, so give `activation` (and `dropout`) as in the
    torch model. `sizes`, when given, is checked against the weights (a different architecture
    is an error naming the first tensor that differs). `prefix` strips a leading key part
    (``"net."`` for a module holding the Sequential as ``self.net``). `dtype` defaults to the
    weights' own. Raises TorchStateDictError naming the tensor at fault.
    """
    what = "from_torch_state_dict"
    arrays = _arrays_of(state)
    layers = _linear_layers(arrays, prefix)
    found = [layers[0][1].shape[1], *(w.shape[0] for _, w, _ in layers)]
    if sizes is not None and list(sizes) != found:
        raise TorchStateDictError(f"{what}: {_first_size_difference(layers, list(sizes), prefix)}")
    dtype = dtype or (str(layers[0][1].dtype) if str(layers[0][1].dtype) in _FLOATS else "float32")
    has_bias = layers[0][2] is not None
    model = MLP(found, activation=activation, dropout=dropout, bias=has_bias, dtype=dtype, device=device)
    linear_names = [str(i) for i, module in enumerate(model) if isinstance(module, Linear)]  # Sequential: "0", "1", ...
    state_for_model = {}
    for (_, weight, bias), name in zip(layers, linear_names):
        state_for_model[f"{name}.weight"] = weight.T
        if bias is not None:
            state_for_model[f"{name}.bias"] = bias
    model.load_state_dict(state_for_model)
    return model


def mlp_to_torch_state_dict(model: MLP, *, prefix: str = "") -> dict[str, np.ndarray]:
    """`model`'s weights as a torch ``nn.Sequential`` state dict: ``{"0.weight": (out, in) array, ...}``.

    The keys are those of the torch Sequential with the same layers (Linear, activation,
    [Dropout], ..., Linear). A `Standardize` first layer has no torch counterpart: it is folded
    into the first Linear (W' = diag(scale) W, b' = b - (mean * scale) W), so the torch model gives
    the same logits on raw inputs. NumPy arrays; ``torch.from_numpy`` turns each into a tensor.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"to_torch_state_dict: expected an xpgrad nn.MLP, got {type(model).__name__}")
    modules = list(model)
    standardize = modules[0] if isinstance(modules[0], Standardize) else None
    torch_layers = modules[1:] if standardize is not None else modules
    out: dict[str, np.ndarray] = {}
    first = True
    for index, module in enumerate(torch_layers):
        if not isinstance(module, Linear):
            continue
        weight = module.weight.numpy().astype(np.float64)
        bias = module.bias.numpy().astype(np.float64) if module.bias is not None else None
        if first and standardize is not None:
            weight, bias = _fold_standardize(standardize, weight, bias)
        first = False
        dtype = module.weight.numpy().dtype
        out[f"{prefix}{index}.weight"] = np.ascontiguousarray(weight.T.astype(dtype))
        if bias is not None:
            out[f"{prefix}{index}.bias"] = bias.astype(dtype)
    return out


def _fold_standardize(
    layer: Standardize, weight: np.ndarray, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    mean = layer.mean.numpy().astype(np.float64)
    scale = layer.scale.numpy().astype(np.float64)
    if bias is None and np.any(mean != 0):
        raise TorchStateDictError(
            "to_torch_state_dict: the MLP standardizes its inputs but its first Linear has no bias to absorb the "
            "mean; build it with bias=True"
        )
    folded_bias = None if bias is None else bias - (mean * scale) @ weight
    return scale[:, None] * weight, folded_bias


def _arrays_of(state: Any) -> dict[str, np.ndarray]:
    """`state` as NumPy arrays by key: a path to a .safetensors file, or a mapping of tensors or arrays."""
    if isinstance(state, (str, os.PathLike)):
        return read_safetensors(state)[0]
    if not hasattr(state, "items"):
        raise TypeError(
            f"from_torch_state_dict: expected a state dict or a .safetensors path, got {type(state).__name__}"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if hasattr(value, "detach"):  # a torch tensor: to host NumPy without importing torch here
            value = value.detach().cpu().numpy()
        arrays[str(key)] = np.asarray(value)
    return arrays


def _linear_layers(arrays: dict[str, np.ndarray], prefix: str) -> list[Layer]:
    """[(index, weight (out, in), bias or None), ...] in layer order, every shape checked."""
    what = "from_torch_state_dict"
    weights: dict[int, tuple[str, np.ndarray]] = {}
    biases: dict[int, tuple[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _KEY.match(key[len(prefix) :]) if key.startswith(prefix) else None
        if match is None:
            raise TorchStateDictError(
                f"{what}: tensor {key!r} is not the weight or bias of an nn.Linear directly inside an nn.Sequential "
                f"(keys like '{prefix}0.weight', '{prefix}0.bias'); xpgrad maps Sequentials of nn.Linear layers"
                + ("" if prefix else ", and prefix='net.' strips a leading 'net.'")
            )
        if value.dtype.kind != "f":
            raise TorchStateDictError(f"{what}: tensor {key!r} has dtype {value.dtype}; expected floating point")
        (weights if match.group(2) == "weight" else biases)[int(match.group(1))] = (key, value)
    if not weights:
        raise TorchStateDictError(f"{what}: the state dict holds no nn.Linear weight (a key like '{prefix}0.weight')")
    for index, (key, _) in biases.items():
        if index not in weights:
            raise TorchStateDictError(f"{what}: tensor {key!r} has no matching '{prefix}{index}.weight'")
    layers: list[tuple[int, np.ndarray, np.ndarray | None, str]] = []
    previous: tuple[str, np.ndarray] | None = None
    for index in sorted(weights):
        key, weight = weights[index]
        if weight.ndim != 2:
            raise TorchStateDictError(
                f"{what}: tensor {key!r} has shape {weight.shape}; an nn.Linear weight is 2-D (out_features, "
                "in_features)"
            )
        if previous is not None and weight.shape[1] != previous[1].shape[0]:
            raise TorchStateDictError(
                f"{what}: tensor {key!r} has shape {weight.shape}: it takes {weight.shape[1]} inputs, but the layer "
                f"before ({previous[0]!r}, shape {previous[1].shape}) gives {previous[1].shape[0]}"
            )
        bias_key, bias = biases.get(index, (f"{prefix}{index}.bias", None))
        if bias is not None and bias.shape != (weight.shape[0],):
            raise TorchStateDictError(
                f"{what}: tensor {bias_key!r} has shape {bias.shape}, but {key!r} (shape {weight.shape}) needs "
                f"({weight.shape[0]},)"
            )
        if layers and (bias is None) != (layers[0][2] is None):
            have, lack = (layers[0][3], bias_key) if bias is None else (bias_key, layers[0][3])
            raise TorchStateDictError(
                f"{what}: tensor {lack!r} is missing while {have!r} is present; an xpgrad MLP has a bias in every "
                f"layer or in none"
            )
        layers.append((index, weight, bias, bias_key))
        previous = (key, weight)
    return [(index, weight, bias) for index, weight, bias, _ in layers]


def _first_size_difference(layers: list[Layer], sizes: list[int], prefix: str) -> str:
    """Which tensor shows that the state dict is not an MLP of `sizes`."""
    expected = list(zip(sizes[:-1], sizes[1:]))
    if len(expected) != len(layers):
        keys = ", ".join(f"'{prefix}{index}.weight'" for index, _, _ in layers)
        return (
            f"the state dict holds {len(layers)} nn.Linear layers ({keys}), but sizes {sizes} need "
            f"{len(expected)}: a different architecture"
        )
    for (index, weight, _), (n_in, n_out) in zip(layers, expected):
        if weight.shape != (n_out, n_in):
            return (
                f"tensor '{prefix}{index}.weight' has shape {weight.shape}, but sizes {sizes} need "
                f"({n_out}, {n_in}) there: a different architecture"
            )
    return f"sizes {sizes} do not match the state dict"


__all__ = ["TorchStateDictError", "mlp_from_torch_state_dict", "mlp_to_torch_state_dict"]
