"""PyTorch recurrent weights in and out: ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` (and their ``*Cell``) <-> zoo.

    module, params = from_torch_rnn(lstm.state_dict())        # or from_torch_rnn(lstm): reads its mode too
    carry, y = module.apply({"params": params}, x, return_carry=True)
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_rnn(params).items()})

``from_torch_rnn`` returns zoo's module of the same shape (see
:meth:`TorchRNNSpec.zoo_module`) and its parameters (plain float32 NumPy
arrays): one layer is a :class:`zoo.RNN`, one bidirectional layer a
:class:`zoo.Bidirectional`, more layers a :class:`zoo.RNNStack`; a
``torch.nn.LSTMCell`` (``RNNCell``, ``GRUCell``) is the zoo cell itself. The
modules are batch-major, as torch's ``batch_first=True``; for torch's default
layout, ``(seq, batch, features)``, call :class:`zoo.RNN` and
:class:`zoo.Bidirectional` with ``time_major=True`` or transpose the inputs.

The name table, per layer ``k`` and direction (``{d}`` is ``""`` forward,
``"_reverse"`` backward; ``I`` inputs, ``H`` hidden, ``G`` gates: 1 RNN,
4 LSTM (i, f, g, o), 3 GRU (r, z, n), in torch's order, which zoo keeps)::

    zoo parameter      shape     torch tensor                          shape     how
    input_kernel       (I, GH)   weight_ih_l{k}{d}                     (GH, I)   transpose
    recurrent_kernel   (H, GH)   weight_hh_l{k}{d}                     (GH, H)   transpose
    bias               (GH,)     bias_ih_l{k}{d} + bias_hh_l{k}{d}     (GH,)     sum        (RNN, LSTM)
    bias               (3H,)     bias_ih_l{k}{d} + [bias_hh[:2H], 0]   (3H,)     sum        (GRU)
    recurrent_bias     (H,)      bias_hh_l{k}{d}[2H:]  (b_hn)          (3H,)     slice      (GRU)

and the zoo path of layer ``k``'s cell: ``cell`` (:class:`zoo.RNN`),
``forward_rnn/cell`` and ``backward_rnn/cell`` (:class:`zoo.Bidirectional`),
``layer_{k}/cell`` or ``layer_{k}_forward/cell``, ``layer_{k}_backward/cell``
(:class:`zoo.RNNStack`); a ``*Cell`` has no ``_l{k}`` suffix and no path.

Biases. torch keeps two bias vectors, ``b_ih`` and ``b_hh``, but every gate
except GRU's candidate only ever sees their sum, so zoo stores one ``bias``.
Import adds them; export writes the sum into ``bias_ih_l*`` and zeros into
``bias_hh_l*`` (the outputs are the same; the two tensors are not what the
torch model had). GRU's ``b_hn`` sits inside the reset gate's product,
``r * (h W_hn + b_hn)``, so it is not a sum: zoo keeps it as
``recurrent_bias`` and export writes it back into ``bias_hh_l*[2H:]``. A torch
model built with ``bias=False`` imports with zero biases; export with
``bias=False`` refuses biases that are not all zero.

Not convertible, refused by name: LSTMs with ``proj_size > 0`` (a projected
hidden state), :class:`zoo.GRUCell` with ``reset_after=False`` (Cho et al.'s
GRU, not torch's), minGRU and minLSTM (no recurrent kernel), and
:class:`zoo.SimpleRNNCell` activations other than tanh and ReLU. A state dict
cannot tell ``nonlinearity='relu'`` from tanh: pass the module itself, or
``nonlinearity='relu'``.

Numbers are moved, never computed, except the bias sums: zoo -> torch -> zoo
is bit-identical; torch -> zoo -> torch gives the same outputs (float32
rounding of ``b_ih + b_hh`` aside).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from zoo.layers.recurrent import RNN, Bidirectional, RNNStack

__all__ = ["TorchRNNSpec", "carry_from_torch", "carry_to_torch", "from_torch_rnn", "to_torch_rnn", "torch_rnn_spec"]

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# torch's RNNBase.mode and the *Cell class names -> (zoo's mode, nonlinearity)
TORCH_MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "LSTM": ("lstm", None), "GRU": ("gru", None)}
TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
_KEY = re.compile(r"(weight|bias)_(ih|hh|hr)(?:_l(\d+)(_reverse)?)?$")


@dataclasses.dataclass(frozen=True)
class TorchRNNSpec:
    """The shape of a torch recurrent module: its constructor's arguments (``cell=True``: an ``*Cell``).

    Examples:
      >>> spec = zoo.interop.TorchRNNSpec("lstm", input_size=3, hidden_size=8, num_layers=2, bidirectional=True)
      >>> shapes = spec.torch_shapes()
      >>> len(shapes), shapes["weight_ih_l1_reverse"]        # layer 2 reads both directions
      (16, (32, 16))
      >>> spec.torch_name("weight_hh", 0, "_reverse")
      'weight_hh_l0_reverse'
    """

    mode: Literal["rnn", "lstm", "gru"]
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # nn.RNN only
    dropout: float = 0.0  # between layers; not in a state dict
    cell: bool = False  # nn.RNNCell / LSTMCell / GRUCell

    def __post_init__(self):
        if self.mode not in GATES:
            raise ValueError(f"TorchRNNSpec: mode={self.mode!r}, expected one of {sorted(GATES)}")
        if self.nonlinearity not in ACTIVATIONS:
            raise ValueError(f"TorchRNNSpec: nonlinearity={self.nonlinearity!r}, expected 'tanh' or 'relu'")
        if self.cell and (self.num_layers != 1 or self.bidirectional):
            raise ValueError("TorchRNNSpec: a cell has one layer and one direction")

    @property
    def directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def torch_name(self, kind: str, layer: int, direction: str) -> str:
        """``weight_ih_l0_reverse`` for kind ``weight_ih``, layer 0, direction ``_reverse`` (``weight_ih`` for a cell)."""
        return kind if self.cell else f"{kind}_l{layer}{direction}"

    def torch_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the torch module's state dict and its shape."""
        g, h = GATES[self.mode] * self.hidden_size, self.hidden_size
        out = {}
        for k in range(self.num_layers):
            width = self.input_size if k == 0 else h * len(self.directions)
            for d in self.directions:
                out[self.torch_name("weight_ih", k, d)] = (g, width)
                out[self.torch_name("weight_hh", k, d)] = (g, h)
                if self.bias:
                    out[self.torch_name("bias_ih", k, d)] = (g,)
                    out[self.torch_name("bias_hh", k, d)] = (g,)
        return out

    def zoo_cell(self) -> nn.Module:
        h = self.hidden_size
        if self.mode == "lstm":
            return LSTMCell(h)
        if self.mode == "gru":
            return GRUCell(h, reset_after=True)
        return SimpleRNNCell(h, activation_fn=ACTIVATIONS[self.nonlinearity])

    def zoo_module(self) -> nn.Module:
        """The zoo module of this shape: the cell, :class:`zoo.RNN`, :class:`zoo.Bidirectional` or :class:`zoo.RNNStack`."""
        cell = self.zoo_cell()
        if self.cell:
            return cell
        if self.num_layers > 1:
            return RNNStack(cell, num_layers=self.num_layers, bidirectional=self.bidirectional,
                            dropout_rate=self.dropout)
        if self.bidirectional:
            return Bidirectional(RNN(cell), RNN(cell.clone()))
        return RNN(cell)

    def zoo_paths(self) -> dict[tuple[int, str], tuple[str, ...]]:
        """(layer, direction) -> the path of that cell's parameters in :meth:`zoo_module`'s params."""
        if self.cell:
            return {(0, ""): ()}
        if self.num_layers > 1:
            if self.bidirectional:
                return {(k, d): (f"layer_{k}_{'backward' if d else 'forward'}", "cell")
                        for k in range(self.num_layers) for d in self.directions}
            return {(k, ""): (f"layer_{k}", "cell") for k in range(self.num_layers)}
        if self.bidirectional:
            return {(0, ""): ("forward_rnn", "cell"), (0, "_reverse"): ("backward_rnn", "cell")}
        return {(0, ""): ("cell",)}

    def torch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the torch constructor (add ``batch_first=True`` for zoo's layout)."""
        kw: dict[str, Any] = {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}
        if not self.cell:
            kw.update(num_layers=self.num_layers, bidirectional=self.bidirectional, dropout=self.dropout)
        if self.mode == "rnn":
            kw["nonlinearity"] = self.nonlinearity
        return kw

    def torch_module(self, **kwargs: Any) -> Any:
        """A new torch module of this shape (needs torch), e.g. ``spec.torch_module(batch_first=True)``."""
        import torch

        name = TORCH_CLASSES[self.mode] + ("Cell" if self.cell else "")
        return getattr(torch.nn, name)(**self.torch_kwargs(), **kwargs)


# ---------------------------------------------------------------------------
# torch -> zoo


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; bfloat16 has no NumPy form, so widen first
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)


