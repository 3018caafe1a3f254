"""The encoder-decoder Transformer for translation (Vaswani et al. 2017, "Attention Is All You Need").

The encoder reads the whole source sentence with bidirectional
self-attention; the decoder reads the target so far with causal
self-attention and attends to the encoder output (cross-attention)::

    src (B, S) -> embed * sqrt(D) + positions -> dropout -> Encoder -> encoded (B, S, D)
    tgt_in (B, T) -> embed * sqrt(D) + positions -> dropout
                  -> Decoder (causal self-attention, cross-attention to encoded)
                  -> logits (B, T, V) = x @ embed^T   (float32)

One vocabulary serves both languages (the paper's shared BPE vocabulary; in
zoo, one tokenizer), and with ``tie_embeddings=True`` one table is the
source embedding, the target embedding and the output projection.

Special tokens. A target sentence ``y`` is trained as
``tgt_in = [BOS] + y`` -> ``tgt_out = y + [EOS]``. By default BOS and EOS
are the same id, ``vocab_size - 1``: the ``<|endoftext|>`` token of zoo's
byte and char tokenizers. :meth:`Seq2SeqConfig.for_tokenizer` takes the
vocabulary size and ``tokenizer.eot_id`` from any zoo tokenizer (BPE's and
WordPiece's end-of-text ids are not the last); runs should use it.

There is no padding token: rows are right-padded to a common length and
every call takes their lengths (``src_lengths``, ``tgt_lengths``); what sits
in the padding does not change the outputs of the real positions (zoo's
batches fill it with EOS).

Decoding (``decode=True``) uses the decoder's self-attention caches and the
cross-attention caches of the projected encoder output; the model keeps its
own per-row ``position`` counter in the cache. Use
:func:`zoo.models.beam.greedy_decode` and :func:`~zoo.models.beam.beam_search`
rather than driving the cache by hand.

The training objective is :data:`zoo.train.objectives.TRANSLATION`; batches
come from :func:`zoo.data.translation.make_translation_batch`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.layers.dropout import Dropout
from zoo.layers import (
    Decoder,
    Embed,
    Encoder,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    TransformerConfig,
)
from zoo.errors import config_error

Array = jax.Array

__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer"]


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """Encoder-decoder hyperparameters. Defaults are the paper's base model (65M parameters).

    Examples:
      >>> config = zoo.Seq2SeqConfig(vocab_size=32, max_source_len=8, max_target_len=8, num_encoder_layers=1,
      ...                            num_decoder_layers=1, num_heads=2, features=16, bos_id=1, eos_id=2)
      >>> config.layer_norm, config.positions, config.tie_embeddings
      ('post', 'sinusoidal', True)
    """

    vocab_size: int = 37000  # the paper's shared EN-DE BPE vocabulary; zoo's runs take it from the tokenizer
    max_source_len: int = 256  # tokens per source sentence (the size of its position table)
    max_target_len: int = 256  # tokens per target sentence *including* its BOS/EOS token
    num_encoder_layers: int = 6  # "N = 6"
    num_decoder_layers: int = 6  # "N = 6"
    num_heads: int = 8  # "h = 8"
    features: int = 512  # "d_model = 512"
    mlp_dim: int | None = None  # None: 4 * features ("d_ff = 2048")
    dropout_rate: float = 0.1  # "P_drop = 0.1" on sub-layer outputs and on the embedding sums
    activation: Literal["relu", "gelu", "gelu_tanh"] = "relu"  # the paper's FFN: max(0, xW1 + b1)W2 + b2
    layer_norm: Literal["post", "pre"] = "post"  # the paper: LayerNorm(x + Sublayer(x)); "pre" is easier to train deep
    layer_norm_epsilon: float = 1e-6  # tensor2tensor's (the paper's code); the paper does not say
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"  # the paper (learned was "nearly identical")
    tie_embeddings: bool = True  # one table for source, target and output projection (section 3.4)
    bos_id: int | None = None  # None: vocab_size - 1, the <|endoftext|> of zoo's byte/char tokenizers
    eos_id: int | None = None  # None: the same id as BOS (one special token; no pad id, rows carry lengths)
    label_smoothing: float = 0.0  # the paper uses 0.1 (better BLEU); 0 keeps exp(loss) a perplexity
    scan_layers: bool = True  # compile one block per stack, not num_layers
    remat: bool = False  # recompute block activations in the backward pass
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # computation; parameters stay float32
    attention_implementation: str | None = None  # see zoo.dot_product_attention

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("Seq2SeqConfig", field, getattr(self, field), expected)

        for f in ("vocab_size", "max_source_len", "max_target_len", "num_encoder_layers",
                  "num_decoder_layers", "num_heads", "features"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                bad(f, "a positive int")
        if self.vocab_size < 2:
            bad("vocab_size", "at least 2 (a word and the BOS/EOS token)")
        if self.features % self.num_heads:
            bad("features", f"a multiple of num_heads={self.num_heads}")
        if self.mlp_dim is not None and (not isinstance(self.mlp_dim, (int, np.integer)) or self.mlp_dim < 1):
            bad("mlp_dim", "None or a positive int")
        if not 0.0 <= self.dropout_rate < 1.0:
            bad("dropout_rate", "a rate in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            bad("label_smoothing", "a value in [0, 1)")
        if self.activation not in ("relu", "gelu", "gelu_tanh"):
            bad("activation", "'relu', 'gelu' or 'gelu_tanh'")
        if self.layer_norm not in ("post", "pre"):
            bad("layer_norm", "'post' or 'pre'")
        if self.layer_norm_epsilon <= 0:
            bad("layer_norm_epsilon", "a positive float")
        if self.positions not in ("sinusoidal", "learned"):
            bad("positions", "'sinusoidal' or 'learned'")
        if self.positions == "sinusoidal" and self.features % 2:
            bad("features", "an even width for the sinusoidal position table")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            bad("dtype", "'float32', 'bfloat16' or 'float16'")
        for f in ("bos_id", "eos_id"):
            value = getattr(self, f)
            if value is not None and (not isinstance(value, (int, np.integer)) or not 0 <= value < self.vocab_size):
                bad(f, f"None or a token id in [0, vocab_size={self.vocab_size})")

    def replace(self, **changes) -> Seq2SeqConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, **fields) -> Seq2SeqConfig:
        """A config whose vocabulary and BOS/EOS come from a zoo tokenizer (``vocab_size``, ``eot_id``)."""
        return cls(vocab_size=tokenizer.vocab_size, bos_id=tokenizer.eot_id, eos_id=tokenizer.eot_id, **fields)

    @property
    def bos(self) -> int:
        """The BOS id in use (``bos_id``, default ``vocab_size - 1``)."""
        return self.vocab_size - 1 if self.bos_id is None else int(self.bos_id)

    @property
    def eos(self) -> int:
        """The EOS id in use (``eos_id``, default: the BOS id)."""
        return self.bos if self.eos_id is None else int(self.eos_id)

    @property
    def block_size(self) -> int:
        """The longer of the two position tables, ``max(max_source_len, max_target_len)``."""
        return max(self.max_source_len, self.max_target_len)

    def transformer(self, num_layers: int) -> TransformerConfig:
        """The blocks' configuration for a stack of ``num_layers``."""
        return TransformerConfig(
            num_layers=num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            activation=self.activation,
            layer_norm=self.layer_norm,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=0.0,  # the paper drops sub-layer outputs, not attention weights
            attention_implementation=self.attention_implementation,
            scan_layers=self.scan_layers,
            remat=self.remat,
            dtype=jnp.dtype(self.dtype),
            init_std=self.features ** -0.5,  # about Xavier's std for D x D (tensor2tensor initialises with Xavier)
        )


