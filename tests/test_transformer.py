"""Multi-head attention, position embeddings and Transformer blocks against float64 NumPy references.

The references below are written from the papers' equations, independently
of zoo's code: projections, softmax over visible keys, residual + LayerNorm
in both arrangements, the feed-forward network.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# Eager flax calls dispatch (and compile) every primitive one by one: this file took ~3 minutes of
# CPU that way. The tests compare numbers, so each init/apply/grad below runs as ONE jitted program
# (the same computation); calls that check an eager-only behaviour (an error raised from concrete
# values) stay eager.


def _is_static(v):
    return v is None or isinstance(v, (bool, int, float, str, tuple))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jitted_call(module, name, static_kwargs, args, kwargs):
    return getattr(module, name)(*args, **dict(static_kwargs), **kwargs)


def _call(name, module, *args, **kwargs):
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}  # mutable=["cache"]
    static = tuple(sorted((k, v) for k, v in kwargs.items() if _is_static(v)))
    dynamic = {k: v for k, v in kwargs.items() if not _is_static(v)}
    return _jitted_call(module, name, static, args, dynamic)


def init(module, *args, seed=0, **kwargs):
    """``module.init(jax.random.key(seed), *args, **kwargs)`` under jit (cached per module and shapes)."""
    return _call("init", module, jax.random.key(seed), *args, **kwargs)


def apply(module, variables, *args, **kwargs):
    """``module.apply(variables, *args, **kwargs)`` under jit; Python scalars, strings, None and
    tuples in ``kwargs`` are static."""
    return _call("apply", module, variables, *args, **kwargs)


def plain(variables):
    """Unboxed parameters as float64 NumPy arrays."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(variables))


# ----------------------------------------------------------------------------
# float64 references


def ref_gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


REF_ACT = {"relu": lambda x: np.maximum(x, 0), "gelu": lambda x: ref_gelu(x, False), "gelu_tanh": lambda x: ref_gelu(x, True)}


def ref_rope(x, positions, base=10000.0):
    """Rotate pairs (i, i + H/2) as complex numbers: (x_i + j x_{i+H/2}) * exp(j p theta_i)."""
    h = x.shape[-1] // 2
    theta = base ** (-np.arange(h) / h)
    z = (x[..., :h] + 1j * x[..., h:]) * np.exp(1j * positions[..., None, None] * theta)
    return np.concatenate([z.real, z.imag], axis=-1)