def _spec_from_module(m: Any) -> tuple[str, str | None, dict[str, Any]]:
    """(mode, nonlinearity, extra spec fields) read from a torch module."""
    name = type(m).__name__
    if hasattr(m, "mode"):  # nn.RNN / LSTM / GRU (RNNBase)
        if m.mode not in TORCH_MODES:
            raise ValueError(f"from_torch_rnn: torch module {name} has mode={m.mode!r}, expected one of {sorted(TORCH_MODES)}")
        if getattr(m, "proj_size", 0):
            raise ValueError(f"from_torch_rnn: {name} has proj_size={m.proj_size}; zoo's LSTMCell has no projection "
                             "of the hidden state, so it cannot be converted")
        mode, nonlinearity = TORCH_MODES[m.mode]
        return mode, nonlinearity, {"dropout": float(m.dropout)}
    cells = {"RNNCell": "rnn", "LSTMCell": "lstm", "GRUCell": "gru"}
    if name in cells:
        return cells[name], getattr(m, "nonlinearity", None), {}
    raise ValueError(f"from_torch_rnn: expected a state dict or a torch nn.RNN/LSTM/GRU (or *Cell), got {name}")


def _spec_from_state(state: Mapping[str, np.ndarray], mode: str | None, nonlinearity: str | None,
                     source: str) -> TorchRNNSpec:
    keys = {k: _KEY.fullmatch(k) for k in state}
    unknown = sorted(k for k, m in keys.items() if m is None)
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} tensors that are not a torch RNN's, e.g. {unknown[:3]} "
                         "(pass prefix= to read one module of a larger state dict)")
    if any(m.group(2) == "hr" for m in keys.values()):
        raise ValueError(f"{source}: has weight_hr tensors, an LSTM with proj_size > 0; zoo's LSTMCell has no "
                         "projection of the hidden state, so it cannot be converted")
    cell = "weight_ih" in state
    first = "weight_ih" if cell else "weight_ih_l0"
    if first not in state or ("weight_hh" if cell else "weight_hh_l0") not in state:
        raise ValueError(f"{source}: no {first}; expected the state dict of a torch nn.RNN, nn.LSTM or nn.GRU "
                         f"(keys weight_ih_l0, weight_hh_l0, ...), got keys {sorted(state)[:4]}")
    w_ih, w_hh = state[first], state["weight_hh" if cell else "weight_hh_l0"]
    if w_hh.ndim != 2 or w_ih.ndim != 2 or w_hh.shape[0] % w_hh.shape[1]:
        raise ValueError(f"{source}: weight_hh has shape {tuple(w_hh.shape)}, expected (gates * hidden, hidden)")
    hidden = w_hh.shape[1]
    gates = w_hh.shape[0] // hidden
    inferred = {g: m for m, g in GATES.items()}.get(gates)
    if inferred is None:
        raise ValueError(f"{source}: weight_hh has {gates} gates of {hidden}; expected 1 (RNN), 3 (GRU) or 4 (LSTM)")
    if mode is not None:
        if mode.upper() in TORCH_MODES:
            mode, nl = TORCH_MODES[mode.upper()]
            nonlinearity = nonlinearity or nl
        mode = mode.lower()
        if mode not in GATES:
            raise ValueError(f"from_torch_rnn: mode={mode!r}, expected one of {sorted(GATES)} (or torch's RNN_TANH, "
                             "RNN_RELU, LSTM, GRU)")
        if GATES[mode] != gates:
            raise ValueError(f"{source}: mode={mode!r} has {GATES[mode]} gates, but weight_hh has {gates} "
                             f"(hidden size {hidden}), a {inferred.upper()}")
    layers = 1 if cell else 1 + max(int(m.group(3)) for m in keys.values() if m.group(3) is not None)
    spec = TorchRNNSpec(
        mode=mode or inferred, input_size=int(w_ih.shape[1]), hidden_size=int(hidden), num_layers=layers,
        bidirectional=not cell and "weight_ih_l0_reverse" in state, bias=("bias_ih" if cell else "bias_ih_l0") in state,
        nonlinearity=nonlinearity or "tanh", cell=cell,
    )
    want = spec.torch_shapes()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(f"{source}: a {spec.num_layers}-layer{' bidirectional' if spec.bidirectional else ''} "
                         f"{spec.mode.upper()} state dict must hold {sorted(want)}; missing {missing}, unexpected {extra}")
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise ValueError(f"{source}: tensor {k} has shape {tuple(state[k].shape)}, expected {shape} "
                             f"(input_size={spec.input_size}, hidden_size={spec.hidden_size})")
    return spec


