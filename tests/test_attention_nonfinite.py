"""Non-finite inputs in zoo.dot_product_attention and attention_weights: one meaning for every implementation.

The rule under test (zoo/layers/attention.py, "Non-finite inputs"): a NaN or
Inf in a query row, or in a key/value (or a NaN/+inf bias entry) that a
valid query row sees, makes that row NaN, for the query heads concerned; every
other row equals attention with the bad entries set to 0; positions hidden by
the masks or by the lengths change nothing; gradients are those of the
zeroed computation, with no gradient from a NaN row.

References, independent of the code under test: the visibility matrix
(B, N, T, S) is built here in NumPy from the definitions of the masks, the
NaN rows are read off it, and the values and gradients come from a float64
dense attention written here with that matrix.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
import zoo.layers.flash as flash

# ---------------------------------------------------------------------------
# cases
#
# Each case: shapes, keyword arguments, and bad entries (array, b, position,
# head, h, value). "padded" entries sit beyond q_lengths / key_value_seq_lengths.
# N = 4 query heads throughout; K = 2 (GQA), 1 (MQA) or 4 (MHA).

CASES = {
    "plain_mqa": dict(
        t=10, s=13, kh=1, kw={},
        # every row of batch 0 sees the bad value; in batch 1 only one row of one head is bad
        bad=[("q", 0, 4, 1, 0, np.nan), ("v", 0, 12, 0, 3, -np.inf), ("q", 1, 7, 2, 1, np.inf)],
    ),
    "causal": dict(
        t=12, s=12, kh=2, kw=dict(is_causal=True),
        # k: the issue's example; v at 9 shares a 4x4 tile with row 8, which must not see it
        bad=[("k", 0, 3, 0, 0, np.nan), ("v", 1, 9, 1, 2, np.inf), ("q", 1, 2, 3, 1, np.nan)],
    ),
    "window_mha": dict(
        t=12, s=12, kh=4, kw=dict(local_window_size=(2, 1)),
        bad=[("k", 0, 6, 2, 0, np.inf), ("v", 1, 0, 1, 1, np.nan), ("q", 0, 10, 0, 3, np.inf)],
    ),
    "causal_window_lengths": dict(
        t=12, s=12, kh=2,
        kw=dict(is_causal=True, local_window_size=(3, 0), query_seq_lengths=[12, 7], key_value_seq_lengths=[9, 12]),
        # row 7 of batch 1 would see key 4 but is padding
        bad=[("k", 1, 4, 0, 0, np.nan), ("v", 0, 5, 1, 1, -np.inf)],
        padded=[("k", 0, 10, 0, 0, np.nan), ("v", 0, 9, 1, 2, np.inf), ("q", 1, 9, 2, 0, np.nan)],
    ),
    "mask_lengths": dict(
        t=12, s=12, kh=2, kw=dict(is_causal=True, key_value_seq_lengths=[12, 10]), mask=True,
        # key 5 of batch 0 is hidden from every row; row 2 of batch 1 sees nothing
        bad=[("k", 0, 5, 0, 1, np.nan), ("v", 1, 3, 1, 0, np.nan), ("q", 1, 2, 0, 0, np.nan),
             ("q", 0, 7, 2, 1, np.inf)],
        padded=[("v", 1, 11, 0, 0, np.nan)],
    ),
    "bias": dict(
        t=10, s=12, kh=2, kw={}, bias=True,
        bad=[("k", 1, 1, 1, 3, np.nan), ("bias", 1, (2, 4, 5), None, None, np.nan),
             ("bias", 0, (0, 6, 1), None, None, np.inf)],
    ),
}
N, H = 4, 4


def _mask(case):
    """(B, 1, T, S) random mask; key 5 of batch 0 hidden from every row, row 2 of batch 1 sees nothing."""
    c = CASES[case]
    m = np.random.default_rng(7).random((2, 1, c["t"], c["s"])) < 0.7
    m[0, :, :, 5] = False
    m[1, :, 2, :] = False
    return m


def _bias(case):
    """(B, N, T, S) random bias; -inf on the first 4 keys of batch 0 and on every key of (batch 1, head 3, row 6)."""
    c = CASES[case]
    b = np.random.default_rng(8).standard_normal((2, N, c["t"], c["s"])).astype(np.float32)
    b[0, :, :, :4] = -np.inf
    b[1, 3, 6, :] = -np.inf
    return b


def _inputs(case, with_padded=True):
    """q, k, v, bias with the case's bad entries written in; kwargs for zoo.dot_product_attention."""
    c = CASES[case]
    rng = np.random.default_rng(0)
    arrays = {
        "q": rng.standard_normal((2, c["t"], N, H)).astype(np.float32),
        "k": rng.standard_normal((2, c["s"], c["kh"], H)).astype(np.float32),
        "v": rng.standard_normal((2, c["s"], c["kh"], H)).astype(np.float32),
        "bias": _bias(case) if c.get("bias") else None,
    }
    for name, b, pos, head, h, value in c["bad"] + (c.get("padded", []) if with_padded else []):
        index = (b, *pos) if name == "bias" else (b, pos, head, h)
        arrays[name][index] = value
    kw = dict(c["kw"])
    for name in ("query_seq_lengths", "key_value_seq_lengths"):
        if name in kw:
            kw[name] = np.asarray(kw[name], np.int32)
    if c.get("mask"):
        kw["mask"] = _mask(case)
    return arrays["q"], arrays["k"], arrays["v"], arrays["bias"], kw