def ref_mha(p, xq, xkv, visible, num_heads, num_kv_heads, cross=False, rope=None, q_pos=None, k_pos=None):
    """p: unboxed MHA params (float64); visible (B, T, S) bool."""
    if "qkv_kernel" in p:
        w = np.einsum("btd,dcnh->cbtnh", xq, p["qkv_kernel"]) + (p["qkv_bias"][:, None, None] if "qkv_bias" in p else 0)
        q, k, v = w
    else:
        def proj(name, x):
            return np.einsum("btd,dnh->btnh", x, p[f"{name}_kernel"]) + p.get(f"{name}_bias", 0)

        q = proj("query", xq)
        if "key_value_kernel" in p:
            kv = np.einsum("btd,dcnh->cbtnh", xkv, p["key_value_kernel"]) + (
                p["key_value_bias"][:, None, None] if "key_value_bias" in p else 0)
            k, v = kv
        else:
            k, v = proj("key", xkv), proj("value", xkv)
    if rope is not None:
        q, k = ref_rope(q, q_pos, rope), ref_rope(k, k_pos, rope)
    g = num_heads // num_kv_heads
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)  # (B, S, N, H)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
    vis = visible[:, None]
    logits = np.where(vis, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    e = np.where(vis, np.exp(logits - np.where(np.isfinite(top), top, 0)), 0)
    den = e.sum(-1, keepdims=True)
    w = e / np.where(den > 0, den, 1)
    out = np.einsum("bnts,bsnh->btnh", w, v)
    return np.einsum("btnh,nhd->btd", out, p["out_kernel"]) + p.get("out_bias", 0)


def ref_layer_norm(x, p, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p.get("bias", 0)


def ref_block(p, x, cfg, visible, context=None, cross_visible=None):
    def sub(x, name, fn):
        if cfg.layer_norm == "pre":
            return x + fn(ref_layer_norm(x, p[f"{name}_norm"], cfg.layer_norm_epsilon))
        return ref_layer_norm(x + fn(x), p[f"{name}_norm"], cfg.layer_norm_epsilon)

    kv = cfg.num_kv_heads or cfg.num_heads
    t = x.shape[1]
    x = sub(x, "self_attention", lambda y: ref_mha(
        p["self_attention"], y, y, visible, cfg.num_heads, kv, rope=cfg.rope_base,
        q_pos=np.arange(t), k_pos=np.arange(t)))
    if context is not None:
        x = sub(x, "cross_attention", lambda y: ref_mha(p["cross_attention"], y, context, cross_visible, cfg.num_heads, kv))

    def ffn(y):
        m = p["mlp"]
        h = REF_ACT[cfg.activation](y @ m["wi"]["kernel"] + m["wi"].get("bias", 0))
        return h @ m["wo"]["kernel"] + m["wo"].get("bias", 0)

    return sub(x, "mlp", ffn)


def ref_stack(params, x, cfg, visible, context=None, cross_visible=None):
    for i in range(cfg.num_layers):
        layer = jax.tree.map(lambda a: a[i], params["layers"])
        x = ref_block(layer, x, cfg, visible, context, cross_visible)
    if cfg.layer_norm == "pre":
        x = ref_layer_norm(x, params["final_norm"], cfg.layer_norm_epsilon)
    return x


def causal_visible(b, t):
    return np.broadcast_to(np.tril(np.ones((t, t), bool)), (b, t, t))


BASE = zoo.TransformerConfig(num_layers=2, num_heads=4, dropout_rate=0.0)

# --------------------------------------------------------------------------
# multi-head attention


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_heads=4),
        dict(num_heads=4, fused_qkv=False),
        dict(num_heads=4, num_kv_heads=2),  # grouped-query
        dict(num_heads=4, num_kv_heads=1, use_bias=False),  # multi-query
        dict(num_heads=2, head_dim=6, rope_base=100.0),
    ],
    ids=["fused", "separate", "gqa", "mqa-nobias", "rope-headdim"],
)
def test_self_attention_matches_reference(kwargs):
    b, t, d = 2, 7, 12
    x = randn(b, t, d)
    lengths = np.array([7, 4])
    mha = zoo.MultiHeadAttention(**kwargs)
    v = init(mha, x)
    y = apply(mha, v, x, is_causal=True, seq_lengths=lengths)
    visible = causal_visible(b, t) & (np.arange(t) < lengths[:, None])[:, None, :]
    ref = ref_mha(plain(v)["params"], x.astype(np.float64), x.astype(np.float64), visible, kwargs["num_heads"],
                  kwargs.get("num_kv_heads", kwargs["num_heads"]), rope=kwargs.get("rope_base"),
                  q_pos=np.arange(t), k_pos=np.arange(t))
    ref[1, 4:] = plain(v)["params"].get("out_bias", 0)
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_cross_attention_matches_reference(fused):
    b, t, s, d = 2, 3, 6, 8
    x, ctx = randn(b, t, d), randn(b, s, 5)
    ctx_len = np.array([6, 2])
    mha = zoo.MultiHeadAttention(num_heads=2, cross_attention=True, fused_qkv=fused)
    v = init(mha, x, ctx, seed=1)
    y = apply(mha, v, x, ctx, key_value_seq_lengths=ctx_len)
    visible = np.broadcast_to((np.arange(s) < ctx_len[:, None])[:, None, :], (b, t, s))
    ref = ref_mha(plain(v)["params"], x.astype(np.float64), ctx.astype(np.float64), visible, 2, 2)
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=1e-4)