def _cell_to_zoo(spec: TorchRNNSpec, get) -> dict[str, np.ndarray]:
    """One cell's zoo parameters from ``get(kind)``, the torch tensor of that kind (None: no biases)."""
    h, g = spec.hidden_size, GATES[spec.mode] * spec.hidden_size
    b_ih = get("bias_ih") if spec.bias else np.zeros(g, np.float32)
    b_hh = get("bias_hh") if spec.bias else np.zeros(g, np.float32)
    p = {"input_kernel": get("weight_ih").T.copy(), "recurrent_kernel": get("weight_hh").T.copy()}
    if spec.mode == "gru":
        p["bias"] = b_ih + np.concatenate([b_hh[: 2 * h], np.zeros(h, np.float32)])
        p["recurrent_bias"] = b_hh[2 * h :].copy()
    else:
        p["bias"] = b_ih + b_hh
    return p


def _put(tree: dict, path: tuple[str, ...], value: dict) -> dict:
    for part in path:
        tree = tree.setdefault(part, {})
    tree.update(value)
    return tree


def from_torch_rnn(
    source: Any, *, mode: str | None = None, nonlinearity: Literal["tanh", "relu"] | None = None, prefix: str = "",
) -> tuple[nn.Module, dict[str, Any]]:
    """zoo's module and parameters from a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (or ``*Cell``) or its state dict.

    Args:
      source: a state dict (names to torch tensors or NumPy arrays) or the
        torch module itself (its ``mode``, ``nonlinearity`` and ``dropout``
        are read too).
      mode: ``'rnn'``, ``'lstm'``, ``'gru'`` (or torch's ``'RNN_TANH'`` ...):
        checked against the gate count; default: from the shapes (1 RNN, 3
        GRU, 4 LSTM).
      nonlinearity: ``nn.RNN``'s; a state dict cannot tell (default tanh).
      prefix: the module's key prefix in a larger state dict, e.g.
        ``'encoder.rnn.'``; keys outside it are ignored.

    Returns:
      ``(module, params)``: the zoo module of the same shape (see the module
      docstring) and its parameters, nested dicts of float32 NumPy arrays, for
      ``module.apply({"params": params}, x)``.

    Examples:
      >>> spec = zoo.interop.TorchRNNSpec("gru", input_size=3, hidden_size=8, num_layers=2)
      >>> rng = np.random.default_rng(0)
      >>> state = {name: rng.standard_normal(shape, np.float32) for name, shape in spec.torch_shapes().items()}
      >>> module, params = zoo.interop.from_torch_rnn(state)   # or the torch.nn.GRU itself
      >>> type(module).__name__, module.num_layers, type(module.cell).__name__
      ('RNNStack', 2, 'GRUCell')
      >>> sorted(params), params["layer_0"]["cell"]["input_kernel"].shape   # (in, 3 * hidden)
      (['layer_0', 'layer_1'], (3, 24))
    """
    extra: dict[str, Any] = {}
    if hasattr(source, "state_dict") and not isinstance(source, Mapping):
        m_mode, m_nl, extra = _spec_from_module(source)
        mode, nonlinearity = mode or m_mode, nonlinearity or m_nl
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise TypeError(f"from_torch_rnn: source must be a state dict or a torch module, got {type(source).__name__}")
    where = f"from_torch_rnn (prefix={prefix!r})" if prefix else "from_torch_rnn"
    state = {k[len(prefix):]: _numpy(v) for k, v in source.items() if k.startswith(prefix)}
    if not state:
        hint = [k for k in source if k.endswith(("weight_ih_l0", "weight_ih"))][:2]
        raise ValueError(f"{where}: no keys start with the prefix" + (f"; found {hint}" if hint else ""))
    spec = _spec_from_state(state, mode, nonlinearity, where)
    spec = dataclasses.replace(spec, **extra)
    params: dict[str, Any] = {}
    for (k, d), path in spec.zoo_paths().items():
        _put(params, path, _cell_to_zoo(spec, lambda kind, k=k, d=d: state[spec.torch_name(kind, k, d)]))
    return spec.zoo_module(), params


