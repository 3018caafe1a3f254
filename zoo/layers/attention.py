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

Unbatched inputs (T, N, H) work too. The softmax runs in float32 whatever
the input dtype.

Conventions, the same for every implementation:

* Query row t (of query head n) *sees* key s when ``is_causal``, the local
  window, ``key_value_seq_lengths`` and ``mask`` all allow it; a row at or
  beyond its ``query_seq_lengths`` sees nothing. A row that sees no key
  returns zeros and passes no gradient (``jax.nn`` returns the mean of the
  values).
* A ``-inf`` bias hides that key as the mask does; a row whose visible keys
  all have ``-inf`` bias returns zeros too (``jax.nn`` returns NaN).
* Non-finite inputs. A row is *poisoned* when it sees at least one key and
  its own query vector holds a NaN or +-Inf, or a key it sees holds one in
  its key or value vector (of the key/value head ``n // G`` that query head
  reads), or the bias of a pair it sees is NaN or +inf. A poisoned row is NaN
  in all H components. Every other row equals the attention of the inputs
  with those entries replaced by 0: nothing non-finite reaches a row that does
  not see it (hidden by the causal mask, the window, the mask or the
  lengths), and entries beyond the lengths (padding) never change anything.
* Gradients with non-finite inputs: a poisoned row passes no gradient back,
  and everything else is the gradient of the attention of the zeroed inputs:
  all gradients are finite, and 0 at the non-finite entries.

Left to IEEE arithmetic, a NaN would spread past the masks through
``0 * NaN`` in the products ``weights @ value`` (and ``dS @ K``, ``dS^T @ Q``
backward), to rows that depended on the implementation and, for
``'blockwise'``, on the block sizes. So the rule is applied in one place,
before any kernel (``_clean``): the kernels only ever see finite inputs, and
the poisoned rows, found from positions alone, are set to NaN afterwards.
A call that is not differentiated checks first whether any input is
non-finite and skips the cleaning when none is (a decode step pays one more
read of the key/value cache, not a cleaned copy of it); a differentiated one
always cleans (0-2% of the shakespeare-char-cpu GPT train step on a 2-core
CPU, within the noise; see ``_finite_or_zero`` and ``_guarded``).
This is the only case covered: finite inputs whose logits overflow
(``|q . k * scale|`` beyond the float range) give NaN or Inf from the
kernels' own arithmetic, and those may still spread differently.

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
    key afterwards, and cuDNN gets the same cleaned inputs and NaN rows as
    the others, so it follows the conventions above by construction (not
    run in zoo's tests, which have no GPU; how cuDNN treats a ``-inf``
    bias is untested).
``None``
    Picks one: ``'blockwise'`` when T * S >= 512 * 512 and there is no dense
    mask or bias (and, if causal, T == S), ``'xla'`` otherwise. The threshold
    is where blockwise overtook dense, forward and forward+backward, at
    B=4, 8 heads, head_dim 64 on a 2-core CPU (``zoo bench attention``).
    ``None`` never picks ``'cudnn'``: ask for it explicitly on a GPU.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zoo.checks import check_range, shape_str
from zoo.layers.linear import einsum_acc

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
    """(T, S) mask: query i sees keys j <= i (aligned at the top left, as jax.nn).

    Examples:
      >>> zoo.causal_mask(3)
      Array([[ True, False, False],
             [ True,  True, False],
             [ True,  True,  True]], dtype=bool)
      >>> zoo.causal_mask(2, 4).shape
      (2, 4)
    """
    kv_len = q_len if kv_len is None else kv_len
    return jnp.arange(q_len)[:, None] >= jnp.arange(kv_len)[None, :]


