"""Dot-product attention: a drop-in for ``jax.nn.dot_product_attention``.

Self-attention scores each query against every key with a dot product,
divides by the square root of the head size, takes a softmax over the keys
and mixes the values with those weights. Multi-head attention runs several
such heads side by side; grouped-query attention lets several query heads
share one key/value head.

Layout and names follow ``jax.nn.dot_product_attention``::

    B batch, T query length, S key/value length,
    N query heads, K key/value heads (N % K == 0), G = N // K, H head size
    query (B, T, N, H); key, value (B, S, K, H); output (B, T, N, H)
    bias, mask broadcastable to (B, N, T, S); mask True = may attend

Unbatched inputs (T, N, H) work too. One deliberate difference from
``jax.nn``: a query row that can see no key (a padded query, a fully masked
row) returns zeros, where ``jax.nn`` returns the mean of the values. The
softmax runs in float32 whatever the input dtype.

Implementations (``implementation=``):

``'xla'`` (alias ``'dense'``)
    Materialises the (T, S) logits per head: simple, exact, O(T*S) memory.
``'blockwise'``
    The FlashAttention algorithm in pure JAX (``zoo/layers/flash.py``): an
    online softmax over key blocks, blocks wholly above the causal diagonal
    skipped, and a custom backward pass that recomputes the logits instead of
    storing them. Memory O(T * block) when masking comes from ``is_causal``,
    lengths or a window; a dense ``mask`` or ``bias`` argument costs its own
    size.
``'cudnn'``
    NVIDIA's fused kernel through ``jax.nn.dot_product_attention(...,
    implementation='cudnn')``: GPU only, float16/bfloat16, and the shapes
    cuDNN accepts (jax.nn raises otherwise). zoo zeroes the rows that see no
    key afterwards, so the result follows zoo's convention.
``None``
    Picks one: ``'blockwise'`` when T * S >= 512 * 512 and there is no dense
    mask or bias (and, if causal, T == S), ``'xla'`` otherwise. The threshold
    is where blockwise overtook dense, forward and forward+backward, at
    B=4, 8 heads, head_dim 64 on a 2-core CPU (``zoo bench attention``).
    ``None`` never picks ``'cudnn'``: ask for it explicitly on a GPU.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str

Array = jax.Array
Implementation = Literal["xla", "dense", "blockwise", "cudnn"]

__all__ = [
    "dot_product_attention",
    "attention_weights",
    "causal_mask",
    "padding_mask",
    "make_attention_mask",
    "combine_masks",
]

# With no dense mask or bias and at least this many logits per head, the
# default implementation is the blockwise one (measured crossover, see above).
_BLOCKWISE_MIN_LOGITS = 512 * 512


# ----------------------------------------------------------------------------
# masks (boolean, True = may attend)


def causal_mask(q_len: int, kv_len: int | None = None) -> Array:
    """(T, S) mask: query i sees keys j <= i (aligned at the top left, as jax.nn)."""
    kv_len = q_len if kv_len is None else kv_len
    return jnp.arange(q_len)[:, None] >= jnp.arange(kv_len)[None, :]


def padding_mask(lengths: Array, max_len: int) -> Array:
    """(B, max_len) token mask: True for the first ``lengths[b]`` positions."""
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def make_attention_mask(query_mask: Array, key_mask: Array) -> Array:
    """(B, 1, T, S) attention mask from (B, T) and (B, S) boolean token masks."""
    return query_mask[:, None, :, None] & key_mask[:, None, None, :]


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the masks given (None entries skipped), with broadcasting."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = jnp.logical_and(out, m)
    return out


def _window_mask(q_len: int, kv_len: int, window: tuple[int, int]) -> Array:
    left, right = window
    q = jnp.arange(q_len)[:, None]
    k = jnp.arange(kv_len)[None, :]
    return (k >= q - left) & (k <= q + right)


# ----------------------------------------------------------------------------
# checks (shapes are static: all before tracing)


def _as_4d(name: str, x, rank: int):
    if x is None:
        return None
    x = jnp.asarray(x)
    if x.ndim != rank:
        raise ValueError(
            f"dot_product_attention: {name} must have {rank} dimensions like the query "
            f"((B, N, T, S) or (N, T, S)); got shape {shape_str(x.shape)}"
        )
    return x if rank == 4 else x[None]


def _check_lengths(name: str, lengths, batch: int, limit: int) -> Array | None:
    if lengths is None:
        return None
    if not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    if tuple(jnp.shape(lengths)) != (batch,):
        raise ValueError(
            f"dot_product_attention: {name} has shape {shape_str(jnp.shape(lengths))}, expected ({batch},)"
        )
    if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
        raise ValueError(f"dot_product_attention: {name} must hold integers, got dtype {jnp.result_type(lengths)}")
    check_range(name, lengths, 0, limit, "sequence lengths")
    return jnp.asarray(lengths)


def _check_window(window) -> tuple[int, int] | None:
    if window is None:
        return None
    pair = (window, window) if isinstance(window, (int, np.integer)) else tuple(window)
    if len(pair) != 2 or any(int(w) < 0 for w in pair):
        raise ValueError(
            f"dot_product_attention: local_window_size must be an int or a pair (left, right) of "
            f"non-negative ints, got {window!r}"
        )
    return int(pair[0]), int(pair[1])


def _prepare(query, key, value, bias, mask, query_seq_lengths, key_value_seq_lengths, local_window_size):
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if query.ndim not in (3, 4):
        raise ValueError(
            f"dot_product_attention: query must have shape (B, T, N, H) or (T, N, H), "
            f"got {shape_str(query.shape)}"
        )
    for name, x in (("key", key), ("value", value)):
        if x.ndim != query.ndim:
            raise ValueError(
                f"dot_product_attention: {name} has shape {shape_str(x.shape)}, but query has "
                f"{query.ndim} dimensions {shape_str(query.shape)}"
            )
    rank = query.ndim
    q, k, v = (x if rank == 4 else x[None] for x in (query, key, value))
    (b, t, n, h), (bk, s, kh, hk) = q.shape, k.shape
    if k.shape != v.shape:
        raise ValueError(
            f"dot_product_attention: key and value must have the same shape, got "
            f"{shape_str(key.shape)} and {shape_str(value.shape)}"
        )
    if hk != h:
        raise ValueError(
            f"dot_product_attention: head size differs between query {shape_str(query.shape)} "
            f"and key/value {shape_str(key.shape)}"
        )
    if bk != b:
        raise ValueError(
            f"dot_product_attention: batch size differs between query {shape_str(query.shape)} "
            f"and key/value {shape_str(key.shape)}"
        )
    if n % kh != 0:
        raise ValueError(
            f"dot_product_attention: query heads ({n}) must be a multiple of key/value heads ({kh}); "
            f"query {shape_str(query.shape)}, key {shape_str(key.shape)}"
        )
    bias, mask = _as_4d("bias", bias, rank), _as_4d("mask", mask, rank)
    for name, x in (("bias", bias), ("mask", mask)):
        if x is None:
            continue
        try:
            np.broadcast_shapes(x.shape, (b, n, t, s))
        except ValueError:
            raise ValueError(
                f"dot_product_attention: {name} of shape {shape_str(x.shape)} does not broadcast to "
                f"(B, N, T, S) = {shape_str((b, n, t, s))}"
            ) from None
        if x.shape[1] not in (1, n):
            raise ValueError(
                f"dot_product_attention: {name} must have 1 or N={n} heads, got shape {shape_str(x.shape)}"
            )
    if mask is not None and mask.dtype != jnp.bool_:
        raise ValueError(
            f"dot_product_attention: mask must be boolean (True = may attend), got dtype {mask.dtype}; "
            "pass an additive mask as bias"
        )
    q_lengths = _check_lengths("query_seq_lengths", query_seq_lengths, b, t)
    kv_lengths = _check_lengths("key_value_seq_lengths", key_value_seq_lengths, b, s)
    window = _check_window(local_window_size)
    return rank, q, k, v, bias, mask, q_lengths, kv_lengths, window


def _structural_mask(t, s, is_causal, q_lengths, kv_lengths, window, mask):
    """The combined (B|1, N|1, T, S) mask, or None when nothing is masked."""
    masks = [mask]
    if is_causal:
        masks.append(causal_mask(t, s)[None, None])
    if window is not None:
        masks.append(_window_mask(t, s, window)[None, None])
    if q_lengths is not None:
        masks.append(padding_mask(q_lengths, t)[:, None, :, None])
    if kv_lengths is not None:
        masks.append(padding_mask(kv_lengths, s)[:, None, None, :])
    return combine_masks(*masks)


# ----------------------------------------------------------------------------
# dense implementation


def _rows(x: Array | None, kv_heads: int, groups: int, t: int, s: int) -> Array | None:
    """A (B|1, N|1, T|1, S|1) mask or bias -> (B|1, K|1, G * T, S), the row layout of the logits."""
    if x is None:
        return None
    b, n = x.shape[:2]
    x = jnp.broadcast_to(x, (b, n, t, s))
    if n == 1:
        x = jnp.broadcast_to(x[:, :, None], (b, 1, groups, t, s))  # (B|1, 1, G, T, S)
    else:
        x = x.reshape(b, kv_heads, groups, t, s)  # (B|1, K, G, T, S)
    return x.reshape(b, x.shape[1], groups * t, s)  # (B|1, K|1, G*T, S)


def _dense_weights(q, k, bias, mask, scale):
    """Softmax weights (B, K, G*T, S) in float32 (or wider); rows that see no key are zero.

    Query head n = k * G + g of position t is row g * T + t: with the G query
    heads that share a key/value head stacked as rows, both products are
    plain batched matmuls over (B, K) with no transposes of the (T, S) matrix.
    """
    b, t, n, h = q.shape
    kv_heads = k.shape[2]
    g = n // kv_heads
    acc = jnp.promote_types(q.dtype, jnp.float32)
    q = (q * jnp.asarray(scale, q.dtype)).reshape(b, t, kv_heads, g, h)  # (B, T, K, G, H)
    q = q.transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, g * t, h)  # (B, K, G*T, H)
    logits = jnp.einsum("bkrh,bskh->bkrs", q, k, preferred_element_type=acc)  # (B, K, G*T, S)
    if bias is not None:
        logits = logits + _rows(bias, kv_heads, g, t, k.shape[1]).astype(acc)
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    mask = _rows(mask, kv_heads, g, t, k.shape[1])
    logits = jnp.where(mask, logits, jnp.finfo(acc).min)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    p = jnp.where(mask, jnp.exp(logits - top), 0.0)
    total = jnp.sum(p, axis=-1, keepdims=True)
    return p / jnp.where(total > 0, total, 1.0)  # a row with nothing visible stays zero


def _dense(q, k, v, bias, mask, scale):
    b, t, n, h = q.shape
    kv_heads = k.shape[2]
    w = _dense_weights(q, k, bias, mask, scale)  # (B, K, G*T, S)
    acc = jnp.promote_types(v.dtype, jnp.float32)
    out = jnp.einsum("bkrs,bskh->bkrh", w.astype(v.dtype), v, preferred_element_type=acc)  # (B, K, G*T, H)
    out = out.reshape(b, kv_heads, n // kv_heads, t, h).transpose(0, 3, 1, 2, 4)  # (B, T, K, G, H)
    return out.reshape(b, t, n, h).astype(q.dtype)  # (B, T, N, H)


def _cudnn(q, k, v, bias, mask, scale, is_causal, q_lengths, kv_lengths, window):
    """jax.nn's cuDNN kernel, then zero the rows that see no key (zoo's convention)."""
    out = jax.nn.dot_product_attention(
        q, k, v, bias, mask, scale=scale, is_causal=is_causal, query_seq_lengths=q_lengths,
        key_value_seq_lengths=kv_lengths, local_window_size=window, implementation="cudnn",
    )
    b, t, n, _ = q.shape
    s = k.shape[1]
    i = jnp.arange(t)[None, :]  # (1, T)
    lo, hi = jnp.zeros_like(i), jnp.full_like(i, s - 1)  # the visible keys of row i: [lo, hi]
    if is_causal:
        hi = jnp.minimum(hi, i)
    if window is not None:
        lo, hi = jnp.maximum(lo, i - window[0]), jnp.minimum(hi, i + window[1])
    if kv_lengths is not None:
        hi = jnp.minimum(hi, kv_lengths[:, None] - 1)  # (B, T)
    seen = (lo <= hi)[:, :, None]  # (B|1, T, 1)
    if q_lengths is not None:
        seen = seen & (i < q_lengths[:, None])[:, :, None]
    if mask is not None:
        seen = seen & jnp.any(mask, axis=-1).transpose(0, 2, 1)  # (B|1, T, N|1)
    return jnp.where(seen[..., None], out, 0).astype(q.dtype)


# ----------------------------------------------------------------------------
# public functions


def attention_weights(
    query: Array,
    key: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
    query_seq_lengths: Array | None = None,
    key_value_seq_lengths: Array | None = None,
    local_window_size: int | tuple[int, int] | None = None,
) -> Array:
    """The attention weights (B, N, T, S) (or (N, T, S)), float32, for pictures.

    Same arguments and masking as :func:`dot_product_attention`; rows that see
    no key are zero. Materialises the full (T, S) matrix per head.
    """
    rank, q, k, _, bias, mask, q_lengths, kv_lengths, window = _prepare(
        query, key, key, bias, mask, query_seq_lengths, key_value_seq_lengths, local_window_size
    )
    b, t, n, h = q.shape
    scale = 1.0 / np.sqrt(h) if scale is None else scale
    full = _structural_mask(t, k.shape[1], is_causal, q_lengths, kv_lengths, window, mask)
    w = _dense_weights(q, k, bias, full, scale)  # (B, K, G*T, S)
    w = w.reshape(b, n, t, k.shape[1])  # (B, N, T, S): head n = k * G + g
    return w if rank == 4 else w[0]


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
    query_seq_lengths: Array | None = None,
    key_value_seq_lengths: Array | None = None,
    local_window_size: int | tuple[int, int] | None = None,
    implementation: Implementation | None = None,
) -> Array:
    """Scaled dot-product attention, ``softmax(q k^T * scale + bias) v`` per head.

    The signature, layout and masking of ``jax.nn.dot_product_attention``
    (see the module docstring), except that a query row that can see no key
    returns zeros instead of the mean of the values.

    Args:
      query: (B, T, N, H) or (T, N, H).
      key, value: (B, S, K, H) or (S, K, H); N must be a multiple of K.
      bias: additive logits, 4-D (3-D unbatched), broadcastable to (B, N, T, S).
      mask: boolean, same shapes as ``bias``; True = may attend.
      scale: logits scale; default ``1 / sqrt(H)``.
      is_causal: query i sees keys j <= i.
      query_seq_lengths: (B,) integers; query rows at and after the length
        return zeros.
      key_value_seq_lengths: (B,) integers; keys at and after the length are
        invisible.
      local_window_size: ``w`` or ``(left, right)``: query i sees keys
        ``i - left .. i + right``.
      implementation: ``'xla'``/``'dense'``, ``'blockwise'``, ``'cudnn'`` (GPU)
        or None (see the module docstring).

    Shape errors raise ``ValueError`` before tracing. Lengths outside
    ``[0, T]``/``[0, S]`` raise ``ValueError`` when concrete; under ``jit``
    use :func:`zoo.checked`.
    """
    if implementation not in (None, "xla", "dense", "blockwise", "cudnn"):
        raise ValueError(
            f"dot_product_attention: implementation must be one of None, 'xla', 'dense', 'blockwise', "
            f"'cudnn'; got {implementation!r}"
        )
    if implementation == "cudnn" and jax.default_backend() != "gpu":
        raise ValueError(
            f"dot_product_attention: implementation='cudnn' needs a GPU; the default backend is "
            f"{jax.default_backend()!r} (use 'blockwise' or 'xla')"
        )
    rank, q, k, v, bias, mask, q_lengths, kv_lengths, window = _prepare(
        query, key, value, bias, mask, query_seq_lengths, key_value_seq_lengths, local_window_size
    )
    b, t, n, h = q.shape
    s = k.shape[1]
    scale = 1.0 / np.sqrt(h) if scale is None else float(scale)
    if implementation is None:
        dense_args = bias is not None or mask is not None
        long = t * s >= _BLOCKWISE_MIN_LOGITS
        implementation = "blockwise" if (long and not dense_args and (not is_causal or t == s)) else "xla"
    if implementation == "cudnn":
        out = _cudnn(q, k, v, bias, mask, scale, is_causal, q_lengths, kv_lengths, window)
    elif implementation == "blockwise":
        from zoo.layers.flash import blockwise_attention  # noqa: PLC0415

        out = blockwise_attention(
            q, k, v, scale=scale, is_causal=is_causal, q_lengths=q_lengths, kv_lengths=kv_lengths,
            local_window=window, bias=bias, mask=mask,
        )
    else:
        full = _structural_mask(t, s, is_causal, q_lengths, kv_lengths, window, mask)
        out = _dense(q, k, v, bias, full, scale)
    return out if rank == 4 else out[0]
