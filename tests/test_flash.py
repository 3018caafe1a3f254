"""zoo.layers.flash.blockwise_attention: values and gradients against a dense float64 reference,
masking (causal, lengths, local window, dense mask), bias, grouped-query heads, low precision,
causality, and memory (no T x S intermediate)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jcore
from jax.test_util import check_grads

from zoo.layers.flash import blockwise_attention

# ---------------------------------------------------------------------------
# helpers


def _randn(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def reference_attention(q, k, v, *, scale, is_causal=False, query_seq_lengths=None, key_value_seq_lengths=None,
                        local_window=None, bias=None, mask=None):
    """Dense attention in jnp (float64 under ``jax.enable_x64``), rows that see nothing -> zeros.

    Independent of the kernel: repeats K/V heads explicitly, builds the full
    (B, N, T, S) visibility matrix and normalises with a guarded softmax.
    """
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    k = jnp.repeat(k, N // K, axis=2)  # (B, S, N, H): query head n uses kv head n // G
    v = jnp.repeat(v, N // K, axis=2)  # (B, S, N, H)
    logits = scale * jnp.einsum("btnh,bsnh->bnts", q, k)  # (B, N, T, S)
    if bias is not None:
        logits = logits + bias
    i = np.arange(T)[:, None]
    j = np.arange(S)[None, :]
    vis = np.ones((T, S), bool)
    if is_causal:
        vis &= j <= i
    if local_window is not None:
        vis &= (j >= i - local_window[0]) & (j <= i + local_window[1])
    vis = jnp.broadcast_to(jnp.asarray(vis), (B, N, T, S))
    if query_seq_lengths is not None:
        vis = vis & (jnp.arange(T)[None, :] < jnp.asarray(query_seq_lengths)[:, None])[:, None, :, None]
    if key_value_seq_lengths is not None:
        vis = vis & (jnp.arange(S)[None, :] < jnp.asarray(key_value_seq_lengths)[:, None])[:, None, None, :]
    if mask is not None:
        vis = vis & mask
    logits = jnp.where(vis, logits, -jnp.inf)
    m = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(logits - m)  # 0 where invisible
    denom = e.sum(axis=-1, keepdims=True)
    w = jnp.where(denom > 0, e / jnp.where(denom > 0, denom, 1.0), 0.0)  # (B, N, T, S)
    return jnp.einsum("bnts,bsnh->btnh", w, v)  # (B, T, N, H)


_STATIC = ("scale", "is_causal", "local_window", "block_q", "block_k")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _flash_vjp_jit(q, k, v, bias, ct, arrays, **static):
    out, pullback = jax.vjp(
        lambda q, k, v, bias: blockwise_attention(q, k, v, bias=bias, **arrays, **static), q, k, v, bias
    )
    return out, pullback(ct)


def _flash_vjp(q, k, v, bias, ct, **kw):
    """(output, (dq, dk, dv, dbias)) of the kernel for cotangent ``ct``, in one compiled program."""
    static = {a: b for a, b in kw.items() if a in _STATIC}
    arrays = {a: b for a, b in kw.items() if a not in _STATIC}
    return _flash_vjp_jit(q, k, v, bias, ct, arrays, **static)


def _reference_vjp(q, k, v, bias, ct, **kw):
    """The same in float64 from the dense reference (jitted: eager dispatch would dominate the run time)."""
    static = {a: b for a, b in kw.items() if a in ("scale", "is_causal", "local_window")}
    arrays = {a: b for a, b in kw.items() if a not in _STATIC}
    with jax.enable_x64(True):
        args = [None if x is None else np.asarray(x, np.float64) for x in (q, k, v, bias, ct)]
        out, grads = _reference_vjp_jit(*args, arrays, **static)
        return np.asarray(out), [None if g is None else np.asarray(g) for g in grads]


@functools.partial(jax.jit, static_argnames=("scale", "is_causal", "local_window"))
def _reference_vjp_jit(q, k, v, bias, ct, arrays, **static):
    out, pullback = jax.vjp(
        lambda q, k, v, bias: reference_attention(q, k, v, bias=bias, **arrays, **static), q, k, v, bias
    )
    return out, pullback(ct)


def _close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


# name -> (B, T, S, N, K, H, kernel kwargs, bias shape or None, mask shape or None)
CASES = {
    "plain": (2, 13, 21, 2, 2, 8, {}, None, None),
    "causal": (2, 29, 29, 2, 2, 8, {"is_causal": True}, None, None),
    "causal_gqa": (1, 27, 27, 4, 2, 8, {"is_causal": True, "block_q": 16, "block_k": 8}, None, None),
    "mqa_short_queries": (2, 5, 19, 4, 1, 8, {}, None, None),
    "lengths": (3, 18, 22, 2, 1, 4,
                {"query_seq_lengths": np.array([0, 7, 18]), "key_value_seq_lengths": np.array([9, 0, 22])}, None, None),
    "causal_lengths": (2, 20, 20, 2, 2, 4,
                       {"is_causal": True, "query_seq_lengths": np.array([20, 11]), "key_value_seq_lengths": np.array([3, 20])},
                       None, None),
    "window_causal": (2, 31, 31, 4, 2, 8, {"is_causal": True, "local_window": (5, 0)}, None, None),
    "window_two_sided": (1, 25, 30, 2, 2, 8, {"local_window": (3, 9)}, None, None),
    # interior (unmasked) block pairs beside masked ones, blocks of unequal size
    "window_causal_lengths": (2, 40, 40, 2, 1, 8,
                              {"is_causal": True, "local_window": (13, 0), "block_q": 4, "block_k": 8,
                               "query_seq_lengths": np.array([40, 21]), "key_value_seq_lengths": np.array([33, 40])}, None, None),
    "window_lengths": (2, 37, 45, 2, 2, 4,
                       {"local_window": (17, 9), "block_q": 8, "block_k": 4,
                        "key_value_seq_lengths": np.array([45, 30])}, None, None),
    "bias_full": (2, 11, 17, 4, 2, 8, {}, (2, 4, 11, 17), None),
    "bias_broadcast": (2, 11, 17, 4, 2, 8, {"is_causal": False}, (4, 1, 17), None),
    "bias_2d_causal": (1, 19, 19, 2, 1, 8, {"is_causal": True}, (19, 19), None),
    "mask": (2, 14, 23, 4, 2, 8, {}, None, (2, 1, 14, 23)),
    "everything": (2, 26, 26, 4, 2, 8,
                   {"is_causal": True, "local_window": (7, 3), "query_seq_lengths": np.array([26, 15]),
                    "key_value_seq_lengths": np.array([20, 26])}, (1, 4, 26, 26), (2, 4, 26, 1)),
}


def _inputs(case, seed=0, dtype=np.float32):
    B, T, S, N, K, H, kw, bias_shape, mask_shape = CASES[case]
    q = _randn((B, T, N, H), seed, dtype)
    k = _randn((B, S, K, H), seed + 1, dtype)
    v = _randn((B, S, K, H), seed + 2, dtype)
    bias = None if bias_shape is None else _randn(bias_shape, seed + 3, dtype)
    kw = {"scale": H**-0.5, "block_q": 8, "block_k": 8, **kw}  # small blocks: many block pairs
    if mask_shape is not None:
        kw["mask"] = np.random.default_rng(seed + 4).random(mask_shape) < 0.7
    return q, k, v, bias, kw


# ---------------------------------------------------------------------------
# values and gradients against the dense float64 reference


@pytest.mark.parametrize("case", list(CASES))
def test_matches_dense_reference(case):
    q, k, v, bias, kw = _inputs(case)
    ct = _randn(q.shape, 99)
    out, grads = _flash_vjp(q, k, v, bias, ct, **kw)
    ref_out, ref_grads = _reference_vjp(q, k, v, bias, ct, **kw)
    assert out.shape == q.shape and out.dtype == q.dtype
    _close(out, ref_out, 2e-5)
    for g, r in zip(grads, ref_grads):
        if r is None:
            assert g is None
        else:
            assert g.shape == r.shape
            _close(g, r, 1e-4)


def test_matches_jax_nn_where_every_row_sees_a_key():
    """Same conventions as jax.nn (GQA head order, bias after scale, window, lengths)."""
    q, k, v, bias, kw = _inputs("everything")
    for name in ("query_seq_lengths", "key_value_seq_lengths", "mask"):
        kw.pop(name)
    out = _flash_vjp(q, k, v, bias, np.zeros_like(q), **{**kw, "block_q": 16})[0]
    ref = jax.nn.dot_product_attention(
        q, k, v, bias=bias, scale=kw["scale"], is_causal=True, local_window_size=kw["local_window"],
        implementation="xla",
    )
    _close(out, ref, 2e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision(dtype):
    q, k, v, bias, kw = _inputs("causal_gqa")
    q, k, v = (jnp.asarray(x, dtype) for x in (q, k, v))
    ct = jnp.asarray(_randn(q.shape, 99), dtype)
    out, (dq, dk, dv, _) = _flash_vjp(q, k, v, None, ct, **kw)
    ref_out, ref_grads = _reference_vjp(q, k, v, None, ct, **kw)
    assert out.dtype == dtype and dq.dtype == dtype and dk.dtype == dtype and dv.dtype == dtype
    assert np.isfinite(np.asarray(out, np.float32)).all()
    _close(out, ref_out, 3e-2)
    for g, r in zip((dq, dk, dv), ref_grads):
        _close(g, r, 1e-1)


def test_fully_masked_rows_are_zero_and_finite():
    B, T, N, H = 2, 12, 2, 4
    q, k, v = _randn((B, T, N, H), 0), _randn((B, T, N, H), 1), _randn((B, T, N, H), 2)
    mask = np.ones((B, N, T, T), bool)
    mask[0, :, 3] = False  # query row 3 of batch 0 sees nothing
    mask[1, 1, :, :] = False  # head 1 of batch 1 sees nothing at all
    ct = np.ones_like(q)
    out, grads = _flash_vjp(q, k, v, None, ct, mask=mask, scale=0.5, block_q=8, block_k=8)
    for x in (out, *grads[:3]):
        assert np.isfinite(np.asarray(x)).all()
    assert (np.asarray(out)[0, 3] == 0).all()
    assert (np.asarray(out)[1, :, 1] == 0).all()
    assert (np.asarray(grads[0])[0, 3] == 0).all()  # no gradient through an empty row
    assert (np.asarray(grads[0])[1, :, 1] == 0).all()
    assert np.abs(np.asarray(out)[0, 2]).sum() > 0


def test_minus_inf_bias_is_a_mask():
    """-inf bias on whole key blocks, on parts of blocks and on whole rows: the kernel equals the
    reference given the same -inf positions as a mask (rows left with nothing visible are zero)."""
    q, k, v, bias, kw = _inputs("bias_full")
    hidden = np.zeros(bias.shape, bool)
    hidden[..., :8] = True  # the first key block of every row (unmasked blocks: no dense mask)
    hidden[0, 1, :, 11:] = True  # beyond the first block too: head 1 of batch 0 sees keys 8..10 only
    hidden[1, :, 4] = True  # query row 4 of batch 1 sees no key at all
    bias = np.where(hidden, -np.inf, bias).astype(np.float32)
    ct = _randn(q.shape, 99)
    out, grads = _flash_vjp(q, k, v, bias, ct, **kw)
    ref_out, ref_grads = _reference_vjp(q, k, v, np.where(hidden, 0, bias), ct, mask=~hidden, **kw)
    assert (np.asarray(out)[1, 4] == 0).all()
    _close(out, ref_out, 2e-5)
    for g, r in zip(grads, ref_grads):
        _close(g, r, 1e-4)


def test_logits_far_below_zero_after_a_block_with_nothing_visible():
    """A row that sees nothing in its first key block and only logits near -200 afterwards: softmax is
    shift-invariant, so a constant bias of -200 changes nothing (exp(-200) underflows if the running
    maximum is floored at 0 after the empty block)."""
    q, k, v, _, kw = _inputs("window_two_sided")
    kw = {**kw, "local_window": (2, 0), "block_q": 8, "block_k": 8}
    ct = _randn(q.shape, 99)
    out, grads = _flash_vjp(q, k, v, np.full((1, 1, 25, 30), -200.0, np.float32), ct, **kw)
    ref_out, ref_grads = _reference_vjp(q, k, v, None, ct, **kw)
    _close(out, ref_out, 2e-5)
    for g, r in zip(grads[:3], ref_grads[:3]):
        _close(g, r, 1e-4)


def test_a_nan_row_is_not_mistaken_for_an_empty_row():
    """On its own the kernel lets NaN propagate: a query row holding NaN outputs NaN, not zeros."""
    q, k, v, _, kw = _inputs("causal")
    q[1, 5, 0, 2] = np.nan
    out = np.asarray(jax.jit(functools.partial(blockwise_attention, **kw))(q, k, v))
    assert np.isnan(out[1, 5, 0]).all()
    assert np.isfinite(out[0]).all() and np.isfinite(out[1, :5]).all()


def test_check_grads_float64():
    with jax.enable_x64(True):
        shapes = [(1, 6, 2, 3), (1, 6, 1, 3), (1, 6, 1, 3)]  # query (B, T, N, H), key, value (B, S, K, H)
        q, k, v = (jnp.asarray(_randn(s, i, np.float64)) for i, s in enumerate(shapes))
        bias = jnp.asarray(_randn((2, 6, 6), 3, np.float64))
        f = functools.partial(blockwise_attention, scale=0.7, is_causal=True, block_q=4, block_k=4,
                              key_value_seq_lengths=jnp.array([5]))
        # jitted: check_grads evaluates f and its VJP many times; eagerly each one compiles op by op
        check_grads(jax.jit(lambda q, k, v, b: f(q, k, v, bias=b)), (q, k, v, bias), order=1, modes=["rev"])


# ---------------------------------------------------------------------------
# properties


def test_causality():
    """Changing queries, keys and values after position t leaves outputs up to t unchanged."""
    q, k, v, _, kw = _inputs("causal_gqa")
    t = 12
    f = jax.jit(functools.partial(blockwise_attention, **kw))
    out = np.asarray(f(q, k, v))
    q2, k2, v2 = (x.copy() for x in (q, k, v))
    for i, x in enumerate((q2, k2, v2)):
        x[:, t + 1:] = _randn(x[:, t + 1:].shape, 50 + i)
    out2 = np.asarray(f(q2, k2, v2))
    np.testing.assert_array_equal(out[:, : t + 1], out2[:, : t + 1])
    assert not np.allclose(out[:, t + 1:], out2[:, t + 1:])


def test_vmap_with_traced_lengths():
    q, k, v, _, kw = _inputs("causal_lengths")
    key_value_seq_lengths = kw.pop("key_value_seq_lengths")
    kw.pop("query_seq_lengths")
    lengths = np.stack([key_value_seq_lengths, key_value_seq_lengths[::-1]])  # (2, B)
    f = jax.jit(jax.vmap(lambda n: blockwise_attention(q, k, v, key_value_seq_lengths=n, **kw)))
    out = np.asarray(f(lengths))
    for n, o in zip(lengths, out):
        ref, _ = _reference_vjp(q, k, v, None, np.zeros_like(q), key_value_seq_lengths=n, **kw)
        _close(o, ref, 2e-5)


def test_argument_errors():
    q = np.zeros((1, 4, 2, 3), np.float32)
    with pytest.raises(ValueError, match="is_causal"):
        blockwise_attention(q, q[:, :3], q[:, :3], scale=1.0, is_causal=True)
    with pytest.raises(ValueError, match="local_window"):
        blockwise_attention(q, q, q, scale=1.0, local_window=(-1, 2))
    with pytest.raises(ValueError, match="multiple"):
        blockwise_attention(q[:, :, :1], q, q, scale=1.0)
    with pytest.raises(ValueError, match="broadcast"):
        blockwise_attention(q, q, q, scale=1.0, bias=np.zeros((3, 4, 4), np.float32))


# ---------------------------------------------------------------------------
# memory: no intermediate with T x S elements


def _largest_intermediate(jaxpr):
    """Elements of the largest value any equation produces, in nested jaxprs (scan, while, custom_vjp) too."""
    largest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            largest = max(largest, math.prod(getattr(var.aval, "shape", ())))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                if isinstance(sub, jcore.ClosedJaxpr):
                    largest = max(largest, _largest_intermediate(sub.jaxpr))
                elif isinstance(sub, jcore.Jaxpr):
                    largest = max(largest, _largest_intermediate(sub))
    return largest


def test_causal_memory_is_blockwise():
    T, H = 512, 8
    x = jnp.zeros((1, T, 1, H), jnp.float32)
    f = functools.partial(blockwise_attention, scale=H**-0.5, is_causal=True, block_q=64, block_k=64)
    loss = lambda q, k, v: f(q, k, v).sum()
    grad = jax.grad(loss, argnums=(0, 1, 2))
    dense = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True).sum()
    dense_grad = jax.grad(dense, argnums=(0, 1, 2))
    # The check sees a T x S intermediate where there is one.
    assert _largest_intermediate(jax.make_jaxpr(dense_grad)(x, x, x).jaxpr) >= T * T
    for fn in (f, grad):
        assert _largest_intermediate(jax.make_jaxpr(fn)(x, x, x).jaxpr) <= T * T // 16
    # XLA's own accounting of the compiled programs' scratch memory agrees.
    for fn in (f, grad):
        stats = jax.jit(fn).lower(x, x, x).compile().memory_analysis()
        if stats is not None:
            assert stats.temp_size_in_bytes < T * T * 4 // 2
