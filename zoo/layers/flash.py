"""Memory-efficient attention in pure JAX: the FlashAttention algorithm, block by block.

Dense attention builds the (T, S) matrix of logits for every batch row and
head. This module never does: it walks over blocks of ``block_q`` queries and,
for each, over blocks of ``block_k`` keys, and keeps per query row only

* ``m``   the running maximum of the logits seen so far,
* ``l``   the running sum of ``exp(logit - m)``,
* ``acc`` the running sum of ``exp(logit - m) * value`` (an (H,) vector),

all in float32. When a new key block raises the maximum from ``m`` to
``m'``, the old sums are rescaled by ``exp(m - m')`` (the *online softmax* of
Milakov & Gimelshein, 2018). After the last key block the output row is
``acc / l``. Working memory is O(T x block) per batch row and head, never
O(T x S), when the masking comes from ``is_causal``, lengths or a local window
(those masks are computed per block from positions).

Whole key blocks that no query of the block can see are skipped, not merely
masked: each query block loops (``lax.fori_loop`` with traced bounds) only
over the key blocks between the first and last one that the causal diagonal,
the local window and the largest ``kv_lengths`` leave visible; a query block
beyond the largest ``q_lengths`` runs no key block at all. Causal attention
thus does about half the work of the dense product.

The backward pass (a ``jax.custom_vjp``) follows FlashAttention-2 (Dao,
2023). The forward pass saves only its output ``O`` and the per-row
log-sum-exp ``lse = m + log l``. The backward pass loops over key blocks and,
inside, over the query blocks that can see them, recomputing each block of
probabilities ``P = exp(S - lse)`` from q and k; with ``D = rowsum(dO * O)``:

    dV += P^T dO        dP = dO V^T        dS = P * (dP - D)
    dQ += dS K          dK += dS^T Q       dbias += dS

(the scale is folded into q before the kernel, so autodiff applies it to
dQ). The loops hold ``P^T`` and ``dS^T`` (keys as rows), so that each of the
five products meets its large (keys x queries) operand in the layout a
matmul wants; only the small (rows x head_dim) blocks are transposed, once.
``dK`` and ``dV`` of the current key block live in the loop carry; ``dQ``
(transposed) is a float32 buffer of the query's size, updated block by block.

Speed on CPU: the query heads that share a key/value head are stacked as
rows of one (G * bq, H) block, so every product is a plain batched matmul
over (B, K), and block pairs strictly inside the visible region (all but
the diagonal blocks, for causal attention) skip the mask entirely. With
these, the two forward products run near the machine's matmul peak; what
remains is the softmax's elementwise work (max, exp, sums).

Conventions and differences from ``jax.nn.dot_product_attention``:

* A query row that can see no key (causal + window + lengths + mask leave it
  nothing, or it is beyond its ``q_lengths``) returns zeros, never NaN and not
  the mean of the values. Its gradients are zero.
* A ``-inf`` in ``bias`` hides that key like the mask does (weight and
  gradient exactly 0); a row whose visible logits are all ``-inf`` is a row
  that sees no key (zeros).
* Non-finite values in q, k or v follow IEEE arithmetic and no more: a NaN
  reaches the rows that see it (such a row is never mistaken for an empty
  one), but ``0 * NaN = NaN`` also carries it to other rows of the same
  block pair through ``P @ V``, ``dS @ K`` and ``dS^T @ Q``, so which other
  rows depends on the block sizes. :func:`zoo.dot_product_attention` gives
  non-finite inputs one meaning for every implementation by cleaning the
  inputs before calling this kernel (see ``zoo/layers/attention.py``).
* Grouped-query attention (K key/value heads, N = K * G query heads) reshapes
  the query heads to (K, G); keys and values are never repeated. Query head
  ``n`` uses key/value head ``n // G``, as in ``jax.nn``.
* T and S need not be multiples of the block sizes: the inputs are padded
  internally and the padding is masked and sliced off. A block larger than
  the sequence shrinks to the sequence length.
* Softmax statistics and accumulators are float32 for bfloat16 / float16 /
  float32 inputs (float64 for float64 inputs); the probabilities are cast to
  the value dtype before the ``P @ V`` product, as ``jax.nn`` does.
* ``bias`` and ``mask`` are dense (broadcastable to (B, N, T, S)) and cost
  their own size in memory (plus one padded copy when T or S is not a
  multiple of the block); the (block_q, block_k) tile of each is sliced out
  per block pair, and axes of size 1 stay broadcast. The gradient with
  respect to ``bias`` is computed block-wise into a float32 buffer of the
  bias's (broadcast) shape.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from zoo.checks import renamed_arguments

Array = jax.Array

__all__ = ["blockwise_attention"]


class _Config(NamedTuple):
    """The static part of one attention call (hashable: a ``nondiff_argnums`` argument)."""

    is_causal: bool
    window: tuple[int, int] | None  # (left, right)
    seq_q: int  # T before padding
    seq_k: int  # S before padding


# ----------------------------------------------------------------------------
# public entry point


@renamed_arguments(q_lengths="query_seq_lengths", kv_lengths="key_value_seq_lengths")
def blockwise_attention(
    query: Array,
    key: Array,
    value: Array,
    *,
    scale: float,
    is_causal: bool = False,
    query_seq_lengths: Array | None = None,
    key_value_seq_lengths: Array | None = None,
    local_window: tuple[int, int] | None = None,
    bias: Array | None = None,
    mask: Array | None = None,
    block_q: int = 256,
    block_k: int = 512,
) -> Array:
    """Scaled dot-product attention, computed block by block (FlashAttention).

    Args:
      query: (B, T, N, H).
      key, value: (B, S, K, H) with ``N % K == 0`` (grouped-query attention when K < N).
      scale: multiplies ``q . k`` (a Python number, e.g. ``H ** -0.5``).
      is_causal: query i sees key j only if ``j <= i``; requires T == S.
      query_seq_lengths: optional (B,) ints; query rows ``>= query_seq_lengths[b]`` output zeros.
      key_value_seq_lengths: optional (B,) ints; keys ``>= key_value_seq_lengths[b]`` are invisible.
      local_window: optional pair ``(left, right)`` of non-negative ints: query i
        sees key j only if ``i - left <= j <= i + right`` (ANDed with the other masks).
      bias: optional additive logits, broadcastable to (B, N, T, S); added after
        ``scale``. Differentiable (the gradient is computed block-wise).
      mask: optional booleans broadcastable to (B, N, T, S); True = may attend.
      block_q, block_k: block sizes along T and S. The defaults were the
        fastest of 128/256, 128/512, 256/256, 256/512, 512/512 and 512/1024
        for causal forward and forward+backward at B=4, 8 heads, head_dim
        64, T=4096 on a 2-core CPU (512/512 within 2%; 128/256 about 30%
        slower).

    Returns:
      (B, T, N, H) in ``query.dtype``. Rows that see no key are zero.

    Memory is O(T x block) besides the inputs, except that ``bias`` and ``mask``
    are dense arrays that cost their own size (see the module docstring).
    """
    B, T, N, H = query.shape
    Bk, S, K, Hk = key.shape
    if key.shape != value.shape:
        raise ValueError(f"key {key.shape} and value {value.shape} must have the same shape")
    if Bk != B or Hk != H:
        raise ValueError(f"query {query.shape} and key {key.shape} disagree on batch or head size")
    if N % K:
        raise ValueError(f"query heads ({N}) must be a multiple of key/value heads ({K})")
    if is_causal and T != S:
        raise ValueError(f"is_causal requires as many queries as keys, got T={T}, S={S}")
    if local_window is not None:
        if (
            not isinstance(local_window, (tuple, list))
            or len(local_window) != 2
            or any(int(w) != w or w < 0 for w in local_window)
        ):
            raise ValueError(
                f"local_window must be a pair (left, right) of non-negative ints, got {local_window!r}"
            )
        # Beyond T (left) or S (right) a window bounds nothing; clamping keeps the
        # position arithmetic in int32.
        local_window = (min(int(local_window[0]), T), min(int(local_window[1]), S))
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block sizes must be positive, got block_q={block_q}, block_k={block_k}")
    if T == 0 or S == 0:  # no query, or no key to see: all rows are empty
        return jnp.zeros(query.shape, query.dtype)
    G = N // K
    bq, bk = min(block_q, T), min(block_k, S)  # a block never exceeds its sequence
    nq, nk = -(-T // bq), -(-S // bk)  # number of blocks (ceil)
    Tp, Sp = nq * bq, nk * bk  # padded lengths

    # Fold the scale into the queries (T x H multiplies instead of T x S; the
    # gradient flows through it). Blocked layouts, padding at the end of the
    # sequence axis, heads before positions so every block product is a plain
    # batched matmul over (B, K) with no transposes inside the loops.
    q = jnp.pad(query * jnp.asarray(scale, query.dtype), ((0, 0), (0, Tp - T), (0, 0), (0, 0)))  # (B, Tp, N, H)
    q = q.reshape(B, nq, bq, K, G, H)  # (B, nq, bq, K, G, H): head n = k * G + g
    q = q.transpose(1, 0, 3, 4, 2, 5)  # (nq, B, K, G, bq, H)
    kv_pad = ((0, 0), (0, Sp - S), (0, 0), (0, 0))
    k = jnp.pad(key, kv_pad).reshape(B, nk, bk, K, H).transpose(1, 0, 3, 2, 4)  # (nk, B, K, bk, H)
    v = jnp.pad(value, kv_pad).reshape(B, nk, bk, K, H).transpose(1, 0, 3, 2, 4)  # (nk, B, K, bk, H)

    dims = (B, N, K, T, S, Tp, Sp)
    bias5 = None if bias is None else _dense_to_grouped(jnp.asarray(bias), "bias", *dims, 0)
    mask5 = None if mask is None else _dense_to_grouped(jnp.asarray(mask, bool), "mask", *dims, False)
    q_lengths = None if query_seq_lengths is None else jnp.asarray(query_seq_lengths, jnp.int32).reshape(B)  # (B,)
    kv_lengths = None if key_value_seq_lengths is None else jnp.asarray(key_value_seq_lengths, jnp.int32).reshape(B)

    cfg = _Config(bool(is_causal), local_window, T, S)
    out = _flash(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths)  # (nq, B, K, G, bq, H)
    out = out.transpose(1, 0, 4, 2, 3, 5).reshape(B, Tp, N, H)  # (B, Tp, N, H)
    return out[:, :T]  # (B, T, N, H)


def _dense_to_grouped(x, name, B, N, K, T, S, Tp, Sp, pad_value):
    """A bias or mask broadcastable to (B, N, T, S) -> (B|1, K|1, G|1, Tp|1, Sp|1).

    Axes of size 1 stay size 1 (broadcast per block); the head axis splits
    into (K, G) like the query heads; T and S are padded with ``pad_value``.
    """
    if x.ndim > 4:
        raise ValueError(f"{name} must have at most 4 dims (B, N, T, S), got shape {x.shape}")
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)  # (B|1, N|1, T|1, S|1)
    for size, full in zip(x.shape, (B, N, T, S)):
        if size not in (1, full):
            raise ValueError(f"{name} of shape {x.shape} does not broadcast to (B, N, T, S) = {(B, N, T, S)}")
    b, n, t, s = x.shape
    x = x.reshape(b, K if n == N else 1, N // K if n == N else 1, t, s)  # (B|1, K|1, G|1, T|1, S|1)
    pads = ((0, 0),) * 3 + ((0, Tp - T if t != 1 else 0), (0, Sp - S if s != 1 else 0))
    return jnp.pad(x, pads, constant_values=pad_value)  # (B|1, K|1, G|1, Tp|1, Sp|1)


# ----------------------------------------------------------------------------
# one block pair: positions -> visibility, and logits


def _tile_starts(t, s, i0, j0):
    zero = jnp.int32(0)  # int32 like i0 and j0, also under jax_enable_x64
    return (zero, zero, zero, i0 if t != 1 else zero, j0 if s != 1 else zero)


def _tile(x, i0, bq, j0, bk):
    """The (bq, bk) tile of a (..., Tp|1, Sp|1) array at rows i0, columns j0 (size-1 axes stay 1)."""
    t, s = x.shape[-2:]
    starts = _tile_starts(t, s, i0, j0)
    sizes = x.shape[:3] + (bq if t != 1 else 1, bk if s != 1 else 1)
    return lax.dynamic_slice(x, starts, sizes)  # (B|1, K|1, G|1, bq|1, bk|1)


def _row_valid(cfg, i0, bq, q_lengths):
    """Boolean (B|1, 1, 1, bq): is query row i0 + a a real, unpadded row?"""
    rows = i0 + lax.iota(jnp.int32, bq)  # (bq,)
    valid = (rows < cfg.seq_q)[None, None, None]  # (1, 1, 1, bq)
    if q_lengths is not None:
        valid = valid & (rows[None] < q_lengths[:, None])[:, None, None]  # (B, 1, 1, bq)
    return valid


def _visible(cfg, i0, bq, j0, bk, mask5, kv_lengths):
    """Boolean (B|1, K|1, G|1, bq, bk): may query row i0 + a see key j0 + b?

    Only the keys' side: rows past T or past ``q_lengths`` are handled by
    :func:`_row_valid` (their outputs are zeroed and their ``lse`` is +inf).
    """
    rows = (i0 + lax.iota(jnp.int32, bq))[:, None]  # (bq, 1)
    cols = (j0 + lax.iota(jnp.int32, bk))[None, :]  # (1, bk)
    vis = cols < cfg.seq_k  # (1, bk): padding is invisible
    if cfg.is_causal:
        vis = vis & (cols <= rows)
    if cfg.window is not None:
        left, right = cfg.window
        vis = vis & (cols >= rows - left) & (cols <= rows + right)
    vis = jnp.broadcast_to(vis, (bq, bk))[None, None, None]  # (1, 1, 1, bq, bk)
    if kv_lengths is not None:
        vis = vis & (cols[None] < kv_lengths[:, None, None])[:, None, None]  # (B, 1, 1, 1, bk)
    if mask5 is not None:
        vis = vis & _tile(mask5, i0, bq, j0, bk)  # (B|1, K|1, G|1, bq|1, bk|1)
    return vis


# ----------------------------------------------------------------------------
# which blocks can see each other (traced integers; the loops skip the rest)
#
# Each loop over blocks runs in up to three parts: masked blocks, interior
# blocks and masked blocks again. An interior block pair is one where every
# row sees every key (under the causal diagonal, inside the window, before
# every kv length), so it needs no mask at all; for causal attention only the
# blocks on the diagonal are masked. With a dense ``mask`` every block is.


def _max_length(lengths, full):
    return jnp.int32(full) if lengths is None else jnp.clip(jnp.max(lengths), 0, full)


def _min_length(lengths, full):
    return jnp.int32(full) if lengths is None else jnp.clip(jnp.min(lengths), 0, full)


def _split(lo, hi, f_lo, f_hi):
    """Clamp the interior [f_lo, f_hi) into [lo, hi): lo <= f_lo <= f_hi <= hi."""
    f_lo = jnp.clip(f_lo, lo, hi)
    return f_lo, jnp.clip(f_hi, f_lo, hi)


def _key_block_range(cfg, i, bq, bk, q_lengths, kv_lengths, dense_mask):
    """(lo, f_lo, f_hi, hi): key blocks some row of query block ``i`` may see, [f_lo, f_hi) interior."""
    row_lo = i * bq
    row_hi = jnp.minimum(row_lo + bq, _max_length(q_lengths, cfg.seq_q))  # rows [row_lo, row_hi)
    col_lo, col_hi = jnp.int32(0), _max_length(kv_lengths, cfg.seq_k)  # keys [col_lo, col_hi)
    full_lo, full_hi = jnp.int32(0), _min_length(kv_lengths, cfg.seq_k)  # keys every row sees
    if cfg.is_causal:
        col_hi = jnp.minimum(col_hi, row_hi)  # key j <= last row
        full_hi = jnp.minimum(full_hi, row_lo + 1)  # key j <= first row
    if cfg.window is not None:
        left, right = cfg.window
        col_lo = jnp.maximum(col_lo, row_lo - left)
        col_hi = jnp.minimum(col_hi, row_hi + right)
        full_lo = jnp.maximum(full_lo, row_lo + bq - 1 - left)
        full_hi = jnp.minimum(full_hi, row_lo + right + 1)
    col_hi = jnp.where(row_hi > row_lo, col_hi, col_lo)  # no valid row: no key block
    lo = col_lo // bk
    hi = jnp.maximum(-(-col_hi // bk), lo)
    if dense_mask:
        return lo, hi, hi, hi
    return (lo, *_split(lo, hi, -(-full_lo // bk), full_hi // bk), hi)


def _query_block_range(cfg, j, bq, bk, q_lengths, kv_lengths, dense_mask):
    """(lo, f_lo, f_hi, hi): query blocks with a row that may see key block ``j``, [f_lo, f_hi) interior."""
    col_lo = j * bk
    col_hi = jnp.minimum(col_lo + bk, _max_length(kv_lengths, cfg.seq_k))  # keys [col_lo, col_hi)
    row_lo, row_hi = jnp.int32(0), _max_length(q_lengths, cfg.seq_q)  # rows [row_lo, row_hi)
    # Rows where every key of the block is visible (rows past their length
    # have lse = +inf, so they need no mask in the backward pass).
    keys_valid = col_lo + bk <= _min_length(kv_lengths, cfg.seq_k)
    full_lo, full_hi = jnp.int32(0), jnp.where(keys_valid, jnp.int32(cfg.seq_q + bq), 0)
    if cfg.is_causal:
        row_lo = jnp.maximum(row_lo, col_lo)  # row i >= first key
        full_lo = jnp.maximum(full_lo, col_lo + bk - 1)  # row i >= last key
    if cfg.window is not None:
        left, right = cfg.window
        row_lo = jnp.maximum(row_lo, col_lo - right)
        row_hi = jnp.minimum(row_hi, col_hi + left)
        full_lo = jnp.maximum(full_lo, col_lo + bk - 1 - right)  # last key <= first row + right
        full_hi = jnp.minimum(full_hi, col_lo + left + 1)  # every row <= first key + left
    row_hi = jnp.where(col_hi > col_lo, row_hi, row_lo)  # no valid key: no query block
    lo = row_lo // bq
    hi = jnp.maximum(-(-row_hi // bq), lo)
    if dense_mask:
        return lo, hi, hi, hi
    # interior query blocks: first row >= full_lo and last row < full_hi
    return (lo, *_split(lo, hi, -(-full_lo // bq), full_hi // bq), hi)


def _three_loops(lo, f_lo, f_hi, hi, step, carry):
    """Run ``step(j, carry, masked)`` over [lo, f_lo) and [f_hi, hi) masked and [f_lo, f_hi) not."""
    carry = lax.fori_loop(lo, f_lo, functools.partial(step, masked=True), carry)
    carry = lax.fori_loop(f_lo, f_hi, functools.partial(step, masked=False), carry)
    return lax.fori_loop(f_hi, hi, functools.partial(step, masked=True), carry)


# ----------------------------------------------------------------------------
# forward


def _merge_rows(x, G, bq):
    """(B|1, K|1, G|1, bq|1, ...) -> (B|1, K|1, G * bq, ...): the query rows of a block, heads first."""
    x = jnp.broadcast_to(x, x.shape[:2] + (G, bq) + x.shape[4:])
    return x.reshape(x.shape[:2] + (-1,) + x.shape[4:])


def _forward(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths):
    """Blocked inputs -> (out (nq, B, K, G, bq, H), lse (nq, B, K, G, bq))."""
    nq, B, K, G, bq, H = q.shape
    bk = k.shape[3]
    R = G * bq  # rows of a query block: the G query heads of a key/value head, bq positions each
    acc_dtype = jnp.promote_types(q.dtype, jnp.float32)
    q_r = q.reshape(nq, B, K, R, H)  # (nq, B, K, R, H)
    kT = k.swapaxes(-1, -2)  # (nk, B, K, H, bk): the logits product is a plain (R, H) x (H, bk) matmul

    def query_block(_, inputs):
        i, q_blk = inputs  # q_blk (B, K, R, H)
        i0 = i * bq

        def key_block(j, carry, masked):
            m, l, acc = carry  # (B, K, R), (B, K, R), (B, K, R, H)
            j0 = j * bk
            s = jnp.einsum("bkrh,bkhs->bkrs", q_blk, kT[j], preferred_element_type=acc_dtype)  # (B, K, R, bk)
            if bias5 is not None:
                s = s + _merge_rows(_tile(bias5, i0, bq, j0, bk), G, bq).astype(acc_dtype)
            if masked:
                vis = _merge_rows(_visible(cfg, i0, bq, j0, bk, mask5, kv_lengths), G, bq)  # (B|1, K|1, R, bk)
                s = jnp.where(vis, s, -jnp.inf)
            m_new = jnp.maximum(m, s.max(axis=-1))  # (B, K, R); -inf while nothing is visible
            shift = m_new
            if masked or bias5 is not None:
                # -inf while a row has seen only invisible keys or -inf bias: exponentiate
                # against 0 then, so no (-inf) - (-inf) = NaN. The carry keeps -inf, so the
                # next block's maximum is the row's true one (a carried 0 would be a floor
                # under which exp underflows: logits all below -104 gave an empty row).
                shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)
            p = jnp.exp(s - shift[..., None])  # (B, K, R, bk); 0 where invisible
            alpha = jnp.exp(m - shift)  # rescales the old sums; 0 while they are empty
            l = alpha * l + p.sum(axis=-1)
            pv = jnp.einsum("bkrs,bksh->bkrh", p.astype(v.dtype), v[j], preferred_element_type=acc_dtype)
            acc = alpha[..., None] * acc + pv  # (B, K, R, H)
            return m_new, l, acc

        init = (
            jnp.full((B, K, R), -jnp.inf, acc_dtype),  # m
            jnp.zeros((B, K, R), acc_dtype),  # l
            jnp.zeros((B, K, R, H), acc_dtype),  # acc
        )
        ranges = _key_block_range(cfg, i, bq, bk, q_lengths, kv_lengths, mask5 is not None)
        m, l, acc = _three_loops(*ranges, key_block, init)
        valid = _merge_rows(_row_valid(cfg, i0, bq, q_lengths), G, bq)  # (B|1, 1, R)
        # A real row that saw a key. ``l != 0``, not ``l > 0``: a NaN logit makes l NaN,
        # and that row must come out NaN, not pass for an empty row of zeros.
        seen = (l != 0) & valid  # (B, K, R)
        l_safe = jnp.where(seen, l, 1.0)
        out = jnp.where(seen[..., None], acc / l_safe[..., None], 0.0)  # (B, K, R, H)
        # lse = +inf on empty rows makes the backward P = exp(s - lse) exactly 0 there.
        lse = jnp.where(seen, m + jnp.log(l_safe), jnp.inf)  # (B, K, R)
        return None, (out.astype(q.dtype), lse)

    _, (out, lse) = lax.scan(query_block, None, (jnp.arange(nq, dtype=jnp.int32), q_r))
    return out.reshape(q.shape), lse.reshape(q.shape[:-1])  # (nq, B, K, G, bq, H), (nq, B, K, G, bq)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths):
    return _forward(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths)[0]


def _flash_fwd(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths):
    out, lse = _forward(cfg, q, k, v, bias5, mask5, q_lengths, kv_lengths)
    return out, (q, k, v, bias5, mask5, q_lengths, kv_lengths, out, lse)


# ----------------------------------------------------------------------------
# backward


def _flash_bwd(cfg, residuals, d_out):
    q, k, v, bias5, mask5, q_lengths, kv_lengths, out, lse = residuals
    nq, B, K, G, bq, H = q.shape
    nk, bk = k.shape[0], k.shape[3]
    R = G * bq  # rows of a query block: the G query heads of a key/value head, bq positions each
    acc_dtype = jnp.promote_types(q.dtype, jnp.float32)

    # The loops work on transposed blocks (keys as rows: P^T, dS^T, (bk, R)),
    # so that every product meets its big (bk, R) operand in the layout a
    # matmul wants and nothing of that size is ever transposed; only the small
    # (R, H) blocks are, once, here.
    q_r = q.reshape(nq, B, K, R, H)  # (nq, B, K, R, H)
    qT = q_r.swapaxes(-1, -2)  # (nq, B, K, H, R)
    do_r = d_out.reshape(nq, B, K, R, H)  # (nq, B, K, R, H)
    doT = do_r.swapaxes(-1, -2)  # (nq, B, K, H, R)
    kT = k.swapaxes(-1, -2)  # (nk, B, K, H, bk)
    lse_r = lse.reshape(nq, B, K, R)  # (nq, B, K, R)
    # D = rowsum(dO * O), the softmax-Jacobian correction of each row.
    d_rows = jnp.sum(do_r.astype(acc_dtype) * out.reshape(nq, B, K, R, H).astype(acc_dtype), axis=-1)  # (nq, B, K, R)

    def transposed(x):
        """(B|1, K|1, G|1, bq|1, bk|1) tile -> (B, K, bk, R), keys first."""
        x = jnp.broadcast_to(x, (B, K, G, bq, bk))
        return jnp.moveaxis(x, -1, 2).reshape(B, K, bk, R)

    def key_block(carry, inputs):
        dqT, dbias = carry  # (nq, B, K, H, R) acc_dtype; bias-shaped acc_dtype or None
        j, k_blk, kT_blk, v_blk = inputs  # (B, K, bk, H), (B, K, H, bk), (B, K, bk, H)
        j0 = j * bk

        def query_block(i, carry, masked):
            dk, dv, dqT, dbias = carry  # dk, dv (B, K, bk, H)
            i0 = i * bq
            sT = jnp.einsum("bksh,bkhr->bksr", k_blk, qT[i], preferred_element_type=acc_dtype)  # (B, K, bk, R)
            if bias5 is not None:
                sT = sT + transposed(_tile(bias5, i0, bq, j0, bk)).astype(acc_dtype)
            pT = jnp.exp(sT - lse_r[i][:, :, None, :])  # (B, K, bk, R), the forward probabilities
            if masked:
                pT = jnp.where(transposed(_visible(cfg, i0, bq, j0, bk, mask5, kv_lengths)), pT, 0.0)
            dv = dv + jnp.einsum("bksr,bkrh->bksh", pT.astype(d_out.dtype), do_r[i], preferred_element_type=acc_dtype)
            dpT = jnp.einsum("bksh,bkhr->bksr", v_blk, doT[i], preferred_element_type=acc_dtype)  # (B, K, bk, R)
            dsT = pT * (dpT - d_rows[i][:, :, None, :])  # (B, K, bk, R): d loss / d logits, transposed
            dk = dk + jnp.einsum("bksr,bkrh->bksh", dsT.astype(q.dtype), q_r[i], preferred_element_type=acc_dtype)
            dqT_blk = jnp.einsum("bkhs,bksr->bkhr", kT_blk, dsT.astype(k.dtype), preferred_element_type=acc_dtype)
            dqT = lax.dynamic_update_index_in_dim(dqT, dqT[i] + dqT_blk, i, 0)  # (nq, B, K, H, R)
            if dbias is not None:
                ds = jnp.moveaxis(dsT.reshape(B, K, bk, G, bq), 2, -1)  # (B, K, G, bq, bk)
                dbias = _add_tile(dbias, ds, i0, bq, j0, bk)
            return dk, dv, dqT, dbias

        zeros = jnp.zeros((B, K, bk, H), acc_dtype)
        ranges = _query_block_range(cfg, j, bq, bk, q_lengths, kv_lengths, mask5 is not None)
        dk, dv, dqT, dbias = _three_loops(*ranges, query_block, (zeros, zeros, dqT, dbias))
        return (dqT, dbias), (dk.astype(k.dtype), dv.astype(v.dtype))

    dqT0 = jnp.zeros((nq, B, K, H, R), acc_dtype)
    dbias0 = None if bias5 is None else jnp.zeros(bias5.shape, acc_dtype)
    (dqT, dbias), (dk, dv) = lax.scan(key_block, (dqT0, dbias0), (jnp.arange(nk, dtype=jnp.int32), k, kT, v))
    dq = dqT.swapaxes(-1, -2).reshape(q.shape)  # (nq, B, K, G, bq, H)
    dbias = None if bias5 is None else dbias.astype(bias5.dtype)
    # Masks and lengths are not differentiable: zero (None) cotangents.
    return dq.astype(q.dtype), dk, dv, dbias, None, None, None


def _add_tile(dbias, ds, i0, bq, j0, bk):
    """Add the logits gradient ``ds`` (B, K, G, bq, bk) into the (B|1, K|1, G|1, Tp|1, Sp|1) buffer."""
    broadcast = tuple(a for a in range(5) if dbias.shape[a] == 1 and ds.shape[a] != 1)
    ds = ds.sum(axis=broadcast, keepdims=True)  # (B|1, K|1, G|1, bq|1, bk|1)
    t, s = dbias.shape[-2:]
    starts = _tile_starts(t, s, i0, j0)
    return lax.dynamic_update_slice(dbias, _tile(dbias, i0, bq, j0, bk) + ds, starts)


_flash.defvjp(_flash_fwd, _flash_bwd)
