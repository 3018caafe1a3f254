"""Recurrent language models: embedding, a stack of recurrent layers, an output head.

    ids (B, T) -> embed (B, T, D) -> dropout -> RNNStack (SimpleRNN | LSTM | GRU | minGRU) x L
              -> dropout -> logits (B, T, V) = h @ embed^T  (tied, Press & Wolf 2017)

The classic word-level LSTM LM (Zaremba et al. 2014) at character or byte
level. Unlike GPT it has no context window: the state it carries from step to
step is all it remembers, which is what makes generation cost the same at
every step. ``block_size`` is only the length of the training windows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import shape_str
from zoo.layers import CELLS, Embed, RNNStack, cell_param_count
from zoo.errors import config_error

Array = jax.Array

__all__ = ["RNNLMConfig", "RNNLM", "rnn_lm_param_count", "rnn_lm_flops_per_token"]


@dataclasses.dataclass(frozen=True)
class RNNLMConfig:
    """Recurrent LM hyperparameters; ``vocab_size`` comes from the tokenizer in zoo's runs.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=65, cell="minlstm", features=64, num_layers=2)
      >>> zoo.rnn_lm_param_count(config)
      29120
      >>> config.replace(cell="lstm").cell
      'lstm'
    """

    vocab_size: int = 256
    cell: Literal["rnn", "lstm", "gru", "mingru", "minlstm"] = "lstm"  # a name of zoo.layers.CELLS
    features: int = 256  # embedding width = hidden size (needed for the tied head)
    num_layers: int = 2
    dropout_rate: float = 0.0  # between layers and before the head (Zaremba et al.)
    tie_embeddings: bool = True
    block_size: int = 256  # length of the training windows; not a limit on what the model reads
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("RNNLMConfig", field, getattr(self, field), expected)

        for f in ("vocab_size", "features", "num_layers", "block_size"):
            if not isinstance(getattr(self, f), (int, np.integer)) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if self.cell not in CELLS:
            bad("cell", f"one of {sorted(CELLS)}")

    def replace(self, **changes) -> RNNLMConfig:
        return dataclasses.replace(self, **changes)


class RNNLM(nn.Module):
    """Recurrent LM: ids (B, T) -> float32 logits (B, T, vocab_size), optionally with the carries.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="gru", features=16, num_layers=2, block_size=8)
      >>> model = zoo.RNNLM(config)
      >>> ids = jnp.array([[72, 105, 33, 10]])             # (B, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> jax.eval_shape(model.apply, params, ids).shape   # (B, T, vocab_size)
      (1, 4, 257)
      >>> carries, logits = jax.eval_shape(lambda p, x: model.apply(p, x, return_carry=True), params, ids)
      >>> len(carries), carries[0].shape                   # one (B, features) carry per layer
      (2, (1, 16))
    """

    config: RNNLMConfig

    @nn.compact
    def __call__(
        self,
        ids: Array,
        *,
        initial_carry: list | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool = False,
        deterministic: bool = True,
    ) -> Array | tuple[list, Array]:
        """Logits, and with ``return_carry`` the per-layer state after each row's last valid step."""
        cfg = self.config
        if ids.ndim != 2:
            raise ValueError(f"RNNLM: ids must have shape (B, T), got {shape_str(ids.shape)}")
        dtype = jnp.dtype(cfg.dtype)
        embed = Embed(cfg.vocab_size, cfg.features, dtype=dtype, name="embed")
        x = nn.Dropout(cfg.dropout_rate)(embed(ids), deterministic=deterministic)  # (B, T, D)
        cell = CELLS[cfg.cell](features=cfg.features, dtype=dtype)
        carry, h = RNNStack(cell, num_layers=cfg.num_layers, dropout_rate=cfg.dropout_rate, name="rnn")(
            x, initial_carry=initial_carry, seq_lengths=seq_lengths, deterministic=deterministic,
            return_carry=True,
        )  # h (B, T, D)
        h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
        if cfg.tie_embeddings:
            logits = embed.attend(h)  # (B, T, V)
        else:
            logits = nn.Dense(cfg.vocab_size, dtype=dtype, name="lm_head")(h)
        logits = logits.astype(jnp.float32)
        return (carry, logits) if return_carry else logits

    def initial_carry(self, batch: int) -> list[Any]:
        """Zero state for ``batch`` rows: one carry per layer."""
        cfg = self.config
        cell = CELLS[cfg.cell](features=cfg.features, dtype=jnp.dtype(cfg.dtype), parent=None)  # unbound helper
        return [cell.initialize_carry(None, (batch, self.config.features)) for _ in range(self.config.num_layers)]


def rnn_lm_param_count(config: RNNLMConfig, *, non_embedding: bool = False) -> int:
    """Number of parameters, counted from the config (the tests check it against ``init``).

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=65, cell="lstm", features=64, num_layers=2)
      >>> zoo.rnn_lm_param_count(config)                   # the tied table included
      70208
      >>> zoo.rnn_lm_param_count(config, non_embedding=True)
      70208
    """
    d, v = config.features, config.vocab_size
    total = config.num_layers * cell_param_count(config.cell, d, d)
    if not config.tie_embeddings:
        total += d * v + v
    if not non_embedding or config.tie_embeddings:
        total += v * d  # the table (also the tied head's weights)
    return total


def rnn_lm_flops_per_token(config: RNNLMConfig) -> int:
    """Training FLOPs per token: 6 N over the matrices a token passes through.

    Every weight matrix is used once per token (input and recurrent kernels,
    head), so the forward pass costs 2 N and the backward pass 4 N, with N
    counting the table only as the tied head (the lookup is free). There is
    no term that grows with the context, unlike GPT's attention.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=65, cell="lstm", features=64, num_layers=2)
      >>> zoo.rnn_lm_flops_per_token(config)
      421248
    """
    return 6 * rnn_lm_param_count(config, non_embedding=True)