# ---------------------------------------------------------------------------
# zoo -> torch


def _unwrap(params: Any) -> dict[str, Any]:
    params = nn.unbox(params)
    if isinstance(params, Mapping) and set(params) == {"params"}:  # a variables dict
        params = params["params"]
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), dict(params))


def _cell_mode(p: Mapping[str, np.ndarray], where: str) -> tuple[str, int, int]:
    """(mode, input size, hidden size) of one zoo cell's parameters."""
    if "recurrent_kernel" not in p:
        raise ValueError(f"to_torch_rnn: {where} has no recurrent_kernel: a minGRU or minLSTM cell, which torch "
                         "has no module for")
    hidden = p["recurrent_kernel"].shape[0]
    gates = p["recurrent_kernel"].shape[1] // hidden
    if gates == 3 and "recurrent_bias" not in p:
        raise ValueError(f"to_torch_rnn: {where} is a GRUCell(reset_after=False) (Cho et al.: the reset gate before "
                         "the matmul); torch.nn.GRU resets after it (reset_after=True), so it cannot be exported")
    mode = {g: m for m, g in GATES.items()}.get(gates)
    if mode is None:
        raise ValueError(f"to_torch_rnn: {where} has {gates} gates; expected 1 (RNN), 3 (GRU) or 4 (LSTM)")
    return mode, p["input_kernel"].shape[0], hidden