def test_attention_dropout_is_random_and_off_when_deterministic():
    x = randn(2, 5, 8)
    mha = zoo.MultiHeadAttention(num_heads=2, dropout_rate=0.5)
    v = init(mha, x)
    a = apply(mha, v, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = apply(mha, v, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    c = apply(mha, v, x)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_allclose(c, apply(zoo.MultiHeadAttention(num_heads=2), v, x), atol=1e-6)
    # the expectation over dropout masks is the deterministic output (inverted dropout)
    keys = jax.random.split(jax.random.key(3), 400)
    mean = jax.jit(jax.vmap(lambda k: apply(mha, v, x, deterministic=False, rngs={"dropout": k})))(keys).mean(0)
    np.testing.assert_allclose(mean, c, atol=0.15)


# --------------------------------------------------------------------------
# position embeddings


def test_sinusoidal_table_formula():
    table = zoo.sinusoidal_table(50, 16)
    p, i = 37, 3
    assert table[p, 2 * i] == pytest.approx(math.sin(p / 10000 ** (2 * i / 16)))
    assert table[p, 2 * i + 1] == pytest.approx(math.cos(p / 10000 ** (2 * i / 16)))
    x = randn(2, 9, 16)
    y = zoo.SinusoidalPositionEmbedding(max_len=50).apply({}, x)
    np.testing.assert_allclose(y, x + table[:9], atol=1e-6)


def test_learned_positions_add_the_table_at_positions():
    x = randn(2, 5, 4)
    emb = zoo.LearnedPositionEmbedding(max_len=8)
    v = init(emb, x)
    table = np.asarray(nn.unbox(v)["params"]["embedding"])
    np.testing.assert_allclose(apply(emb, v, x), x + table[:5], atol=1e-6)
    pos = np.array([[3, 4, 5, 6, 7], [0, 1, 2, 3, 4]])
    np.testing.assert_allclose(apply(emb, v, x, pos), x + table[pos], atol=1e-6)


def test_rope_matches_complex_rotation_and_is_relative():
    x = randn(2, 6, 3, 8)
    pos = np.arange(6)
    np.testing.assert_allclose(zoo.apply_rope(x, pos), ref_rope(x.astype(np.float64), pos), atol=1e-5)
    # <rope(q, m), rope(k, n)> depends only on m - n
    q, k = randn(1, 1, 1, 8), randn(1, 1, 1, 8)

    def score(m, n):
        return float(np.sum(zoo.apply_rope(q, np.array([m])) * zoo.apply_rope(k, np.array([n]))))

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-4, abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)


def test_embed_lookup_attend_and_id_check():
    emb = zoo.Embed(num_embeddings=11, features=4)
    ids = np.array([[0, 3, 10]])
    v = init(emb, ids)
    table = np.asarray(nn.unbox(v)["params"]["embedding"])
    np.testing.assert_allclose(apply(emb, v, ids), table[ids])
    x = randn(1, 3, 4)
    np.testing.assert_allclose(apply(emb, v, x, method="attend"), x @ table.T, atol=1e-5)
    with pytest.raises(ValueError, match=r"token ids .* table of size 11.*got 11"):
        emb.apply(v, np.array([[1, 11]]))
    with pytest.raises(ValueError, match="token ids.*got -1"):
        emb.apply(v, np.array([[-1]]))
    with pytest.raises(Exception, match="token ids"):
        zoo.checked(jax.jit(emb.apply))(v, jnp.array([[12]]))


# --------------------------------------------------------------------------
# blocks and stacks


STACK_CASES = {
    "post-relu": (BASE, False, False),
    "pre-gelu-tanh-rope": (BASE.replace(layer_norm="pre", activation="gelu_tanh", rope_base=10000.0), True, False),
    "post-gelu-gqa-nobias-cross": (
        BASE.replace(activation="gelu", num_kv_heads=2, use_bias=False, layer_norm_epsilon=1e-12), True, True),
    "pre-mlpdim-unfused-cross": (BASE.replace(layer_norm="pre", mlp_dim=20, fused_qkv=False), True, True),
}


@pytest.mark.parametrize("case", list(STACK_CASES))
def test_stack_matches_reference(case):
    cfg, causal, cross = STACK_CASES[case]
    b, t, s, d = 2, 6, 5, 16
    x, ctx = randn(b, t, d), randn(b, s, d)
    lengths, ctx_len = np.array([6, 3]), np.array([5, 2])
    stack = zoo.TransformerStack(cfg, causal=causal, cross_attention=cross)
    kw = dict(context=ctx, key_value_seq_lengths=ctx_len) if cross else {}
    v = init(stack, x, **kw)
    y = np.asarray(apply(stack, v, x, seq_lengths=lengths, **kw))
    visible = (causal_visible(b, t) if causal else np.ones((b, t, t), bool)) & (np.arange(t) < lengths[:, None])[:, None, :]
    cross_visible = np.broadcast_to((np.arange(s) < ctx_len[:, None])[:, None, :], (b, t, s))
    ref = ref_stack(plain(v)["params"], x.astype(np.float64), cfg, visible, ctx.astype(np.float64) if cross else None,
                    cross_visible)
    # rows past a sequence length are padding: compare the valid rows only
    np.testing.assert_allclose(y[0], ref[0], atol=5e-5, rtol=1e-4)
    np.testing.assert_allclose(y[1, :3], ref[1, :3], atol=5e-5, rtol=1e-4)


def _unrolled_params(params, num_layers):
    out = {k: v for k, v in params.items() if k != "layers"}
    for i in range(num_layers):
        out[f"layers_{i}"] = jax.tree.map(lambda a: a[i], params["layers"])
    return out


@pytest.mark.parametrize("case", ["post-relu", "pre-mlpdim-unfused-cross"])
def test_scanned_stack_equals_unrolled_and_remat(case):
    cfg, causal, cross = STACK_CASES[case]
    cfg = cfg.replace(num_layers=3, dropout_rate=0.2)
    x, ctx = randn(2, 5, 8), randn(2, 4, 8)
    kw = dict(context=ctx) if cross else {}
    scanned = zoo.TransformerStack(cfg, causal=causal, cross_attention=cross)
    unrolled = zoo.TransformerStack(cfg.replace(scan_layers=False), causal=causal, cross_attention=cross)
    remat = zoo.TransformerStack(cfg.replace(remat=True), causal=causal, cross_attention=cross)
    v = nn.unbox(init(scanned, x, **kw))
    vu = {"params": _unrolled_params(v["params"], 3)}
    # the structure only: eval_shape traces the unrolled init without compiling it
    assert jax.tree.structure(vu) == jax.tree.structure(nn.unbox(jax.eval_shape(lambda: init(unrolled, x, **kw))))

    def loss(module, params):
        return jnp.sum(jnp.sin(module.apply(params, x, **kw)))

    @jax.jit  # one program for the five results: each separate compile costs seconds
    def outputs(v, vu):
        grads = [jax.grad(functools.partial(loss, m))(p) for m, p in ((scanned, v), (remat, v), (unrolled, vu))]
        return (scanned.apply(v, x, **kw), unrolled.apply(vu, x, **kw), *grads)

    y, yu, g, gr, gu = outputs(v, vu)
    np.testing.assert_allclose(yu, y, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g, gr)
    np.testing.assert_allclose(gu["params"]["layers_1"]["mlp"]["wi"]["kernel"], g["params"]["layers"]["mlp"]["wi"]["kernel"][1], atol=1e-5)
    # dropout: each layer draws its own mask; same rng, same output
    rngs = {"dropout": jax.random.key(5)}
    d1 = apply(scanned, v, x, deterministic=False, rngs=rngs, **kw)
    d2 = apply(scanned, v, x, deterministic=False, rngs=rngs, **kw)
    np.testing.assert_array_equal(d1, d2)
    assert not np.allclose(d1, y)


def test_decoder_is_causal_in_values_and_gradients():
    cfg = BASE.replace(layer_norm="pre", rope_base=10000.0)
    dec = zoo.Decoder(cfg)
    x = randn(2, 8, 16)
    v = init(dec, x)
    t = 4
    x2 = x.copy()
    x2[:, t + 1:] += randn(2, 8 - t - 1, 16)
    np.testing.assert_allclose(apply(dec, v, x)[:, : t + 1], apply(dec, v, x2)[:, : t + 1], atol=1e-6)
    assert not np.allclose(apply(dec, v, x)[:, t + 1:], apply(dec, v, x2)[:, t + 1:])
    grad = jax.jit(jax.grad(lambda x: apply(dec, v, x)[:, t].sum()))(x)
    assert np.all(grad[:, t + 1:] == 0) and np.any(grad[:, : t + 1] != 0)
    enc = zoo.Encoder(cfg)
    ve = init(enc, x)
    assert not np.allclose(apply(enc, ve, x)[:, :t], apply(enc, ve, x2)[:, :t])  # the encoder sees everything


# --------------------------------------------------------------------------
# caches


def _decode(module, variables, cache, chunks, **kw):
    outs = []
    for chunk in chunks:  # `apply` keeps one compiled step per chunk shape, shared with the tests' own steps
        y, mutated = apply(module, {**variables, "cache": cache}, chunk, decode=True, mutable=["cache"], **kw)
        cache = mutated["cache"]
        outs.append(y)
    return np.concatenate(outs, axis=1), cache


@pytest.mark.parametrize("scan", [True, False])
def test_cached_decoding_equals_full_forward(scan):
    cfg = BASE.replace(layer_norm="pre", rope_base=10000.0, num_kv_heads=2, scan_layers=scan)
    dec = zoo.Decoder(cfg)
    x = randn(3, 7, 16)
    v = init(dec, x)
    full = apply(dec, v, x)
    cache = init(dec, jnp.zeros((3, 10, 16)), decode=True)["cache"]
    out, cache = _decode(dec, v, cache, [x[:, :3], x[:, 3:4], x[:, 4:5], x[:, 5:7]])
    np.testing.assert_allclose(out, full, atol=2e-5)
    index = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]
             if "cache_index" in jax.tree_util.keystr(path)]
    assert len(index) == (1 if scan else cfg.num_layers)
    assert all(np.all(np.asarray(i) == 7) for i in index)


