"""Embeddings: token tables and the three ways to tell a Transformer where a token is.

Attention itself is blind to order: permute the keys and the output does not
change. Position information is added in one of three ways:

* learned absolute positions (GPT-2, BERT): a trained (max_len, D) table
  added to the token embeddings, :class:`LearnedPositionEmbedding`;
* sinusoidal absolute positions (the original Transformer), a fixed table,
  :func:`sinusoidal_table` and :class:`SinusoidalPositionEmbedding`;
* rotary embeddings (RoPE, Su et al. 2021), which rotate queries and keys by
  a position-dependent angle so their dot product depends only on the
  distance: :func:`apply_rope`, applied inside attention
  (``MultiHeadAttention(rope_base=...)``).

Every parameter carries logical axis names (``vocab``, ``position``,
``embed``) through Flax's partitioning metadata; see
:mod:`zoo.layers.multihead` for how to get plain arrays.

Token ids are checked: JAX clamps an out-of-range index silently, so
:class:`Embed` raises ``ValueError`` on concrete ids outside
``[0, num_embeddings)`` and emits a ``checkify`` check under ``jit`` (active
with :func:`zoo.checked`).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str

Array = jax.Array
Initializer = Callable[..., Array]

__all__ = [
    "Embed",
    "LearnedPositionEmbedding",
    "SinusoidalPositionEmbedding",
    "sinusoidal_table",
    "apply_rope",
]

# GPT-2 and BERT both initialise embeddings and weights from N(0, 0.02^2).
default_embed_init = nn.initializers.normal(stddev=0.02)


def _check_ids(name: str, ids: Array, size: int) -> None:
    if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
        raise ValueError(f"{name} must hold integers, got dtype {jnp.result_type(ids)}")
    check_range(name, ids, 0, size - 1, "valid indices into a table of size " + str(size))


class Embed(nn.Module):
    """Token embedding table (V, D) with ``attend`` for a weight-tied output head.

    Attributes:
      num_embeddings: vocabulary size V.
      features: embedding width D.

    Examples:
      >>> embed = zoo.Embed(num_embeddings=10, features=8)
      >>> ids = jnp.array([[1, 2, 3]])                     # (B, T)
      >>> params = embed.init(jax.random.key(0), ids)
      >>> x = embed.apply(params, ids)
      >>> x.shape
      (1, 3, 8)
      >>> embed.apply(params, x, method=embed.attend).shape   # tied output head: logits (B, T, V)
      (1, 3, 10)
    """

    num_embeddings: int
    features: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    embedding_init: Initializer = default_embed_init

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, ("vocab", "embed")),
            (self.num_embeddings, self.features),
            self.param_dtype,
        )

    def __call__(self, ids: Array) -> Array:
        """ids (...) integers -> (..., D)."""
        _check_ids("token ids", ids, self.num_embeddings)
        table = jnp.asarray(self.embedding, self.dtype or self.param_dtype)
        return jnp.take(table, ids, axis=0)

    def attend(self, x: Array) -> Array:
        """x (..., D) -> logits (..., V) = x E^T, the tied output projection."""
        x, table = nn.dtypes.promote_dtype(x, self.embedding, dtype=self.dtype)
        return jnp.einsum("...d,vd->...v", x, table)


def _positions(name: str, x: Array, positions: Array | None, max_len: int) -> Array:
    """Check and default the positions of ``x`` (B, T, D): (T,) arange or the given (B|1, T)."""
    if x.ndim < 2:
        raise ValueError(f"{name}: inputs must have shape (..., T, D), got {shape_str(x.shape)}")
    t = x.shape[-2]
    if positions is None:
        if t > max_len:
            raise ValueError(
                f"{name}: sequence length {t} is longer than the position table (max_len={max_len}); "
                f"inputs have shape {shape_str(x.shape)}"
            )
        return jnp.arange(t)
    if positions.shape[-1] != t:
        raise ValueError(
            f"{name}: positions of shape {shape_str(positions.shape)} do not match the "
            f"sequence length {t} of inputs {shape_str(x.shape)}"
        )
    _check_ids("positions", positions, max_len)
    return positions


class LearnedPositionEmbedding(nn.Module):
    """Adds a trained (max_len, D) position table to (B, T, D) inputs (GPT-2, BERT).

    Examples:
      >>> pos = zoo.LearnedPositionEmbedding(max_len=16)
      >>> x = jnp.zeros((2, 4, 8))                          # (B, T, D)
      >>> params = pos.init(jax.random.key(0), x)           # a (max_len, D) table
      >>> y = pos.apply(params, x)
      >>> y.shape
      (2, 4, 8)
      >>> y = pos.apply(params, x, positions=jnp.array([[3, 4, 5, 6]]))   # (B|1, T) positions
      >>> y.shape
      (2, 4, 8)
    """

    max_len: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    embedding_init: Initializer = default_embed_init

    @nn.compact
    def __call__(self, x: Array, positions: Array | None = None) -> Array:
        """x (B, T, D); positions (B, T) or (T,) integers, default 0..T-1."""
        positions = _positions(type(self).__name__, x, positions, self.max_len)
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, ("position", "embed")),
            (self.max_len, x.shape[-1]),
            self.param_dtype,
        )
        x, table = nn.dtypes.promote_dtype(x, table, dtype=self.dtype)
        return x + jnp.take(table, positions, axis=0)  # (B|1, T, D) broadcast over batch


def sinusoidal_table(max_len: int, features: int, base: float = 10000.0) -> np.ndarray:
    """The original Transformer's (max_len, D) table: sin on even, cos on odd columns.

    ``PE[p, 2i] = sin(p / base^(2i/D))``, ``PE[p, 2i+1] = cos(p / base^(2i/D))``
    (Vaswani et al. 2017, section 3.5). Computed in float64 by NumPy.

    Examples:
      >>> table = zoo.sinusoidal_table(max_len=16, features=8)
      >>> table.shape, table.dtype
      ((16, 8), dtype('float64'))
      >>> table[1, :2].round(3)                             # sin(1), cos(1)
      array([0.841, 0.54 ])
    """
    if features % 2:
        raise ValueError(f"sinusoidal_table: features must be even, got {features}")
    pos = np.arange(max_len, dtype=np.float64)[:, None]  # (max_len, 1)
    inv = base ** (-np.arange(0, features, 2, dtype=np.float64) / features)  # (D/2,)
    table = np.zeros((max_len, features), np.float64)
    table[:, 0::2] = np.sin(pos * inv)
    table[:, 1::2] = np.cos(pos * inv)
    return table


class SinusoidalPositionEmbedding(nn.Module):
    """Adds the fixed sinusoidal table to (B, T, D) inputs (no parameters).

    Examples:
      >>> pos = zoo.SinusoidalPositionEmbedding(max_len=16)
      >>> y = pos.apply({}, jnp.zeros((2, 4, 8)))           # no parameters
      >>> y.shape
      (2, 4, 8)
      >>> y[0, 1, :2].round(3)                              # sin(1), cos(1)
      Array([0.841, 0.54 ], dtype=float32)
    """

    max_len: int
    base: float = 10000.0

    @nn.compact
    def __call__(self, x: Array, positions: Array | None = None) -> Array:
        positions = _positions(type(self).__name__, x, positions, self.max_len)
        table = jnp.asarray(sinusoidal_table(self.max_len, x.shape[-1], self.base), x.dtype)
        return x + jnp.take(table, positions, axis=0)


def apply_rope(x: Array, positions: Array, *, base: float = 10000.0) -> Array:
    """Rotary position embedding of queries or keys.

    x (B, T, N, H) with H even; positions (B, T) or (T,) integers. Channel
    pairs ``(i, i + H/2)`` are rotated by the angle ``p * base^(-2i/H)``
    (the "rotate half" layout of GPT-NeoX and LLaMA in Hugging Face), so
    ``<rope(q, m), rope(k, n)>`` depends on ``m - n`` only. Angles and the
    rotation are computed in float32; the result has the dtype of ``x``.

    Examples:
      >>> q = jnp.ones((1, 4, 2, 8))                        # (B, T, N, H)
      >>> zoo.apply_rope(q, jnp.arange(4)).shape
      (1, 4, 2, 8)
      >>> r = zoo.apply_rope(q, jnp.arange(4))
      >>> bool(jnp.allclose(jnp.einsum("h,h", r[0, 3, 0], r[0, 1, 0]),
      ...                   jnp.einsum("h,h", r[0, 2, 0], r[0, 0, 0])))  # depends on m - n only
      True
    """
    if x.ndim != 4 or x.shape[-1] % 2:
        raise ValueError(f"apply_rope: x must have shape (B, T, N, H) with H even, got {shape_str(x.shape)}")
    positions = jnp.asarray(positions)
    if positions.shape[-1] != x.shape[1] or positions.ndim not in (1, 2):
        raise ValueError(
            f"apply_rope: positions must have shape (B, T) or (T,) with T={x.shape[1]}, "
            f"got {shape_str(positions.shape)}"
        )
    half = x.shape[-1] // 2
    inv = base ** (-jnp.arange(half, dtype=jnp.float32) / half)  # (H/2,)
    angles = positions.astype(jnp.float32)[..., None] * inv  # (B|, T, H/2)
    if angles.ndim == 2:
        angles = angles[None]  # (1, T, H/2)
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]  # (B|1, T, 1, H/2)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # (B, T, N, H/2) each
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)  # (B, T, N, H)
    return out.astype(x.dtype)
