"""Dropout whose keep-mask comes from a counter hash: the Transformer family's dropout.

    y = Dropout(rate)(x, deterministic=False)        # needs the 'dropout' rng, as flax.linen.Dropout

The mask is the same kind of object as ``jax.random.bernoulli``'s, drawn
differently. ``jax.random`` runs threefry, a cryptographic-strength
generator, once per 32 random bits; on a CPU that took 9% of a BERT-mini
training step (profile in the issue notes). Dropout needs no such strength:
here each element's index is mixed with two 32-bit words drawn from the key
(the murmur3 finaliser, twice) and compared with a threshold. Masks are a
pure function of the key, differ between keys, keep ``1 - rate`` of the
elements, and neighbouring elements are uncorrelated (tests/test_dropout.py).
Not for anything that needs cryptographic randomness.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Dropout", "hash_bernoulli"]

Array = jax.Array


def _mix(x: Array) -> Array:
    """The murmur3 32-bit finaliser: every input bit affects every output bit."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hash_bernoulli(key: Array, p: float, shape: tuple[int, ...]) -> Array:
    """A bool array of ``shape``, True with probability ``p`` (a Python float), from ``key``.

    Element i is ``mix(mix(i * 0x9E3779B1 + s0) ^ s1) < p * 2**32`` with
    (s0, s1) two words drawn from ``key`` by ``jax.random.bits``. Arrays of
    up to 2**32 elements.
    """
    size = int(np.prod(shape))
    if size >= 2**32:
        raise ValueError(f"hash_bernoulli: shape {shape} has {size} elements, expected fewer than 2**32")
    threshold = int(round(p * 2**32))
    if threshold >= 2**32:
        return jnp.ones(shape, bool)
    seed = jax.random.bits(key, (2,), jnp.uint32)
    x = jax.lax.iota(jnp.uint32, size).reshape(shape) * jnp.uint32(0x9E3779B1) + seed[0]
    return _mix(_mix(x) ^ seed[1]) < jnp.uint32(threshold)


class Dropout(nn.Module):
    """``flax.linen.Dropout``'s interface (rate, ``deterministic``, the 'dropout' rng) with :func:`hash_bernoulli` masks."""

    rate: float

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        if deterministic or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        keep = hash_bernoulli(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)
