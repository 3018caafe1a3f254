"""Transformer blocks and stacks: attention, feed-forward, residuals and LayerNorm.

Every sub-layer (self-attention, cross-attention, feed-forward) is wrapped in
a residual connection and a LayerNorm, in one of two arrangements::

    post-LN (Vaswani et al. 2017, BERT):  x = LayerNorm(x + Dropout(f(x)))
    pre-LN  (GPT-2):                      x = x + Dropout(f(LayerNorm(x)))

and a pre-LN stack ends with one more LayerNorm. The feed-forward network is
``Linear(D -> F), activation, Linear(F -> D)`` applied to each position.

A stack runs its blocks with ``nn.scan`` (``scan_layers=True``): the block is
traced and compiled once, so compile time does not grow with depth, and the
parameters of all layers are stacked along a leading ``layers`` axis. With
``remat=True`` the activations inside each block are recomputed in the
backward pass instead of stored. ``scan_layers=False`` gives the same
function with per-layer parameters ``layers_0, layers_1, ...``.

Everything a published checkpoint needs is a field of
:class:`TransformerConfig` (biases, LayerNorm epsilon, GELU variant, ...), so
a weight importer needs no change here; the position-table size belongs to
the model configs that own the embeddings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.checks import renamed_arguments, shape_str
from zoo.layers.dropout import Dropout
from zoo.layers.linear import Linear
from zoo.layers.partitioning import constrain
from zoo.layers.platform import cpu_or
from zoo.layers.multihead import MultiHeadAttention, check_cache_room
from zoo.errors import config_error

Array = jax.Array

__all__ = [
    "TransformerConfig",
    "FeedForward",
    "TransformerBlock",
    "EncoderBlock",
    "DecoderBlock",
    "TransformerStack",
    "Encoder",
    "Decoder",
    "ACTIVATIONS",
]

def _barrier_vjp(fn):
    """``fn`` with a backward pass whose result is materialised before it is used.

    On XLA:CPU the elementwise backward of an activation otherwise fuses into
    the transposed copy that feeds the weight-gradient matmul, and that
    fusion writes its output in transposed order: for the GELU of a 4 x 128
    GPT it took 7 ms per layer, a quarter of the training step. Computing
    it first (``optimization_barrier``) and letting the matmul read it as it
    is removes that cost; the values are the same.
    """

    @jax.custom_vjp
    def f(x):
        return fn(x)

    def f_fwd(x):
        return fn(x), x

    def f_bwd(x, g):
        return (jax.lax.optimization_barrier(jax.vjp(fn, x)[1](g)[0]),)

    f.defvjp(f_fwd, f_bwd)
    return f


def _gelu_erf(x):
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


_gelu_tanh = functools.partial(jax.nn.gelu, approximate=True)

# The barriers are for XLA:CPU (zoo.layers.platform): elsewhere the plain functions.
ACTIVATIONS = {
    "relu": jax.nn.relu,  # the original Transformer
    # BERT's exact GELU as torch and HF write it, 0.5 x (1 + erf(x / sqrt 2)): faster on XLA:CPU than
    # jax.nn.gelu's erfc form (3.5% of a BERT-mini training step), the same values to 1e-6
    "gelu": cpu_or(_barrier_vjp(_gelu_erf), _gelu_erf, name="gelu"),
    "gelu_tanh": cpu_or(_barrier_vjp(_gelu_tanh), _gelu_tanh, name="gelu"),  # GPT-2 ("gelu_new")
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Block hyperparameters shared by every layer of a stack.

    The width D comes from the inputs. Defaults are the original
    Transformer's (Vaswani et al. 2017) except where noted; use
    ``dataclasses.replace`` for variants.

    Examples:
      >>> config = zoo.TransformerConfig(num_layers=2, num_heads=2, mlp_dim=32, dropout_rate=0.0)
      >>> config.replace(layer_norm="pre").layer_norm
      'pre'
    """

    num_layers: int = 6  # "N = 6" in the base model
    num_heads: int = 8  # "h = 8"
    num_kv_heads: int | None = None  # None: one key/value head per query head; 1: multi-query
    head_dim: int | None = None  # None: D // num_heads (d_k = 512 / 8 = 64)
    mlp_dim: int | None = None  # None: 4 * D (d_ff = 2048 for D = 512; also GPT-2 and BERT)
    activation: Literal["relu", "gelu", "gelu_tanh"] = "relu"  # BERT: gelu; GPT-2: gelu_tanh
    layer_norm: Literal["post", "pre"] = "post"  # GPT-2: pre
    layer_norm_epsilon: float = 1e-5  # GPT-2 1e-5, BERT 1e-12
    use_bias: bool = True  # nanoGPT-style models drop them (bias=False)
    dropout_rate: float = 0.1  # "P_drop = 0.1" on every sub-layer output
    attention_dropout_rate: float = 0.0  # the paper has none; GPT-2 and BERT use 0.1
    fused_qkv: bool = True  # one matmul for q, k, v (GPT-2's c_attn)
    rope_base: float | None = None  # rotary embeddings in self-attention (None: off)
    attention_implementation: str | None = None  # see zoo.dot_product_attention
    scan_layers: bool = True  # compile one block, not num_layers
    remat: bool = False  # recompute block activations in the backward pass
    dtype: Any = None  # computation dtype (None: the inputs')
    param_dtype: Any = jnp.float32
    init_std: float = 0.02  # N(0, 0.02^2) weights, as GPT-2 and BERT
    # std of the projections that write into the residual stream (attention
    # output, second FFN layer); None = init_std. GPT-2 scales them by
    # 1/sqrt(2 * num_layers) so the residual sum does not grow with depth.
    residual_init_std: float | None = None

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("TransformerConfig", field, getattr(self, field), expected)

        for f in ("num_layers", "num_heads"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if self.num_kv_heads is not None and (self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads):
            bad("num_kv_heads", f"a positive divisor of num_heads={self.num_heads}")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"one of {sorted(ACTIVATIONS)}")
        if self.layer_norm not in ("post", "pre"):
            bad("layer_norm", "'post' or 'pre'")
        for f in ("dropout_rate", "attention_dropout_rate"):
            if not 0.0 <= getattr(self, f) < 1.0:
                bad(f, "a rate in [0, 1)")
        if self.layer_norm_epsilon <= 0:
            bad("layer_norm_epsilon", "a positive float")

    def replace(self, **changes) -> TransformerConfig:
        return dataclasses.replace(self, **changes)


