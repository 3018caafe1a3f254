"""BERT: a bidirectional Transformer encoder pretrained by masked language modelling (Devlin et al. 2018).

Token, position and segment (token-type) embeddings are summed and
normalised; a stack of post-LN encoder blocks mixes them with bidirectional
self-attention; small heads on top do the tasks::

    ids (B, T), segment_ids (B, T) -> word + position + token_type (B, T, D) -> LayerNorm -> dropout
        -> Encoder (post-LN, bidirectional; padding through seq_lengths) -> sequence output (B, T, D)
    masked LM:    x[masked_positions] (B, P, D) -> dense, activation, LayerNorm -> x E^T + b  (B, P, V)
    pooler:       x[:, 0] ([CLS]) -> dense, tanh (B, D); then NSP (B, 2) or a classifier (B, num_labels)
    token labels: x -> dropout -> dense (B, T, num_labels)

Rows are right-padded; ``seq_lengths`` (B,) gives the real lengths and the
attention ignores the rest, so outputs at real positions do not depend on the
padding (its own outputs are meaningless). Every model wraps the encoder in a
submodule ``bert``, so pretrained encoder weights move into a task model with
:func:`transfer_encoder`.

Parameter names and their Hugging Face counterparts (kernels are HF's
``weight`` transposed, attention ones reshaped to heads; LayerNorm ``scale``
is HF's ``weight``; :mod:`zoo.interop.bert` does the conversion, both ways)::

    zoo                                       Hugging Face (head models add the prefix "bert.")
    bert/word_embeddings/embedding   (V, D)   embeddings.word_embeddings.weight
    bert/position_embeddings/embedding        embeddings.position_embeddings.weight
    bert/token_type_embeddings/embedding      embeddings.token_type_embeddings.weight
    bert/embeddings_norm                      embeddings.LayerNorm
    bert/encoder/layers/..., slice [i] of the leading (num_layers,) axis:   encoder.layer.i. ...
      self_attention/qkv_kernel (D, 3, N, H)  attention.self.{query,key,value}.weight, stacked
      self_attention/qkv_bias   (3, N, H)     attention.self.{query,key,value}.bias
      self_attention/out_kernel (N, H, D)     attention.output.dense.weight
      self_attention_norm                     attention.output.LayerNorm
      mlp/wi, mlp/wo                          intermediate.dense, output.dense
      mlp_norm                                output.LayerNorm
    pooler                                    pooler.dense
    mlm_head/transform, transform_norm        cls.predictions.transform.dense, .LayerNorm
    mlm_head/bias                    (V,)     cls.predictions.bias (decoder.weight is the word table)
    nsp                                       cls.seq_relationship
    classifier                                classifier

The training objectives (:data:`zoo.train.objectives.MASKED_LM`,
``SEQUENCE_CLASSIFICATION``, ``TOKEN_CLASSIFICATION``, with the batch formats
in their loss functions' docstrings) live with training.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.layers.dropout import Dropout
from zoo.layers import Embed, Encoder, LearnedPositionEmbedding, TransformerConfig
from zoo.layers.linear import Linear
from zoo.layers.transformer import ACTIVATIONS
from zoo.errors import config_error

Array = jax.Array

__all__ = [  # noqa: RUF022 (in reading order)
    "BERTConfig", "BERT", "BERTForMaskedLM", "BERTForPreTraining", "BERTForSequenceClassification",
    "BERTForTokenClassification", "bert_param_count", "bert_flops_per_token", "transfer_encoder",
]


@dataclasses.dataclass(frozen=True)
class BERTConfig:
    """BERT hyperparameters. Defaults are BERT-base (110M) with its uncased WordPiece vocabulary.

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> config.mlp_dim, config.activation, config.pad_id
      (None, 'gelu', 0)
      >>> zoo.bert_param_count(zoo.BERTConfig(), heads="none")   # BERT-base, as BertModel without the pooler
      108891648
    """

    vocab_size: int = 30522  # bert-base-uncased; zoo's runs always take it from the tokenizer
    max_positions: int = 512  # size of the position table
    type_vocab_size: int = 2  # segments A and B
    num_layers: int = 12
    num_heads: int = 12
    features: int = 768  # width D (hidden_size)
    mlp_dim: int | None = None  # None: 4 * features (intermediate_size 3072)
    dropout_rate: float = 0.1  # hidden_dropout_prob
    attention_dropout_rate: float = 0.1  # attention_probs_dropout_prob
    layer_norm_epsilon: float = 1e-12
    activation: Literal["relu", "gelu", "gelu_tanh"] = "gelu"  # exact erf GELU, as BERT
    use_bias: bool = True  # every dense layer and LayerNorm (False drops them all)
    init_std: float = 0.02  # initializer_range
    pad_id: int = 0  # the id data writes into padding; the model masks padding by seq_lengths, not by id
    block_size: int = 128  # the training sequence length (BERT: 128 for 90% of the steps, then 512)
    num_labels: int = 2  # outputs of the classification heads
    attention_implementation: str | None = None  # see zoo.dot_product_attention
    scan_layers: bool = True  # compile one block, not num_layers
    remat: bool = False  # recompute block activations in the backward pass
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # computation; parameters stay float32

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("BERTConfig", field, getattr(self, field), expected)

        def positive_int(f):
            return isinstance(getattr(self, f), (int, np.integer)) and getattr(self, f) >= 1

        for f in ("vocab_size", "max_positions", "type_vocab_size", "num_layers", "num_heads", "features",
                  "block_size", "num_labels"):
            if not positive_int(f):
                bad(f, "a positive int")
        if self.mlp_dim is not None and not positive_int("mlp_dim"):
            bad("mlp_dim", "None or a positive int")
        if self.features % self.num_heads:
            bad("features", f"a multiple of num_heads={self.num_heads}")
        if self.block_size > self.max_positions:
            bad("block_size", f"at most max_positions={self.max_positions}")
        if not 0 <= self.pad_id < self.vocab_size:
            bad("pad_id", f"a token id in [0, vocab_size={self.vocab_size})")
        for f in ("dropout_rate", "attention_dropout_rate"):
            if not 0.0 <= getattr(self, f) < 1.0:
                bad(f, "a rate in [0, 1)")
        for f in ("layer_norm_epsilon", "init_std"):
            if not getattr(self, f) > 0:
                bad(f, "a positive float")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"one of {sorted(ACTIVATIONS)}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            bad("dtype", "'float32', 'bfloat16' or 'float16'")

    def replace(self, **changes) -> BERTConfig:
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.features // self.num_heads

    def transformer(self) -> TransformerConfig:
        """The encoder blocks' configuration."""
        return TransformerConfig(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            activation=self.activation,
            layer_norm="post",
            layer_norm_epsilon=self.layer_norm_epsilon,
            use_bias=self.use_bias,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            attention_implementation=self.attention_implementation,
            scan_layers=self.scan_layers,
            remat=self.remat,
            dtype=jnp.dtype(self.dtype),
            init_std=self.init_std,
        )


