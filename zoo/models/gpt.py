"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019).

Token ids go through a token table and (optionally) a learned position table;
a stack of pre-LN decoder blocks with causal self-attention mixes them; the
output head, tied to the token table, gives next-token logits::

    ids (B, T) -> wte (B, T, D) [+ wpe] -> dropout -> Decoder (pre-LN, final LayerNorm)
               -> logits (B, T, V) = x @ wte^T   (float32)

The model only assembles zoo's layers (``zoo/layers``). Parameter names:
``wte`` (and ``wpe``), ``decoder/layers/...`` (stacked along a leading
``layers`` axis when scanned), ``lm_head`` when the head is not tied.

Decoding uses the attention caches (``decode=True``, see
:class:`zoo.MultiHeadAttention`); the model keeps its own per-example
``position`` counter in the cache for the learned position table. Use
:func:`zoo.generate` rather than driving the cache by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.layers.dropout import Dropout
from zoo.layers import Decoder, Embed, LearnedPositionEmbedding, TransformerConfig
from zoo.errors import config_error

Array = jax.Array

__all__ = ["GPTConfig", "GPT", "gpt_param_count", "gpt_flops_per_token"]


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """GPT hyperparameters. Defaults are GPT-2 small (124M); presets live in :mod:`zoo.presets`.

    Examples:
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> config.mlp_dim, config.positions                  # mlp_dim None is 4 * features
      (None, 'learned')
      >>> try:
      ...     zoo.GPTConfig(features=16, num_heads=3)
      ... except ValueError as error:                      # a zoo.errors.ConfigError
      ...     print(error)
      GPTConfig: features=16, expected a multiple of num_heads=3
    """

    vocab_size: int = 50257  # GPT-2's BPE; zoo's runs always take it from the tokenizer
    block_size: int = 1024  # the context window, and the size of the position table
    num_layers: int = 12
    num_heads: int = 12
    features: int = 768  # width D of the residual stream (n_embd)
    mlp_dim: int | None = None  # None: 4 * features
    positions: Literal["learned", "rope"] = "learned"  # GPT-2: learned; "rope" adds no table
    rope_base: float = 10000.0
    dropout_rate: float = 0.0  # nanoGPT: 0 for pretraining, 0.1+ for fine-tuning
    use_bias: bool = True  # GPT-2 has biases; nanoGPT's bias=False is a little better and faster
    layer_norm_epsilon: float = 1e-5  # GPT-2
    activation: Literal["relu", "gelu", "gelu_tanh"] = "gelu_tanh"  # GPT-2's "gelu_new"
    tie_embeddings: bool = True  # the output head is wte^T (GPT-2)
    attention_implementation: str | None = None  # see zoo.dot_product_attention
    scan_layers: bool = True  # compile one block, not num_layers
    remat: bool = False  # recompute block activations in the backward pass
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # computation; parameters stay float32

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("GPTConfig", field, getattr(self, field), expected)

        for f in ("vocab_size", "block_size", "num_layers", "num_heads", "features"):
            if not isinstance(getattr(self, f), (int, np.integer)) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if self.features % self.num_heads:
            bad("features", f"a multiple of num_heads={self.num_heads}")
        if self.positions not in ("learned", "rope"):
            bad("positions", "'learned' or 'rope'")
        if self.positions == "rope" and (self.features // self.num_heads) % 2:
            bad("features", "a head size (features // num_heads) that is even, for RoPE")

    def replace(self, **changes) -> GPTConfig:
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.features // self.num_heads

    def transformer(self) -> TransformerConfig:
        """The decoder blocks' configuration."""
        return TransformerConfig(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            activation=self.activation,
            layer_norm="pre",
            layer_norm_epsilon=self.layer_norm_epsilon,
            use_bias=self.use_bias,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.dropout_rate,
            rope_base=self.rope_base if self.positions == "rope" else None,
            attention_implementation=self.attention_implementation,
            scan_layers=self.scan_layers,
            remat=self.remat,
            dtype=jnp.dtype(self.dtype),
            # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
            residual_init_std=0.02 / np.sqrt(2 * self.num_layers),
        )


class GPT(nn.Module):
    """Decoder-only Transformer LM: ids (B, T) -> float32 logits (B, T, vocab_size).

    Examples:
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = zoo.GPT(config)
      >>> ids = jnp.array([[72, 105, 33, 10]])             # (B, T) token ids
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> logits = jax.eval_shape(model.apply, params, ids)             # model.apply(params, ids) computes
      >>> logits.shape, logits.dtype                       # (B, T, vocab_size)
      ((1, 4, 257), dtype('float32'))
    """

    config: GPTConfig

    @nn.compact
    def __call__(
        self,
        ids: Array,
        *,
        seq_lengths: Array | None = None,
        deterministic: bool = True,
        decode: bool = False,
        logits_at: Array | None = None,
    ) -> Array:
        """Next-token logits.

        Args:
          ids: (B, T) integer token ids in ``[0, vocab_size)`` (checked: a
            ``ValueError`` when concrete, a ``checkify`` check under ``jit``).
          seq_lengths: (B,) valid lengths of right-padded rows; logits of the
            padding are meaningless. When decoding, each row's position
            advances by its own length.
          deterministic: no dropout when True (else needs a 'dropout' rng).
          decode: use and update the KV cache (allocate it by calling
            ``init`` with ``decode=True`` on (B, cache_length) ids).
          logits_at: (B,) one position per row: return logits (B, 1, V) at
            that position only (as nanoGPT's inference forward, which keeps
            the last). The head is a (T, D) x (D, V) product per row, a large
            share of a forward pass when V is a BPE vocabulary.
        """
        cfg = self.config
        if ids.ndim != 2:
            raise ValueError(f"GPT: ids must have shape (B, T), got {shape_str(ids.shape)}")
        b, t = ids.shape
        if t > cfg.block_size:
            raise ValueError(
                f"GPT: sequence length {t} is longer than the context window block_size={cfg.block_size}"
            )
        if logits_at is not None:  # checked before any work is done
            logits_at = jnp.asarray(logits_at)
            if logits_at.shape != (b,) or not jnp.issubdtype(logits_at.dtype, jnp.integer):
                raise ValueError(
                    f"GPT: logits_at must be ({b},) integer positions, "
                    f"got {logits_at.dtype}{shape_str(logits_at.shape)}"
                )
            check_range("GPT: logits_at", logits_at, 0, t - 1, f"positions of the {t} input tokens")
        dtype = jnp.dtype(cfg.dtype)
        wte = Embed(cfg.vocab_size, cfg.features, dtype=dtype, name="wte")
        x = wte(ids)  # (B, T, D)
        positions = None
        if decode:
            allocated = self.has_variable("cache", "position")
            position = self.variable("cache", "position", jnp.zeros, (b,), jnp.int32)
            if allocated:
                positions = position.value[:, None] + jnp.arange(t)  # (B, T)
                step = t if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
                position.value = position.value + step
        if cfg.positions == "learned":
            x = LearnedPositionEmbedding(cfg.block_size, dtype=dtype, name="wpe")(x, positions)  # (B, T, D)
        x = Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        x = Decoder(cfg.transformer(), name="decoder")(
            x, seq_lengths=seq_lengths, deterministic=deterministic, decode=decode
        )  # (B, T, D), after the final LayerNorm
        if logits_at is not None:
            x = jnp.take_along_axis(x, logits_at.astype(jnp.int32)[:, None, None], axis=1)  # (B, 1, D)
        if cfg.tie_embeddings:
            logits = wte.attend(x)  # (B, T, V), or (B, 1, V) with logits_at
        else:
            logits = nn.Dense(
                cfg.vocab_size, use_bias=False, dtype=dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed", "vocab")),
                name="lm_head",
            )(x)
        return logits.astype(jnp.float32)


def gpt_param_count(config: GPTConfig, *, non_embedding: bool = True) -> int:
    """Number of parameters, counted from the config (the tests check it against ``init``).

    ``non_embedding=True`` leaves out the position table, as nanoGPT's
    ``get_num_params`` does; the token table stays in, since the tied head
    uses it as a weight matrix.

    Examples:
      >>> zoo.gpt_param_count(zoo.GPTConfig())             # GPT-2 small, as nanoGPT counts it
      123653376
      >>> zoo.gpt_param_count(zoo.GPTConfig(), non_embedding=False)
      124439808
    """
    d, v, f = config.features, config.vocab_size, config.mlp_dim or 4 * config.features
    bias = config.use_bias
    attn = d * 3 * d + d * d + (3 * d + d if bias else 0)  # qkv and output projections
    mlp = d * f + f * d + (f + d if bias else 0)
    norms = 2 * (d + (d if bias else 0))
    total = config.num_layers * (attn + mlp + norms) + (d + (d if bias else 0))  # + final LayerNorm
    total += v * d  # token table (and tied head)
    if not config.tie_embeddings:
        total += d * v
    if config.positions == "learned" and not non_embedding:
        total += config.block_size * d
    return total


def gpt_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, 6N + 12 * L * H * Q * T (PaLM, appendix B).

    N is :func:`gpt_param_count` (non-embedding); the second term is the
    attention products, with H heads of size Q over a context of T tokens
    (default ``block_size``). Forward alone is a third of it.

    Examples:
      >>> config = zoo.GPTConfig()                          # GPT-2 small, 1024-token context
      >>> zoo.gpt_flops_per_token(config) / 1e9             # GFLOPs per trained token
      0.855166464
      >>> zoo.gpt_flops_per_token(config, seq_len=128) < zoo.gpt_flops_per_token(config)
      True
    """
    t = config.block_size if seq_len is None else seq_len
    n = gpt_param_count(config, non_embedding=True)
    return 6 * n + 12 * config.num_layers * config.num_heads * config.head_dim * t
