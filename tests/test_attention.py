"""zoo.dot_product_attention (dense path), attention_weights and the mask helpers.

References: jax.nn.dot_product_attention where every row sees a key (the two
must agree), and a float64 NumPy implementation written here from the
definition, with the zeros-for-empty-rows rule.
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.test_util import check_grads

import zoo
from zoo.layers.attention import attention_weights, causal_mask, make_attention_mask, padding_mask


def rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def qkv(b=2, t=5, s=7, n=4, k=2, h=8, seed=0):
    return rand((b, t, n, h), seed), rand((b, s, k, h), seed + 1), rand((b, s, k, h), seed + 2)


def reference(q, k, v, bias=None, mask=None, scale=None, causal=False, q_len=None, kv_len=None, window=None):
    """float64 NumPy attention; rows that see no key are zero."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, t, n, h = q.shape
    s, kh = k.shape[1], k.shape[2]
    scale = 1 / np.sqrt(h) if scale is None else scale
    k = np.repeat(k, n // kh, axis=2)  # (B, S, N, H)
    v = np.repeat(v, n // kh, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    allowed = np.ones((b, n, t, s), bool)
    if mask is not None:
        allowed &= np.broadcast_to(np.asarray(mask), allowed.shape)
    i, j = np.arange(t)[:, None], np.arange(s)[None, :]
    if causal:
        allowed &= j <= i
    if window is not None:
        left, right = (window, window) if isinstance(window, int) else window
        allowed &= (j >= i - left) & (j <= i + right)
    if q_len is not None:
        allowed &= (np.arange(t)[None, None, :, None] < np.asarray(q_len)[:, None, None, None])
    if kv_len is not None:
        allowed &= (np.arange(s)[None, None, None, :] < np.asarray(kv_len)[:, None, None, None])
    logits = np.where(allowed, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    p = np.where(allowed, np.exp(logits - np.where(np.isfinite(top), top, 0)), 0)
    total = p.sum(-1, keepdims=True)
    w = p / np.where(total > 0, total, 1)
    return np.einsum("bnts,bsnh->btnh", w, v)


CASES = {
    "plain": {},
    "causal": dict(causal=True),
    "window": dict(window=(2, 1)),
    "kv_lengths": dict(kv_len=[3, 7]),
    "q_and_kv_lengths": dict(q_len=[5, 2], kv_len=[7, 1]),
    "zero_lengths": dict(q_len=[0, 5], kv_len=[7, 0]),
    "bias": dict(bias=True),
    "mask": dict(mask=True),
    "scale": dict(scale=0.3),
}


def _args(case, t, s, n, seed=5):
    kw = dict(CASES[case])
    if kw.pop("bias", False):
        kw["bias"] = rand((2, n, t, s), seed)
    if kw.pop("mask", False):
        m = np.random.default_rng(seed).random((2, 1, t, s)) > 0.4
        m[0, 0, 1, :] = False  # one row that sees nothing
        kw["mask"] = m
    return kw


def _zoo_kwargs(kw):
    names = dict(causal="is_causal", q_len="query_seq_lengths", kv_len="key_value_seq_lengths", window="local_window_size")
    out = {}
    for key, val in kw.items():
        val = np.asarray(val, np.int32) if key in ("q_len", "kv_len") else val
        out[names.get(key, key)] = val
    return out


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_dense_matches_float64_reference(case, heads):
    """Every masking option, MHA/GQA/MQA, T != S: zoo equals the float64 reference."""
    n, kh = heads
    t, s = (6, 6) if case == "causal" else (5, 7)
    q, k, v = qkv(t=t, s=s, n=n, k=kh)
    kw = _args(case, t, s, n)
    got = zoo.dot_product_attention(q, k, v, implementation="xla", **_zoo_kwargs(kw))
    np.testing.assert_allclose(np.asarray(got), reference(q, k, v, **kw), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("case", ["plain", "causal", "window", "kv_lengths", "bias", "scale"])
def test_matches_jax_nn_when_every_row_sees_a_key(case):
    """Where no row is empty, zoo is a drop-in for jax.nn.dot_product_attention."""
    t, s = (6, 6) if case == "causal" else (5, 7)
    q, k, v = qkv(t=t, s=s)
    kw = _zoo_kwargs(_args(case, t, s, 4))
    np.testing.assert_allclose(
        np.asarray(zoo.dot_product_attention(q, k, v, **kw)),
        np.asarray(jax.nn.dot_product_attention(q, k, v, **kw)),
        atol=2e-6, rtol=2e-5,
    )


def test_rows_that_see_nothing_are_zero_not_nan_and_gradients_are_finite():
    """Padded queries and fully masked rows give zeros (jax.nn gives the mean of the values)."""
    q, k, v = qkv()
    kw = dict(query_seq_lengths=np.array([2, 5], np.int32), key_value_seq_lengths=np.array([7, 0], np.int32))
    out = np.asarray(zoo.dot_product_attention(q, k, v, **kw))
    assert np.all(out[0, 2:] == 0) and np.all(out[1] == 0)
    assert np.any(out[0, :2] != 0)
    # under jit: eagerly, the gradient compiles each primitive on its own (seconds)
    grads = jax.jit(jax.grad(lambda q, k, v: zoo.dot_product_attention(q, k, v, **kw).sum(), argnums=(0, 1, 2)))(q, k, v)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("impl", ["xla", "blockwise"])
@pytest.mark.parametrize(
    "kw", [{}, dict(local_window_size=1), dict(mask=np.ones((2, 1, 3, 0), bool)), dict(bias=np.ones((2, 1, 3, 0)))],
    ids=["plain", "window", "mask", "bias"],
)
def test_no_keys_gives_zeros(impl, kw):
    """S = 0: every row sees nothing, so every row is zero (the softmax reductions have an identity)."""
    q, k = jnp.ones((2, 3, 2, 4)), jnp.ones((2, 0, 2, 4))
    out = zoo.dot_product_attention(q, k, k, implementation=impl, **kw)
    assert out.shape == q.shape and not np.asarray(out).any()


def test_unbatched_inputs():
    """(T, N, H) inputs give the batched result of a batch of one."""
    q, k, v = qkv(b=1)
    full = zoo.dot_product_attention(q, k, v, is_causal=False)
    single = zoo.dot_product_attention(q[0], k[0], v[0])
    np.testing.assert_allclose(np.asarray(single), np.asarray(full[0]), atol=1e-6)


def test_bfloat16_softmax_in_float32():
    """bfloat16 inputs: output dtype bfloat16, values close to the float32 result."""
    q, k, v = qkv(t=16, s=16)
    want = zoo.dot_product_attention(q, k, v, is_causal=True)
    got = zoo.dot_product_attention(*(jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)), is_causal=True)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), atol=3e-2)


def test_causality_values_and_gradients():
    """Changing tokens after position t leaves outputs (and their input gradients) up to t unchanged."""
    q, k, v = qkv(t=8, s=8, seed=3)
    cut = 4
    q2, k2, v2 = (a.copy() for a in (q, k, v))
    for a in (q2, k2, v2):
        a[:, cut + 1 :] += rand(a[:, cut + 1 :].shape, 9)
    f = jax.jit(lambda q, k, v: zoo.dot_product_attention(q, k, v, is_causal=True))  # one compile, not one per primitive
    np.testing.assert_allclose(np.asarray(f(q, k, v))[:, : cut + 1], np.asarray(f(q2, k2, v2))[:, : cut + 1], atol=1e-6)
    g = jax.jit(lambda q, k, v: jax.grad(lambda q: f(q, k, v)[:, : cut + 1].sum())(q))
    np.testing.assert_allclose(np.asarray(g(q, k, v))[:, : cut + 1], np.asarray(g(q2, k2, v2))[:, : cut + 1], atol=1e-5)


def test_gradients_match_float64_numerics():
    """check_grads on the dense path in float64, with a mask that empties a row."""
    with jax.enable_x64(True):
        q, k, v = (jnp.asarray(a, jnp.float64) for a in qkv(t=4, s=5, n=2, k=1, h=4))
        mask = np.ones((2, 1, 4, 5), bool)
        mask[0, 0, 2] = False
        f = lambda q, k, v: zoo.dot_product_attention(q, k, v, mask=mask, is_causal=False)
        # jitted: check_grads evaluates f, its JVP and VJP many times; eagerly each one compiles op by op
        check_grads(jax.jit(f), (q, k, v), order=1, modes=["rev", "fwd"])


def test_attention_weights_rows_sum_to_one_or_zero():
    """attention_weights: (B, N, T, S), rows sum to 1 where a key is visible, else 0; consistent with the output."""
    q, k, v = qkv(t=6, s=6)
    lengths = np.array([6, 3], np.int32)
    w = np.asarray(attention_weights(q, k, is_causal=True, query_seq_lengths=lengths))
    assert w.shape == (2, 4, 6, 6)
    sums = w.sum(-1)
    np.testing.assert_allclose(sums[0], 1, atol=1e-6)
    np.testing.assert_allclose(sums[1, :, :3], 1, atol=1e-6)
    assert np.all(sums[1, :, 3:] == 0)
    assert np.all(np.triu(w[0, 0], 1) == 0)


def test_mask_helpers():
    """causal_mask, padding_mask and make_attention_mask against hand-written arrays."""
    np.testing.assert_array_equal(np.asarray(causal_mask(3)), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(np.asarray(padding_mask(jnp.array([1, 3]), 3)), [[1, 0, 0], [1, 1, 1]])
    m = make_attention_mask(padding_mask(jnp.array([2]), 3), padding_mask(jnp.array([1]), 2))
    assert m.shape == (1, 1, 3, 2)
    np.testing.assert_array_equal(np.asarray(m)[0, 0], [[1, 0], [1, 0], [0, 0]])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda q, k, v: (q[..., :4], k, v), "head size differs"),
        (lambda q, k, v: (q, k, v[:, :3]), "key and value must have the same shape"),
        (lambda q, k, v: (q[:, :, :3], k, v), r"multiple of key/value heads"),
        (lambda q, k, v: (q[:1], k, v), "batch size differs"),
        (lambda q, k, v: (q[0, 0], k, v), "query must have shape"),
    ],
    ids=["head_size", "kv_shapes", "heads_multiple", "batch", "rank"],
)
def test_shape_errors_before_tracing(make, match):
    """Bad shapes raise ValueError naming the arguments, eagerly and under jit."""
    q, k, v = make(*qkv())
    with pytest.raises(ValueError, match=match):
        zoo.dot_product_attention(q, k, v)
    with pytest.raises(ValueError, match=match):
        jax.jit(zoo.dot_product_attention)(q, k, v)