class _DecodePosition(nn.Module):
    """Per-row position counter kept in the 'cache' collection while decoding."""

    @nn.compact
    def __call__(self, batch: int, t: int, lengths: Array | None) -> Array | None:
        """Positions (B, T) of the new tokens, or None on the call that allocates the cache."""
        allocated = self.has_variable("cache", "position")
        position = self.variable("cache", "position", jnp.zeros, (batch,), jnp.int32)
        if not allocated:
            return None
        positions = position.value[:, None] + jnp.arange(t)  # (B, T)
        position.value = position.value + (t if lengths is None else jnp.asarray(lengths, jnp.int32))
        return positions


def _check_ids(name: str, ids: Array, max_len: int, side: str) -> None:
    if ids.ndim != 2:
        raise ValueError(f"Seq2SeqTransformer: {name} must have shape (B, T), got {shape_str(ids.shape)}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"Seq2SeqTransformer: {name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.shape[1] > max_len:
        raise ValueError(
            f"Seq2SeqTransformer: {name} has length {ids.shape[1]}, longer than {side}={max_len}"
        )


def _check_lengths(name: str, lengths: Array | None, batch: int, length: int) -> Array | None:
    if lengths is None:
        return None
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(
            f"Seq2SeqTransformer: {name} must be ({batch},) integers, got {lengths.dtype}{shape_str(lengths.shape)}"
        )
    check_range(f"Seq2SeqTransformer: {name}", lengths, 0, length, "lengths of the rows")
    return lengths


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer: (src (B, S), tgt_in (B, T)) -> float32 logits (B, T, vocab_size).

    Parameters: ``embed`` (tied; else ``source_embed``, ``target_embed``,
    ``lm_head``), ``source_positions``/``target_positions`` tables for learned
    positions, ``encoder/layers/...`` and ``decoder/layers/...`` (stacked along
    a leading ``layers`` axis when scanned). All carry logical axis names.

    Examples:
      >>> config = zoo.Seq2SeqConfig(vocab_size=32, max_source_len=8, max_target_len=8, num_encoder_layers=1,
      ...                            num_decoder_layers=1, num_heads=2, features=16, bos_id=1, eos_id=2)
      >>> model = zoo.Seq2SeqTransformer(config)
      >>> src, tgt_in = jnp.array([[5, 6, 7, 2]]), jnp.array([[1, 8, 9]])   # (B, S), (B, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), src, tgt_in)   # shapes only; init makes them
      >>> jax.eval_shape(model.apply, params, src, tgt_in).shape                  # (B, T, vocab_size)
      (1, 3, 32)
    """

    config: Seq2SeqConfig

    def setup(self):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        # N(0, 1/D): times sqrt(D) the embeddings have unit scale, like the position table (tensor2tensor)
        embed = lambda name: Embed(cfg.vocab_size, cfg.features, dtype=dtype,
                                   embedding_init=nn.initializers.normal(cfg.features ** -0.5), name=name)
        if cfg.tie_embeddings:
            self.embed = embed("embed")
        else:
            self.source_embed, self.target_embed = embed("source_embed"), embed("target_embed")
            self.lm_head = nn.Dense(
                cfg.vocab_size, use_bias=False, dtype=dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.features ** -0.5),
                                                         ("embed", "vocab")),
            )
        if cfg.positions == "learned":
            self.source_positions = LearnedPositionEmbedding(cfg.max_source_len, dtype=dtype)
            self.target_positions = LearnedPositionEmbedding(cfg.max_target_len, dtype=dtype)
        else:
            self.source_positions = SinusoidalPositionEmbedding(cfg.max_source_len)
            self.target_positions = SinusoidalPositionEmbedding(cfg.max_target_len)
        self.dropout = Dropout(cfg.dropout_rate)
        self.encoder = Encoder(cfg.transformer(cfg.num_encoder_layers))
        self.decoder = Decoder(cfg.transformer(cfg.num_decoder_layers), cross_attention=True)
        self.decode_position = _DecodePosition()

    def _embed(self, side: str, ids: Array) -> Array:
        """ids (B, T) -> embeddings (B, T, D) times sqrt(D) (section 3.4), from the source or target table."""
        cfg = self.config
        table = self.embed if cfg.tie_embeddings else (self.source_embed if side == "source" else self.target_embed)
        return table(ids) * jnp.asarray(np.sqrt(cfg.features), jnp.dtype(cfg.dtype))

    def encode(self, src: Array, *, src_lengths: Array | None = None, deterministic: bool = True) -> Array:
        """Source ids (B, S), right-padded to ``src_lengths`` (B,) -> encoded (B, S, D).

        Rows past a length hold no meaning; the decoder never attends to them.
        Ids outside the vocabulary raise ``ValueError`` (a ``checkify`` check under ``jit``).
        """
        cfg = self.config
        src = jnp.asarray(src)
        _check_ids("src", src, cfg.max_source_len, "max_source_len")
        src_lengths = _check_lengths("src_lengths", src_lengths, *src.shape)
        x = self.source_positions(self._embed("source", src))  # (B, S, D)
        x = self.dropout(x, deterministic=deterministic)
        return self.encoder(x, seq_lengths=src_lengths, deterministic=deterministic)  # (B, S, D)

    def decode(
        self,
        tgt_in: Array,
        encoded: Array | None,
        *,
        src_lengths: Array | None = None,
        tgt_lengths: Array | None = None,
        deterministic: bool = True,
        decode: bool = False,
    ) -> Array:
        """Target ids (B, T) (``[BOS] + y``, right-padded to ``tgt_lengths``) -> logits (B, T, V) float32.

        Args:
          encoded: (B, S, D) from :meth:`encode`; ``src_lengths`` (B,) its valid
            lengths. When decoding from a filled cache it may be None: the
            cross-attention then reuses its cached keys, values and lengths.
          decode: use and update the caches. Allocate them by calling
            ``init`` with ``decode=True`` on ``(B, cache_length)`` target ids
            (see :func:`zoo.models.beam.init_cache`); then feed the target in
            chunks (each row advances by its ``tgt_lengths``, default T).
        """
        cfg = self.config
        tgt_in = jnp.asarray(tgt_in)
        _check_ids("tgt_in", tgt_in, cfg.max_target_len, "max_target_len")
        b, t = tgt_in.shape
        if encoded is not None and (encoded.ndim != 3 or encoded.shape[0] != b or encoded.shape[2] != cfg.features):
            raise ValueError(
                f"Seq2SeqTransformer: encoded must have shape (B={b}, S, D={cfg.features}), "
                f"got {shape_str(encoded.shape)}"
            )
        if encoded is None and not decode:
            raise ValueError("Seq2SeqTransformer: decode needs the encoder output unless decode=True with a cache")
        if src_lengths is not None and encoded is not None:
            src_lengths = _check_lengths("src_lengths", src_lengths, b, encoded.shape[1])
        tgt_lengths = _check_lengths("tgt_lengths", tgt_lengths, b, t)
        positions = self.decode_position(b, t, tgt_lengths) if decode else None  # (B, T) or None
        x = self.target_positions(self._embed("target", tgt_in), positions)  # (B, T, D)
        x = self.dropout(x, deterministic=deterministic)
        x = self.decoder(
            x, seq_lengths=tgt_lengths, context=encoded, key_value_seq_lengths=src_lengths,
            deterministic=deterministic, decode=decode,
        )  # (B, T, D)
        logits = self.embed.attend(x) if cfg.tie_embeddings else self.lm_head(x)  # (B, T, V)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        src: Array,
        tgt_in: Array,
        *,
        src_lengths: Array | None = None,
        tgt_lengths: Array | None = None,
        deterministic: bool = True,
    ) -> Array:
        """Teacher-forced logits (B, T, V): ``decode(tgt_in, encode(src))``."""
        encoded = self.encode(src, src_lengths=src_lengths, deterministic=deterministic)
        return self.decode(
            tgt_in, encoded, src_lengths=src_lengths, tgt_lengths=tgt_lengths, deterministic=deterministic
        )
