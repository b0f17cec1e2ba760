"""Neural-network building blocks: Module, Linear, Sequential, activations, Dropout and MLP.

A `Module` registers what is assigned to its attributes: a Tensor with ``requires_grad=True``
becomes a parameter, a Module a sub-module; `register_buffer` adds a non-trainable Tensor that is
saved and moved with the parameters (e.g. the input statistics of `Standardize`). Parameters are
plain xpgrad Tensors (the engine checks ``type(t) is Tensor`` on its hot paths, so there is no
Parameter subclass).

    import xpgrad as xg
    from xpgrad import nn

    xg.manual_seed(0)
    model = nn.MLP([64, 128, 10], activation="relu")
    logits = model(xg.randn(32, 64))
    [name for name, _ in model.named_parameters()]  # ['0.weight', '0.bias', '2.weight', '2.bias']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, cast

import numpy as np

from . import backend, state
from .autograd import array_fns
from .creation import generator, uniform
from .errors import XpgradError
from .ops import elu, leaky_relu, linear, relu, sigmoid, tanh
from .tensor import Tensor

INITS = ("auto", "he", "xavier")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh")
_RELU_FAMILY = ("relu", "leaky_relu", "elu")


class StateDictError(XpgradError, ValueError):
    """load_state_dict() was given names or shapes that do not match the module."""


def to_place(host: Any, like: Any) -> Any:
    """Host array `host` as a new array of `like`'s library, device and dtype."""
    if not isinstance(host, np.ndarray):
        host = np.asarray(host)
    if isinstance(like, np.ndarray):  # an ndarray subclass too (xg.capture's traced arrays)
        return host.astype(like.dtype)
    if backend.is_cupy(like):
        import cupy

        with cupy.cuda.Device(like.device.id):
            return cupy.asarray(host.astype(like.dtype.name, copy=False))
    xp = backend.namespace_of(like)
    return xp.asarray(np.array(host, dtype=str(like.dtype).rsplit(".", 1)[-1], copy=True), device=like.device)


def to_host(data: Any) -> np.ndarray:
    """A fresh NumPy copy of backend array `data`."""
    if type(data) is np.ndarray:
        return data.copy()
    return np.array(Tensor(data).numpy(), copy=True)