def _structure(params: Mapping[str, Any]) -> tuple[int, bool, bool]:
    """(num_layers, bidirectional, cell) from the top-level names of zoo parameters."""
    if "input_kernel" in params:
        return 1, False, True
    if "cell" in params:
        return 1, False, False
    if "forward_rnn" in params:
        return 1, True, False
    layers = [m for k in params if (m := re.fullmatch(r"layer_(\d+)(_forward|_backward)?", k))]
    if layers and len(layers) == len(params):
        return 1 + max(int(m.group(1)) for m in layers), layers[0].group(2) is not None, False
    raise ValueError(f"to_torch_rnn: params with top-level names {sorted(params)} are not those of a zoo cell, "
                     "RNN, Bidirectional or RNNStack")


def _spec_from_zoo(params: Mapping[str, Any], module: nn.Module | None, bias: bool) -> TorchRNNSpec:
    num_layers, bidirectional, cell = _structure(params)
    probe = TorchRNNSpec("rnn", 1, 1, num_layers, bidirectional, cell=cell)
    first = params
    for part in probe.zoo_paths()[(0, "")]:
        first = first[part]
    mode, input_size, hidden = _cell_mode(first, "/".join(probe.zoo_paths()[(0, "")]) or "the cell")
    nonlinearity, dropout = "tanh", 0.0
    if module is not None:
        zoo_cell, dropout = _module_cell(module)
        if isinstance(zoo_cell, SimpleRNNCell):
            found = [n for n, f in ACTIVATIONS.items() if zoo_cell.activation_fn is f]
            if not found:
                raise ValueError(f"to_torch_rnn: SimpleRNNCell(activation_fn={zoo_cell.activation_fn!r}); torch's "
                                 "nn.RNN has tanh (jnp.tanh) and ReLU (jax.nn.relu) only")
            nonlinearity = found[0]
        expected = {"rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}[mode]
        if not isinstance(zoo_cell, expected):
            raise ValueError(f"to_torch_rnn: the params are a {mode.upper()}'s, but module's cell is a "
                             f"{type(zoo_cell).__name__}")
    return TorchRNNSpec(mode, int(input_size), int(hidden), num_layers, bidirectional, bias, nonlinearity,
                        dropout, cell)


def _module_cell(module: nn.Module) -> tuple[nn.Module, float]:
    if isinstance(module, RNNStack):
        return module.cell, float(module.dropout_rate)
    if isinstance(module, Bidirectional):
        return _module_cell(module.forward_rnn)[0], 0.0
    if isinstance(module, RNN):
        if module.reverse:
            raise ValueError("to_torch_rnn: a lone RNN(reverse=True) has no torch equivalent; use Bidirectional")
        return module.cell, 0.0
    return module, 0.0


def _cell_to_torch(spec: TorchRNNSpec, p: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    h, g = spec.hidden_size, GATES[spec.mode] * spec.hidden_size
    out = {"weight_ih": p["input_kernel"].T.copy(), "weight_hh": p["recurrent_kernel"].T.copy()}
    b_hh = np.zeros(g, np.float32)
    if spec.mode == "gru":
        b_hh[2 * h :] = p["recurrent_bias"]
    if spec.bias:
        out["bias_ih"], out["bias_hh"] = p["bias"].copy(), b_hh
    else:
        for name, value in (("bias", p["bias"]), ("recurrent_bias", p.get("recurrent_bias"))):
            if value is not None and np.any(value != 0):
                raise ValueError(f"to_torch_rnn: bias=False, but {where}/{name} is not zero (max |value| "
                                 f"{float(np.max(np.abs(value))):.3g}); export with bias=True")
    return out


def to_torch_rnn(params: Any, module: nn.Module | None = None, *, bias: bool = True,
                 prefix: str = "") -> dict[str, np.ndarray]:
    """The torch state dict (float32 NumPy arrays) of zoo recurrent parameters.

    Args:
      params: the ``params`` of a zoo cell, :class:`zoo.RNN`,
        :class:`zoo.Bidirectional` or :class:`zoo.RNNStack` (boxed or not, or
        the whole variables dict); the structure and sizes are read from them.
      module: the zoo module they belong to, optional: checks that its cell is
        one torch has, and gives ``nn.RNN``'s nonlinearity to
        :meth:`TorchRNNSpec` (see :func:`torch_rnn_spec`).
      bias: write ``bias_ih``/``bias_hh`` (the sum into ``bias_ih``, see the
        module docstring); False for a torch module built with ``bias=False``,
        and then every zoo bias must be zero.
      prefix: prepended to every key.

    Load it with ``torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})``;
    ``TorchRNNSpec`` of the same params (:func:`torch_rnn_spec`) builds that module.

    Examples:
      >>> rnn = zoo.RNN(zoo.LSTMCell(features=8))
      >>> params = jax.eval_shape(rnn.init, jax.random.key(0), jnp.ones((2, 4, 3)))["params"]
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)   # stand-in weights
      >>> state = zoo.interop.to_torch_rnn(params, rnn)
      >>> {name: a.shape for name, a in state.items()}       # torch.nn.LSTM(3, 8, batch_first=True)'s
      {'weight_ih_l0': (32, 3), 'weight_hh_l0': (32, 8), 'bias_ih_l0': (32,), 'bias_hh_l0': (32,)}
    """
    params = _unwrap(params)
    spec = _spec_from_zoo(params, module, bias)
    out = {}
    for (k, d), path in spec.zoo_paths().items():
        p = params
        for part in path:
            if part not in p:
                raise ValueError(f"to_torch_rnn: params have no {'/'.join(path)} (layer {k}{d})")
            p = p[part]
        where = "/".join(path) or "the cell"
        for kind, value in _cell_to_torch(spec, p, where).items():
            out[prefix + spec.torch_name(kind, k, d)] = value
    return out


def torch_rnn_spec(params: Any, module: nn.Module | None = None, *, bias: bool = True) -> TorchRNNSpec:
    """The shape of the torch module that :func:`to_torch_rnn` ``(params, module, bias=bias)`` fits.

    Examples:
      >>> stack = zoo.RNNStack(zoo.GRUCell(features=8), num_layers=2, bidirectional=True)
      >>> params = jax.eval_shape(stack.init, jax.random.key(0), jnp.ones((2, 4, 3)))["params"]
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)   # stand-in weights
      >>> spec = zoo.interop.torch_rnn_spec(params, stack)   # torch.nn.GRU(3, 8, num_layers=2, bidirectional=True)
      >>> spec.mode, spec.input_size, spec.hidden_size, spec.num_layers, spec.bidirectional
      ('gru', 3, 8, 2, True)
    """
    return _spec_from_zoo(_unwrap(params), module, bias)


# ---------------------------------------------------------------------------
# states: torch's h_0 / (h_0, c_0) (layers * directions, batch, hidden) <-> zoo's carry


def _slots(module: nn.Module) -> tuple[int, int, nn.Module]:
    """(layers, directions, cell) of a zoo recurrent module."""
    if isinstance(module, RNNStack):
        return module.num_layers, 2 if module.bidirectional else 1, module.cell
    if isinstance(module, Bidirectional):
        return 1, 2, module.forward_rnn.cell
    if isinstance(module, RNN):
        return 1, 1, module.cell
    return 1, 1, module


def carry_from_torch(hx: Any, module: nn.Module) -> Any:
    """zoo's initial carry for ``module`` from torch's ``h_0`` (RNN, GRU) or ``(h_0, c_0)`` (LSTM).

    torch stacks the states of every layer and direction along a first axis of
    ``num_layers * num_directions`` (layer-major: ``2k`` forward, ``2k + 1``
    backward); a ``*Cell`` takes ``(batch, hidden)`` arrays without it. zoo's
    carry is the cell's carry (an LSTM's is ``(c, h)``, the other way round),
    a ``(forward, backward)`` pair for :class:`zoo.Bidirectional`, and a list
    over layers for :class:`zoo.RNNStack`.

    Examples:
      >>> stack = zoo.RNNStack(zoo.LSTMCell(features=8), num_layers=2)
      >>> h0, c0 = np.zeros((2, 5, 8), np.float32), np.ones((2, 5, 8), np.float32)   # (layers, batch, hidden)
      >>> carry = zoo.interop.carry_from_torch((h0, c0), stack)   # a list, one (c, h) per layer
      >>> len(carry), carry[0][0].shape, float(carry[0][0].sum()), float(carry[0][1].sum())
      (2, (5, 8), 40.0, 0.0)
    """
    layers, directions, cell = _slots(module)
    lstm = isinstance(cell, LSTMCell)
    if lstm != isinstance(hx, (tuple, list)):
        raise ValueError(f"carry_from_torch: an {'LSTM' if lstm else 'RNN/GRU'} state is "
                         f"{'(h_0, c_0)' if lstm else 'one array h_0'}, got {type(hx).__name__}")
    parts = [jnp.asarray(_numpy(a)) for a in (hx if lstm else (hx,))]
    if module is cell:
        return (parts[1], parts[0]) if lstm else parts[0]
    want = layers * directions
    for a in parts:
        if a.ndim < 2 or a.shape[0] != want:
            raise ValueError(f"carry_from_torch: torch states have shape (num_layers * num_directions={want}, "
                             f"batch..., hidden), got {tuple(a.shape)}")

    def at(i):
        return (parts[1][i], parts[0][i]) if lstm else parts[0][i]

    per_layer = [tuple(at(k * directions + j) for j in range(directions)) for k in range(layers)]
    per_layer = [p if directions == 2 else p[0] for p in per_layer]
    return per_layer if isinstance(module, RNNStack) else per_layer[0]


def carry_to_torch(carry: Any, module: nn.Module) -> Any:
    """torch's ``h_n`` (or ``(h_n, c_n)`` for an LSTM) from zoo's final carry: the inverse of :func:`carry_from_torch`.

    Examples:
      >>> rnn = zoo.RNN(zoo.GRUCell(features=8))
      >>> h_n = zoo.interop.carry_to_torch(np.ones((5, 8), np.float32), rnn)   # zoo's carry (batch, hidden)
      >>> h_n.shape                                                            # torch's (1, batch, hidden)
      (1, 5, 8)
    """
    layers, directions, cell = _slots(module)
    lstm = isinstance(cell, LSTMCell)
    if module is cell:
        return (np.asarray(carry[1]), np.asarray(carry[0])) if lstm else np.asarray(carry)
    per_layer = list(carry) if isinstance(module, RNNStack) else [carry]
    if len(per_layer) != layers:
        raise ValueError(f"carry_to_torch: expected a carry per layer ({layers}), got {len(per_layer)}")
    slots = [c for p in per_layer for c in (p if directions == 2 else (p,))]
    if lstm:
        return np.stack([np.asarray(c[1]) for c in slots]), np.stack([np.asarray(c[0]) for c in slots])
    return np.stack([np.asarray(c) for c in slots])