def test_cached_decoding_with_unequal_prompts_and_reorder():
    cfg = BASE.replace(rope_base=10000.0)
    dec = zoo.Decoder(cfg)
    x = randn(2, 8, 16)
    v = init(dec, x)
    lengths = np.array([5, 2])
    # prefill right-padded prompts, then feed each example its next tokens
    cache = init(dec, jnp.zeros((2, 9, 16)), decode=True)["cache"]
    _, m = apply(dec, {**v, "cache": cache}, x[:, :5], seq_lengths=lengths, decode=True, mutable=["cache"])
    cache = m["cache"]
    steps = []
    for i in range(3):
        tok = np.stack([x[0, 5 + i], x[1, 2 + i]])[:, None]  # (2, 1, 16)
        y, m = apply(dec, {**v, "cache": cache}, tok, decode=True, mutable=["cache"])
        cache = m["cache"]
        steps.append(np.asarray(y[:, 0]))
    full0 = apply(dec, v, x[:1, :8])
    seq1 = np.concatenate([x[1:, :2], x[1:, 2:5]], axis=1)
    full1 = apply(dec, v, seq1)
    np.testing.assert_allclose(np.stack(steps, 1)[0], full0[0, 5:8], atol=2e-5)
    np.testing.assert_allclose(np.stack(steps, 1)[1], full1[0, 2:5], atol=2e-5)
    # reorder: swap the rows, then one more step; row 0 must continue example 1
    swapped = zoo.reorder_cache(cache, np.array([1, 0]))
    tok = np.stack([x[1, 5], x[0, 8 - 1]])[:, None]
    y, _ = apply(dec, {**v, "cache": swapped}, tok, decode=True, mutable=["cache"])
    full1b = apply(dec, v, np.concatenate([seq1, x[1:, 5:6]], axis=1))
    np.testing.assert_allclose(y[0, 0], full1b[0, 5], atol=2e-5)