def _zeroed(x, bias=False):
    """x with its bad entries set to 0: non-finite ones, or for a bias NaN and +inf (-inf hides a key)."""
    if x is None:
        return None
    bad = (np.isnan(x) | (x == np.inf)) if bias else ~np.isfinite(x)
    return np.where(bad, 0, x).astype(x.dtype)


# ---------------------------------------------------------------------------
# references (NumPy visibility, float64 dense attention)


def _visibility(case):
    """(B, N, T, S) bool: may query row t of head n see key s? From the definitions, in NumPy."""
    c = CASES[case]
    t, s, kw = c["t"], c["s"], c["kw"]
    i, j = np.arange(t)[:, None], np.arange(s)[None, :]
    vis = np.ones((2, N, t, s), bool)
    if kw.get("is_causal"):
        vis &= j <= i
    if "local_window_size" in kw:
        left, right = kw["local_window_size"]
        vis &= (j >= i - left) & (j <= i + right)
    for b in range(2):
        if "query_seq_lengths" in kw:
            vis[b, :, kw["query_seq_lengths"][b]:, :] = False
        if "key_value_seq_lengths" in kw:
            vis[b, :, :, kw["key_value_seq_lengths"][b]:] = False
    if c.get("mask"):
        vis &= _mask(case)
    return vis


def _expected_nan_rows(case, q, k, v, bias):
    """(B, T, N) bool: rows that see a key and whose query, or a key/value or NaN/+inf bias they see, is bad."""
    vis = _visibility(case)
    g = N // k.shape[2]
    kv_bad = ~(np.isfinite(k).all(-1) & np.isfinite(v).all(-1))  # (B, S, K)
    kv_bad = np.repeat(kv_bad, g, axis=2).transpose(0, 2, 1)[:, :, None, :]  # (B, N, 1, S)
    bias_bad = np.zeros((1, 1, 1, 1), bool) if bias is None else np.isnan(bias) | (bias == np.inf)
    q_bad = ~np.isfinite(q).all(-1).transpose(0, 2, 1)  # (B, N, T)
    rows = vis.any(-1) & (q_bad | (vis & (kv_bad | bias_bad)).any(-1))  # (B, N, T)
    return rows.transpose(0, 2, 1)


def _reference_attention(q, k, v, bias, vis):
    """float64 dense attention over the visibility matrix; rows that see nothing (or only -inf bias) are 0."""
    g = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, g, axis=2), jnp.repeat(v, g, axis=2)  # (B, S, N, H)
    logits = jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    logits = jnp.where(vis, logits, -jnp.inf)
    top = jax.lax.stop_gradient(logits.max(-1, keepdims=True))
    e = jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0))
    total = e.sum(-1, keepdims=True)
    w = e / jnp.where(total > 0, total, 1)  # (B, N, T, S)
    return jnp.einsum("bnts,bsnh->btnh", w, v)