def padding_mask(lengths: Array, max_len: int) -> Array:
    """(B, max_len) token mask: True for the first ``lengths[b]`` positions.

    Examples:
      >>> zoo.padding_mask(jnp.array([2, 3]), 4)
      Array([[ True,  True, False, False],
             [ True,  True,  True, False]], dtype=bool)
    """
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def make_attention_mask(query_mask: Array, key_mask: Array) -> Array:
    """(B, 1, T, S) attention mask from (B, T) and (B, S) boolean token masks.

    Examples:
      >>> tokens = zoo.padding_mask(jnp.array([2, 3]), 3)     # (B, T)
      >>> mask = zoo.make_attention_mask(tokens, tokens)      # (B, 1, T, T)
      >>> mask.shape
      (2, 1, 3, 3)
      >>> mask[0, 0]
      Array([[ True,  True, False],
             [ True,  True, False],
             [False, False, False]], dtype=bool)
    """
    return query_mask[:, None, :, None] & key_mask[:, None, None, :]


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the masks given (None entries skipped), with broadcasting.

    Examples:
      >>> mask = zoo.combine_masks(zoo.causal_mask(3), None, zoo.padding_mask(jnp.array([2]), 3))
      >>> mask
      Array([[ True, False, False],
             [ True,  True, False],
             [ True,  True, False]], dtype=bool)
      >>> zoo.combine_masks(None) is None
      True
    """
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
# non-finite inputs: one meaning for every implementation
#
# Left to IEEE arithmetic, a NaN in one key reaches rows that cannot see it:
# a masked weight is exactly 0, but 0 * NaN = NaN in ``weights @ value``, so
# the dense path spread a NaN value to every row of its head, causal or not,
# while the blockwise path spread it to the rows of the block pairs it
# computed and not to those it skipped (its answer depended on the block
# sizes: with is_causal, T = 8 and a NaN in value 3, 'xla' made all 8 rows
# NaN, blockwise with 2 x 2 blocks rows 2-7, and with 4 x 4 blocks all 8,
# where only rows 3-7 see it). The backward products dS @ K and dS^T @ Q
# leak the same way. So no non-finite value ever enters a kernel: ``_clean``
# replaces them by 0 and finds, from positions alone, which rows they would
# reach; those rows are set to NaN after the kernel. Finite entries at padded
# positions are left alone: no row sees them, and 0 * finite = 0. The rows
# are found without a (T, S) matrix (an interval of keys per row, a prefix
# count) unless a dense mask or bias is given, which costs that much anyway.


def _key_interval(t: int, s: int, is_causal: bool, kv_lengths, window):
    """(lo, hi), each (B|1, T) int: without a dense mask, query row i sees exactly keys lo..hi (none if lo > hi)."""
    i = jnp.arange(t)[None, :]  # (1, T)
    lo, hi = jnp.zeros_like(i), jnp.full_like(i, s - 1)
    if is_causal:
        hi = jnp.minimum(hi, i)
    if window is not None:
        lo, hi = jnp.maximum(lo, i - window[0]), jnp.minimum(hi, i + window[1])
    if kv_lengths is not None:
        hi = jnp.minimum(hi, kv_lengths[:, None] - 1)  # (B, T)
    return lo, hi


@jax.custom_jvp
def _finite_or_zero(x: Array) -> Array:
    """x with its non-finite entries replaced by 0; the derivative is the identity (see below).

    ``x - x == 0`` is IEEE's test for a finite x (inf - inf and NaN - NaN are
    NaN). Fused into the transposes that feed the kernels' matmuls it cost
    less than ``isfinite``: 40 us against 57 us on a (12, 64, 4, 32) float32
    array, one XLA:CPU thread (the plain transpose: 26 us).
    """
    return jnp.where(x - x == 0, x, jnp.zeros((), x.dtype))


@_finite_or_zero.defjvp
def _finite_or_zero_jvp(primals, tangents):
    # The derivative of the ``where`` is 0 at the replaced entries, and 0 is
    # what reaches them anyway: a non-finite entry lies in a query row or a
    # key that only poisoned rows (or no row) see, poisoned rows get a zero
    # cotangent from the final ``where(poisoned, nan, out)``, and a row has
    # weight exactly 0 on a key it does not see. So the identity gives the
    # same gradients without a backward ``where`` that reads q, k and v again:
    # XLA's bytes accessed for the shakespeare-char-cpu GPT train step were
    # 439.2 MB before non-finite inputs were handled, 453.6 MB with the
    # ``where``'s derivative and 448.8 MB with this one.
    return _finite_or_zero(primals[0]), tangents[0]


def _nonfinite_vectors(x: Array) -> Array:
    """(...) bool: which (..., H) vectors of x hold a NaN or an Inf.

    Reduced 32 entries at a time and the partial results or-ed: XLA:CPU
    rewrites a reduction over more than 32 entries into a reduce-window and a
    reduce, fuses nothing into the reduce-window, and so wrote a boolean copy
    of x first (XLA's bytes accessed for blockwise causal attention, forward
    and backward, B=1, T=2048, 4 heads of 64: 248.3 MB before non-finite
    inputs were handled, 258.0 MB with one reduction, 254.8 MB with these).
    """
    h = x.shape[-1]
    chunk = 32 if h > 32 and h % 32 == 0 else h
    ok = jnp.all(jnp.isfinite(x.reshape(*x.shape[:-1], h // chunk, chunk)), axis=-1)  # (..., H // chunk)
    bad = ~ok[..., 0]
    for i in range(1, h // chunk):  # or-ed by hand: XLA would merge a second reduce into the first
        bad = bad | ~ok[..., i]
    return bad


def _zero_nonfinite(x: Array) -> tuple[Array, Array]:
    """x with its non-finite entries replaced by 0, and which (..., H) vectors held one (the last axis reduced)."""
    return _finite_or_zero(x), _nonfinite_vectors(x)


def _clean(q, k, v, bias, mask, is_causal, q_lengths, kv_lengths, window):
    """Non-finite inputs -> (q, k, v, bias) with them replaced by 0, and ``poisoned`` (B, T, N) bool.

    ``v`` may be None (:func:`attention_weights`). In ``bias`` only NaN and
    +inf are bad; -inf stays, it hides the key. A row is poisoned when it is
    a valid query row that sees at least one key under the masks, lengths and
    window, and its own query vector (that head) has a non-finite entry, or a
    key it sees has one in k or v (of the key/value head that query head
    reads), or a bias entry it sees is NaN or +inf.
    """
    b, t, n, _ = q.shape
    s, kh = k.shape[1], k.shape[2]
    g = n // kh
    q, q_bad = _zero_nonfinite(q)  # q_bad (B, T, N)
    k, kv_bad = _zero_nonfinite(k)  # kv_bad (B, S, K)
    if v is not None:
        v, v_bad = _zero_nonfinite(v)
        kv_bad = kv_bad | v_bad
    if bias is None and mask is None:
        lo, hi = _key_interval(t, s, is_causal, kv_lengths, window)  # (B|1, T)
        sees = lo <= hi  # (B|1, T)
        if q_lengths is not None:
            sees = sees & (jnp.arange(t)[None, :] < q_lengths[:, None])  # (B, T)
        if window is None:
            # Every row's keys start at 0: it sees a bad key iff the first one is at most hi.
            first = jnp.min(jnp.where(kv_bad, jnp.arange(s)[:, None], s), axis=1, initial=s)  # (B, K); S if none
            kv_seen = first[:, None, :] <= hi[:, :, None]  # (B, T, K)
        else:
            # Bad keys in lo..hi from prefix counts: before[j] = bad keys among 0..j-1.
            before = jnp.cumsum(kv_bad, axis=1, dtype=jnp.int32)  # (B, S, K)
            before = jnp.pad(before, ((0, 0), (1, 0), (0, 0)))  # (B, S + 1, K)

            def count_before(j):  # (B|1, T) -> (B, T, K)
                j = jnp.broadcast_to(jnp.clip(j, 0, s), (b, t))  # (B, T)
                return jnp.take_along_axis(before, jnp.broadcast_to(j[:, :, None], (b, t, kh)), axis=1)

            kv_seen = count_before(hi + 1) > count_before(lo)  # (B, T, K)
        kv_seen = jnp.repeat(kv_seen, g, axis=2)  # (B, T, N): query head n reads key/value head n // G
        poisoned = sees[:, :, None] & (q_bad | kv_seen)  # (B, T, N)
    else:
        full = _structural_mask(t, s, is_causal, q_lengths, kv_lengths, window, mask)  # (B|1, N|1, T, S)
        full = jnp.ones((1, 1, t, s), bool) if full is None else full
        bad = jnp.repeat(kv_bad, g, axis=2).transpose(0, 2, 1)[:, :, None, :]  # (B, N, 1, S)
        if bias is not None:
            bias_bad = jnp.isnan(bias) | (bias == jnp.inf)  # (B|1, N|1, T|1, S|1)
            bias = jnp.where(bias_bad, jnp.zeros((), bias.dtype), bias)
            bad = bad | bias_bad  # (B, N, T|1, S)
        sees = jnp.any(full, axis=-1)  # (B|1, N|1, T)
        poisoned = sees & (q_bad.transpose(0, 2, 1) | jnp.any(full & bad, axis=-1))  # (B, N, T)
        poisoned = poisoned.transpose(0, 2, 1)  # (B, T, N)
    return q, k, v, bias, jnp.broadcast_to(poisoned, (b, t, n))


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
    logits = einsum_acc("bkrh,bskh->bkrs", q, k.astype(q.dtype))  # (B, K, G*T, S), float32 or wider
    if bias is not None:
        logits = logits + _rows(bias, kv_heads, g, t, k.shape[1]).astype(acc)
    if mask is None and bias is None:
        return jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        mask = _rows(mask, kv_heads, g, t, k.shape[1])
        logits = jnp.where(mask, logits, jnp.finfo(acc).min)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True, initial=-jnp.inf))  # S = 0 works
    if bias is not None:
        # -inf when the bias is -inf on every key of the row and no key is masked:
        # shift by 0 then, so exp gives exact zeros, not exp(-inf - (-inf)) = NaN.
        top = jnp.where(top == -jnp.inf, 0.0, top)
    p = jnp.exp(logits - top)  # 0 where the bias is -inf
    if mask is not None:
        p = jnp.where(mask, p, 0.0)
    total = jnp.sum(p, axis=-1, keepdims=True)
    return p / jnp.where(total > 0, total, 1.0)  # a row with nothing visible stays zero


def _dense(q, k, v, bias, mask, scale):
    b, t, n, h = q.shape
    kv_heads = k.shape[2]
    w = _dense_weights(q, k, bias, mask, scale)  # (B, K, G*T, S)
    out = einsum_acc("bkrs,bskh->bkrh", w.astype(v.dtype), v)  # (B, K, G*T, H), float32 or wider
    out = out.reshape(b, kv_heads, n // kv_heads, t, h).transpose(0, 3, 1, 2, 4)  # (B, T, K, G, H)
    return out.reshape(b, t, n, h).astype(q.dtype)  # (B, T, N, H)


def _cudnn(q, k, v, bias, mask, scale, is_causal, q_lengths, kv_lengths, window):
    """jax.nn's cuDNN kernel, then zero the rows that see no key (zoo's convention)."""
    out = jax.nn.dot_product_attention(
        q, k, v, bias, mask, scale=scale, is_causal=is_causal, query_seq_lengths=q_lengths,
        key_value_seq_lengths=kv_lengths, local_window_size=window, implementation="cudnn",
    )
    t = q.shape[1]
    i = jnp.arange(t)[None, :]  # (1, T)
    lo, hi = _key_interval(t, k.shape[1], is_causal, kv_lengths, window)  # (B|1, T)
    seen = (lo <= hi)[:, :, None]  # (B|1, T, 1)
    if q_lengths is not None:
        seen = seen & (i < q_lengths[:, None])[:, :, None]
    if mask is not None:
        seen = seen & jnp.any(mask, axis=-1).transpose(0, 2, 1)  # (B|1, T, N|1)
    return jnp.where(seen[..., None], out, 0).astype(q.dtype)


# ----------------------------------------------------------------------------
# dispatch: the kernel, cleaned when it has to be
#
# ``_clean`` reads q, k and v and writes cleaned copies for the kernel to
# read: small next to training attention, not next to a decode step, which is
# one pass over the key/value cache. Always on, it made a GPT decode step
# (shakespeare-char-cpu, B=1, 2 threads) take 1.42x the CPU time with a
# 2048-long cache (1.22x with a 256-long one). So an undifferentiated call
# reduces q, k, v (and the bias) to one bool and picks with ``lax.cond`` the
# plain kernel or the cleaned one, which agree whenever every input is
# finite; the decode step then took 1.08x (1.14x) the CPU time: the check is
# one more read of the cache. A differentiated call always runs the cleaned
# path (the ``custom_jvp`` rule): differentiating a cond would keep the
# residuals of both branches. Under ``vmap`` the cond becomes a select that
# runs both.


class _Static(NamedTuple):
    """The static part of a call (hashable: the ``nondiff_argnums`` of _guarded)."""

    implementation: str  # 'xla' (or 'dense'), 'blockwise' or 'cudnn'; never None
    scale: float
    is_causal: bool
    window: tuple[int, int] | None


def _kernel(static, q, k, v, bias, mask, q_lengths, kv_lengths):
    """The implementation itself, on inputs it may trust: (B, T, N, H)."""
    impl, scale, is_causal, window = static
    if impl == "cudnn":
        return _cudnn(q, k, v, bias, mask, scale, is_causal, q_lengths, kv_lengths, window)
    if impl == "blockwise":
        from zoo.layers.flash import blockwise_attention  # noqa: PLC0415

        return blockwise_attention(
            q, k, v, scale=scale, is_causal=is_causal, query_seq_lengths=q_lengths, key_value_seq_lengths=kv_lengths,
            local_window=window, bias=bias, mask=mask,
        )
    t, s = q.shape[1], k.shape[1]
    full = _structural_mask(t, s, is_causal, q_lengths, kv_lengths, window, mask)
    return _dense(q, k, v, bias, full, scale)


def _kernel_clean(static, q, k, v, bias, mask, q_lengths, kv_lengths):
    """The kernel on cleaned inputs, poisoned rows NaN (see _clean)."""
    q, k, v, bias, poisoned = _clean(q, k, v, bias, mask, static.is_causal, q_lengths, kv_lengths, static.window)
    out = _kernel(static, q, k, v, bias, mask, q_lengths, kv_lengths)
    return jnp.where(poisoned[..., None], jnp.nan, out)  # (B, T, N, H); no gradient flows back from NaN rows


def _has_nonfinite(*arrays) -> Array:
    """() bool: does any of the arrays hold a NaN or an Inf? (x * 0 is NaN exactly there, and a sum keeps it.)"""
    total = jnp.zeros((), jnp.float32)
    for x in arrays:
        if x is not None:
            total = total + jnp.sum(x * jnp.zeros((), x.dtype), dtype=jnp.float32)
    return total != 0


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _guarded(static, q, k, v, bias, mask, q_lengths, kv_lengths):
    """The kernel, cleaned only when an input is non-finite; differentiated, always cleaned (see above)."""
    bad_bias = None if bias is None else jnp.where(bias == -jnp.inf, 0, bias)  # -inf bias is a mask
    return lax.cond(
        _has_nonfinite(q, k, v, bad_bias),
        functools.partial(_kernel_clean, static), functools.partial(_kernel, static),
        q, k, v, bias, mask, q_lengths, kv_lengths,
    )


@_guarded.defjvp
def _guarded_jvp(static, primals, tangents):
    # Masks and lengths have no tangent (float0); the rest is the cleaned path's derivative.
    q, k, v, bias, mask, q_lengths, kv_lengths = primals
    f = lambda q, k, v, bias: _kernel_clean(static, q, k, v, bias, mask, q_lengths, kv_lengths)
    return jax.jvp(f, (q, k, v, bias), tuple(tangents[:4]))


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
    no key are zero, and rows poisoned by a non-finite query, key or bias
    (the module docstring's rule, values aside) are NaN. Materialises the
    full (T, S) matrix per head.

    Examples:
      >>> q = jnp.ones((1, 3, 1, 2))                   # (B, T, N, H)
      >>> w = zoo.attention_weights(q, q, is_causal=True)
      >>> w.shape                                      # (B, N, T, S)
      (1, 1, 3, 3)
      >>> np.asarray(w[0, 0]).round(2)
      array([[1.  , 0.  , 0.  ],
             [0.5 , 0.5 , 0.  ],
             [0.33, 0.33, 0.33]], dtype=float32)
    """
    rank, q, k, _, bias, mask, q_lengths, kv_lengths, window = _prepare(
        query, key, key, bias, mask, query_seq_lengths, key_value_seq_lengths, local_window_size
    )
    b, t, n, h = q.shape
    scale = 1.0 / np.sqrt(h) if scale is None else scale
    q, k, _, bias, poisoned = _clean(q, k, None, bias, mask, is_causal, q_lengths, kv_lengths, window)
    full = _structural_mask(t, k.shape[1], is_causal, q_lengths, kv_lengths, window, mask)
    w = _dense_weights(q, k, bias, full, scale)  # (B, K, G*T, S)
    w = w.reshape(b, n, t, k.shape[1])  # (B, N, T, S): head n = k * G + g
    w = jnp.where(poisoned.transpose(0, 2, 1)[..., None], jnp.nan, w)  # poisoned (B, T, N) -> (B, N, T, 1)
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

    Non-finite inputs give the same result with every implementation: a NaN
    or Inf in a query, or in a key or value (or a NaN/+inf bias) that a row
    sees, makes that row NaN; the other rows are the attention of the inputs
    with those entries set to 0, so entries hidden by the masks or beyond the
    lengths change nothing. A NaN row passes no gradient back; the other
    gradients are those of the zeroed inputs (0 at the non-finite entries).
    See "Conventions" in the module docstring.

    Args:
      query: (B, T, N, H) or (T, N, H).
      key: (B, S, K, H) or (S, K, H); N must be a multiple of K.
      value: the same shape as ``key``.
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

    Examples:
      >>> rng = np.random.default_rng(0)
      >>> q = rng.standard_normal((2, 4, 4, 8), np.float32)    # (B, T, N, H)
      >>> kv = rng.standard_normal((2, 6, 2, 8), np.float32)   # (B, S, K, H): 2 query heads per K/V head
      >>> out = zoo.dot_product_attention(q, kv, kv, key_value_seq_lengths=jnp.array([6, 3]))
      >>> out.shape
      (2, 4, 4, 8)
      >>> ref = jax.nn.dot_product_attention(q, kv, kv, key_value_seq_lengths=jnp.array([6, 3]))
      >>> bool(jnp.allclose(out, ref, atol=1e-5))
      True
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
    static = _Static(implementation, scale, is_causal, window)
    out = _guarded(static, q, k, v, bias, mask, q_lengths, kv_lengths)
    return out if rank == 4 else out[0]