def test_cross_attention_cache_and_reorder():
    cfg = BASE.replace(layer_norm="pre")
    dec = zoo.Decoder(cfg, cross_attention=True)
    x, ctx = randn(2, 5, 16), randn(2, 6, 16)
    ctx_len = np.array([6, 3])
    v = init(dec, x, context=ctx)
    full = apply(dec, v, x, context=ctx, key_value_seq_lengths=ctx_len)
    cache = init(dec, jnp.zeros((2, 5, 16)), context=ctx, decode=True)["cache"]
    y0, m = apply(dec, {**v, "cache": cache}, x[:, :2], context=ctx, key_value_seq_lengths=ctx_len, decode=True,
                      mutable=["cache"])
    rest, cache = _decode(dec, v, m["cache"], [x[:, 2:3], x[:, 3:4]])  # context comes from the cache
    np.testing.assert_allclose(np.concatenate([y0, rest], 1), full[:, :4], atol=2e-5)
    swapped = zoo.reorder_cache(cache, np.array([1, 1]))
    y, _ = apply(dec, {**v, "cache": swapped}, x[[1, 1], 4:5], decode=True, mutable=["cache"])
    np.testing.assert_allclose(y[:, 0], np.stack([full[1, 4], full[1, 4]]), atol=2e-5)


