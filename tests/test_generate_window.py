"""GPT generation past the context window: nanoGPT's cropping, checked against a plain Python loop."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

W = 8  # block_size: small, so a few tokens cross it and a few dozen cross it several times
CFG = zoo.GPTConfig(vocab_size=37, block_size=W, num_layers=2, num_heads=2, features=16)
MODEL = zoo.GPT(CFG)
# Scaled up so the argmax is decisive (random init gives near-uniform logits): the cached,
# windowed and reference paths round differently, and a near-tie would flip between them.
PARAMS = jax.tree.map(
    lambda x: x * 8 if x.ndim >= 2 else x,
    nn.unbox(MODEL.init(jax.random.key(1), jnp.zeros((1, 4), jnp.int32)))["params"],
)
APPLY = jax.jit(MODEL.apply)  # compiled once per window length 1..W, shared by every test
RNG = np.random.default_rng(0)


def greedy_reference(prompt, n):
    """nanoGPT's generate, greedy: argmax of a full forward of the last block_size tokens, per token."""
    seq = [int(t) for t in prompt]
    for _ in range(n):
        window = np.asarray(seq[-W:], np.int32)[None]  # idx_cond = idx[:, -block_size:]
        logits = APPLY({"params": PARAMS}, window)  # (1, len(window), V)
        seq.append(int(np.argmax(logits[0, -1])))
    return seq[len(prompt):]


def batch_of(prompts):
    """Right-pad prompts into (B, P) with their lengths (B,)."""
    lengths = np.array([len(p) for p in prompts])
    ids = np.zeros((len(prompts), lengths.max()), np.int32)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
    return ids, lengths


@pytest.mark.parametrize(
    "prompt_len, n",
    [(3, 6), (3, 30), (8, 1), (8, 20), (13, 20)],
    ids=["short-cross-by-1", "short-cross-several-windows", "full-window-1-token", "full-window",
         "longer-than-window"],
)
def test_greedy_past_the_window_equals_cropped_full_forward(prompt_len, n):
    prompt = RNG.integers(0, 37, prompt_len).tolist()  # a plain list, as tokenizer.encode returns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long prompt's warning has its own test
        out = zoo.generate(MODEL, PARAMS, prompt, n, temperature=0)
    assert out.shape == (1, n) and out.dtype == jnp.int32
    assert list(np.asarray(out[0])) == greedy_reference(prompt, n)


