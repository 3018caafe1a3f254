"""zoo.nnx: the NNX forms of zoo's layers and models (flax.nnx.bridge) against their linen forms.

The same parameters give the same outputs and the same gradients in both
forms (cells, RNN with an NNX or a linen cell, Bidirectional, multi-head
attention decoding from a KV cache, GPT, BERT; outputs for a Transformer
block and seq2seq); nnx.jit and nnx.grad work; parameters convert both ways
with their logical axis names; under a 4-device mesh (tests/conftest.py) the
parameters are created sharded by the rules, and a short nnx.Optimizer run
there lowers the loss.

Compilation dominates the run time, so each comparison computes both forms
in one nnx.jit program, models the test does not initialise on purpose
start from random parameters made in NumPy (``params=``), and nothing runs
jax eagerly outside a jit.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import init_params
from flax import nnx

import zoo
import zoo.nnx

ATOL = 1e-5
GPT_CFG = zoo.GPTConfig(vocab_size=48, block_size=16, num_layers=2, num_heads=2, features=16)
BERT_CFG = zoo.BERTConfig(vocab_size=40, max_positions=16, block_size=16, num_layers=2, num_heads=2, features=16)


def close(a, b, atol=ATOL):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol), a, b)


# Inputs are NumPy arrays and checks run in NumPy: an eager jax op outside a jit compiles a small
# program per shape (tens of them per test otherwise, with jax_log_compiles).
def ids(shape, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int32)


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_params(module, *args):
    """Random linen params for ``module.init(key, *args)``, made in NumPy (no compilation)."""
    return init_params(module, *args)["params"]


def same_function(model, call, linen_call):
    """``call(model)`` and ``linen_call(params)`` agree, values and gradients (both in one nnx.jit program).

    Both return a scalar loss; the gradients are compared as linen param trees.
    """

    @nnx.jit
    def both(model, params):
        return nnx.value_and_grad(call)(model), jax.value_and_grad(linen_call)(params)

    (nnx_loss, nnx_grads), (linen_loss, linen_grads) = both(model, zoo.nnx.linen_params(model))
    close(nnx_loss, linen_loss)
    nnx_grads = nnx.to_pure_dict(nnx_grads)
    assert jax.tree.structure(nnx_grads) == jax.tree.structure(linen_grads)
    close(nnx_grads, linen_grads)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(linen_grads))


# ---------------------------------------------------------------------------
# recurrent


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "MinGRUCell"])
def test_cells_equal_linen_outputs_and_gradients(name):
    cell = getattr(zoo.nnx, name)(3, 5, rngs=nnx.Rngs(0))  # a real initialisation, through the bridge
    assert (cell.in_features, cell.hidden_features) == (3, 5)
    x = randn((2, 3))
    carry = jax.tree.map(lambda c: randn(c.shape, 1), jax.eval_shape(lambda: cell.initialize_carry((2, 3))))
    linen = getattr(zoo, name)(5)
    assert cell.linen_module == linen

    def loss(y_carry):
        new, y = y_carry
        return jnp.sum(y**2) + sum(jnp.sum(c**2) for c in jax.tree.leaves(new))

    same_function(cell, lambda m: loss(m(carry, x)), lambda p: loss(linen.apply({"params": p}, carry, x)))


def test_rnn_takes_an_nnx_cell_or_a_linen_cell():
    x, lengths = randn((2, 6, 3)), np.array([6, 2])
    linen = zoo.RNN(zoo.LSTMCell(4), return_carry=True)
    params = random_params(linen, x)
    rnn = zoo.nnx.RNN(zoo.nnx.LSTMCell(3, 4, params=params["cell"]), return_carry=True)
    assert set(zoo.nnx.linen_params(rnn)) == {"cell"}

    def loss(out):
        (c, h), y = out
        return jnp.sum(y**2) + jnp.sum(c * h)

    same_function(rnn, lambda m: loss(m(x, seq_lengths=lengths)),
                  lambda p: loss(linen.apply({"params": p}, x, seq_lengths=lengths)))
    # a linen cell is wrapped into the NNX cell, its attributes kept
    wrapped = zoo.nnx.RNN(zoo.LSTMCell(4, forget_bias=0.0), in_features=3, rngs=nnx.Rngs(1), return_carry=True)
    assert isinstance(wrapped.cell, zoo.nnx.LSTMCell) and wrapped.cell.linen_module.forget_bias == 0.0
    assert jax.tree.map(jnp.shape, zoo.nnx.linen_params(wrapped)) == jax.tree.map(jnp.shape, params)
    with pytest.raises(ValueError, match="needs in_features and rngs"):
        zoo.nnx.RNN(zoo.LSTMCell(4))
    with pytest.raises(TypeError, match="flax.nnx.RNN"):
        zoo.nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))


def test_bidirectional_equals_linen():
    x, lengths = randn((2, 5, 3)), np.array([5, 3])
    linen = zoo.Bidirectional(zoo.RNN(zoo.GRUCell(4)), zoo.RNN(zoo.GRUCell(4)))
    params = random_params(linen, x)
    bi = zoo.nnx.Bidirectional(zoo.nnx.RNN(zoo.nnx.GRUCell(3, 4, params=params["forward_rnn"]["cell"])),
                               zoo.nnx.RNN(zoo.nnx.GRUCell(3, 4, params=params["backward_rnn"]["cell"])))
    close(zoo.nnx.linen_params(bi), params, atol=0)
    same_function(bi, lambda m: jnp.sum(m(x, seq_lengths=lengths) ** 2),
                  lambda p: jnp.sum(linen.apply({"params": p}, x, seq_lengths=lengths) ** 2))


# ---------------------------------------------------------------------------
# attention


def test_multihead_attention_decodes_from_its_kv_cache_as_linen_does():
    mha = zoo.nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    linen = zoo.MultiHeadAttention(2)
    x = randn((2, 6, 8))
    same_function(mha, lambda m: jnp.sum(m(x, is_causal=True) ** 2),
                  lambda p: jnp.sum(linen.apply({"params": p}, x, is_causal=True) ** 2))
    with pytest.raises(ValueError, match="init_cache"):
        mha(x[:, :1], decode=True)
    mha.init_cache(2, 6)
    cache = jax.eval_shape(lambda: linen.init(jax.random.key(0), x, decode=True))["cache"]
    variables = {"params": zoo.nnx.linen_params(mha), "cache": jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                                                                             cache)}

    @nnx.jit
    def step(mha, variables, chunk):  # the NNX module's cache is updated in place; linen's is returned
        return mha(chunk, decode=True), linen.apply(variables, chunk, decode=True, mutable=["cache"])

    outs = []
    for chunk in (x[:, :3], x[:, 3:4], x[:, 4:5]):  # a prompt, then one token at a time
        out, (want, mutated) = step(mha, variables, chunk)
        variables = {**variables, **mutated}
        close(out, want)
        outs.append(np.asarray(out))
    close(nnx.to_pure_dict(nnx.state(mha, nnx.Cache)), variables["cache"])
    full = jax.jit(lambda p: linen.apply({"params": p}, x[:, :5], is_causal=True))(variables["params"])
    close(np.concatenate(outs, axis=1), full)  # the cache changes nothing


def test_transformer_block_equals_linen_and_draws_dropout_from_its_rngs():
    cfg = zoo.TransformerConfig(num_layers=1, num_heads=2, dropout_rate=0.5)
    linen = zoo.TransformerBlock(cfg, causal=True, cross_attention=True)
    x, context = randn((2, 4, 8)), randn((2, 3, 8), 1)
    params = random_params(linen, x, None, None, context)
    block = zoo.nnx.TransformerBlock(cfg, 8, causal=True, cross_attention=True, context_features=8,
                                     params=params, rngs=nnx.Rngs(0))

    @nnx.jit
    def outputs(block, params):
        call = lambda deterministic: block(x, context=context, deterministic=deterministic)
        return call(True), call(False), call(False), linen.apply({"params": params}, x, context=context)

    kept, dropped, dropped_again, want = outputs(block, params)
    close(kept, want)
    # nnx.Rngs(0) has a default stream only: it drives dropout, a new mask each call
    assert np.abs(np.asarray(dropped - dropped_again)).max() > 0 and np.abs(np.asarray(dropped - kept)).max() > 0


# ---------------------------------------------------------------------------
# models


def lm_loss(logits, tokens):
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()


FORWARD = nnx.jit(lambda model, tokens: model(tokens))
TOKENS = ids((2, 8), GPT_CFG.vocab_size)


@pytest.fixture(scope="module")
def gpt():
    return zoo.nnx.GPT(GPT_CFG, rngs=nnx.Rngs(0))


def test_gpt_equals_linen_and_keeps_its_logical_axis_names(gpt):
    tokens = TOKENS
    same_function(gpt, lambda m: lm_loss(m(tokens), tokens),
                  lambda p: lm_loss(zoo.GPT(GPT_CFG).apply({"params": p}, tokens), tokens))
    boxed = jax.eval_shape(zoo.GPT(GPT_CFG).init, jax.random.key(0), tokens)
    want = nn.get_partition_spec(boxed)["params"]
    got = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(gpt, nnx.Param)))
    assert got == want and jax.P("layers", "embed", "mlp") in jax.tree.leaves(want)
    # linen params in (boxed, as init gives them): the same model, the names from the linen module
    boxed_params = jax.tree.map(lambda box, p: box.replace_boxed(p), boxed["params"], zoo.nnx.linen_params(gpt),
                                is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    again = zoo.nnx.GPT(GPT_CFG, params=boxed_params)
    assert nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(again, nnx.Param))) == want
    close(zoo.nnx.linen_params(again), zoo.nnx.linen_params(gpt), atol=0)
    other = jax.tree.map(lambda p: np.asarray(p) + 1.0, zoo.nnx.linen_params(gpt))
    zoo.nnx.load_linen_params(again, {"params": other})
    close(zoo.nnx.linen_params(again), other, atol=0)
    bad = jax.tree.map(lambda a: a, other)
    bad["wte"]["embedding"] = np.zeros((3, 16), np.float32)
    with pytest.raises(ValueError, match=r"wte/embedding has shape \(3, 16\), the model's has \(48, 16\)"):
        zoo.nnx.load_linen_params(again, bad)
    with pytest.raises(ValueError, match="missing.*unexpected"):
        zoo.nnx.GPT(GPT_CFG, params={"wte": other["wte"], "extra": other["wpe"]})
    with pytest.raises(ValueError, match="rngs is needed"):
        zoo.nnx.GPT(GPT_CFG)


def test_gpt_decodes_with_its_cache(gpt):
    model = zoo.nnx.GPT(GPT_CFG, params=zoo.nnx.linen_params(gpt))
    model.init_cache(2, 8)
    step = nnx.jit(lambda m, t: m(t, decode=True))
    prompt, next_token = step(model, TOKENS[:, :7]), step(model, TOKENS[:, 7:8])
    full = np.asarray(FORWARD(gpt, TOKENS))
    close(prompt, full[:, :7])
    close(next_token, full[:, 7:])
    assert nnx.to_pure_dict(nnx.state(model, nnx.Cache))["position"].tolist() == [8, 8]


def test_bert_mlm_equals_linen():
    tokens, lengths = ids((2, 8), BERT_CFG.vocab_size), np.array([8, 5])
    positions = np.array([[1, 3], [0, 4]])
    linen = zoo.BERTForMaskedLM(BERT_CFG)
    model = zoo.nnx.BERTForMaskedLM(BERT_CFG, params=random_params(linen, tokens))
    assert model.config == BERT_CFG

    def loss(logits):
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.take_along_axis(tokens, positions, 1)).mean()

    same_function(model, lambda m: loss(m(tokens, seq_lengths=lengths, masked_positions=positions)),
                  lambda p: loss(linen.apply({"params": p}, tokens, seq_lengths=lengths, masked_positions=positions)))


def test_seq2seq_equals_linen_through_encode_and_decode():
    cfg = zoo.Seq2SeqConfig(vocab_size=30, max_source_len=8, max_target_len=8, num_encoder_layers=1,
                            num_decoder_layers=1, num_heads=2, features=16, dropout_rate=0.0)
    linen = zoo.Seq2SeqTransformer(cfg)
    src, tgt = ids((2, 6), 30), ids((2, 5), 30, 1)
    lengths = np.array([6, 4])
    model = zoo.nnx.Seq2SeqTransformer(cfg, params=random_params(linen, src, tgt))

    @nnx.jit
    def both(model, params):  # ToNNX's method calls: model.encode, model.decode
        encoded = model.encode(src, src_lengths=lengths)
        return model.decode(tgt, encoded, src_lengths=lengths), linen.apply(
            {"params": params}, src, tgt, src_lengths=lengths)

    got, want = both(model, zoo.nnx.linen_params(model))
    close(got, want)


def test_bridge_wraps_any_zoo_module_and_logical_axes_are_listed():
    cfg = zoo.TransformerConfig(num_layers=1, num_heads=2, dropout_rate=0.0)
    x = randn((2, 3, 8))
    params = random_params(zoo.Encoder(cfg), x)
    encoder = zoo.nnx.bridge(zoo.Encoder(cfg), jnp.zeros((1, 3, 8)), params=params)
    got, want = nnx.jit(lambda m: (m(x), zoo.Encoder(cfg).apply({"params": params}, x)))(encoder)
    close(got, want)
    names = set()
    tokens = jnp.zeros((1, 4), jnp.int32)
    for model, args in ((zoo.GPT(GPT_CFG.replace(tie_embeddings=False)), (tokens,)),
                        (zoo.BERTForPreTraining(BERT_CFG), (tokens,)),
                        (zoo.MultiHeadAttention(4, num_kv_heads=2, fused_qkv=False), (jnp.zeros((1, 2, 8)),))):
        specs = nn.get_partition_spec(jax.eval_shape(model.init, jax.random.key(0), *args))
        names.update(n for spec in jax.tree.leaves(specs) for n in spec if n is not None)
    assert names == set(zoo.nnx.LOGICAL_AXES)
    with pytest.raises(ValueError, match=r"\['hidden'\] are not logical axes"):
        zoo.nnx.axis_rules(hidden="model")


# ---------------------------------------------------------------------------
# training and sharding


@nnx.jit
def train_step(model, optimizer, tokens):
    loss, grads = nnx.value_and_grad(lambda m: lm_loss(m(tokens), tokens))(model)
    optimizer.update(model, grads)
    return loss


def numpy_lm_loss(logits, tokens):
    logits = np.asarray(logits[:, :-1], np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, tokens[:, 1:, None], -1).mean()


def test_nnx_optimizer_lowers_the_loss_with_parameters_sharded_under_a_mesh(gpt):
    """The docs' two examples in one: nnx.Optimizer, under a (data, model) mesh with tensor-parallel rules."""
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=auto)
    wi = lambda m: m.decoder["layers"]["mlp"]["wi"]["kernel"].get_value()
    with jax.set_mesh(mesh), nnx.logical_axis_rules(zoo.nnx.axis_rules(mlp="model", heads="model", vocab="model")):
        model = zoo.nnx.GPT(GPT_CFG, params=zoo.nnx.linen_params(gpt))
        assert wi(model).sharding.spec == jax.P(None, None, "model")
        assert model.wte["embedding"].get_value().sharding.spec == jax.P("model", None)
        made = zoo.nnx.GPT(GPT_CFG, rngs=nnx.Rngs(0))  # a random initialisation is made sharded too
        assert made.decoder["layers"]["self_attention"]["qkv_kernel"].get_value().sharding.spec == jax.P(
            None, None, None, "model", None)  # (layers, embed, qkv, heads, kv)
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
        batch = jax.device_put(TOKENS, jax.sharding.NamedSharding(mesh, jax.P("data")))
        losses = [float(train_step(model, optimizer, batch)) for _ in range(12)]
    # the first step saw the unsharded model's loss; each step trained the model object in place (the
    # falling losses), which stays sharded
    np.testing.assert_allclose(losses[0], numpy_lm_loss(FORWARD(gpt, TOKENS), TOKENS), rtol=1e-5)
    assert losses[-1] < 0.7 * losses[0] and all(b < a for a, b in itertools.pairwise(losses)), losses
    assert wi(model).sharding.spec == jax.P(None, None, "model")
    with jax.set_mesh(mesh), pytest.raises(ValueError, match="do not place"):
        zoo.nnx.GPT(GPT_CFG, rngs=nnx.Rngs(0))  # the names need rules
    explicit = jax.make_mesh((2, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    with jax.set_mesh(explicit), pytest.raises(ValueError, match="AxisType.Auto"):
        zoo.nnx.GPT(GPT_CFG, rngs=nnx.Rngs(0))