def test_decoding_past_the_cache_raises():
    dec = zoo.Decoder(BASE.replace(num_layers=1))
    x = randn(1, 4, 8)
    v = init(dec, x)
    cache = init(dec, jnp.zeros((1, 4, 8)), decode=True)["cache"]
    _, m = apply(dec, {**v, "cache": cache}, x[:, :3], decode=True, mutable=["cache"])
    with pytest.raises(ValueError, match="past the end of the cache: cache length 4, positions reach 5"):
        dec.apply({**v, "cache": m["cache"]}, x[:, :2], decode=True, mutable=["cache"])
    with pytest.raises(ValueError, match="reorder_cache indices.*got 3"):
        zoo.reorder_cache(m["cache"], np.array([3]))


# --------------------------------------------------------------------------
# partitioning metadata and errors


def test_every_parameter_has_logical_axis_names():
    cfg = BASE.replace(num_kv_heads=2)
    dec = zoo.Decoder(cfg, cross_attention=True)
    x = randn(1, 3, 8)
    boxed = init(dec, x, context=x)["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda l: isinstance(l, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    for leaf in leaves:
        assert leaf.names[0] == "layers" and len(leaf.names) == leaf.value.ndim
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["layers"]["self_attention"]["query_kernel"]) == ("layers", "embed", "heads", "kv")
    assert tuple(specs["layers"]["self_attention"]["key_value_kernel"]) == ("layers", "embed", "qkv", "kv_heads", "kv")
    assert tuple(specs["layers"]["mlp"]["wi"]["kernel"]) == ("layers", "embed", "mlp")
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(nn.unbox(boxed)))


def test_errors_are_clear():
    x = randn(2, 5, 8)
    with pytest.raises(ValueError, match="num_heads \\(4\\) must be a positive multiple of num_kv_heads \\(3\\)"):
        zoo.MultiHeadAttention(num_heads=4, num_kv_heads=3).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="num_kv_heads=3, expected a positive divisor of num_heads=4"):
        BASE.replace(num_kv_heads=3)
    with pytest.raises(ValueError, match="features 8 are not divisible by num_heads 3"):
        zoo.MultiHeadAttention(num_heads=3).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="activation='swish'"):
        BASE.replace(activation="swish")
    with pytest.raises(ValueError, match="sequence length 5 is longer than the position table \\(max_len=4\\)"):
        zoo.LearnedPositionEmbedding(max_len=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="sequence length 5 is longer than the position table"):
        zoo.SinusoidalPositionEmbedding(max_len=4).init(jax.random.key(0), x)
    mha = zoo.MultiHeadAttention(num_heads=2)
    v = mha.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 5, 4\) does not broadcast to \(B, N, T, S\) = \(2, 2, 5, 5\)"):
        mha.apply(v, x, mask=np.ones((2, 1, 5, 4), bool))
    with pytest.raises(ValueError, match="inputs_q must have shape \\(B, T, D\\), got \\(5, 8\\)"):
        mha.apply(v, x[0])
    with pytest.raises(ValueError, match="inputs_kv is for cross_attention=True"):
        mha.apply(v, x, x)
    cross = zoo.MultiHeadAttention(num_heads=2, cross_attention=True)
    with pytest.raises(ValueError, match="cross-attention needs inputs_kv"):
        cross.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="seq_lengths must be sequence lengths \\(between 0 and 5\\); got 6"):
        mha.apply(v, x, seq_lengths=np.array([6, 1]))
    with pytest.raises(ValueError, match="context given but cross_attention=False"):
        zoo.Decoder(BASE).init(jax.random.key(0), x, context=x)