# -- modules -------------------------------------------------------------------------


def _dense(cfg: BERTConfig, features: int, axes: tuple[str, str], name: str) -> Linear:
    return Linear(
        features, axes, use_bias=cfg.use_bias, dtype=jnp.dtype(cfg.dtype),
        kernel_init=nn.initializers.normal(cfg.init_std), name=name,
    )


def _layer_norm(cfg: BERTConfig, name: str) -> nn.LayerNorm:
    logical = nn.with_logical_partitioning
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_epsilon, use_bias=cfg.use_bias, dtype=jnp.dtype(cfg.dtype),
        scale_init=logical(nn.initializers.ones, ("embed",)),
        bias_init=logical(nn.initializers.zeros, ("embed",)),
        name=name,
    )


def _check_int_array(name: str, x: Any, shape: tuple[int, ...] | None, high: int, what: str) -> None:
    """Shape (when given), integer dtype and values in [0, high] of an index argument."""
    if shape is not None and tuple(np.shape(x)) != shape:
        raise ValueError(f"BERT: {name} has shape {shape_str(np.shape(x))}, expected {shape_str(shape)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise ValueError(f"BERT: {name} must hold integers, got dtype {jnp.result_type(x)}")
    check_range(name, x, 0, high, what)


class _TokenTypeEmbed(nn.Module):
    """The (type_vocab_size, D) segment table, with its own logical axis: 2 rows are not 'vocab'."""

    num_types: int
    features: int
    init_std: float
    dtype: Any = None

    @nn.compact
    def __call__(self, segment_ids: Array) -> Array:
        init = nn.with_logical_partitioning(nn.initializers.normal(self.init_std), ("token_type", "embed"))
        table = self.param("embedding", init, (self.num_types, self.features), jnp.float32)
        return jnp.take(jnp.asarray(table, self.dtype), segment_ids, axis=0)  # (B, T, D)


class BERT(nn.Module):
    """The encoder (HF's ``BertModel`` without the pooler): ids (B, T) -> sequence output (B, T, D).

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = zoo.BERT(config)
      >>> ids = jnp.array([[2, 10, 11, 3, 0]])            # (B, T), padded with pad_id 0
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> lengths = jnp.array([4])
      >>> jax.eval_shape(lambda p, x: model.apply(p, x, seq_lengths=lengths), params, ids).shape
      (1, 5, 16)
    """

    config: BERTConfig

    def setup(self):
        cfg = self.config
        dtype, init = jnp.dtype(cfg.dtype), nn.initializers.normal(cfg.init_std)
        self.word_embeddings = Embed(cfg.vocab_size, cfg.features, dtype=dtype, embedding_init=init)
        self.position_embeddings = LearnedPositionEmbedding(
            cfg.max_positions, dtype=dtype, embedding_init=init
        )
        self.token_type_embeddings = _TokenTypeEmbed(cfg.type_vocab_size, cfg.features, cfg.init_std, dtype)
        self.embeddings_norm = _layer_norm(cfg, "embeddings_norm")
        self.embeddings_dropout = Dropout(cfg.dropout_rate)
        self.encoder = Encoder(cfg.transformer())

    def __call__(
        self,
        ids: Array,
        *,
        segment_ids: Array | None = None,
        seq_lengths: Array | None = None,
        deterministic: bool = True,
    ) -> Array:
        """Contextual embeddings of every position.

        Args:
          ids: (B, T) token ids in ``[0, vocab_size)``, T <= ``max_positions``.
          segment_ids: (B, T) token types in ``[0, type_vocab_size)`` (0 for
            sentence A, 1 for B); default all 0.
          seq_lengths: (B,) lengths of right-padded rows; default no padding.
          deterministic: no dropout when True (else needs a 'dropout' rng).

        Values are checked: a ``ValueError`` when concrete, a ``checkify``
        check under ``jit`` (active with :func:`zoo.checked`).

        Returns:
          (B, T, D) in the config's dtype; rows past a length are meaningless.
        """
        cfg = self.config
        if ids.ndim != 2:
            raise ValueError(f"BERT: ids must have shape (B, T), got {shape_str(ids.shape)}")
        b, t = ids.shape
        if t > cfg.max_positions:
            raise ValueError(
                f"BERT: sequence length {t} of ids {shape_str(ids.shape)} is longer than the "
                f"position table, max_positions={cfg.max_positions}"
            )
        if segment_ids is None:
            segment_ids = jnp.zeros((b, t), jnp.int32)
        else:
            _check_int_array("segment_ids", segment_ids, (b, t), cfg.type_vocab_size - 1,
                             f"token types of a table of size {cfg.type_vocab_size}")
        if seq_lengths is not None:  # checked here: inside the scanned encoder the values are traced
            _check_int_array("seq_lengths", seq_lengths, (b,), t, f"lengths of rows of {t} tokens")
        x = self.word_embeddings(ids) + self.token_type_embeddings(segment_ids)  # (B, T, D)
        x = self.embeddings_norm(self.position_embeddings(x))  # (B, T, D)
        x = self.embeddings_dropout(x, deterministic=deterministic)
        return self.encoder(x, seq_lengths=seq_lengths, deterministic=deterministic)  # (B, T, D)

    def attend(self, x: Array) -> Array:
        """x (..., D) -> (..., V) = x E^T with the word table E (the tied MLM decoder)."""
        return self.word_embeddings.attend(x)


class MLMHead(nn.Module):
    """Dense D -> D, activation, LayerNorm, then the tied decoder ``bert.attend`` plus a bias (V,)."""

    config: BERTConfig

    @nn.compact
    def __call__(self, x: Array, attend: Any) -> Array:
        """x (..., D) -> float32 logits (..., V); ``attend`` is the encoder's :meth:`BERT.attend`."""
        cfg = self.config
        h = _dense(cfg, cfg.features, ("embed", "mlp"), "transform")(x)  # (..., D)
        h = _layer_norm(cfg, "transform_norm")(ACTIVATIONS[cfg.activation](h))
        logits = attend(h)  # (..., V)
        if cfg.use_bias:
            init = nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",))
            bias = self.param("bias", init, (cfg.vocab_size,), jnp.float32)
            logits = logits + jnp.asarray(bias, logits.dtype)
        return logits.astype(jnp.float32)


def _gather(x: Array, positions: Array | None) -> Array:
    """The sequence output (B, T, D) at positions (B, P) -> (B, P, D); all of it when positions is None."""
    if positions is None:
        return x
    b, t = x.shape[:2]
    if np.ndim(positions) != 2 or np.shape(positions)[0] != b:
        shape = shape_str(np.shape(positions))
        raise ValueError(f"BERT: masked_positions has shape {shape}, expected ({b}, P)")
    _check_int_array("masked_positions", positions, None, t - 1, f"positions in rows of {t} tokens")
    return jnp.take_along_axis(x, jnp.asarray(positions)[:, :, None], axis=1)  # (B, P, D)


def _pool(cfg: BERTConfig, x: Array) -> Array:
    """The [CLS] position of (B, T, D) -> dense, tanh -> (B, D); parameters ``pooler``."""
    return jnp.tanh(_dense(cfg, cfg.features, ("embed", "mlp"), "pooler")(x[:, 0]))


class BERTForMaskedLM(nn.Module):
    """The encoder and the masked-LM head: float32 logits (B, P, V) at ``masked_positions``, or (B, T, V).

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = zoo.BERTForMaskedLM(config)
      >>> ids = jnp.array([[2, 10, 4, 3]])                  # (B, T) with a [MASK] at position 2
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> positions = jnp.array([[2]])                      # (B, P)
      >>> jax.eval_shape(lambda p, x: model.apply(p, x, masked_positions=positions), params, ids).shape
      (1, 1, 64)
      >>> jax.eval_shape(model.apply, params, ids).shape    # every position: (B, T, V)
      (1, 4, 64)
    """

    config: BERTConfig

    @nn.compact
    def __call__(self, ids, *, segment_ids=None, seq_lengths=None, masked_positions=None, deterministic=True):
        """As :class:`BERT`. ``masked_positions`` (B, P) ints: run the head only there (the V-wide
        decoder is the largest matmul, and masked LM needs it at ~15% of the positions)."""
        bert = BERT(self.config, name="bert")
        x = bert(ids, segment_ids=segment_ids, seq_lengths=seq_lengths, deterministic=deterministic)
        return MLMHead(self.config, name="mlm_head")(_gather(x, masked_positions), bert.attend)  # (B, P|T, V)


class BERTForPreTraining(nn.Module):
    """Masked LM and next-sentence prediction: (mlm_logits (B, P|T, V), nsp_logits (B, 2)), float32.

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = zoo.BERTForPreTraining(config)
      >>> ids, segments = jnp.array([[2, 10, 3, 11, 3]]), jnp.array([[0, 0, 0, 1, 1]])
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> mlm, nsp = jax.eval_shape(lambda p, x, s: model.apply(p, x, segment_ids=s), params, ids, segments)
      >>> mlm.shape, nsp.shape
      ((1, 5, 64), (1, 2))
    """

    config: BERTConfig

    @nn.compact
    def __call__(self, ids, *, segment_ids=None, seq_lengths=None, masked_positions=None, deterministic=True):
        cfg = self.config
        bert = BERT(cfg, name="bert")
        x = bert(ids, segment_ids=segment_ids, seq_lengths=seq_lengths, deterministic=deterministic)
        mlm = MLMHead(cfg, name="mlm_head")(_gather(x, masked_positions), bert.attend)  # (B, P|T, V)
        nsp = _dense(cfg, 2, ("embed", "labels"), "nsp")(_pool(cfg, x))  # (B, 2)
        return mlm, nsp.astype(jnp.float32)


class BERTForSequenceClassification(nn.Module):
    """Pooled [CLS] -> dropout -> dense: float32 logits (B, num_labels); sentence pairs by segment_ids.

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16,
      ...                         num_labels=3)
      >>> model = zoo.BERTForSequenceClassification(config)
      >>> ids = jnp.array([[2, 10, 11, 3], [2, 12, 3, 0]])  # (B, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> lengths = jnp.array([4, 3])
      >>> jax.eval_shape(lambda p, x: model.apply(p, x, seq_lengths=lengths), params, ids).shape
      (2, 3)
    """

    config: BERTConfig

    @nn.compact
    def __call__(self, ids, *, segment_ids=None, seq_lengths=None, deterministic=True):
        cfg = self.config
        bert = BERT(cfg, name="bert")
        x = bert(ids, segment_ids=segment_ids, seq_lengths=seq_lengths, deterministic=deterministic)
        pooled = Dropout(cfg.dropout_rate)(_pool(cfg, x), deterministic=deterministic)  # (B, D)
        return _dense(cfg, cfg.num_labels, ("embed", "labels"), "classifier")(pooled).astype(jnp.float32)


class BERTForTokenClassification(nn.Module):
    """Every position -> dropout -> dense: float32 logits (B, T, num_labels).

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16,
      ...                         num_labels=5)
      >>> model = zoo.BERTForTokenClassification(config)
      >>> ids = jnp.array([[2, 10, 11, 3]])                 # (B, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> jax.eval_shape(model.apply, params, ids).shape    # (B, T, num_labels)
      (1, 4, 5)
    """

    config: BERTConfig

    @nn.compact
    def __call__(self, ids, *, segment_ids=None, seq_lengths=None, deterministic=True):
        cfg = self.config
        bert = BERT(cfg, name="bert")
        x = bert(ids, segment_ids=segment_ids, seq_lengths=seq_lengths, deterministic=deterministic)
        x = Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        return _dense(cfg, cfg.num_labels, ("embed", "labels"), "classifier")(x).astype(jnp.float32)


# -- counts ----------------------------------------------------------------------------


def _counts(config: BERTConfig) -> dict[str, int]:
    d, v, f = config.features, config.vocab_size, config.mlp_dim or 4 * config.features
    bias = int(config.use_bias)
    norm = d + bias * d
    attention = d * 3 * d + 3 * d * bias + d * d + d * bias  # qkv and output projections
    mlp = d * f + f * bias + f * d + d * bias
    return {
        "tables": (v + config.max_positions + config.type_vocab_size) * d,
        "encoder": config.num_layers * (attention + mlp + 2 * norm) + norm,  # + the embedding LayerNorm
        "mlm_head": d * d + d * bias + norm + v * bias,  # transform, LayerNorm, output bias; decoder tied
        "pooler": d * d + d * bias,
        "nsp": 2 * (d + bias),
        "classifier": config.num_labels * (d + bias),
    }


def bert_param_count(config: BERTConfig, *, heads: str = "mlm") -> int:
    """Number of parameters, counted from the config (the tests check it against ``init``).

    ``heads``: "none" (:class:`BERT`), "mlm" (:class:`BERTForMaskedLM`; its
    decoder is the word table, so the head adds only the transform, its
    LayerNorm and the bias), "pretraining", "sequence_classification",
    "token_classification". The embedding tables are included.

    Examples:
      >>> config = zoo.BERTConfig()                          # BERT-base uncased
      >>> zoo.bert_param_count(config, heads="none"), zoo.bert_param_count(config)   # encoder, masked LM
      (108891648, 109514298)
    """
    parts = {
        "none": [],
        "mlm": ["mlm_head"],
        "pretraining": ["mlm_head", "pooler", "nsp"],
        "sequence_classification": ["pooler", "classifier"],
        "token_classification": ["classifier"],
    }
    if heads not in parts:
        raise ValueError(f"bert_param_count: heads={heads!r}, expected one of {list(parts)}")
    c = _counts(config)
    return c["tables"] + c["encoder"] + sum(c[p] for p in parts[heads])


def bert_flops_per_token(
    config: BERTConfig, seq_len: int | None = None, mlm_fraction: float | None = None
) -> float:
    """Masked-LM training FLOPs per input token, 6N + 12 * L * H * Q * T (PaLM, appendix B).

    N counts the weights used in matmuls: the encoder blocks (and the
    LayerNorms) at every token, and the MLM head (transform, LayerNorm, bias
    and the V x D decoder, i.e. the word table) at the fraction
    ``mlm_fraction`` of the tokens it runs on: P / T when training with
    ``masked_positions``; None counts it at every token. Embedding lookups
    are not matmuls and do not count. The second term is attention, H heads
    of size Q over T tokens (default ``block_size``).

    Examples:
      >>> config = zoo.BERTConfig()                          # BERT-base, 128-token rows
      >>> round(zoo.bert_flops_per_token(config) / 1e9, 3)  # GFLOPs, the MLM head at every token
      0.669
      >>> round(zoo.bert_flops_per_token(config, mlm_fraction=20 / 128) / 1e9, 3)   # at 20 masked positions
      0.547
    """
    t = config.block_size if seq_len is None else seq_len
    frac = 1.0 if mlm_fraction is None else float(mlm_fraction)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"bert_flops_per_token: mlm_fraction={mlm_fraction!r}, expected a number in (0, 1]")
    c = _counts(config)
    n = c["encoder"] + frac * (c["mlm_head"] + config.vocab_size * config.features)
    return 6.0 * n + 12.0 * config.num_layers * config.num_heads * config.head_dim * t