@jax.jit
def _reference_vjp(q, k, v, bias, ct, vis):
    out, pullback = jax.vjp(lambda q, k, v, bias: _reference_attention(q, k, v, bias, vis), q, k, v, bias)
    return out, pullback(ct)


def _reference(case, q, k, v, bias, ct):
    """Output and (dq, dk, dv, dbias) in float64 of attention on the zeroed inputs, cotangent 0 on NaN rows."""
    nan_rows = _expected_nan_rows(case, q, k, v, bias)
    ct = np.where(nan_rows[..., None], 0, ct)
    with jax.enable_x64(True):
        args = [None if x is None else np.asarray(x, np.float64) for x in (_zeroed(q), _zeroed(k), _zeroed(v),
                                                                            _zeroed(bias, bias=True))]
        out, grads = _reference_vjp(*args, np.asarray(ct, np.float64), _visibility(case))
        return np.asarray(out), [None if g is None else np.asarray(g) for g in grads]


# ---------------------------------------------------------------------------
# the function under test, compiled once per (case, implementation)

_ARRAYS = ("mask", "query_seq_lengths", "key_value_seq_lengths")


@functools.partial(jax.jit, static_argnames=("impl", "static"))
def _vjp_jit(q, k, v, bias, ct, arrays, *, impl, static):
    """(output, (dq, dk, dv, dbias)) for the loss sum(out * ct) over the finite rows."""
    implementation = "blockwise" if impl.startswith("blockwise") else impl
    with pytest.MonkeyPatch.context() as patch:
        if impl == "blockwise_4x4":  # small blocks: skipped, masked and interior tiles at these sizes
            patch.setattr(flash, "blockwise_attention",
                          functools.partial(flash.blockwise_attention, block_q=4, block_k=4))
        f = lambda q, k, v, bias: zoo.dot_product_attention(
            q, k, v, bias, implementation=implementation, **arrays, **dict(static)
        )
        out, pullback = jax.vjp(f, q, k, v, bias)
        return out, pullback(jnp.where(jnp.isnan(out), 0, ct))


@functools.partial(jax.jit, static_argnames=("impl", "static"))
def _forward_jit(q, k, v, bias, arrays, *, impl, static):
    """The output alone: not differentiated, the call takes the path that checks before cleaning."""
    with pytest.MonkeyPatch.context() as patch:
        if impl == "blockwise_4x4":
            patch.setattr(flash, "blockwise_attention",
                          functools.partial(flash.blockwise_attention, block_q=4, block_k=4))
        implementation = "blockwise" if impl.startswith("blockwise") else impl
        return zoo.dot_product_attention(q, k, v, bias, implementation=implementation, **arrays, **dict(static))


def _split(case):
    kw = _inputs(case)[4]
    arrays = {a: kw.pop(a) for a in _ARRAYS if a in kw}
    return arrays, tuple(sorted(kw.items()))


def _run(case, impl, q, k, v, bias):
    arrays, static = _split(case)
    ct = np.random.default_rng(99).standard_normal(q.shape).astype(np.float32)
    out, grads = _vjp_jit(q, k, v, bias, ct, arrays, impl=impl, static=static)
    return np.asarray(out), [None if g is None else np.asarray(g) for g in grads], ct


def _forward(case, impl, q, k, v, bias):
    arrays, static = _split(case)
    return np.asarray(_forward_jit(q, k, v, bias, arrays, impl=impl, static=static))


IMPLS = ["xla", "blockwise_4x4", "blockwise"]


# ---------------------------------------------------------------------------
# tests