class Module:
    """Base class of layers and models: override `forward`; call the module to run it."""

    _parameters: dict[str, Tensor]
    _buffers: dict[str, Tensor]
    _modules: dict[str, Module]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---- registration --------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_plan", None)  # Sequential's cached fusion plan follows every change
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran; call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        modules = self.__dict__["_modules"]
        buffers = self.__dict__["_buffers"]
        if name in buffers:
            if not isinstance(value, Tensor) or value.requires_grad:
                raise TypeError(f"{type(self).__name__}.{name} is a buffer: assign a Tensor without requires_grad")
            buffers[name] = value
        elif isinstance(value, Tensor) and value.requires_grad:
            if value._node is not None:
                raise ValueError(
                    f"{type(self).__name__}.{name}: a parameter must be a leaf tensor, but this one was "
                    f"computed by op '{value._node.name}'; make it with xg.tensor(..., requires_grad=True) "
                    f"or call .detach().requires_grad_()"
                )
            params[name] = value
            modules.pop(name, None)
        elif isinstance(value, Module):
            modules[name] = value
            params.pop(name, None)
        else:
            params.pop(name, None)
            modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Tensor) -> None:
        """Add a non-trainable tensor that state_dict() saves and to() moves."""
        if not isinstance(value, Tensor) or value.requires_grad:
            raise TypeError(f"register_buffer {name!r}: expected a Tensor without requires_grad")
        if name in self._parameters or name in self._modules:
            raise ValueError(f"register_buffer {name!r}: the name is already a parameter or sub-module")
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop("_plan", None)
        self._buffers.pop(name, None)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # ---- running -------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- traversal -----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every sub-module, depth first."""
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, parameter) pairs; a parameter shared by two modules is listed once."""
        seen: set[int] = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer) pairs."""
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- state ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (Dropout active) for this module and its sub-modules."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode (Dropout off)."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: Any) -> Module:
        """Move every parameter (and gradient) and buffer to `device` in place; the Tensors stay the
        same objects, so an optimizer made before the move still holds them."""
        for p in self.parameters():
            p.data = backend.move(p.data, device)
            if p.grad is not None:
                p.grad = Tensor(backend.move(p.grad.data, device))
        for _, b in self.named_buffers():
            b.data = backend.move(b.data, device)
        return self

    def _state_tensors(self) -> dict[str, Tensor]:
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host NumPy copies of the parameters and buffers by dotted name."""
        return {name: to_host(t.data) for name, t in self._state_tensors().items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays by dotted name into the parameters and buffers (on their device, in their dtype).

        Raises StateDictError, before changing anything, when a shape differs or (with
        `strict`) a name is missing or unexpected.
        """
        own = self._state_tensors()
        problems: list[str] = []
        if strict:
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            if missing:
                problems.append(f"missing {_names(missing)}")
            if unexpected:
                problems.append(f"unexpected {_names(unexpected)}")
        arrays: dict[str, np.ndarray] = {}
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            value = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if tuple(value.shape) != p.shape:
                problems.append(f"{name} has shape {tuple(value.shape)} in the state but {p.shape} in the model")
            elif value.dtype.kind not in "fiub":
                problems.append(f"{name} has non-numeric dtype {value.dtype}")
            else:
                arrays[name] = value
        if problems:
            raise StateDictError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for name, value in arrays.items():
            p = own[name]
            p.data = to_place(value, p.data)
            p.grad = None

    def config(self) -> dict[str, Any] | None:
        """A JSON-able description that `from_config` rebuilds this module from (None: cannot)."""
        return None

    # ---- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def init_std(init: str, fan_in: int) -> float:
    """Standard deviation of the initial weights: He sqrt(2 / fan_in) or Xavier sqrt(1 / fan_in)."""
    if init in ("auto", "he"):
        return math.sqrt(2.0 / fan_in)
    if init == "xavier":
        return math.sqrt(1.0 / fan_in)
    raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")


def init_for(activation: str) -> str:
    """He for the ReLU family, Xavier for sigmoid and tanh."""
    return "he" if normalize_activation(activation) in _RELU_FAMILY else "xavier"


class Linear(Module):
    """The Affine layer y = x @ W + b, one `xg.linear` node; `weight` has shape (in, out).

    `init`: "he" (normal, std sqrt(2 / in_features), for the ReLU family), "xavier" (normal,
    std sqrt(1 / in_features), for sigmoid and tanh), or "auto" (He). Weights are drawn from the
    host generator seeded by `xg.manual_seed`; the bias starts at zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "auto",
        dtype: str = "float32",
        device: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("Linear in_features", in_features)
        self.out_features = _positive_int("Linear out_features", out_features)
        self.init = init
        std = init_std(init, self.in_features)
        from .creation import tensor

        w = generator().standard_normal((self.in_features, self.out_features)) * std
        self.weight = tensor(w, dtype=dtype, device=device, requires_grad=True)
        self.bias = (
            tensor(np.zeros(self.out_features), dtype=dtype, device=device, requires_grad=True) if bias else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return relu(x)


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return sigmoid(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


_ACTIVATION_MODULES: dict[str, type[Module]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def normalize_activation(name: str) -> str:
    """Canonical activation name ("leaky-relu" -> "leaky_relu"); ValueError for unknown names."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _ACTIVATION_MODULES:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return key


def activation(name: str) -> Module:
    """A fresh activation module by name (relu, leaky_relu, elu, sigmoid, tanh)."""
    return _ACTIVATION_MODULES[normalize_activation(name)]()


