"""Recurrent cells: one time step ``(carry, x) -> (carry, y)``, plus a fast sequence path.

Each cell is a thin linen module around pure functions. It has the call
convention of ``flax.linen``'s cells, so it steps by hand or runs under
:class:`zoo.RNN`:

    cell = zoo.LSTMCell(features=256)
    carry = cell.initialize_carry(key, x[:, 0].shape)     # x: (batch, seq, in)
    params = cell.init(key, carry, x[:, 0])
    carry, y = cell.apply(params, carry, x[:, 0])         # y: (batch, 256)

``run_sequence`` is the path :class:`zoo.RNN` uses: it computes the
input-to-hidden products of all steps in one matmul and hands the loop to a
kernel in ``scan.py`` (a custom-VJP recurrence for the classic cells, a
linear recurrence for minGRU/minLSTM).

Parameters are plain arrays named ``input_kernel`` (in, gates*hidden),
``recurrent_kernel`` (hidden, gates*hidden), ``bias`` (gates*hidden) and, for
the PyTorch-convention GRU, ``recurrent_bias`` (hidden). Gates are
concatenated along the last axis in PyTorch's order, so ``torch.nn.RNN``,
``nn.LSTM`` and ``nn.GRU`` weights map exactly (layer 0 shown; ``.T`` is a
transpose):

=========  ==============================================================
cell       mapping from PyTorch
=========  ==============================================================
SimpleRNN  input_kernel = weight_ih.T; recurrent_kernel = weight_hh.T;
           bias = bias_ih + bias_hh
LSTM       gates (i, f, g, o); input_kernel = weight_ih.T;
           recurrent_kernel = weight_hh.T; bias = bias_ih + bias_hh
GRU        gates (r, z, n), ``reset_after=True``; input_kernel = weight_ih.T;
           recurrent_kernel = weight_hh.T;
           bias = bias_ih + concat(bias_hh[:2H], zeros(H));
           recurrent_bias = bias_hh[2H:]  (PyTorch's b_hn, which the reset
           gate multiplies)
=========  ==============================================================

:func:`zoo.interop.from_torch_rnn` and :func:`zoo.interop.to_torch_rnn`
convert whole state dicts (every layer and direction) both ways.

Numerics: matmuls run in ``dtype`` (default: the promoted dtype of inputs
and parameters) and accumulate in at least float32; gates and the carry are
computed and kept in at least float32, so bfloat16 compute does not let the
state drift; outputs are cast to ``dtype``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.checks import shape_str
from zoo.layers import scan as _scan
from zoo.layers.linear import einsum_acc

Array = jax.Array
Initializer = Callable[..., Array]

__all__ = [
    "RecurrentCell",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "MinGRUCell",
    "MinLSTMCell",
    "CELLS",
    "cell_param_count",
]


def _per_gate(init: Initializer, num_gates: int) -> Initializer:
    """Initialise a (rows, num_gates*hidden) kernel one (rows, hidden) block per gate.

    An orthogonal recurrent kernel should be orthogonal per gate, as with
    separate per-gate matrices (flax.linen's cells), not as one wide matrix.
    """

    def wrapped(key, shape, dtype=jnp.float32):
        rows, cols = shape
        keys = jax.random.split(key, num_gates)
        blocks = [init(k, (rows, cols // num_gates), dtype) for k in keys]
        return jnp.concatenate(blocks, axis=-1)

    return wrapped


class RecurrentCell(nn.Module):
    """Base of zoo's cells: parameters, dtype handling, shape checks.

    Subclasses set ``num_gates`` (the input projection has
    ``num_gates * features`` columns) and implement ``step_from_projection``
    and ``run_sequence``.

    Examples:
      >>> issubclass(zoo.LSTMCell, zoo.RecurrentCell)
      True
      >>> [cls.num_gates for cls in (zoo.SimpleRNNCell, zoo.LSTMCell, zoo.GRUCell)]
      [1, 4, 3]
    """

    features: int
    kernel_init: Initializer = nn.initializers.lecun_normal()
    recurrent_kernel_init: Initializer = nn.initializers.orthogonal()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    num_gates: ClassVar[int] = 1
    has_recurrent_kernel: ClassVar[bool] = True

    # -- parameters ---------------------------------------------------------

    def param_specs(self, in_features: int) -> dict[str, tuple[tuple[int, ...], Initializer]]:
        g = self.num_gates * self.features
        specs = {"input_kernel": ((in_features, g), self.kernel_init)}
        if self.has_recurrent_kernel:
            specs["recurrent_kernel"] = (
                (self.features, g),
                _per_gate(self.recurrent_kernel_init, self.num_gates),
            )
        specs["bias"] = ((g,), self.bias_init)
        return specs

    @nn.compact
    def weights(self, in_features: int) -> dict[str, Array]:
        """The cell's parameters for inputs of ``in_features`` features (created on init)."""
        out = {}
        for name, (shape, init) in self.param_specs(in_features).items():
            if self.has_variable("params", name):
                have = self.get_variable("params", name).shape
                if have != shape:
                    raise ValueError(
                        f"{type(self).__name__}: inputs have {in_features} features, but parameter "
                        f"'{name}' has shape {shape_str(have)}; expected {shape_str(shape)} "
                        f"(features={self.features})"
                    )
            out[name] = self.param(name, init, shape, self.param_dtype)
        return out

    # -- dtypes -------------------------------------------------------------

    def compute_dtype(self, x: Array) -> Any:
        return self.dtype if self.dtype is not None else jnp.result_type(x.dtype, self.param_dtype)

    def carry_dtype(self) -> Any:
        return jnp.promote_types(self.param_dtype, jnp.float32)

    def project(self, p: dict[str, Array], x: Array) -> Array:
        """Input-to-hidden products ``x @ input_kernel + bias`` for any leading axes."""
        cdt = self.compute_dtype(x)
        xp = einsum_acc("...i,io->...o", x.astype(cdt), p["input_kernel"].astype(cdt))  # float32 or wider
        return xp + p["bias"].astype(xp.dtype)  # (..., gates*hidden)

    # -- carry --------------------------------------------------------------

    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Any:
        """Zero carry for inputs of shape ``(batch..., features)``; ``rng`` is unused."""
        del rng
        return jnp.zeros(tuple(input_shape[:-1]) + (self.features,), self.carry_dtype())

    @property
    def num_feature_axes(self) -> int:
        return 1

    def check_step_inputs(self, carry: Any, inputs: Array) -> None:
        if inputs.ndim < 1:
            raise ValueError(
                f"{type(self).__name__}: inputs must have shape (batch..., features); "
                f"got shape {shape_str(inputs.shape)}"
            )
        expected = tuple(inputs.shape[:-1]) + (self.features,)
        want = jax.tree.structure(jax.eval_shape(lambda: self.initialize_carry(None, tuple(inputs.shape))))
        got = jax.tree.structure(carry)
        if got != want:
            raise ValueError(f"{type(self).__name__}: carry has structure {got}, expected {want}")
        for leaf in jax.tree.leaves(carry):
            if tuple(leaf.shape) != expected:
                raise ValueError(
                    f"{type(self).__name__}: carry has a leaf of shape {shape_str(leaf.shape)}, "
                    f"expected {shape_str(expected)} for inputs of shape {shape_str(inputs.shape)}"
                )

    # -- stepping -----------------------------------------------------------

    def __call__(self, carry: Any, inputs: Array) -> tuple[Any, Array]:
        """One step: ``inputs`` (batch..., in) -> ``(carry, y)`` with y (batch..., features)."""
        self.check_step_inputs(carry, inputs)
        p = self.weights(inputs.shape[-1])
        cdt = self.compute_dtype(inputs)
        carry, y = self.step_from_projection(p, carry, self.project(p, inputs), cdt)
        return carry, y.astype(cdt)

    def step_from_projection(self, p, carry, xp, cdt):
        """One step from the input projection ``xp`` (batch..., gates*hidden)."""
        raise NotImplementedError

    def run_sequence(self, carry: Any, xs: Array, mask: Array | None, unroll: int = 1):
        """Whole sequence, time-major: xs (seq, batch, in) -> (carry, ys (seq, batch, features))."""
        raise NotImplementedError


# ----------------------------------------------------------------------------
# cells with a recurrent matmul: one fused kernel, three pointwise steps


def _sigmoid(x):
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: one transcendental and no division;
    # absolute error ~1e-7 against jax.nn.sigmoid.
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


# Each pointwise step takes the gates as tuples of (batch, hidden) arrays:
# xp from the input projection (bias included), hh from the recurrent one.


def _elman_pointwise(xp, hh, h, *, activation):
    h = activation(xp[0] + hh[0])
    return h, h


def _lstm_pointwise(xp, hh, carry):
    c, _ = carry
    i, f, g, o = (a + b for a, b in zip(xp, hh))
    c = _sigmoid(f) * c + _sigmoid(i) * jnp.tanh(g)
    h = _sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def _gru_reset_after_pointwise(xp, hh, h):
    # hh[2] = h @ W_hn + b_hn: the reset gate multiplies the whole recurrent
    # term of the candidate, PyTorch/cuDNN style.
    xr, xz, xn = xp
    hr, hz, hn = hh
    r = _sigmoid(xr + hr)
    z = _sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = n + z * (h - n)  # (1 - z) * n + z * h
    return h, h


def _identity(carry):
    return carry


def _lstm_hidden(carry):
    return carry[1]


class _FusedCell(RecurrentCell):
    """A cell whose step is ``pointwise(xp, h @ recurrent_kernel [+ b], carry)``."""

    hidden = staticmethod(_identity)
    additive: ClassVar[bool] = True  # pointwise reads xp and hh only as xp + hh

    def pointwise(self) -> Callable:
        raise NotImplementedError

    def recurrent_bias(self, p, cdt) -> Array | None:
        return None

    def step_from_projection(self, p, carry, xp, cdt):
        hh = _scan._dot(self.hidden(carry), p["recurrent_kernel"].astype(cdt))  # (batch, gates*hidden)
        b_h = self.recurrent_bias(p, cdt)
        if b_h is not None:
            hh = hh + b_h
        g = self.num_gates
        return self.pointwise()(_scan.split_gates(xp, g), _scan.split_gates(hh, g), carry)

    def run_sequence(self, carry, xs, mask, unroll=1):
        p = self.weights(xs.shape[-1])
        cdt = self.compute_dtype(xs)
        carry, ys = _scan.fused_recurrence(
            self.pointwise(), self.hidden, self.num_gates, self.additive, unroll,
            p["input_kernel"].astype(cdt), p["bias"], p["recurrent_kernel"].astype(cdt),
            self.recurrent_bias(p, cdt), xs.astype(cdt), carry, mask,
        )
        return carry, ys.astype(cdt)


class SimpleRNNCell(_FusedCell):
    """Elman RNN: ``h' = activation(x W_i + b + h W_h)``; carry ``h``.

    ``activation_fn`` is tanh by default (``jax.nn.relu`` matches PyTorch's
    ``nonlinearity='relu'``).

    Examples:
      >>> cell = zoo.SimpleRNNCell(features=8, activation_fn=jax.nn.relu)
      >>> x = jnp.ones((2, 3))                          # one step: (batch, in)
      >>> h = cell.initialize_carry(None, x.shape)      # (batch, features)
      >>> params = jax.eval_shape(cell.init, jax.random.key(0), h, x)   # shapes only; cell.init makes them
      >>> h, y = jax.eval_shape(cell.apply, params, h, x)              # cell.apply computes them
      >>> y.shape
      (2, 8)
    """

    activation_fn: Callable[[Array], Array] = jnp.tanh
    num_gates: ClassVar[int] = 1

    def pointwise(self):
        return functools.partial(_elman_pointwise, activation=self.activation_fn)


class LSTMCell(_FusedCell):
    """Long short-term memory (Hochreiter and Schmidhuber 1997, with forget gate).

    Gates (i, f, g, o) in PyTorch's order, carry ``(c, h)`` as in
    ``flax.linen.LSTMCell``::

        i, f, g, o = split(x W_i + b + h W_h)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    ``forget_bias`` is added to the forget gate's initial bias: 1.0 by
    default, so the cell remembers from the start (Gers et al. 2000;
    Jozefowicz et al. 2015). Use 0.0 for PyTorch's initialisation.

    Examples:
      >>> cell = zoo.LSTMCell(features=8)
      >>> x = jnp.ones((2, 3))                          # (batch, in)
      >>> carry = cell.initialize_carry(None, x.shape)  # (c, h), each (batch, features)
      >>> params = cell.init(jax.random.key(0), carry, x)
      >>> jax.tree.map(jnp.shape, params["params"])
      {'bias': (32,), 'input_kernel': (3, 32), 'recurrent_kernel': (8, 32)}
      >>> (c, h), y = cell.apply(params, carry, x)
      >>> y.shape
      (2, 8)
    """

    forget_bias: float = 1.0
    num_gates: ClassVar[int] = 4
    hidden = staticmethod(_lstm_hidden)

    def param_specs(self, in_features):
        specs = super().param_specs(in_features)
        shape, init = specs["bias"]
        h, fb = self.features, self.forget_bias

        def bias_init(key, shape, dtype=jnp.float32):
            return init(key, shape, dtype).at[h : 2 * h].add(fb)

        specs["bias"] = (shape, bias_init)
        return specs

    def pointwise(self):
        return _lstm_pointwise

    def initialize_carry(self, rng, input_shape):
        h = super().initialize_carry(rng, input_shape)
        return (h, h)  # (c, h)


class GRUCell(_FusedCell):
    """Gated recurrent unit, gates (r, z, n); carry ``h``.

    ``reset_after=True`` (default) is the PyTorch/cuDNN form, which keeps a
    separate recurrent bias ``b_hn`` inside the reset gate's product::

        r = sigmoid(x W_ir + b_r + h W_hr);   z = sigmoid(x W_iz + b_z + h W_hz)
        n = tanh(x W_in + b_n + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h

    ``reset_after=False`` is Cho et al. (2014): ``n = tanh(x W_in + b_n +
    (r * h) W_hn)``, with no ``recurrent_bias``. It needs a second matmul per
    step after the reset gate, so it cannot use the fused kernel's single
    recurrent product and runs a plain differentiated ``lax.scan``: slower,
    which is why cuDNN chose the other form.

    Examples:
      >>> cell = zoo.GRUCell(features=8)
      >>> x = jnp.ones((2, 3))                          # one step: (batch, in)
      >>> h = cell.initialize_carry(None, x.shape)      # (batch, features)
      >>> params = jax.eval_shape(cell.init, jax.random.key(0), h, x)   # shapes only; cell.init makes them
      >>> jax.tree.map(jnp.shape, params["params"])     # the recurrent bias b_hn of reset_after=True
      {'bias': (24,), 'input_kernel': (3, 24), 'recurrent_bias': (8,), 'recurrent_kernel': (8, 24)}
    """

    reset_after: bool = True
    num_gates: ClassVar[int] = 3
    additive: ClassVar[bool] = False  # the reset gate multiplies h W_hn + b_hn

    def param_specs(self, in_features):
        specs = super().param_specs(in_features)
        if self.reset_after:
            specs["recurrent_bias"] = ((self.features,), self.bias_init)
        return specs

    def pointwise(self):
        return _gru_reset_after_pointwise

    def recurrent_bias(self, p, cdt):
        acc = jnp.promote_types(cdt, jnp.float32)
        zeros = jnp.zeros((2 * self.features,), acc)
        return jnp.concatenate([zeros, p["recurrent_bias"].astype(acc)])  # (3*hidden,)

    def step_from_projection(self, p, carry, xp, cdt):
        if self.reset_after:
            return super().step_from_projection(p, carry, xp, cdt)
        return _gru_reset_before_step(p["recurrent_kernel"].astype(cdt), carry, xp)

    def run_sequence(self, carry, xs, mask, unroll=1):
        if self.reset_after:
            return super().run_sequence(carry, xs, mask, unroll)
        p = self.weights(xs.shape[-1])
        cdt = self.compute_dtype(xs)
        xp = self.project(p, xs)  # (seq, batch, 3*hidden)
        carry, ys = _scan.autodiff_recurrence(
            _gru_reset_before_step, p["recurrent_kernel"].astype(cdt), xp, carry, mask, unroll
        )
        return carry, ys.astype(cdt)


def _gru_reset_before_step(w_h, h, xp):
    hidden = h.shape[-1]
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hrz = _scan._dot(h, w_h[:, : 2 * hidden])  # (batch, 2*hidden)
    r = _sigmoid(xr + hrz[..., :hidden])
    z = _sigmoid(xz + hrz[..., hidden:])
    n = jnp.tanh(xn + _scan._dot(r * h, w_h[:, 2 * hidden :]))
    h = (1.0 - z) * n + z * h
    return h, h


# ----------------------------------------------------------------------------
# minimal RNNs: gates from the input alone, so the sequence is a linear scan


def _log_g(x):
    """log g(x) for g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0): a positive,
    continuous candidate activation (Feng et al. 2024). Written so that
    neither branch produces a non-finite value or gradient."""
    return jnp.where(x >= 0, jnp.log(jnp.maximum(x, 0.0) + 0.5), -jax.nn.softplus(-x))


class _MinimalCell(RecurrentCell):
    """``h_t = a_t * h_{t-1} + b_t`` with ``a_t``, ``b_t`` from ``x_t`` alone.

    ``method`` says how a whole sequence is solved
    (:func:`zoo.linear_recurrence`): ``'sequential'`` step by step (the form
    generation uses, one step at a time through ``__call__``),
    ``'associative'`` by ``lax.associative_scan`` over time (depth O(log T)),
    ``'chunked'`` by chunks of ``chunk_size`` steps; None (the default) picks
    per platform when the program is lowered. ``parallel`` is the old flag
    (True: 'associative', False: 'sequential'), kept for one release with a
    DeprecationWarning.

    ``log_space=True`` (the paper's default) uses the positive candidate
    activation ``g`` and scans logarithms; ``log_space=False`` uses a linear
    candidate (the paper's plain version) and scans in linear space. Both
    are stable: ``0 < a_t < 1``, so products only shrink. Input domain: any
    finite inputs and any finite initial state (in log space the initial
    state enters linearly, ``h_t = A_t h_0 + S_t``, so negative states are
    fine); padding may hold any value, even non-finite.
    """

    method: str | None = None
    chunk_size: int | None = None
    log_space: bool = True
    parallel: bool | None = None  # deprecated: method
    has_recurrent_kernel: ClassVar[bool] = False

    def __post_init__(self):
        if self.parallel is not None:
            # Fields are still writable here: flax freezes a module after its __post_init__.
            self.method = _scan.method_from_parallel(type(self).__name__, self.parallel, self.method, stacklevel=4)
            self.parallel = None
        _scan.check_method(type(self).__name__, self.method, self.chunk_size)
        super().__post_init__()

    def terms(self, k: Array) -> tuple[Array, Array]:
        """From pre-activations k (..., num_gates*hidden): ``(log a, b)``, or
        ``(log a, log b)`` with ``log_space``; float32 or wider."""
        raise NotImplementedError

    def _candidate(self, k):
        return _log_g(k) if self.log_space else k

    def step_from_projection(self, p, carry, xp, cdt):
        log_a, b = self.terms(xp)
        h = jnp.exp(log_a) * carry + (jnp.exp(b) if self.log_space else b)
        return h, h

    def run_sequence(self, carry, xs, mask, unroll=1):
        p = self.weights(xs.shape[-1])
        log_a, b = self.terms(self.project(p, xs))  # (seq, batch, hidden) each
        carry, ys = _scan.linear_recurrence(
            log_a, b, carry, mask, log_space=self.log_space, method=self.method, chunk_size=self.chunk_size
        )
        return carry, ys.astype(self.compute_dtype(xs))


class MinGRUCell(_MinimalCell):
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?"); carry ``h``.

    ``z = sigmoid(x W_z + b_z)``, ``h~ = g(x W_h + b_h)`` (log space) or
    ``x W_h + b_h`` (linear), ``h' = (1 - z) * h + z * h~``. Gates (z, h~)
    are concatenated in ``input_kernel`` (in, 2*hidden).

    Examples:
      >>> rnn = zoo.RNN(zoo.MinGRUCell(features=8))      # method=None: the platform's default scan
      >>> x = jnp.ones((2, 4, 3))                        # (batch, seq, in)
      >>> params = jax.eval_shape(rnn.init, jax.random.key(0), x)   # shapes only; rnn.init makes them
      >>> jax.tree.map(jnp.shape, params["params"]["cell"])         # no recurrent kernel
      {'bias': (16,), 'input_kernel': (3, 16)}
      >>> jax.eval_shape(rnn.apply, params, x).shape
      (2, 4, 8)
    """

    num_gates: ClassVar[int] = 2

    def terms(self, k):
        kz, kh = jnp.split(k, 2, axis=-1)
        log_a = -jax.nn.softplus(kz)  # log(1 - z)
        if self.log_space:
            return log_a, -jax.nn.softplus(-kz) + _log_g(kh)  # log z + log g(h~)
        return log_a, jax.nn.sigmoid(kz) * kh


class MinLSTMCell(_MinimalCell):
    """minLSTM (Feng et al. 2024); carry ``h``.

    ``f = sigmoid(x W_f + b_f)``, ``i = sigmoid(x W_i + b_i)``, normalised
    ``f' = f / (f + i)``, ``i' = i / (f + i)`` (computed in log space),
    ``h' = f' * h + i' * h~`` with ``h~`` as in :class:`MinGRUCell`. Gates
    (f, i, h~) are concatenated in ``input_kernel`` (in, 3*hidden).

    Examples:
      >>> rnn = zoo.RNN(zoo.MinLSTMCell(features=8, method="sequential"))   # a sequential scan
      >>> x = jnp.ones((2, 4, 3))                        # (batch, seq, in)
      >>> params = jax.eval_shape(rnn.init, jax.random.key(0), x)   # shapes only; rnn.init makes them
      >>> params["params"]["cell"]["input_kernel"].shape   # (in, 3 * features): gates f, i, h~
      (3, 24)
      >>> jax.eval_shape(rnn.apply, params, x).shape
      (2, 4, 8)
    """

    num_gates: ClassVar[int] = 3

    def terms(self, k):
        kf, ki, kh = jnp.split(k, 3, axis=-1)
        diff = jax.nn.softplus(-kf) - jax.nn.softplus(-ki)  # log i - log f
        log_f = -jax.nn.softplus(diff)  # log f'
        log_i = -jax.nn.softplus(-diff)  # log i'
        if self.log_space:
            return log_f, log_i + _log_g(kh)
        return log_f, jnp.exp(log_i) * kh


# ----------------------------------------------------------------------------
# The cell table: one name per cell across zoo (the CLI, presets, experiments, benchmarks).

CELLS: dict[str, type[RecurrentCell]] = {
    "rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell, "mingru": MinGRUCell, "minlstm": MinLSTMCell,
}
# name -> (gates, has a recurrent kernel, extra recurrent bias of width hidden (the reset-after GRU's))
_SHAPES = {"rnn": (1, True, 0), "lstm": (4, True, 0), "gru": (3, True, 1), "mingru": (2, False, 0),
           "minlstm": (3, False, 0)}


def cell_param_count(cell: str, input_size: int, hidden: int) -> int:
    """Parameters of one cell of :data:`CELLS` with its defaults (the tests check it against ``init``).

    Per gate an input kernel (input_size, hidden) and a bias (hidden,); the
    classic cells add a recurrent kernel (hidden, hidden) per gate, minGRU and
    minLSTM have none (their gates read only the input).

    Examples:
      >>> zoo.layers.cell_param_count("lstm", input_size=3, hidden=8)   # 4 * (3 * 8 + 8 * 8 + 8)
      384
      >>> zoo.layers.cell_param_count("mingru", input_size=3, hidden=8)  # 2 * (3 * 8 + 8)
      64
    """
    if cell not in _SHAPES:
        raise ValueError(f"cell_param_count: cell={cell!r}, expected one of {sorted(_SHAPES)}")
    gates, recurrent, extra = _SHAPES[cell]
    return gates * (input_size * hidden + hidden) + (gates * hidden * hidden if recurrent else 0) + extra * hidden