def test_bfloat16_compute_keeps_float32_params():
    cfg = BASE.replace(dtype=jnp.bfloat16, layer_norm="pre")
    dec = zoo.Decoder(cfg)
    x = randn(2, 6, 16)
    v = init(dec, x)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(nn.unbox(v)))
    y = apply(dec, v, x)
    assert y.dtype == jnp.bfloat16
    y32 = apply(zoo.Decoder(dataclasses.replace(cfg, dtype=None)), v, x)
    np.testing.assert_allclose(np.asarray(y, np.float32), y32, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("d_in, d_out", [(3, 7), (7, 3)])
def test_linear_gradients_match_matmul(d_in, d_out):
    """zoo.layers.linear.linear: same values and gradients as x @ w (both transpose branches), under vmap."""
    from zoo.layers.linear import linear

    x, w, g = randn(2, 5, d_in), randn(d_in, d_out), randn(2, 5, d_out)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)) * g)

    got = jax.jit(jax.grad(loss(linear), argnums=(0, 1)))(x, w)
    want = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(linear, (0, None))(x, w), x @ w, rtol=1e-5, atol=1e-5)


def test_activations_match_reference_values_and_gradients():
    """The custom-VJP GELUs (materialised backward) give jax.nn's values and gradients."""
    from zoo.layers.transformer import ACTIVATIONS

    x = randn(64).astype(np.float64) * 3
    for name, approximate in (("gelu", False), ("gelu_tanh", True)):
        f = ACTIVATIONS[name]
        np.testing.assert_allclose(f(x), ref_gelu(x, approximate), rtol=1e-6, atol=1e-6)
        ref = jax.jit(jax.grad(lambda v: jnp.sum(jax.nn.gelu(v, approximate=approximate) ** 2)))(x)
        np.testing.assert_allclose(jax.jit(jax.grad(lambda v: jnp.sum(f(v) ** 2)))(x), ref, rtol=1e-6, atol=1e-6)


def test_old_keyword_names_still_work_with_a_warning():
    """One name per concept (key_value_seq_lengths, as jax.nn); the old names stay one release, warning."""
    from zoo.layers.flash import blockwise_attention

    q = jnp.ones((1, 4, 2, 8))
    with pytest.warns(DeprecationWarning, match="kv_lengths= is now called key_value_seq_lengths="):
        old = blockwise_attention(q, q, q, scale=0.5, kv_lengths=jnp.array([2]))
    new = blockwise_attention(q, q, q, scale=0.5, key_value_seq_lengths=jnp.array([2]))
    np.testing.assert_array_equal(old, new)
    with pytest.raises(TypeError, match="kv_lengths is the old name of key_value_seq_lengths"):
        blockwise_attention(q, q, q, scale=0.5, kv_lengths=jnp.array([2]), key_value_seq_lengths=jnp.array([2]))
    mha = zoo.MultiHeadAttention(num_heads=2, cross_attention=True)
    x, ctx = jnp.ones((1, 3, 8)), jnp.ones((1, 5, 8))
    v = mha.init(jax.random.key(0), x, ctx)
    with pytest.warns(DeprecationWarning, match="kv_seq_lengths= is now called key_value_seq_lengths="):
        old = mha.apply(v, x, ctx, kv_seq_lengths=jnp.array([2]))
    np.testing.assert_array_equal(old, mha.apply(v, x, ctx, key_value_seq_lengths=jnp.array([2])))


def test_cpu_tricks_follow_the_platform_and_can_be_turned_off(monkeypatch):
    """zoo.layers.platform: the CPU version on CPU only; ZOO_CPU_PLAIN names tricks that take the plain one."""
    from zoo.layers.platform import cpu_or

    def cpu(x):
        return x + 1.0

    def plain(x):
        return x

    choose = cpu_or(cpu, plain, name="ab")
    x = jnp.zeros(())
    assert float(choose(x)) == 1.0  # this process lowers for the CPU
    for platform, want in (("cpu", 1), ("cuda", 0), ("tpu", 0)):
        text = jax.jit(choose).trace(x).lower(lowering_platforms=(platform,)).as_text()
        assert ("add" in text) == bool(want), (platform, text)
    monkeypatch.setenv("ZOO_CPU_PLAIN", "other,ab")
    assert cpu_or(cpu, plain, name="ab") is plain
