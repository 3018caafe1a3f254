"""Multi-head attention as a linen module, with fixed-size caches for decoding.

Each head projects the inputs to queries, keys and values of size H, runs
:func:`zoo.dot_product_attention`, and an output projection mixes the heads
back to D features::

    B batch, T query length, S key/value length, D features,
    N query heads, K key/value heads (N % K == 0), H head size
    q (B, T, N, H)   k, v (B, S, K, H)   out (B, T, D)

Parameters and their logical axis names (Flax partitioning metadata, so a
mesh can shard them later without a rewrite)::

    self-attention, fused_qkv, K == N:  qkv (D, 3, N, H)  ('embed', 'qkv', 'heads', 'kv')
    otherwise:  query (D, N, H) ('embed', 'heads', 'kv') and either
                key_value (D, 2, K, H) ('embed', 'qkv', 'kv_heads', 'kv')   [fused_qkv]
                or key, value (D, K, H) ('embed', 'kv_heads', 'kv')
    out (N, H, D)  ('heads', 'kv', 'embed');  biases drop the 'embed' axis.

``init`` returns the parameters wrapped in ``nn.LogicallyPartitioned``
boxes; ``apply`` accepts them as they are. For plain arrays use
``flax.linen.unbox(variables)`` (and ``nn.get_partition_spec(variables)``
for the names).

Decoding with caches (``decode=True``). The cache lives in the ``'cache'``
collection; every leaf has the batch as its first axis, so
:func:`reorder_cache` can reorder beams with one gather.

* Self-attention keeps ``cached_key``/``cached_value`` (B, L, K, H) and a
  per-example ``cache_index`` (B,). Create it by calling ``init`` with
  ``decode=True`` on inputs of the full length L (the call only allocates);
  then ``apply(..., decode=True, mutable=['cache'])`` with a prompt (prefill)
  and then one token at a time. New keys and values are written at each
  example's index; query t of example b sits at position
  ``cache_index[b] + t`` and sees the cached keys at or before it. With
  ``seq_lengths`` (right-padded prompts of unequal length) the index of each
  example advances by its own length. Positions past the end of the cache
  raise ``ValueError`` when concrete (use :func:`zoo.checked` under ``jit``).
* Cross-attention (``cross_attention=True``) stores the projected encoder
  keys and values (and their lengths) the first time it is called with
  ``inputs_kv``; later decode calls pass ``inputs_kv=None`` and reuse them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, is_concrete, renamed_arguments, shape_str
from zoo.layers.attention import attention_weights, dot_product_attention
from zoo.layers.dropout import hash_bernoulli
from zoo.layers.embeddings import apply_rope
from zoo.layers.linear import linear
from zoo.layers.partitioning import active, constrain, gathered

Array = jax.Array
Initializer = Callable[..., Array]

__all__ = ["MultiHeadAttention", "reorder_cache", "check_cache_room"]

default_kernel_init = nn.initializers.normal(stddev=0.02)  # GPT-2 and BERT


def reorder_cache(cache: Any, indices: Array) -> Any:
    """Gather every cache leaf along its first (batch) axis: ``leaf[indices]``.

    Use it between beam-search steps: ``indices`` (B',) picks, for each new
    row, the row of the old cache it continues. Works on a single
    :class:`MultiHeadAttention` cache and on a whole model's (scanned stacks
    keep the batch first too).

    Examples:
      >>> cache = {"cached_key": jnp.arange(3)[:, None] * jnp.ones((3, 2))}   # (B, ...)
      >>> zoo.reorder_cache(cache, jnp.array([2, 2, 0]))["cached_key"][:, 0]
      Array([2., 2., 0.], dtype=float32)
    """
    leaves = jax.tree.leaves(cache)
    if not leaves:
        raise ValueError("reorder_cache: cache is empty; initialise it with decode=True")
    batch = leaves[0].shape[0]
    indices = jnp.asarray(indices)
    if indices.ndim != 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"reorder_cache: indices must be a 1-D integer array, got {indices.dtype}{shape_str(indices.shape)}")
    check_range("reorder_cache indices", indices, 0, batch - 1, "rows of the cache")
    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), cache)


def check_cache_room(cache: Any, new_tokens: int, seq_lengths: Array | None = None) -> None:
    """Raise ``ValueError`` if writing ``new_tokens`` (or ``seq_lengths``) would pass the end of a cache.

    ``cache`` is any tree holding self-attention caches (one module's or a
    whole stack's). Checks only concrete values: inside ``jit`` (and inside
    ``nn.scan``, where each layer's values are traced) the layer's own
    ``checkify`` check covers it. Models call this before decoding.
    """
    flat = jax.tree_util.tree_flatten_with_path(cache)[0]
    keys = [leaf for path, leaf in flat if jax.tree_util.keystr(path).endswith("['cached_key']")]
    indices = [leaf for path, leaf in flat if jax.tree_util.keystr(path).endswith("['cache_index']")]
    for key, index in zip(keys, indices):
        length = key.shape[index.ndim]  # (B, [layers,] L, K, H)
        if not (is_concrete(index) and (seq_lengths is None or is_concrete(seq_lengths))):
            return
        step = new_tokens if seq_lengths is None else np.asarray(seq_lengths).reshape(-1, *[1] * (index.ndim - 1))
        reach = np.asarray(index) + step
        if (reach > length).any():
            raise ValueError(
                f"decoding past the end of the cache: cache length {length}, positions reach {int(reach.max())}"
            )


def _project(x: Array, kernel: Array, *, shape: tuple[int, ...], heads_first: bool) -> Array:
    """x (B, T, D) @ kernel (D, *shape) -> (B, T, *shape), one matmul.

    ``heads_first`` (a fused (D, S, N, H) kernel under a sharding context) flattens the kernel as
    (D, N * S * H): with the heads split over a mesh axis, each device's heads then stay one contiguous
    block of columns (flattening (S, N, H) would interleave them, and the partitioner would have to
    gather the kernel).
    """
    d = x.shape[-1]
    if heads_first:
        s, n, h = shape
        y = linear(x, kernel.transpose(0, 2, 1, 3).reshape(d, -1))  # (B, T, N * S * H)
        return jnp.swapaxes(y.reshape(*x.shape[:-1], n, s, h), -3, -2)  # (B, T, S, N, H)
    return linear(x, kernel.reshape(d, -1)).reshape(*x.shape[:-1], *shape)  # (B, T, *shape)


def _merge_heads(x: Array, kernel: Array) -> Array:
    """Heads x (B, T, N, H) @ kernel (N, H, D') -> (B, T, D')."""
    n, h, features = kernel.shape
    return linear(x.reshape(*x.shape[:2], n * h), kernel.reshape(n * h, features))


def _heads(x: Array, name: str = "act_heads") -> Array:
    """(B, T, N, H) queries (or keys and values: ``act_kv_heads``) pinned to their layout: heads split
    over the tensor axis when a sharding context says so."""
    return constrain(x, ("batch", "length", name, "kv"))


class MultiHeadAttention(nn.Module):
    """Multi-head (or grouped-query) self- or cross-attention with an output projection.

    Attributes:
      num_heads: N query heads.
      head_dim: H; default ``D // num_heads``.
      num_kv_heads: K key/value heads; default N (1 = multi-query attention).
      out_features: output width; default D.
      cross_attention: keys and values come from ``inputs_kv`` (an encoder
        output) instead of the inputs; no RoPE.
      use_bias: biases on the projections (GPT-2 and BERT have them).
      fused_qkv: one projection for q, k and v (self-attention) or for k
        and v (cross-attention or K < N).
      dropout_rate: dropout on the attention weights (dense path).
      rope_base: apply rotary position embeddings with this base (e.g.
        10000.0) to self-attention queries and keys; None = no RoPE.
      implementation: passed to :func:`zoo.dot_product_attention`.
      dtype: computation dtype (default: inputs'); param_dtype: storage.

    Examples:
      >>> mha = zoo.MultiHeadAttention(num_heads=2)
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> params = jax.eval_shape(mha.init, jax.random.key(0), x)   # shapes only; mha.init makes them
      >>> lengths = jnp.array([4, 3])
      >>> jax.eval_shape(lambda p, x: mha.apply(p, x, is_causal=True, seq_lengths=lengths), params, x).shape
      (2, 4, 8)
      >>> gqa = zoo.MultiHeadAttention(num_heads=4, num_kv_heads=1)   # multi-query attention
      >>> jax.eval_shape(gqa.init_with_output, jax.random.key(0), x)[0].shape
      (2, 4, 8)
    """

    num_heads: int
    head_dim: int | None = None
    num_kv_heads: int | None = None
    out_features: int | None = None
    cross_attention: bool = False
    use_bias: bool = True
    fused_qkv: bool = True
    dropout_rate: float = 0.0
    rope_base: float | None = None
    implementation: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = default_kernel_init
    out_kernel_init: Initializer | None = None
    bias_init: Initializer = nn.initializers.zeros

    # ---------------------------------------------------------------- params

    def _param(self, name: str, init: Initializer, shape: tuple[int, ...], axes: tuple[str, ...]) -> Array:
        return self.param(name, nn.with_logical_partitioning(init, axes), shape, self.param_dtype)

    def _project(self, name: str, x: Array, shape: tuple[int, ...], axes: tuple[str, ...]) -> Array:
        """x (B, T, D) -> (B, T, *shape) with kernel (D, *shape) and optional bias (*shape)."""
        kernel = self._param(f"{name}_kernel", self.kernel_init, (x.shape[-1], *shape), ("embed", *axes))
        bias = self._param(f"{name}_bias", self.bias_init, shape, axes) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        fused = axes[0] == "qkv" and active()
        y = gathered(functools.partial(_project, shape=shape, heads_first=fused), x, kernel, ("embed", *axes))
        return y if bias is None else y + bias

    def _dims(self, features: int) -> tuple[int, int, int]:
        n = self.num_heads
        k = n if self.num_kv_heads is None else self.num_kv_heads
        if n <= 0 or k <= 0 or n % k:
            raise ValueError(
                f"MultiHeadAttention: num_heads ({n}) must be a positive multiple of num_kv_heads ({k})"
            )
        if self.head_dim is None and features % n:
            raise ValueError(
                f"MultiHeadAttention: features {features} are not divisible by num_heads {n}; set head_dim"
            )
        h = features // n if self.head_dim is None else self.head_dim
        if self.rope_base is not None and h % 2:
            raise ValueError(f"MultiHeadAttention: RoPE needs an even head_dim, got {h}")
        return n, k, h

    def _qkv(self, x: Array) -> tuple[Array, Array, Array]:
        """Self-attention projections: (B, T, N, H), (B, T, K, H), (B, T, K, H)."""
        n, k, h = self._dims(x.shape[-1])
        if self.fused_qkv and k == n:
            qkv = self._project("qkv", x, (3, n, h), ("qkv", "heads", "kv"))  # (B, T, 3, N, H)
            return _heads(qkv[:, :, 0]), _heads(qkv[:, :, 1], "act_kv_heads"), _heads(qkv[:, :, 2], "act_kv_heads")
        q = _heads(self._project("query", x, (n, h), ("heads", "kv")))  # (B, T, N, H)
        return (q, *self._kv(x, k, h))

    def _kv(self, x: Array, k: int, h: int) -> tuple[Array, Array]:
        """Key and value projections of x (B, S, D): (B, S, K, H) each."""
        if self.fused_qkv:
            kv = self._project("key_value", x, (2, k, h), ("qkv", "kv_heads", "kv"))  # (B, S, 2, K, H)
            return _heads(kv[:, :, 0], "act_kv_heads"), _heads(kv[:, :, 1], "act_kv_heads")
        axes = ("kv_heads", "kv")
        return (_heads(self._project("key", x, (k, h), axes), "act_kv_heads"),
                _heads(self._project("value", x, (k, h), axes), "act_kv_heads"))

    # ---------------------------------------------------------------- call

    @renamed_arguments(kv_seq_lengths="key_value_seq_lengths")
    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        mask: Array | None = None,
        is_causal: bool = False,
        seq_lengths: Array | None = None,
        key_value_seq_lengths: Array | None = None,
        decode: bool = False,
        deterministic: bool = True,
    ) -> Array:
        """inputs_q (B, T, D) -> (B, T, out_features).

        Args:
          inputs_kv: (B, S, D') encoder output for cross-attention.
          mask: boolean (B|1, N|1, T, S), True = may attend; in decode mode S
            is the cache length L (self) or the encoder length (cross).
          is_causal: mask the future (decoder self-attention; implied when
            decoding from the cache).
          seq_lengths: (B,) valid lengths of ``inputs_q`` (right padding); for
            self-attention also of the keys. Rows past a length return zeros.
          key_value_seq_lengths: (B,) valid lengths of ``inputs_kv`` (jax.nn's name; formerly
            ``kv_seq_lengths``, which still works with a DeprecationWarning).
          decode: use and update the cache (see the module docstring).
          deterministic: no dropout when True; otherwise needs a 'dropout' rng.
        """
        name = type(self).__name__
        if inputs_q.ndim != 3:
            raise ValueError(f"{name}: inputs_q must have shape (B, T, D), got {shape_str(inputs_q.shape)}")
        b, t, d = inputs_q.shape
        n, k_heads, h = self._dims(d)
        if self.cross_attention:
            q = _heads(self._project("query", inputs_q, (n, h), ("heads", "kv")))  # (B, T, N, H)
            k, v, key_value_seq_lengths = self._cross_kv(inputs_kv, key_value_seq_lengths, b, k_heads, h, decode)
        else:
            if inputs_kv is not None:
                raise ValueError(f"{name}: inputs_kv is for cross_attention=True modules; this one is self-attention")
            q, k, v = self._qkv(inputs_q)  # (B, T, N, H), (B, T, K, H) x2
            if decode and self.has_variable("cache", "cached_key"):
                return self._out(self._decode_step(q, k, v, mask, seq_lengths, deterministic), d)
            key_value_seq_lengths = seq_lengths
            if self.rope_base is not None:
                pos = jnp.arange(t)
                q, k = apply_rope(q, pos, base=self.rope_base), apply_rope(k, pos, base=self.rope_base)
            if decode:  # the init call: allocate the cache for length t
                self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
                self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
                self.variable("cache", "cache_index", jnp.zeros, (b,), jnp.int32)
        out = self._attend(q, k, v, mask, is_causal, seq_lengths, key_value_seq_lengths, deterministic)
        return self._out(out, d)

    def _out(self, x: Array, d: int) -> Array:
        """Heads (B, T, N, H) -> (B, T, out_features)."""
        n, h = x.shape[-2:]
        features = self.out_features or d
        init = self.out_kernel_init or self.kernel_init
        kernel = self._param("out_kernel", init, (n, h, features), ("heads", "kv", "embed"))
        bias = self._param("out_bias", self.bias_init, (features,), ("embed",)) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = gathered(_merge_heads, x, kernel, ("heads", "kv", "embed"))  # (B, T, features)
        y = y if bias is None else y + bias
        return constrain(y, ("batch", "length", "act_embed"))  # row-parallel over the heads: the all-reduce

    def _cross_kv(self, inputs_kv, kv_lengths, b, k_heads, h, decode):
        name = type(self).__name__
        if inputs_kv is not None and (inputs_kv.ndim != 3 or inputs_kv.shape[0] != b):
            raise ValueError(
                f"{name}: inputs_kv must have shape (B={b}, S, D'), got {shape_str(inputs_kv.shape)}"
            )
        if not decode:
            if inputs_kv is None:
                raise ValueError(f"{name}: cross-attention needs inputs_kv (the encoder output)")
            k, v = self._kv(inputs_kv, k_heads, h)
            return k, v, kv_lengths
        if inputs_kv is None:
            if not self.has_variable("cache", "cached_key"):
                raise ValueError(f"{name}: the first decode call of cross-attention needs inputs_kv")
            k, v = self.get_variable("cache", "cached_key"), self.get_variable("cache", "cached_value")
            if kv_lengths is None:
                kv_lengths = self.get_variable("cache", "kv_lengths")
            return k, v, kv_lengths
        k, v = self._kv(inputs_kv, k_heads, h)  # (B, S, K, H) each
        lengths = jnp.full((b,), k.shape[1], jnp.int32) if kv_lengths is None else jnp.asarray(kv_lengths, jnp.int32)
        for var, value in (("cached_key", k), ("cached_value", v), ("kv_lengths", lengths)):
            self.put_variable("cache", var, value)
        return k, v, kv_lengths

    def _decode_step(self, q, k, v, mask, seq_lengths, deterministic):
        """Write k, v at each example's cache index and attend over the whole cache."""
        name = type(self).__name__
        cached_key = self.variable("cache", "cached_key")
        cached_value = self.variable("cache", "cached_value")
        index = self.variable("cache", "cache_index")
        b, t = q.shape[:2]
        length = cached_key.value.shape[1]
        if t > length:
            raise ValueError(f"{name}: {t} new tokens do not fit a cache of length {length}")
        start = index.value  # (B,)
        step = jnp.full((b,), t, jnp.int32) if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
        if seq_lengths is not None:
            check_range("seq_lengths", step, 0, t, "lengths of the new tokens")
        check_cache_room({"cached_key": cached_key.value, "cache_index": start}, t, seq_lengths)
        check_range("cache position", start + step, 0, length, "within the cache length")
        positions = start[:, None] + jnp.arange(t)  # (B, T)
        if self.rope_base is not None:
            q, k = apply_rope(q, positions, base=self.rope_base), apply_rope(k, positions, base=self.rope_base)

        def write(cache_b, new_b, start_b):  # (L, K, H), (T, K, H), ()
            return jax.lax.dynamic_update_slice(cache_b, new_b.astype(cache_b.dtype), (start_b, 0, 0))

        cached_key.value = jax.vmap(write)(cached_key.value, k, start)  # (B, L, K, H)
        cached_value.value = jax.vmap(write)(cached_value.value, v, start)
        index.value = start + step
        visible = jnp.arange(length)[None, None, :] <= positions[:, :, None]  # (B, T, L)
        mask = visible[:, None] if mask is None else jnp.logical_and(visible[:, None], mask)  # (B, N|1, T, L)
        return self._attend(
            q, cached_key.value, cached_value.value, mask, False, seq_lengths, None, deterministic
        )

    def _attend(self, q, k, v, mask, is_causal, q_lengths, kv_lengths, deterministic) -> Array:
        """(B, T, N, H) x (B, S, K, H) -> (B, T, N, H), dropout on the weights when training."""
        if self.dropout_rate == 0.0 or deterministic:
            return dot_product_attention(
                q, k, v, mask=mask, is_causal=is_causal, query_seq_lengths=q_lengths,
                key_value_seq_lengths=kv_lengths, implementation=self.implementation,
            )
        w = attention_weights(
            q, k, mask=mask, is_causal=is_causal, query_seq_lengths=q_lengths, key_value_seq_lengths=kv_lengths
        )  # (B, N, T, S) float32
        keep = hash_bernoulli(self.make_rng("dropout"), 1.0 - self.dropout_rate, w.shape)
        w = jnp.where(keep, w / (1.0 - self.dropout_rate), 0.0)
        b, n, t, s = w.shape
        kh = k.shape[2]
        w = w.reshape(b, kh, n // kh, t, s).astype(v.dtype)  # (B, K, G, T, S)
        out = jnp.einsum("bkgts,bskh->btkgh", w, v)  # (B, T, K, G, H)
        return out.reshape(b, t, n, -1)  # (B, T, N, H)