# -- moving weights --------------------------------------------------------------------


def _copy_subtree(part: str, pretrained: Any, fresh: Any) -> Any:
    """The values of ``pretrained`` in the structure (and partitioning boxes) of ``fresh``."""
    def leaf_shapes(tree):
        leaves = jax.tree_util.tree_leaves_with_path(nn.unbox(tree))
        return {jax.tree_util.keystr(path): np.shape(x) for path, x in leaves}

    shapes = [leaf_shapes(pretrained), leaf_shapes(fresh)]
    if shapes[0] != shapes[1]:
        diff = sorted(k for k in shapes[0].keys() | shapes[1].keys() if shapes[0].get(k) != shapes[1].get(k))
        got, want = (s.get(diff[0], "missing") for s in shapes)
        raise ValueError(
            f"transfer_encoder: {part!r} differs between the models (different configs?) in {len(diff)} "
            f"entries, first {part}{diff[0]}: pretrained {got}, fresh {want}"
        )
    def is_box(x):
        return isinstance(x, nn.meta.AxisMetadata)

    return jax.tree.map(
        lambda f, p: f.replace_boxed(p) if is_box(f) else p, fresh, nn.unbox(pretrained), is_leaf=is_box
    )


def transfer_encoder(pretrained_params: Any, fresh_params: Any) -> Any:
    """``fresh_params`` with ``bert`` (and ``pooler``, when both have one) taken from ``pretrained_params``.

    Both are ``params`` collections of BERT models with the same encoder
    config, e.g. a :class:`BERTForMaskedLM` run's and a freshly initialised
    :class:`BERTForSequenceClassification`'s. The task head keeps its fresh
    initialisation; so does a pooler the pretrained model lacks (a masked-LM
    model has none), with a warning saying so. The logical-axis boxes of
    ``fresh_params`` are kept. Raises ``ValueError`` when either has no
    ``bert`` or the shapes differ.

    Examples:
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> ids = jnp.ones((1, 4), jnp.int32)
      >>> pretrained = jax.eval_shape(zoo.BERTForMaskedLM(config).init, jax.random.key(0), ids)["params"]
      >>> classifier = zoo.BERTForSequenceClassification(config)
      >>> fresh = jax.eval_shape(classifier.init, jax.random.key(1), ids)["params"]
      >>> sorted(pretrained), sorted(fresh)
      (['bert', 'mlm_head'], ['bert', 'classifier', 'pooler'])
      >>> import warnings
      >>> with warnings.catch_warnings(record=True) as caught:   # the masked LM has no pooler: it stays fresh
      ...     warnings.simplefilter("always")
      ...     params = zoo.transfer_encoder(pretrained, fresh)
      ...
      >>> sorted(params), len(caught)                 # one warning: the pooler
      (['bert', 'classifier', 'pooler'], 1)
    """
    for name, params in (("pretrained_params", pretrained_params), ("fresh_params", fresh_params)):
        if "bert" not in params:
            hint = "; pass variables['params'], not the variables" if "params" in params else ""
            raise ValueError(f"transfer_encoder: {name} has no 'bert' entry (it has {sorted(params)}){hint}")
    out = dict(fresh_params)
    for part in ("bert", "pooler"):
        if part in pretrained_params and part in fresh_params:
            out[part] = _copy_subtree(part, pretrained_params[part], fresh_params[part])
    if "pooler" in fresh_params and "pooler" not in pretrained_params:
        warnings.warn(
            "transfer_encoder: the pretrained params have no 'pooler' (a masked-LM-only model); "
            "copied 'bert', the pooler keeps its fresh initialisation",
            stacklevel=2,
        )
    return out
