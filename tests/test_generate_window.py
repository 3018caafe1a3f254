"""GPT generation past the context window: nanoGPT's cropping, checked against a plain Python loop."""

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