def _init(cfg: TransformerConfig, residual: bool = False):
    std = cfg.residual_init_std if residual and cfg.residual_init_std is not None else cfg.init_std
    return nn.initializers.normal(stddev=std)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: (B, T, D) -> (B, T, D) through (B, T, F).

    Examples:
      >>> ffn = zoo.FeedForward(zoo.TransformerConfig(mlp_dim=32))
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> y, params = jax.eval_shape(ffn.init_with_output, jax.random.key(0), x)   # shapes only
      >>> y.shape
      (2, 4, 8)
      >>> params["params"]["wi"]["kernel"].value.shape      # (D, F), boxed with its logical axis names
      (8, 32)
    """

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        d = x.shape[-1]
        f = cfg.mlp_dim or 4 * d
        dense = functools.partial(Linear, use_bias=cfg.use_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        h = dense(f, ("embed", "mlp"), kernel_init=_init(cfg), name="wi")(x)  # (B, T, F)
        h = constrain(ACTIVATIONS[cfg.activation](h), ("batch", "length", "act_mlp"))  # column-parallel: F split
        y = dense(d, ("mlp", "embed"), kernel_init=_init(cfg, residual=True), name="wo")(h)  # (B, T, D)
        return constrain(y, ("batch", "length", "act_embed"))  # row-parallel: the all-reduce over tensor


def _layer_norm(cfg: TransformerConfig, name: str) -> nn.LayerNorm:
    logical = nn.with_logical_partitioning
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_epsilon, use_bias=cfg.use_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        scale_init=logical(nn.initializers.ones, ("embed",)), bias_init=logical(nn.initializers.zeros, ("embed",)),
        name=name,
    )


class TransformerBlock(nn.Module):
    """Self-attention (causal for a decoder), optional cross-attention, feed-forward.

    ``__call__(x, mask, seq_lengths, context, context_mask, key_value_seq_lengths)``
    takes and returns (B, T, D); the optional arguments are as in
    :class:`MultiHeadAttention` (``context`` is the encoder output for
    cross-attention). Positional, so that ``nn.scan`` can broadcast them.

    Examples:
      >>> block = zoo.TransformerBlock(zoo.TransformerConfig(num_heads=2, mlp_dim=32), causal=True)
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> params = jax.eval_shape(block.init, jax.random.key(0), x)   # shapes only; block.init makes them
      >>> jax.eval_shape(block.apply, params, x).shape
      (2, 4, 8)
    """

    config: TransformerConfig
    causal: bool = False
    cross_attention: bool = False

    def _attention(self, name: str, cross: bool) -> MultiHeadAttention:
        cfg = self.config
        return MultiHeadAttention(
            num_heads=cfg.num_heads, head_dim=cfg.head_dim, num_kv_heads=cfg.num_kv_heads,
            cross_attention=cross, use_bias=cfg.use_bias, fused_qkv=cfg.fused_qkv,
            dropout_rate=cfg.attention_dropout_rate, rope_base=None if cross else cfg.rope_base,
            implementation=cfg.attention_implementation, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
            kernel_init=_init(cfg), out_kernel_init=_init(cfg, residual=True), name=name,
        )

    @renamed_arguments(context_lengths="key_value_seq_lengths")
    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        seq_lengths: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        key_value_seq_lengths: Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
    ) -> Array:
        cfg = self.config
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__}: inputs must have shape (B, T, D), got {shape_str(x.shape)}")
        if context is not None and not self.cross_attention:
            raise ValueError(f"{type(self).__name__}: context given but cross_attention=False")
        drop = Dropout(cfg.dropout_rate)

        def sublayer(x, name, fn):
            if cfg.layer_norm == "pre":
                return x + drop(fn(_layer_norm(cfg, f"{name}_norm")(x)), deterministic=deterministic)
            return _layer_norm(cfg, f"{name}_norm")(x + drop(fn(x), deterministic=deterministic))

        x = sublayer(x, "self_attention", lambda y: self._attention("self_attention", False)(
            y, mask=mask, is_causal=self.causal, seq_lengths=seq_lengths, decode=decode,
            deterministic=deterministic,
        ))
        if self.cross_attention:
            x = sublayer(x, "cross_attention", lambda y: self._attention("cross_attention", True)(
                y, context, mask=context_mask, seq_lengths=seq_lengths, key_value_seq_lengths=key_value_seq_lengths,
                decode=decode, deterministic=deterministic,
            ))
        return sublayer(x, "mlp", lambda y: FeedForward(cfg, name="mlp")(y))


class EncoderBlock(TransformerBlock):
    """Bidirectional self-attention and feed-forward (the encoder of the original Transformer, BERT).

    Examples:
      >>> block = zoo.EncoderBlock(zoo.TransformerConfig(num_heads=2, mlp_dim=32))
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> params = jax.eval_shape(block.init, jax.random.key(0), x)   # shapes only; block.init makes them
      >>> lengths = jnp.array([4, 2])
      >>> jax.eval_shape(lambda p, x: block.apply(p, x, None, lengths), params, x).shape  # mask, seq_lengths
      (2, 4, 8)
    """

    causal: bool = False
    cross_attention: bool = False


class DecoderBlock(TransformerBlock):
    """Masked (causal) self-attention, optional cross-attention, feed-forward (GPT, seq2seq decoder).

    Examples:
      >>> block = zoo.DecoderBlock(zoo.TransformerConfig(num_heads=2, mlp_dim=32), cross_attention=True)
      >>> x, memory = jnp.ones((2, 4, 8)), jnp.ones((2, 6, 8))    # (B, T, D), encoder output (B, S, D)
      >>> params = jax.eval_shape(block.init, jax.random.key(0), x, None, None, memory)   # shapes only
      >>> jax.eval_shape(lambda p, x, m: block.apply(p, x, None, None, m), params, x, memory).shape
      (2, 4, 8)
    """

    causal: bool = True
    cross_attention: bool = False


class TransformerStack(nn.Module):
    """``config.num_layers`` blocks, scanned or unrolled, and a final LayerNorm for pre-LN.

    ``__call__(x, *, mask, seq_lengths, context, context_mask,
    key_value_seq_lengths, deterministic, decode)``: (B, T, D) -> (B, T, D). With
    ``decode=True`` each layer's attention cache is used and updated (see
    :class:`MultiHeadAttention`); scanned stacks store it with the batch
    first, (B, num_layers, ...), so :func:`zoo.reorder_cache` works on it.
    Parameters of a scanned stack have a leading ``layers`` axis.

    Examples:
      >>> stack = zoo.TransformerStack(zoo.TransformerConfig(num_layers=3, num_heads=2, mlp_dim=32))
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> params = jax.eval_shape(stack.init, jax.random.key(0), x)   # shapes only; stack.init makes them
      >>> jax.tree.leaves(params)[0].shape                  # scanned: a leading layers axis
      (3, 32)
      >>> lengths = jnp.array([4, 2])
      >>> jax.eval_shape(lambda p, x: stack.apply(p, x, seq_lengths=lengths), params, x).shape
      (2, 4, 8)
    """

    config: TransformerConfig
    causal: bool = False
    cross_attention: bool = False

    @renamed_arguments(context_lengths="key_value_seq_lengths")
    @nn.compact
    def __call__(
        self,
        x: Array,
        *,
        mask: Array | None = None,
        seq_lengths: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        key_value_seq_lengths: Array | None = None,
        deterministic: bool = True,
        decode: bool = False,
    ) -> Array:
        cfg = self.config
        if decode and "cache" in self.variables:
            check_cache_room(self.variables["cache"], x.shape[1], seq_lengths)  # scan would hide the values
        args = (mask, seq_lengths, context, context_mask, key_value_seq_lengths)
        block = functools.partial(TransformerBlock, cfg, causal=self.causal, cross_attention=self.cross_attention)

        def body(module, carry, *broadcast):
            return module(carry, *broadcast, deterministic=deterministic, decode=decode), None

        if cfg.remat:
            body = nn.remat(body, prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            scanned = nn.scan(
                body,
                variable_axes={"params": 0, "cache": 1},  # cache keeps the batch first
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast,) * len(args),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = scanned(block(name="layers"), x, *args)
        else:
            for i in range(cfg.num_layers):
                x, _ = body(block(name=f"layers_{i}"), x, *args)
        if cfg.layer_norm == "pre":
            x = _layer_norm(cfg, "final_norm")(x)
        return x


class Encoder(TransformerStack):
    """A stack of :class:`EncoderBlock` (bidirectional).

    Examples:
      >>> encoder = zoo.Encoder(zoo.TransformerConfig(num_layers=2, num_heads=2, mlp_dim=32))
      >>> x = jnp.ones((2, 4, 8))                           # (B, T, D)
      >>> params = jax.eval_shape(encoder.init, jax.random.key(0), x)   # shapes only; encoder.init makes them
      >>> lengths = jnp.array([4, 2])
      >>> jax.eval_shape(lambda p, x: encoder.apply(p, x, seq_lengths=lengths), params, x).shape
      (2, 4, 8)
    """

    causal: bool = False
    cross_attention: bool = False


class Decoder(TransformerStack):
    """A stack of :class:`DecoderBlock` (causal; ``cross_attention=True`` for seq2seq).

    Examples:
      >>> config = zoo.TransformerConfig(num_layers=2, num_heads=2, mlp_dim=32, layer_norm="pre")
      >>> decoder = zoo.Decoder(config, cross_attention=True)
      >>> x, memory = jnp.ones((2, 4, 8)), jnp.ones((2, 6, 8))    # (B, T, D), encoder output (B, S, D)
      >>> params = jax.eval_shape(lambda x, m: decoder.init(jax.random.key(0), x, context=m), x, memory)
      >>> lengths = jnp.array([6, 3])
      >>> jax.eval_shape(lambda p, x, m: decoder.apply(p, x, context=m, key_value_seq_lengths=lengths),
      ...                params, x, memory).shape
      (2, 4, 8)
    """

    causal: bool = True
    cross_attention: bool = False