@pytest.mark.parametrize(
    "lengths, n",
    [((7, 2), 12), ((13, 2, 8, 5), 20)],
    ids=["short-row-crosses-late", "cropped-full-and-short-rows"],
)
def test_batched_unequal_prompts_past_the_window(lengths, n):
    # Row 2 of the first case enters the window phase holding 4 tokens (the longest row sets
    # when the cache stops), so the windowed forward also runs on rows that are not full.
    prompts = [RNG.integers(0, 37, k).tolist() for k in lengths]
    ids, lens = batch_of(prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = zoo.generate(MODEL, PARAMS, ids, n, temperature=0, prompt_lengths=lens)
    assert out.shape == (len(prompts), n)
    for row, prompt in enumerate(prompts):
        assert list(np.asarray(out[row])) == greedy_reference(prompt, n), f"row {row}"


@jax.jit
def cache_step(cache, ids, lengths):
    variables = {"params": PARAMS, "cache": cache}
    return MODEL.apply(variables, ids, seq_lengths=lengths, decode=True, mutable=["cache"])


def cached_loop(ids, lengths, n, rng, **sampling):
    """The KV-cache path driven by hand: prefill, then one fed-back token per step, one key per token."""
    cache = zoo.init_cache(MODEL, ids.shape[0], ids.shape[1] + n)
    keys = [None] * n if rng is None else jax.random.split(rng, n)
    logits, mutated = cache_step(cache, jnp.asarray(ids), jnp.asarray(lengths))
    logits = logits[jnp.arange(len(lengths)), jnp.asarray(lengths) - 1]  # (B, V)
    out = []
    for i in range(n):
        token = zoo.sample_logits(logits, keys[i], **sampling)  # (B,)
        out.append(np.asarray(token))
        logits, mutated = cache_step(mutated["cache"], token[:, None], None)
        logits = logits[:, 0]
    return np.stack(out, axis=1)  # (B, n)


def test_generation_that_fits_the_window_is_the_cached_path():
    # prompt + new tokens == block_size exactly: the longest row ends at the last cache slot.
    ids, lens = batch_of([RNG.integers(0, 37, 5).tolist(), RNG.integers(0, 37, 2).tolist()])
    rng = jax.random.key(3)
    out = zoo.generate(MODEL, PARAMS, ids, 3, temperature=1.0, top_k=10, rng=rng, prompt_lengths=lens)
    np.testing.assert_array_equal(out, cached_loop(ids, lens, 3, rng, temperature=1.0, top_k=10))


def test_sampling_past_the_window_is_deterministic_and_in_vocabulary():
    ids, lens = batch_of([RNG.integers(0, 37, 6).tolist(), RNG.integers(0, 37, 3).tolist()])
    kwargs = dict(temperature=1.5, top_k=20, top_p=0.95, prompt_lengths=lens)
    a = zoo.generate(MODEL, PARAMS, ids, 25, rng=jax.random.key(7), **kwargs)
    b = zoo.generate(MODEL, PARAMS, ids, 25, rng=jax.random.key(7), **kwargs)
    c = zoo.generate(MODEL, PARAMS, ids, 25, rng=jax.random.key(8), **kwargs)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 25) and 0 <= int(a.min()) and int(a.max()) < 37
    assert not np.array_equal(a, c)  # the key matters in the window phase too (a tie has odds ~37**-40)


def test_long_prompt_is_cropped_to_its_last_block_size_tokens_with_a_warning():
    long = RNG.integers(0, 37, 13).tolist()
    with pytest.warns(UserWarning, match=r"1 of 1 prompts are longer than the context window block_size=8 "
                                         r"\(token counts row 0: 13\); each is cropped to its last 8 tokens"):
        out = zoo.generate(MODEL, PARAMS, long, 4, temperature=0)
    np.testing.assert_array_equal(out, zoo.generate(MODEL, PARAMS, long[-W:], 4, temperature=0))

    ids, lens = batch_of([long, RNG.integers(0, 37, 3).tolist(), RNG.integers(0, 37, 10).tolist()])
    with pytest.warns(UserWarning, match=r"2 of 3 prompts .* \(token counts row 0: 13, row 2: 10\)"):
        zoo.generate(MODEL, PARAMS, ids, 2, temperature=0, prompt_lengths=lens)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # padding past the window is not cropping: no warning
        padded = np.zeros((1, 12), np.int32)
        padded[0, :W] = long[-W:]
        # (the shapes of the first call: no new compilation)
        np.testing.assert_array_equal(out, zoo.generate(MODEL, PARAMS, padded, 4, temperature=0,
                                                        prompt_lengths=np.array([W])))


def test_logits_at_equals_the_full_logits_at_that_position():
    ids = RNG.integers(0, 37, (3, W))
    at = np.array([7, 0, 4])
    full = APPLY({"params": PARAMS}, ids)  # (3, W, V)
    some = APPLY({"params": PARAMS}, ids, logits_at=at)
    assert some.shape == (3, 1, 37)
    np.testing.assert_allclose(some[:, 0], full[np.arange(3), at], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"GPT: logits_at must be positions of the 8 input tokens .*got 8"):
        MODEL.apply({"params": PARAMS}, ids, logits_at=np.array([1, 8, 0]))
    with pytest.raises(ValueError, match=r"logits_at must be \(3,\) integer positions, got int\d+\(2,\)"):
        MODEL.apply({"params": PARAMS}, ids, logits_at=np.array([1, 2]))