def test_the_issue_example_default_implementation():
    """A NaN key: the default (blockwise from T * S >= 512^2) and 'xla' make the same rows NaN,
    exactly the causal rows that see it, in the query heads of its key/value head; the rest agree."""
    t = 512
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, t, 2, 8)).astype(np.float32) for _ in range(3))
    k[0, 3, 0, 0] = np.nan
    outs = {impl: np.asarray(zoo.dot_product_attention(q, k, v, is_causal=True, implementation=impl))
            for impl in (None, "xla")}
    for out in outs.values():
        nan_rows = np.isnan(out).any(-1)  # (1, T, N)
        assert np.isnan(out[nan_rows]).all()  # a poisoned row is NaN in every component
        np.testing.assert_array_equal(nan_rows[0, :, 0], np.arange(t) >= 3)
        assert not nan_rows[0, :, 1].any()
    finite = ~np.isnan(outs["xla"])
    np.testing.assert_allclose(outs[None][finite], outs["xla"][finite], atol=2e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_the_zeroed_reference(case, impl):
    """NaN exactly on the rows that see a bad entry; elsewhere the float64 attention of the zeroed inputs;
    gradients finite everywhere, 0 at the bad entries, equal to the reference's."""
    q, k, v, bias, _ = _inputs(case)
    out, grads, ct = _run(case, impl, q, k, v, bias)
    ref_out, ref_grads = _reference(case, q, k, v, bias, ct)
    nan_rows = _expected_nan_rows(case, q, k, v, bias)
    assert nan_rows.any() and not nan_rows.all()
    np.testing.assert_array_equal(np.isnan(out).any(-1), nan_rows)
    assert np.isnan(out[nan_rows]).all()
    np.testing.assert_allclose(out[~nan_rows], ref_out[~nan_rows], atol=2e-5, rtol=2e-5)
    # Not differentiated, the call takes another path (check, then clean); same result.
    np.testing.assert_allclose(_forward(case, impl, q, k, v, bias), out, atol=1e-6, rtol=1e-6)
    for g, r, x in zip(grads, ref_grads, (q, k, v, bias)):
        if x is None:
            continue
        assert np.isfinite(g).all()
        assert (g[np.isnan(x) | (x == np.inf) if x is bias else ~np.isfinite(x)] == 0).all()
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", [c for c in CASES if "padded" in CASES[c]])
def test_padded_entries_change_nothing(case, impl):
    """NaN/Inf beyond the lengths: outputs and gradients bit for bit those of the same call with them zeroed."""
    with_bad, zeroed = _inputs(case), _inputs(case)
    for name, b, pos, head, h, _ in CASES[case]["padded"]:
        zeroed[{"q": 0, "k": 1, "v": 2}[name]][b, pos, head, h] = 0
    out, grads, _ = _run(case, impl, *with_bad[:4])
    out0, grads0, _ = _run(case, impl, *zeroed[:4])
    np.testing.assert_array_equal(out, out0)  # NaN where NaN, equal elsewhere
    for g, g0 in zip(grads[:3], grads0[:3]):
        np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("impl", ["xla", "blockwise_4x4"])
def test_finite_inputs_take_the_plain_kernel_with_the_same_result(impl):
    """Every input finite: the undifferentiated call (the kernel without cleaning) equals the differentiated
    one (always cleaned) and the float64 reference; no row is NaN."""
    case = "causal_window_lengths"
    q, k, v, bias, _ = _inputs(case, with_padded=False)
    q, k, v = (_zeroed(x) for x in (q, k, v))
    out = _forward(case, impl, q, k, v, bias)
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, _run(case, impl, q, k, v, bias)[0], atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(out, _reference(case, q, k, v, bias, np.zeros_like(q))[0], atol=2e-5)


@pytest.mark.parametrize("impl", ["xla", "blockwise_4x4"])
@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_one_bad_input_is_enough(which, impl):
    """Undifferentiated calls clean only when some input is non-finite: one bad entry in q, k or v alone must
    trigger it. Each entry is chosen so that the uncleaned kernel would answer differently (an Inf that makes
    a logit -inf, which plain arithmetic reads as weight 0; a NaN value that 0 * NaN spreads)."""
    case = "causal"
    q, k, v, bias, _ = _inputs(case, with_padded=False)
    q, k, v = (_zeroed(x) for x in (q, k, v))
    if which == "q":  # row 0 sees key 0 only: a -inf logit would leave it zero
        q[1, 0, 2, 1] = -np.inf * np.sign(k[1, 0, 1, 1])
    elif which == "k":  # row 6 (head 0) gets a -inf logit for key 3, among finite ones
        k[0, 3, 0, 0] = -np.inf * np.sign(q[0, 6, 0, 0])
    else:  # value 9: rows 0-8 have weight 0 on it
        v[1, 9, 1, 2] = np.nan
    out = _forward(case, impl, q, k, v, bias)
    nan_rows = _expected_nan_rows(case, q, k, v, bias)
    np.testing.assert_array_equal(np.isnan(out).any(-1), nan_rows)
    ref = _reference(case, q, k, v, bias, np.zeros_like(q))[0]
    np.testing.assert_allclose(out[~nan_rows], ref[~nan_rows], atol=2e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_dense_and_blockwise_agree(case):
    """Same NaN rows, same finite values, same gradients for sum(out * w) over the finite rows."""
    q, k, v, bias, _ = _inputs(case)
    dense, dense_grads, _ = _run(case, "xla", q, k, v, bias)
    for impl in ("blockwise_4x4", "blockwise"):
        out, grads, _ = _run(case, impl, q, k, v, bias)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(dense))
        np.testing.assert_allclose(out[~np.isnan(out)], dense[~np.isnan(dense)], atol=2e-5)
        for g, r in zip(grads, dense_grads):
            if r is not None:
                np.testing.assert_allclose(g, r, atol=5e-5)


@pytest.mark.parametrize("case", ["causal", "mask_lengths", "bias"])
def test_attention_weights_poisoned_rows_are_nan(case):
    """attention_weights: rows that see a bad query or key (values play no part) are NaN; the rest equal
    the weights of the zeroed inputs."""
    q, k, v, bias, kw = _inputs(case)
    v = np.zeros_like(v)  # the weights do not read values
    w = np.asarray(zoo.attention_weights(q, k, bias, **kw))  # (B, N, T, S)
    nan_rows = _expected_nan_rows(case, q, k, v, bias).transpose(0, 2, 1)  # (B, N, T)
    np.testing.assert_array_equal(np.isnan(w).any(-1), nan_rows)
    assert np.isnan(w[nan_rows]).all()
    clean = np.asarray(zoo.attention_weights(_zeroed(q), _zeroed(k), _zeroed(bias, bias=True), **kw))
    np.testing.assert_array_equal(w[~nan_rows], clean[~nan_rows])


def test_unbatched_and_bfloat16():
    """(T, N, H) inputs and bfloat16 follow the same rule."""
    q, k, v, _, kw = _inputs("causal")
    want = np.isnan(np.asarray(zoo.dot_product_attention(q, k, v, **kw)))
    got = zoo.dot_product_attention(q[1], k[1], v[1], **kw)
    np.testing.assert_array_equal(np.isnan(np.asarray(got)), want[1])
    for impl in ("xla", "blockwise"):
        got = zoo.dot_product_attention(*(jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)), implementation=impl, **kw)
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.isnan(np.asarray(got, np.float32)), want)


@pytest.mark.parametrize("h", [33, 64, 96])
def test_head_sizes_past_32(h):
    """Head sizes the non-finite check reduces in 32-entry chunks (and one it cannot): a bad entry in any
    chunk is found. Causal, GQA; NaN rows checked against the NumPy rule."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 6, n, h)).astype(np.float32) for n in (N, 2, 2))
    q[0, 1, 3, h - 1] = np.inf  # the last chunk
    k[0, 4, 0, 32 % h] = np.nan  # the second chunk, when there is one
    v[0, 2, 1, 0] = np.nan  # the first
    out = np.asarray(zoo.dot_product_attention(q, k, v, is_causal=True, implementation="xla"))
    want = np.zeros((1, 6, N), bool)
    want[0, 1, 3] = True
    want[0, 4:, :2] = True
    want[0, 2:, 2:] = True
    np.testing.assert_array_equal(np.isnan(out).any(-1), want)
