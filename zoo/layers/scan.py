"""Sequence kernels for recurrent layers: pure functions, time-major.

Everything here takes and returns time-major arrays, ``(seq, batch, ...)``,
because that is the axis ``lax.scan`` walks. The layer driver in
``recurrent.py`` transposes batch-major inputs once on the way in and once on
the way out.

Two kernels:

``fused_recurrence``
    For cells whose step is ``carry' = pointwise(x_t W_x + b_x, h_{t-1} W_h + b_h, carry)``
    (Elman RNN, LSTM, GRU with the reset gate after the matmul). The
    input-to-hidden products of every step are computed before the loop, as
    large matmuls over all ``seq * batch`` rows; only ``h @ W_h`` stays
    inside. A custom VJP makes the backward loop carry only the hidden-state
    gradient and stack the per-step gate gradients; the weight gradients
    ``dW_h = sum_t h_{t-1}^T dg_t`` (and ``dW_x``) are then large matmuls after
    the loop, as cuDNN does. Autodiff of a plain scan would instead accumulate
    ``dW_h`` step by step inside the loop, one skinny (H, B) x (B, G) matmul
    per step.

``linear_recurrence``
    For ``h_t = a_t * h_{t-1} + b_t`` with gates that depend on the input only
    (minGRU, minLSTM). ``method='sequential'`` runs the recurrence step by
    step, ``'associative'`` runs ``lax.associative_scan`` over time (depth
    O(log T)), ``'chunked'`` runs chunks of C steps side by side and a
    sequential scan over the T/C chunk boundaries (depth about 2C + T/C);
    None picks per platform when the program is lowered. With
    ``log_space=True`` the associative scan scans pairs of logarithms
    ``(log a_t, log b_t)`` (for ``b_t > 0``), the form of Feng et al. (2024)
    and Heinsen (2023); the initial state enters linearly,
    ``h_t = A_t h_0 + S_t``, so it may have any sign.

Masks are *prefix* masks: ``mask[t, b]`` is True for the first
``seq_lengths[b]`` steps of sequence ``b`` and False after. Masked steps leave
the carry unchanged and produce zero outputs, so the final carry is the state
at each sequence's last valid step.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from zoo.layers.platform import cpu_or

Array = jax.Array
Carry = Any  # a pytree of (batch, hidden) arrays

__all__ = [
    "fused_recurrence",
    "linear_recurrence",
    "flip_sequences",
    "lengths_to_mask",
]


# ----------------------------------------------------------------------------
# helpers


def lengths_to_mask(seq_lengths: Array, num_steps: int) -> Array:
    """Prefix mask of shape (seq, batch): True where ``t < seq_lengths[b]``.

    Examples:
      >>> zoo.lengths_to_mask(jnp.array([3, 1]), 4)    # (seq, batch)
      Array([[ True,  True],
             [ True, False],
             [ True, False],
             [False, False]], dtype=bool)
    """
    return jnp.arange(num_steps)[:, None] < seq_lengths[None, :]  # (seq, batch)


def flip_sequences(x: Array, seq_lengths: Array | None) -> Array:
    """Reverse each sequence of a time-major (seq, batch, ...) array within its length.

    Padding stays at the end: with length 3 and 5 steps, ``[x0 x1 x2 p3 p4]``
    becomes ``[x2 x1 x0 p4 p3]``. The operation is its own inverse.

    Examples:
      >>> x = jnp.arange(5)[:, None]                # (seq, batch) = (5, 1)
      >>> zoo.flip_sequences(x, jnp.array([3])).ravel()
      Array([2, 1, 0, 4, 3], dtype=int32)
    """
    if seq_lengths is None:
        return jnp.flip(x, axis=0)
    num_steps = x.shape[0]
    # Step t of the output reads step (L - 1 - t) mod T of the input.
    idx = (seq_lengths[None, :] - 1 - jnp.arange(num_steps)[:, None]) % num_steps  # (seq, batch)
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))  # (seq, batch, 1...)
    return jnp.take_along_axis(x, idx, axis=0)


def _apply_step_mask(m_t: Array | None, new: Carry, old: Carry, y: Array) -> tuple[Carry, Array]:
    """Padding steps (m_t False) keep the old carry and output zeros."""
    if m_t is None:
        return new, y
    keep = m_t[:, None]  # (batch, 1)
    new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)
    return new, jnp.where(keep, y, jnp.zeros_like(y))


def _masked_pointwise(pointwise, xp_t, hh_t, carry, m_t):
    new, y = pointwise(xp_t, hh_t, carry)
    return _apply_step_mask(m_t, new, carry, y)


def _accumulation_dtype(dtype) -> Any:
    return jnp.promote_types(dtype, jnp.float32)


def _dot(a: Array, b: Array) -> Array:
    """a @ b in the compute dtype of ``b``, accumulated in >= float32."""
    return jnp.dot(a.astype(b.dtype), b, preferred_element_type=_accumulation_dtype(b.dtype))


def split_gates(a: Array, num_gates: int) -> tuple[Array, ...]:
    """Split the last axis of (..., num_gates * hidden) into ``num_gates`` arrays."""
    return tuple(jnp.split(a, num_gates, axis=-1))


def _tree_add(a: Carry, b: Carry) -> Carry:
    return jax.tree.map(jnp.add, a, b)


def _sum(arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = out + a
    return out


# ----------------------------------------------------------------------------
# fused recurrence with a hand-written backward pass
#
# Inside the kernel every gate is its own contiguous (seq, batch, hidden)
# array: the input projection is one (seq*batch, features) x (features,
# hidden) matmul per gate. In the loop, the one recurrent product
# (batch, G*hidden) is split into gates; the elementwise step reads those
# materialised pieces and the per-gate input arrays, never slices of a fused
# sum such as (x_t W_x + h W_h)[:, k*H:(k+1)*H]: XLA:CPU does not vectorise a
# fused loop that slices a computed operand at several offsets, which made the
# gate arithmetic several times slower than the matmuls around it (measured
# with jax.profiler on the benchmark's shapes).


def _fused_scan(pointwise, hidden, unroll, b_x, w_h, b_h, xp, carry0, mask, save):
    acc = xp[0].dtype
    num_gates = len(xp)

    def step(carry, inputs):
        xp_t, m_t = inputs
        hh = _dot(hidden(carry), w_h)  # (batch, G*hidden)
        if b_h is not None:
            hh = hh + b_h.astype(acc)
        hh = split_gates(hh, num_gates)
        # The input bias is added here, inside the loop's elementwise fusion,
        # rather than in a separate pass over the whole (seq, batch, hidden) arrays.
        xb = tuple(x + b.astype(acc) for x, b in zip(xp_t, b_x))
        new, y = _masked_pointwise(pointwise, xb, hh, carry, m_t)
        return new, (y, (carry, hh) if save else None)

    carry, (ys, saved) = lax.scan(step, carry0, (xp, mask), unroll=unroll)
    return carry, ys, saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def fused_recurrence(
    pointwise: Callable,
    hidden: Callable,
    num_gates: int,
    additive: bool,
    unroll: int,
    w_x: Array,
    b_x: Array,
    w_h: Array,
    b_h: Array | None,
    x: Array,
    carry0: Carry,
    mask: Array | None,
) -> tuple[Carry, Array]:
    """A recurrent layer: ``carry_t, y_t = pointwise(x_t @ w_x + b_x, h_{t-1} @ w_h + b_h, carry_{t-1})``.

    ``x @ w_x`` is computed for all steps before the loop, as large matmuls
    (one per gate); ``h @ w_h`` is the only matmul inside it.

    Args:
      pointwise: elementwise step ``(xp_t, hh_t, carry) -> (carry, y_t)``,
        where ``xp_t`` and ``hh_t`` are tuples of ``num_gates`` (batch,
        hidden) arrays, in the order of the gates in the kernels. It holds no
        weights. Pass a module-level function (or a ``partial`` of one): it
        is a static argument.
      hidden: picks the (batch, hidden) array that multiplies ``w_h`` out of
        the carry (``lambda c: c`` for an Elman RNN or GRU, ``lambda c: c[1]``
        for an LSTM's ``(c, h)``). Applied to the stacked carries too, so use
        indexing, not arithmetic.
      num_gates: G; the kernels have G * hidden columns, gate after gate.
      additive: True when ``pointwise`` reads ``xp_t`` and ``hh_t`` only
        through their sums gate by gate (Elman RNN, LSTM). Their gradients are
        then equal: the backward loop stacks one set of gate gradients, not
        two, and both weight gradients come from the same matmuls.
      unroll: ``lax.scan`` unroll factor, for the forward and backward loops.
      w_x: (features, G * hidden) input kernel, in the compute dtype.
      b_x: (G * hidden,) bias added to ``x @ w_x``.
      w_h: (hidden, G * hidden) recurrent kernel, in the compute dtype.
      b_h: (G * hidden,) bias added to ``h @ w_h``, or None.
      x: (seq, batch, features) inputs, in the compute dtype.
      carry0: initial carry.
      mask: (seq, batch) boolean prefix mask, or None.

    Returns:
      ``(carry, ys)``: the carry after the last valid step and the
      (seq, batch, hidden) outputs, zero where ``mask`` is False.

    Examples:
      >>> def elman(xp, hh, h):                     # module level in real code: a static argument
      ...     h = jnp.tanh(xp[0] + hh[0])
      ...     return h, h
      ...
      >>> rng = np.random.default_rng(0)
      >>> w_x, w_h = rng.standard_normal((3, 8), np.float32), rng.standard_normal((8, 8), np.float32)
      >>> x = jnp.ones((4, 2, 3))                   # (seq, batch, in), time-major
      >>> h, ys = zoo.fused_recurrence(elman, lambda c: c, 1, True, 1,
      ...                              w_x, jnp.zeros(8), w_h, None, x, jnp.zeros((2, 8)), None)
      >>> h.shape, ys.shape
      ((2, 8), (4, 2, 8))
    """
    gw_x, gb_x = split_gates(w_x, num_gates), split_gates(b_x, num_gates)
    xp = tuple(_dot(x, w) for w in gw_x)  # G x (seq, batch, hidden)
    carry, ys, _ = _fused_scan(pointwise, hidden, unroll, gb_x, w_h, b_h, xp, carry0, mask, save=False)
    return carry, ys


def _fused_fwd(pointwise, hidden, num_gates, additive, unroll, w_x, b_x, w_h, b_h, x, carry0, mask):
    gw_x, gb_x = split_gates(w_x, num_gates), split_gates(b_x, num_gates)
    xp = tuple(_dot(x, w) for w in gw_x)  # G x (seq, batch, hidden)
    carry, ys, (carries, hhs) = _fused_scan(
        pointwise, hidden, unroll, gb_x, w_h, b_h, xp, carry0, mask, save=True
    )
    # carries: the carry *entering* each step, (seq, batch, hidden) leaves.
    # hhs: G x h_{t-1} @ w_h + b_h of each step, (seq, batch, hidden).
    return (carry, ys), (w_x, b_x, w_h, b_h, x, xp, mask, carries, hhs)


def _fused_bwd(pointwise, hidden, num_gates, additive, unroll, residuals, cotangents):
    w_x, b_x, w_h, b_h, x, xp, mask, carries, hhs = residuals
    gw_x, gb_x = split_gates(w_x, num_gates), split_gates(b_x, num_gates)
    d_carry_last, d_ys = cotangents
    cdt = w_h.dtype
    acc = _accumulation_dtype(cdt)
    gw_h_t = tuple(w.T for w in split_gates(w_h, num_gates))  # (hidden, hidden) each, transposed once

    def step(d_carry, inputs):
        xp_t, hh_t, carry_t, m_t, dy_t = inputs
        xp_t = tuple(a + b.astype(acc) for a, b in zip(xp_t, gb_x))
        if additive:
            _, vjp = jax.vjp(lambda b, c: _masked_pointwise(pointwise, xp_t, b, c, m_t), hh_t, carry_t)
            dhh_t, d_prev = vjp((d_carry, dy_t))
            dxp_t = None  # equal to dhh_t
        else:
            _, vjp = jax.vjp(
                lambda a, b, c: _masked_pointwise(pointwise, a, b, c, m_t), xp_t, hh_t, carry_t
            )
            dxp_t, dhh_t, d_prev = vjp((d_carry, dy_t))
        # Gradient through h_{t-1} @ w_h: the only matmuls left in the loop.
        dh = _sum([_dot(d, w) for d, w in zip(dhh_t, gw_h_t)])  # (batch, hidden)
        _, hidden_vjp = jax.vjp(hidden, carry_t)
        (dh_tree,) = hidden_vjp(dh.astype(hidden(carry_t).dtype))
        return _tree_add(d_prev, dh_tree), (dxp_t, dhh_t)

    d_carry0, (d_xp, d_hh) = lax.scan(
        step, d_carry_last, (xp, hhs, carries, mask, d_ys), reverse=True, unroll=unroll
    )
    if additive:
        d_xp = d_hh
    # Weight gradients after the loop, as matmuls over all (seq * batch) rows
    # (contracting the leading two axes), and the input gradient.
    h_prev = hidden(carries).astype(cdt)  # (seq, batch, hidden)
    wgrad = lambda a, d: jnp.einsum("tbk,tbh->kh", a, d.astype(cdt), preferred_element_type=acc)
    if additive:
        # Both kernels from the same gate gradients: [x, h_prev]^T @ d_gate.
        xh = jnp.concatenate([x, h_prev], axis=-1)  # (seq, batch, features + hidden)
        d_w = jnp.concatenate([wgrad(xh, d) for d in d_hh], axis=-1)  # (features + hidden, G*hidden)
        d_w_x, d_w_h = d_w[: x.shape[-1]], d_w[x.shape[-1] :]
    else:
        d_w_x = jnp.concatenate([wgrad(x, d) for d in d_xp], axis=-1)
        d_w_h = jnp.concatenate([wgrad(h_prev, d) for d in d_hh], axis=-1)
    d_x = _sum([_dot(d, w.T) for d, w in zip(d_xp, gw_x)])  # (seq, batch, features)
    d_b_x = jnp.concatenate([d.sum(axis=(0, 1)) for d in d_xp])
    d_b_h = None if b_h is None else jnp.concatenate([d.sum(axis=(0, 1)) for d in d_hh]).astype(b_h.dtype)
    return (
        d_w_x.astype(w_x.dtype), d_b_x.astype(b_x.dtype), d_w_h.astype(w_h.dtype), d_b_h,
        d_x.astype(x.dtype), d_carry0, None,
    )


fused_recurrence.defvjp(_fused_fwd, _fused_bwd)


def autodiff_recurrence(step: Callable, params: Any, xp: Array, carry0: Carry, mask: Array | None, unroll: int = 1):
    """Plain ``lax.scan`` of ``step(params, carry, xp_t) -> (carry, y)`` with masking.

    For cells that do not fit ``fused_recurrence`` (the GRU with the reset
    gate before the matmul, which needs a second matmul on ``r * h``); JAX
    differentiates the loop.
    """

    def body(carry, inputs):
        xp_t, m_t = inputs
        new, y = step(params, carry, xp_t)
        return _apply_step_mask(m_t, new, carry, y)

    return lax.scan(body, carry0, (xp, mask), unroll=unroll)


# ----------------------------------------------------------------------------
# linear recurrence h_t = a_t * h_{t-1} + b_t
#
# Three ways to solve it, chosen with ``method``:
#
# 'sequential'   lax.scan, one step at a time: T dependent steps of (batch, hidden) work.
# 'associative'  lax.associative_scan over time: depth O(log T), about 2x the elementwise work and
#                memory traffic of the sequential loop.
# 'chunked'      T/C chunks of C steps (a two-level "reduce, then scan" scan):
#                 1. every chunk from a zero state, all T/C chunks at once: C steps of
#                    (T/C, batch*hidden) work, keeping only each chunk's final state u and its decay
#                    product A = a_1 ... a_C (no (seq, ...) array is written);
#                 2. the states entering each chunk, h_k = A_k h_{k-1} + u_k: a sequential scan over
#                    T/C carries;
#                 3. every chunk again from its entering state, all chunks at once, writing the states.
#                Depth 2C + T/C instead of T, and every step is T/C times wider, so the loop's fixed
#                cost per step is paid (2C + T/C) times rather than T times. The arithmetic is the
#                sequential recurrence's (products of decays in (0, 1], no exponentials of sums), so
#                it is stable for any finite inputs and equal to the sequential form up to the
#                rounding of the chunk boundaries.
#
# Why not cumulative sums inside a chunk, as Mamba-2's and GLA's kernels do? With one decay per
# channel, the state inside a chunk is sum_s exp(L_t - L_s) b_s with L the cumulative sum of log a.
# As one cumulative sum it needs exp(-L_s), which overflows float32 once a chunk's decay passes
# e^-88 (a single gate with log a < -88/C does it); stable forms need a C x C weight per channel
# (C times the work) or a log-sum-exp scan (an exp and a log per element per level). On the
# 2-core CPU all of them were slower than the form above (docs/chunked_scan.md).
#
# The chunked form has a custom VJP: the gradient is the same recurrence run backwards,
# lambda_t = g_t + a_{t+1} lambda_{t+1}, solved by the same chunked scan; then db_t = lambda_t,
# d log a_t = lambda_t a_t h_{t-1} and dh_0 = a_1 lambda_1. Autodiff of the loops would store
# every step's carries and run three loops backwards.

METHODS = ("sequential", "associative", "chunked")

# The default method and chunk size, per platform (chosen when the program is lowered, see
# zoo/layers/platform.py). CPU: measured on the 2-core AMD EPYC with the benchmark suite's matched
# minGRU layer (benchmarks/chunked_scan.py, docs/chunked_scan.md). GPU and TPU: not measured yet
# (zoo.bench.device_report measures all three); the associative scan has the smallest depth,
# 2 log2 T, and a GPU runs one kernel per step of a loop, so it is the choice until measured.
CPU_METHOD, CPU_CHUNK_SIZE = "chunked", 64
ACCELERATOR_METHOD, ACCELERATOR_CHUNK_SIZE = "associative", 128


def _combine_linear(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _combine_log(left, right):
    la1, lb1 = left
    la2, lb2 = right
    return la1 + la2, jnp.logaddexp(lb1 + la2, lb2)


def _chunk_scan(a: Array, b: Array, h0: Array, chunk: int, reverse: bool = False) -> Array:
    """``h_t = a_t h_{t-1} + b_t`` by chunks (see above): a, b (T, N), h0 (N,) -> states (T, N).

    With ``reverse`` the recurrence runs from t = T down to 1 (h0 enters at the end).
    """
    steps, width = a.shape
    c = max(1, min(chunk, steps))
    n = -(-steps // c)  # chunks
    pad = n * c - steps
    if pad:
        # Neutral steps (a = 1, b = 0) at the end: forwards they leave the state unchanged after
        # T; backwards they pass h0 through to step T unchanged.
        a = jnp.concatenate([a, jnp.ones((pad, width), a.dtype)])
        b = jnp.concatenate([b, jnp.zeros((pad, width), b.dtype)])
    a3 = a.reshape(n, c, width)  # (chunks, C, N): chunk k holds steps k*C .. k*C + C - 1
    b3 = b.reshape(n, c, width)
    order = (lambda i: c - 1 - i) if reverse else (lambda i: i)

    def inputs(i):
        j = order(i)
        return j, lax.dynamic_index_in_dim(a3, j, 1, keepdims=False), lax.dynamic_index_in_dim(b3, j, 1, keepdims=False)

    if n == 1:
        h_in = h0[None]  # (1, N)
    else:
        # 1. each chunk from a zero state: its final state u and decay product A, (chunks, N)
        def local(i, carry):
            u, big_a = carry
            _, a_t, b_t = inputs(i)
            return a_t * u + b_t, a_t * big_a

        zeros = jnp.zeros((n, width), b.dtype)
        u, big_a = lax.fori_loop(0, c, local, (zeros, jnp.ones((n, width), a.dtype)))

        # 2. the state entering each chunk
        def across(h, chunk_terms):
            big_a_k, u_k = chunk_terms
            return big_a_k * h + u_k, h

        _, h_in = lax.scan(across, h0, (big_a, u), reverse=reverse)  # (chunks, N)

    # 3. each chunk again from its entering state, writing every state
    def fill(i, carry):
        h, out = carry
        j, a_t, b_t = inputs(i)
        h = a_t * h + b_t
        return h, lax.dynamic_update_index_in_dim(out, h, j, 1)

    _, hs = lax.fori_loop(0, c, fill, (h_in, jnp.zeros((n, c, width), h_in.dtype)))
    return hs.reshape(n * c, width)[:steps]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _chunked(chunk: int, log_a: Array, b: Array, h0: Array) -> Array:
    """States (T, ...) of ``h_t = exp(log_a_t) h_{t-1} + b_t``; log_a, b (T, ...), h0 (...)."""
    hs, _ = _chunked_fwd(chunk, log_a, b, h0)
    return hs


def _chunked_fwd(chunk, log_a, b, h0):
    steps = log_a.shape[0]
    a = jnp.exp(log_a)
    hs = _chunk_scan(a.reshape(steps, -1), b.reshape(steps, -1), h0.reshape(-1), chunk)  # (T, N)
    return hs.reshape(log_a.shape), (a, h0, hs.reshape(log_a.shape))


def _chunked_bwd(chunk, residuals, g):
    a, h0, hs = residuals
    steps = a.shape[0]
    # lambda_t = dL/dh_t in full: g_t + a_{t+1} lambda_{t+1}, a reversed recurrence with a shifted by one.
    a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])  # (T, ...)
    lam = _chunk_scan(
        a_next.reshape(steps, -1), g.reshape(steps, -1), jnp.zeros(h0.size, g.dtype), chunk, reverse=True
    ).reshape(a.shape)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])  # (T, ...): the state each step reads
    d_log_a = lam * a * h_prev
    return d_log_a, lam, (a[0] * lam[0]).astype(h0.dtype)


_chunked.defvjp(_chunked_fwd, _chunked_bwd)


def _solve(method: str, chunk: int, log_space: bool, log_a: Array, b: Array, h0: Array) -> Array:
    """The (seq, batch, hidden) states by ``method`` (inputs already sanitised for the mask)."""
    if method == "associative":
        if log_space:
            log_big_a, log_s = lax.associative_scan(_combine_log, (log_a, b), axis=0)
            return jnp.exp(log_big_a) * h0[None] + jnp.exp(log_s)  # (seq, batch, hidden)
        a = jnp.exp(log_a)
        # Fold h0 into the first input term: b_1' = a_1 h0 + b_1.
        b = b.at[0].add(a[0] * h0)
        _, hs = lax.associative_scan(_combine_linear, (a, b), axis=0)
        return hs
    bb = jnp.exp(b) if log_space else b
    if method == "chunked":
        return _chunked(chunk, log_a, bb, h0)

    def step(h, inputs):
        la_t, b_t = inputs
        h = jnp.exp(la_t) * h + b_t
        return h, h

    _, hs = lax.scan(step, h0, (log_a, bb))
    return hs


def _solver(method: str | None, chunk_size: int | None, log_space: bool) -> Callable:
    """``(log_a, b, h0) -> hs`` for ``method`` and ``chunk_size``, their platform defaults where None."""
    cpu = (method or CPU_METHOD, chunk_size or CPU_CHUNK_SIZE)
    other = (method or ACCELERATOR_METHOD, chunk_size or ACCELERATOR_CHUNK_SIZE)
    if cpu[0] == other[0] and (cpu[0] != "chunked" or cpu[1] == other[1]):
        return functools.partial(_solve, *cpu, log_space)  # the same program everywhere
    # ZOO_CPU_PLAIN=linear_recurrence gives the CPU the accelerators' default (zoo/layers/platform.py)
    return cpu_or(functools.partial(_solve, *cpu, log_space), functools.partial(_solve, *other, log_space),
                  name="linear_recurrence")


def check_method(owner: str, method: str | None, chunk_size: int | None) -> None:
    """ValueError unless ``method`` is None or one of :data:`METHODS` and ``chunk_size`` None or >= 1."""
    if method is not None and method not in METHODS:
        raise ValueError(f"{owner}: method={method!r}; expected one of {', '.join(map(repr, METHODS))} or None "
                         "(the platform's default)")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"{owner}: chunk_size={chunk_size!r}; expected an integer >= 1 or None (the platform's "
                         "default)")


def method_from_parallel(owner: str, parallel: bool | None, method: str | None, stacklevel: int = 3) -> str | None:
    """The old ``parallel=`` flag as a ``method`` (True: 'associative', False: 'sequential'), with a
    DeprecationWarning; ``method`` unchanged when ``parallel`` is None."""
    if parallel is None:
        return method
    if method is not None:
        raise TypeError(f"{owner}: got parallel= and method=; parallel is the old form of method")
    new = "associative" if parallel else "sequential"
    warnings.warn(f"{owner}: parallel={parallel} is now method={new!r} (parallel= goes in the next release)",
                  DeprecationWarning, stacklevel=stacklevel)
    return new


def linear_recurrence(
    log_a: Array,
    b: Array,
    h0: Array,
    mask: Array | None = None,
    *,
    log_space: bool = False,
    method: str | None = None,
    chunk_size: int | None = None,
    parallel: bool | None = None,
) -> tuple[Array, Array]:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` for t = 1..T.

    Args:
      log_a: (seq, batch, hidden) logarithms of the decay ``a_t`` (so
        ``a_t > 0``); minGRU and minLSTM compute them stably from their
        pre-activations.
      b: (seq, batch, hidden) the input term ``b_t``; with ``log_space=True``
        this is ``log b_t`` instead (so ``b_t > 0``).
      h0: (batch, hidden) initial state, any sign.
      mask: (seq, batch) prefix mask, or None.
      log_space: ``b`` holds logarithms. The associative scan then scans
        pairs of logarithms (see the module docstring); the other methods
        exponentiate ``b`` and run in linear space, where ``0 < a_t`` keeps
        them stable.
      method: ``'sequential'`` (a ``lax.scan``), ``'associative'``
        (``lax.associative_scan``, depth O(log T)), ``'chunked'`` (chunks of
        ``chunk_size`` steps, see the comment above), or None: the platform's
        default, chosen when the program is lowered (:data:`CPU_METHOD` on
        the CPU, :data:`ACCELERATOR_METHOD` elsewhere). All give the same
        values up to rounding.
      chunk_size: steps per chunk of ``'chunked'`` (any T: the last chunk is
        padded); None: the platform's default.
      parallel: deprecated: ``True`` is ``method='associative'``, ``False``
        ``method='sequential'``.

    Returns:
      ``(h_last, hs)``: the state after each sequence's last valid step and
      the (seq, batch, hidden) states, zero where ``mask`` is False.

    Examples:
      >>> a = jnp.full((3, 1, 1), 0.5)              # (seq, batch, hidden)
      >>> b = jnp.ones((3, 1, 1))
      >>> h_last, hs = zoo.linear_recurrence(jnp.log(a), b, jnp.zeros((1, 1)))
      >>> hs.ravel()                                # 1, 0.5 * 1 + 1, 0.5 * 1.5 + 1
      Array([1.  , 1.5 , 1.75], dtype=float32)
    """
    method = method_from_parallel("linear_recurrence", parallel, method)
    check_method("linear_recurrence", method, chunk_size)
    if mask is not None:
        # Padding steps are neutral (a = 1, b = 0 in linear space; log a = 0
        # and a finite log b in log space, whose output is then discarded).
        # Sanitising them also keeps non-finite padding out of the gradients.
        m = mask[..., None]
        log_a = jnp.where(m, log_a, 0.0)
        b = jnp.where(m, b, 0.0)

    hs = _solver(method, chunk_size, log_space)(log_a, b, h0)

    if mask is None:
        return hs[-1], hs
    # The carry is the state at the last valid step (h0 for an empty sequence).
    lengths = mask.sum(axis=0)  # (batch,)
    last = jnp.take_along_axis(hs, jnp.maximum(lengths - 1, 0)[None, :, None], axis=0)[0]
    h_last = jnp.where((lengths > 0)[:, None], last, h0)
    hs = jnp.where(mask[..., None], hs, jnp.zeros_like(hs))
    return h_last, hs
