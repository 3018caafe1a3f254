"""GPT and recurrent LMs: parameter and FLOP counts, causality, id checks, generation with caches."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

NANO = zoo.GPTConfig(vocab_size=37, block_size=16, num_layers=2, num_heads=2, features=16)
RNN_NANO = zoo.RNNLMConfig(vocab_size=37, features=16, num_layers=2)
RNG = np.random.default_rng(0)


def n_params(model, ids):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), ids))["params"]
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))


@pytest.mark.parametrize(
    "changes",
    [{}, {"use_bias": False}, {"tie_embeddings": False}, {"positions": "rope"}, {"mlp_dim": 24, "scan_layers": False}],
)
def test_gpt_param_count_matches_init(changes):
    cfg = NANO.replace(**changes)
    ids = jnp.zeros((1, 4), jnp.int32)
    assert zoo.gpt_param_count(cfg, non_embedding=False) == n_params(zoo.GPT(cfg), ids)


@pytest.mark.parametrize("cell", sorted(zoo.layers.CELLS))
@pytest.mark.parametrize("tie", [True, False])
def test_rnn_lm_param_count_matches_init(cell, tie):
    cfg = RNN_NANO.replace(cell=cell, tie_embeddings=tie)
    assert zoo.rnn_lm_param_count(cfg) == n_params(zoo.RNNLM(cfg), jnp.zeros((1, 4), jnp.int32))


def test_flop_counts_hand_worked():
    # GPT, 1 layer, D=4, 2 heads of 2, F=16, V=10, block 8, biases:
    # attention 4*12 + 4*4 + 12 + 4 = 80; MLP 4*16 + 16*4 + 16 + 4 = 148; norms 2*8 = 16;
    # final norm 8; table 40 -> N = 292; 6N + 12 * 1 * 2 * 2 * 8 = 1752 + 384 = 2136
    cfg = zoo.GPTConfig(vocab_size=10, block_size=8, num_layers=1, num_heads=2, features=4)
    assert zoo.gpt_param_count(cfg) == 292
    assert zoo.gpt_flops_per_token(cfg) == 2136
    assert zoo.gpt_flops_per_token(cfg, seq_len=2) == 1752 + 96
    # LSTM LM, 1 layer, D=3, V=5, tied: 3*12 + 3*12 + 12 = 84, table 15 -> 6 * 99
    lstm = zoo.RNNLMConfig(vocab_size=5, features=3, num_layers=1, cell="lstm")
    assert zoo.rnn_lm_flops_per_token(lstm) == 6 * 99


def test_gpt_is_causal_and_returns_float32_logits():
    model = zoo.GPT(NANO.replace(dtype="bfloat16"))
    ids = RNG.integers(0, 37, (2, 10))
    # init and apply jitted (one compile each; eagerly flax compiles every primitive on its own)
    params = jax.jit(model.init)(jax.random.key(0), ids)
    apply = jax.jit(model.apply)
    logits = apply(params, ids)
    assert logits.shape == (2, 10, 37) and logits.dtype == jnp.float32
    ids2 = ids.copy()
    ids2[:, 6:] = (ids2[:, 6:] + 1) % 37
    logits2 = apply(params, ids2)
    np.testing.assert_array_equal(logits[:, :6], logits2[:, :6])
    assert not np.allclose(logits[:, 6:], logits2[:, 6:])


def test_bad_ids_and_lengths_raise():
    model = zoo.GPT(NANO)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))  # the errors below stay eager
    with pytest.raises(ValueError, match="token ids must be valid indices into a table of size 37.*got 37"):
        model.apply(params, np.array([[1, 37]]))
    with pytest.raises(Exception, match="token ids"):
        zoo.checked(jax.jit(model.apply))(params, jnp.array([[40]]))
    with pytest.raises(ValueError, match="sequence length 17 is longer than the context window block_size=16"):
        model.apply(params, np.zeros((1, 17), np.int32))
    with pytest.raises(ValueError, match="features=30, expected a multiple of num_heads=4"):
        NANO.replace(features=30, num_heads=4)
    with pytest.raises(ValueError, match="generate: prompt_ids must be token ids of the vocabulary \\(size 37\\).*got 37"):
        zoo.generate(model, params["params"], np.array([[3, 37]]), 2, temperature=0)
    with pytest.raises(ValueError, match="needs rng"):
        zoo.generate(model, params["params"], np.zeros((1, 3), np.int32), 2)
    with pytest.raises(ValueError, match="prompt_lengths must be prompt lengths \\(between 1 and 3\\); got 0"):
        zoo.generate(model, params["params"], np.zeros((2, 3), np.int32), 2, temperature=0,
                     prompt_lengths=np.array([3, 0]))
    # Sampling settings that cannot mean anything: errors, as in `zoo sample` (never a silent fallback).
    key = jax.random.key(0)
    for kwargs, match in (({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
                          ({"temperature": float("inf")}, "temperature must be a finite number >= 0"),
                          ({"top_k": 0}, "top_k must be in \\[1, vocab_size=37\\], got 0"),
                          ({"top_p": float("nan")}, "top_p must be in \\(0, 1\\], got nan")):
        with pytest.raises(ValueError, match=match):
            zoo.generate(model, params["params"], np.zeros((1, 3), np.int32), 2, rng=key, **kwargs)


def greedy_by_full_forward(model, params, prompt, n):
    """Argmax decoding by re-running the whole sequence for every new token (no cache)."""
    seq = list(prompt)
    apply = jax.jit(model.apply)
    for _ in range(n):
        padded = np.zeros((1, len(prompt) + n), np.int32)
        padded[0, : len(seq)] = seq
        logits = apply(params, padded)
        seq.append(int(np.argmax(logits[0, len(seq) - 1])))
    return seq[len(prompt):]


@pytest.mark.parametrize(
    "model",
    [zoo.GPT(NANO), zoo.GPT(NANO.replace(positions="rope", use_bias=False, scan_layers=False)), zoo.RNNLM(RNN_NANO),
     zoo.RNNLM(RNN_NANO.replace(cell="mingru"))],
    ids=["gpt", "gpt-rope-unrolled", "lstm", "mingru"],
)
def test_cached_greedy_generation_equals_repeated_full_forward(model):
    params = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 4), jnp.int32))
    # scale the weights up so the argmax is decisive (random init gives near-uniform logits)
    params = jax.tree.map(lambda x: x * 8 if x.ndim >= 2 else x, nn.unbox(params))
    prompts = [RNG.integers(0, 37, 5), RNG.integers(0, 37, 2)]
    batch = np.zeros((2, 5), np.int32)
    batch[0], batch[1, :2] = prompts[0], prompts[1]
    out = zoo.generate(model, params["params"], batch, 6, temperature=0, prompt_lengths=np.array([5, 2]))
    assert out.shape == (2, 6) and out.dtype == jnp.int32
    for row, prompt in enumerate(prompts):
        assert list(np.asarray(out[row])) == greedy_by_full_forward(model, params, prompt, 6)


def test_sampling_filters():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
    keys = jax.random.key(0)
    top2 = zoo.sample_logits(logits, keys, top_k=2)
    assert set(np.unique(top2)) == {0, 1}
    nucleus = zoo.sample_logits(logits, keys, top_p=0.7)  # 0.5 + 0.3 reach 0.7
    assert set(np.unique(nucleus)) == {0, 1}
    full = np.asarray(zoo.sample_logits(logits, keys))
    np.testing.assert_allclose(np.bincount(full, minlength=4) / len(full), [0.5, 0.3, 0.15, 0.05], atol=0.04)
    assert np.all(zoo.sample_logits(logits, None, temperature=0) == 0)
    cold = np.asarray(zoo.sample_logits(logits, keys, temperature=0.1))
    assert (cold == 0).mean() > 0.95


@pytest.mark.parametrize("cell", sorted(zoo.layers.CELLS))
def test_cell_param_count_matches_init(cell):
    """One count per cell (zoo.layers.cell_param_count), used by the LMs, the tasks and the benchmarks."""
    module = zoo.RNN(zoo.layers.CELLS[cell](features=6))
    assert zoo.layers.cell_param_count(cell, 5, 6) == n_params(module, jnp.zeros((1, 3, 5)))