def test_argument_errors():
    """mask that does not broadcast, non-boolean mask, lengths shape and range, window, implementation."""
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 3, 7\) does not broadcast"):
        zoo.dot_product_attention(q, k, v, mask=np.ones((2, 1, 3, 7), bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        zoo.dot_product_attention(q, k, v, mask=np.ones((2, 1, 5, 7), np.float32))
    with pytest.raises(ValueError, match=r"bias must have 4 dimensions"):
        zoo.dot_product_attention(q, k, v, bias=np.ones((5, 7), np.float32))
    with pytest.raises(ValueError, match=r"query_seq_lengths has shape \(3,\), expected \(2,\)"):
        zoo.dot_product_attention(q, k, v, query_seq_lengths=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="key_value_seq_lengths must be sequence lengths"):
        zoo.dot_product_attention(q, k, v, key_value_seq_lengths=np.array([1, 8]))
    with pytest.raises(ValueError, match="local_window_size"):
        zoo.dot_product_attention(q, k, v, local_window_size=(-1, 2))
    with pytest.raises(ValueError, match="implementation must be one of"):
        zoo.dot_product_attention(q, k, v, implementation="flash")
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="implementation='cudnn' needs a GPU; the default backend is 'cpu'"):
            zoo.dot_product_attention(q, k, v, implementation="cudnn")


def test_length_values_checked_under_jit_only_in_checked_mode():
    """Out-of-range lengths inside jit: silent by default, caught by zoo.checked."""
    q, k, v = qkv()
    f = jax.jit(lambda q, k, v, n: zoo.dot_product_attention(q, k, v, key_value_seq_lengths=n))
    bad = jnp.array([1, 9], jnp.int32)
    f(q, k, v, bad)  # no error: values are abstract inside jit
    with pytest.raises(checkify.JaxRuntimeError, match="key_value_seq_lengths"):
        zoo.checked(f)(q, k, v, bad)


@pytest.mark.parametrize(
    "kw",
    [
        dict(is_causal=True),
        dict(is_causal=True, key_value_seq_lengths=np.array([20, 0], np.int32)),
        dict(local_window_size=(3, 2), query_seq_lengths=np.array([9, 33], np.int32)),
        dict(mask=np.random.default_rng(0).random((2, 1, 33, 33)) > 0.3),
    ],
    ids=["causal", "causal_kv_lengths", "window_q_lengths", "mask"],
)
def test_blockwise_equals_dense_through_the_public_function(kw):
    """implementation='blockwise' and 'xla' agree (values and gradients) through zoo.dot_product_attention."""
    q, k, v = qkv(t=33, s=33, n=4, k=2, h=8, seed=11)
    # jitted: eager values and gradients would compile every primitive (of the blockwise loop too) on its own
    f = lambda impl: jax.jit(lambda q, k, v: zoo.dot_product_attention(q, k, v, implementation=impl, **kw))
    np.testing.assert_allclose(np.asarray(f("blockwise")(q, k, v)), np.asarray(f("xla")(q, k, v)), atol=2e-5)
    g = lambda impl: jax.jit(jax.grad(lambda *a: (f(impl)(*a) ** 2).sum(), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(g("blockwise"), g("xla")):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=5e-5)


@pytest.mark.parametrize("t, blockwise", [(512, True), (256, False)])
def test_default_picks_blockwise_for_long_sequences(t, blockwise):
    """implementation=None: causal self-attention from T=512 runs the blockwise kernel (no (T, T) intermediate)."""
    q, k, v = (jnp.zeros((1, t, 1, 8), jnp.float32) for _ in range(3))
    jaxpr = jax.make_jaxpr(lambda q, k, v: zoo.dot_product_attention(q, k, v, is_causal=True))(q, k, v)
    sizes = []

    def walk(jx):
        for eqn in jx.eqns:
            sizes.extend(int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    assert (max(sizes) < t * t) == blockwise