class Dropout(Module):
    """Inverted dropout: in training mode zero each element with probability `p` and scale the rest
    by 1 / (1 - p); in eval mode (or p == 0) the identity. Masks come from the host generator on
    NumPy, from a Philox generator in device memory on CuPy (both keyed by xg.manual_seed)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if backend.is_cupy(x.data):  # drawn on the device: no host round trip, fresh on every graph replay
            mask = array_fns(x.data).dropout_mask(x.data, self.p)
            if mask is not None:
                return x * Tensor(mask)
        recorder = state.local.capture
        if recorder is not None and getattr(recorder, "on_device", False):  # drawn on the host: between graphs
            mask = recorder.host(lambda: self._mask(x.data))
        else:
            mask = self._mask(x.data)
        return x * Tensor(mask)

    def _mask(self, like: Any) -> Any:
        """keep / (1 - p) for each element of `like`, drawn from the host generator, on like's device."""
        keep = uniform(like.shape) >= self.p
        scale = np.asarray(1.0 / (1.0 - self.p), dtype=np.float64)
        return to_place(keep.astype(np.float64) * scale, like)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Standardize(Module):
    """y = (x - mean) * scale per feature, with buffers `mean` and `scale` (not trained).

    `fit(x)` sets them from training data: mean and scale = 1 / (std + floor); the floor keeps
    features that are almost constant (border pixels) from being blown up. A fresh layer is the
    identity (mean 0, scale 1).
    """

    mean: Tensor  # buffers (register_buffer)
    scale: Tensor

    def __init__(self, num_features: int, floor: float = 0.1, dtype: str = "float32", device: Any = None) -> None:
        super().__init__()
        from .creation import tensor

        self.num_features = _positive_int("Standardize num_features", num_features)
        self.floor = float(floor)
        self.register_buffer("mean", tensor(np.zeros(self.num_features), dtype=dtype, device=device))
        self.register_buffer("scale", tensor(np.ones(self.num_features), dtype=dtype, device=device))

    def fit(self, x: Any) -> Standardize:
        """Set mean and scale from host samples `x` of shape (n, num_features)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if x.shape[1] != self.num_features or len(x) == 0:
            raise ValueError(f"Standardize.fit: expected samples of shape (n>0, {self.num_features}), got {x.shape}")
        self.mean.data = to_place(x.mean(axis=0), self.mean.data)
        self.scale.data = to_place(1.0 / (x.std(axis=0) + self.floor), self.scale.data)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.scale

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, floor={self.floor}"


class Sequential(Module):
    """Modules applied in order; sub-modules are named "0", "1", ..."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {i} is a {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def forward(self, x: Tensor) -> Tensor:
        """Run the modules in order; a Linear followed by ReLU or Sigmoid runs as one fused node."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._plan = self._fusion_plan()
        for module, fused in plan:
            x = module(x) if fused is None else linear(x, module.weight, module.bias, activation=fused)
        return x

    def _fusion_plan(self) -> tuple[tuple[Any, str | None], ...]:  # Any: a Linear wherever the str is set
        """(module, activation for `linear` or None) pairs: a Linear runs as `linear` directly, fused
        with a following ReLU or Sigmoid; None calls the module. Rebuilt after any attribute change."""
        modules = list(self._modules.values())
        plan: list[tuple[Any, str | None]] = []
        i = 0
        while i < len(modules):
            module = modules[i]
            fused = _FUSED_ACTIVATIONS.get(type(modules[i + 1])) if i + 1 < len(modules) else None
            if type(module) is not Linear:
                plan.append((module, None))
            elif fused is not None:
                plan.append((module, fused))
                i += 1  # the activation module is part of this step
            else:
                plan.append((module, "identity"))
            i += 1
        return tuple(plan)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]


_FUSED_ACTIVATIONS = {ReLU: "relu", Sigmoid: "sigmoid"}


def _sizes_hint(*given: Any) -> str:
    """The numbers of a call such as MLP(64, [32], 10) as the one list MLP takes: 'MLP([64, 32, 10])'."""
    sizes: list[Any] = []
    for value in given:
        if isinstance(value, (list, tuple)):
            sizes.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            sizes.append(value)
        else:
            break
    return f"MLP({sizes!r})" if len(sizes) >= 2 else "MLP([inputs, hidden..., outputs]), e.g. MLP([64, 32, 10])"


class MLP(Sequential):
    """Fully connected net: [Standardize], Linear, activation, [Dropout], ..., Linear (no activation
    on the output).

    `sizes` = [inputs, hidden..., outputs]. Weights are initialised by the activation (He for the
    ReLU family, Xavier for sigmoid and tanh) unless `init` says otherwise. With `standardize`,
    a Standardize layer comes first: call `fit_standardizer(train_x)` before training.
    """

    def __init__(
        self,
        sizes: Iterable[int],
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "auto",
        bias: bool = True,
        standardize: bool = False,
        dtype: str = "float32",
        device: Any = None,
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(
                f"MLP: sizes is one list [inputs, hidden..., outputs], got {sizes!r} on its own; "
                f"write {_sizes_hint(sizes, activation, dropout)}"
            )
        sizes = [_positive_int("MLP sizes entry", s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes needs at least [inputs, outputs], got {sizes!r}")
        act = normalize_activation(activation)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout!r}")
        scheme = init_for(act) if init == "auto" else init
        layers: list[Module] = [Standardize(sizes[0], dtype=dtype, device=device)] if standardize else []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, bias=bias, init=scheme, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATION_MODULES[act]())
                if dropout > 0:
                    layers.append(Dropout(dropout))
        super().__init__(*layers)
        self.sizes = sizes
        self.activation = act
        self.dropout = dropout
        self.init = init
        self.has_bias = bool(bias)
        self.standardize = bool(standardize)

    def fit_standardizer(self, x: Any) -> MLP:
        """Set the input statistics of the Standardize layer from training samples `x`."""
        if not self.standardize:
            raise ValueError("fit_standardizer: this MLP was built with standardize=False")
        cast(Standardize, self[0]).fit(x)
        return self

    @staticmethod
    def from_torch_state_dict(state: Any, activation: str = "relu", **options: Any) -> MLP:
        """An MLP with the weights of a torch ``nn.Sequential`` of ``nn.Linear`` layers (its state dict or a
        .safetensors path); weights (out, in) become (in, out). Options: sizes, dropout, prefix, dtype, device.
        See `xpgrad.torch_interop.mlp_from_torch_state_dict`."""
        from .torch_interop import mlp_from_torch_state_dict

        return mlp_from_torch_state_dict(state, activation, **options)

    def to_torch_state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """This MLP's weights as the state dict of the same torch ``nn.Sequential`` (weights (out, in), NumPy
        arrays; a Standardize layer folded into the first Linear). See `xpgrad.torch_interop`."""
        from .torch_interop import mlp_to_torch_state_dict

        return mlp_to_torch_state_dict(self, prefix=prefix)

    def config(self) -> dict[str, Any]:
        return {
            "type": "MLP",
            "sizes": list(self.sizes),
            "activation": self.activation,
            "dropout": self.dropout,
            "init": self.init,
            "bias": self.has_bias,
            "standardize": self.standardize,
        }


def from_config(config: dict[str, Any], device: Any = None) -> Module:
    """Rebuild a module from `Module.config()` (weights freshly initialised; load them after)."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"model config must be a dict with a 'type', got {config!r}")
    if config["type"] == "MLP":
        return MLP(
            config["sizes"],
            activation=config.get("activation", "relu"),
            dropout=config.get("dropout", 0.0),
            init=config.get("init", "auto"),
            bias=config.get("bias", True),
            standardize=config.get("standardize", False),
            device=device,
        )
    raise ValueError(f"unknown model type {config['type']!r} in config (known: MLP)")


__all__ = [
    "ACTIVATIONS",
    "ELU",
    "INITS",
    "Dropout",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MLP",
    "Module",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Standardize",
    "StateDictError",
    "Tanh",
    "activation",
    "from_config",
    "init_for",
    "init_std",
    "normalize_activation",
]
