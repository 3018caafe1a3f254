"""zoo.layers.dropout: hash-based keep masks behave like Bernoulli draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.layers.dropout import Dropout, hash_bernoulli


@pytest.mark.parametrize("p", [0.9, 0.5, 0.1])
def test_keep_fraction_and_independence(p):
    shape = (64, 128, 32)
    n = np.prod(shape)
    masks = [np.asarray(hash_bernoulli(jax.random.key(s), p, shape)) for s in range(4)]
    for m in masks:
        assert m.dtype == bool and m.shape == shape
        assert abs(m.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)  # binomial tolerance
        flat = m.reshape(-1).astype(np.float64)
        neighbours = np.corrcoef(flat[:-1], flat[1:])[0, 1]  # consecutive indices
        rows = np.corrcoef(m[:, :, 0].reshape(-1), m[:, :, 1].reshape(-1))[0, 1]
        # a correlation of independent draws has standard deviation about 1 / sqrt(samples)
        assert abs(neighbours) < 5 / np.sqrt(n) and abs(rows) < 5 / np.sqrt(n / 32)
    across = np.corrcoef(masks[0].reshape(-1), masks[1].reshape(-1))[0, 1]  # different keys
    assert abs(across) < 5 / np.sqrt(n)
    np.testing.assert_array_equal(masks[0], np.asarray(hash_bernoulli(jax.random.key(0), p, shape)))


def test_dropout_module():
    x = jnp.ones((8, 1000))
    layer = Dropout(0.25)
    assert layer.apply({}, x, deterministic=True) is x
    y = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    kept = np.asarray(y) != 0
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)  # inverted dropout keeps the mean
    assert abs(kept.mean() - 0.75) < 0.02
    assert float(Dropout(1.0).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}).sum()) == 0
    g = jax.grad(lambda x: layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(3)}).sum())(x)
    np.testing.assert_array_equal(np.asarray(g) != 0, kept)  # the gradient flows through kept elements only
    with pytest.raises(Exception):
        layer.apply({}, x, deterministic=False)  # needs the 'dropout' rng
