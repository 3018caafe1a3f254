"""NPLM: the neural probabilistic language model of Bengio, Ducharme, Vincent and Jauvin (2003).

The first neural language model. Like an n-gram model it predicts word t
from the ``order - 1`` words before it, but instead of counting it maps each
word to a learned vector (a row of the table C) and reads the concatenated
vectors with a small network (the paper's equations, section 1.1)::

    x = (C(w_{t-1}), C(w_{t-2}), ..., C(w_{t-n+1}))       (n-1) m features, the newest word first
    y = b + W x + U tanh(d + H x)                          V logits; W x are the optional direct connections
    P(w_t = i | context) = softmax(y)_i

A context never seen in training still gets a sensible distribution when its
words have vectors close to those of seen contexts: the paper's argument
that learned word features fix the sparsity of counting (the word-level
ladder measures it, :mod:`zoo.experiments.word_ladder`).

zoo runs it over a whole window at once: ids (B, T) -> logits (B, T, V),
where position t reads ids t, t-1, ..., t-n+2 of its row. The first
``order - 2`` positions of a row reach before its start; those context
slots hold a learned ``start`` vector (the paper trained on a continuous
stream and does not say). So an NPLM is a next-token LM like GPT with a
window of ``order - 1`` tokens: the trainer, ``zoo eval`` and
:func:`zoo.generate` (a sliding window of ``order - 1`` words) treat it
like one. Parameter names: ``embed`` (C), ``start``, ``hidden`` (H, d),
``output`` (U, b), ``direct`` (W).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.errors import config_error
from zoo.layers import Embed
from zoo.layers.dropout import Dropout
from zoo.layers.linear import Linear

Array = jax.Array

__all__ = ["NPLMConfig", "NPLM", "nplm_param_count", "nplm_flops_per_token", "with_word_vectors"]


@dataclasses.dataclass(frozen=True)
class NPLMConfig:
    """NPLM hyperparameters; ``vocab_size`` comes from the tokenizer in zoo's runs. Presets: :mod:`zoo.presets`.

    Examples:
      >>> config = zoo.NPLMConfig(vocab_size=100, order=3, features=8, hidden=16)
      >>> config.context                                    # words each prediction reads
      2
      >>> zoo.nplm_param_count(config.replace(direct=True)) - zoo.nplm_param_count(config)   # W: (n-1) m x V
      1600
    """

    vocab_size: int = 17964  # the paper's Brown corpus vocabulary
    order: int = 5  # n: each word is predicted from the n - 1 before it (the paper's best Brown models: n = 5)
    features: int = 30  # m, the width of a word vector (the paper: 30 to 100)
    hidden: int = 100  # h, tanh units (the paper: 0 to 100; 0 leaves only the direct connections)
    direct: bool = False  # the paper's optional W: (n-1) m V more parameters, a linear (log-bilinear) path
    dropout_rate: float = 0.0  # on the tanh layer (not in the paper, which used weight decay)
    block_size: int = 64  # length of the training windows; each position still sees only n - 1 words
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("NPLMConfig", field, getattr(self, field), expected)

        for f in ("vocab_size", "features", "block_size"):
            if not isinstance(getattr(self, f), (int, np.integer)) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if not isinstance(self.order, (int, np.integer)) or self.order < 2:
            bad("order", "an int >= 2 (a context of at least one word)")
        if not isinstance(self.hidden, (int, np.integer)) or self.hidden < 0:
            bad("hidden", "an int >= 0")
        if self.hidden == 0 and not self.direct:
            bad("hidden", "> 0 unless direct=True (with neither, the context would not reach the output)")
        if not 0.0 <= self.dropout_rate < 1.0:
            bad("dropout_rate", "a number in [0, 1)")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            bad("dtype", "'float32', 'bfloat16' or 'float16'")

    def replace(self, **changes) -> NPLMConfig:
        return dataclasses.replace(self, **changes)

    @property
    def context(self) -> int:
        """n - 1: the words each prediction reads."""
        return self.order - 1


class NPLM(nn.Module):
    """Bengio et al.'s NPLM over windows: ids (B, T) -> float32 logits (B, T, vocab_size).

    Examples:
      >>> config = zoo.NPLMConfig(vocab_size=100, order=3, features=8, hidden=16, block_size=6)
      >>> model = zoo.NPLM(config)
      >>> ids = jnp.array([[5, 7, 9, 11]])                  # (B, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), ids)   # shapes only; model.init makes them
      >>> jax.eval_shape(model.apply, params, ids).shape    # (B, T, vocab_size): position t reads ids t-1, t
      (1, 4, 100)
      >>> jax.eval_shape(lambda p, x: model.apply(p, x, logits_at=jnp.array([3])), params, ids).shape
      (1, 1, 100)
    """

    config: NPLMConfig

    @nn.compact
    def __call__(self, ids: Array, *, deterministic: bool = True, logits_at: Array | None = None) -> Array:
        """Next-token logits, each from the ``order - 1`` ids ending at its position.

        Args:
          ids: (B, T) integer token ids in ``[0, vocab_size)``.
          deterministic: no dropout when True (else needs a 'dropout' rng).
          logits_at: (B,) one position per row: return logits (B, 1, V) at that
            position only (what :func:`zoo.generate`'s sliding window needs).
        """
        cfg = self.config
        if ids.ndim != 2:
            raise ValueError(f"NPLM: ids must have shape (B, T), got {shape_str(ids.shape)}")
        b, t = ids.shape
        n1, m = cfg.context, cfg.features
        dtype = jnp.dtype(cfg.dtype)
        x = Embed(cfg.vocab_size, m, dtype=dtype, name="embed")(ids)  # (B, T, m): C(w)
        start = self.param("start", nn.initializers.normal(0.02), (m,), jnp.float32)
        pad = jnp.broadcast_to(start.astype(x.dtype), (b, n1 - 1, m))
        padded = jnp.concatenate([pad, x], axis=1)  # (B, n1 - 1 + T, m): slot j holds position j - (n1 - 1)
        # context slot k (0: the newest word) of position t is position t - k, i.e. padded slot t + n1 - 1 - k
        ctx = jnp.concatenate([padded[:, n1 - 1 - k: n1 - 1 - k + t] for k in range(n1)], axis=-1)  # (B, T, n1 m)
        if logits_at is not None:
            logits_at = jnp.asarray(logits_at)
            if logits_at.shape != (b,) or not jnp.issubdtype(logits_at.dtype, jnp.integer):
                raise ValueError(f"NPLM: logits_at must be ({b},) integer positions, "
                                 f"got {logits_at.dtype}{shape_str(logits_at.shape)}")
            check_range("NPLM: logits_at", logits_at, 0, t - 1, f"positions of the {t} input tokens")
            ctx = jnp.take_along_axis(ctx, logits_at.astype(jnp.int32)[:, None, None], axis=1)  # (B, 1, n1 m)
        y = 0.0
        if cfg.hidden:
            a = jnp.tanh(Linear(cfg.hidden, ("embed", "mlp"), dtype=dtype, name="hidden")(ctx))  # (B, T, h)
            a = Dropout(cfg.dropout_rate)(a, deterministic=deterministic)
            y = Linear(cfg.vocab_size, ("mlp", "vocab"), dtype=dtype, name="output")(a)  # (B, T, V): b + U a
        if cfg.direct:
            direct = Linear(cfg.vocab_size, ("embed", "vocab"), use_bias=not cfg.hidden, dtype=dtype,
                            kernel_init=nn.initializers.zeros, name="direct")(ctx)  # (B, T, V): W x
            y = y + direct
        return jnp.asarray(y).astype(jnp.float32)


def nplm_param_count(config: NPLMConfig, *, non_embedding: bool = False) -> int:
    """Number of parameters, counted from the config (the tests check it against ``init``).

    ``non_embedding=True`` leaves out the table C and the start vector (looked up, not multiplied).

    Examples:
      >>> config = zoo.NPLMConfig(vocab_size=100, order=3, features=8, hidden=16)
      >>> zoo.nplm_param_count(config)                      # C, start, H, d, U, b
      2780
      >>> zoo.nplm_param_count(config, non_embedding=True)
      1972
    """
    v, m, h, x = config.vocab_size, config.features, config.hidden, config.context * config.features
    total = 0
    if h:
        total += x * h + h + h * v + v  # H, d; U, b
    if config.direct:
        total += x * v + (0 if h else v)  # W (and b when there is no hidden layer to carry it)
    if not non_embedding:
        total += v * m + m
    return total


def nplm_flops_per_token(config: NPLMConfig) -> int:
    """Training FLOPs per token: 6 N over the matrices (H, U, W), each used once per token; lookups are free.

    Examples:
      >>> zoo.nplm_flops_per_token(zoo.NPLMConfig(vocab_size=100, order=3, features=8, hidden=16))
      11832
    """
    return 6 * nplm_param_count(config, non_embedding=True)


def with_word_vectors(params, words, vectors, first_word: int = 2):
    """NPLM ``params`` with the rows of the table C of ``words`` set from ``vectors``, and how many were set.

    Args:
      params: NPLM parameters (boxed or plain), table ``embed/embedding`` (V, m).
      words: the tokenizer's words; word i has id ``first_word + i`` (:class:`zoo.data.words.WordTokenizer`).
      vectors: word vectors with ``key_to_index`` and ``vectors`` (n, m), e.g. a word2vec run's
        :class:`zoo.embeddings.KeyedVectors`. Words it lacks keep their rows.

    Examples:
      >>> from zoo.embeddings import KeyedVectors
      >>> from zoo.models.nplm import with_word_vectors
      >>> config = zoo.NPLMConfig(vocab_size=5, order=2, features=2, hidden=3)
      >>> params = zoo.NPLM(config).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
      >>> vectors = KeyedVectors(["cat", "dog"], np.array([[1.0, 2.0], [3.0, 4.0]]))
      >>> params, covered = with_word_vectors(params, ["the", "cat", "sat"], vectors)   # ids 2, 3, 4
      >>> covered, params["embed"]["embedding"][3].tolist()
      (1, [1.0, 2.0])
    """
    params = nn.unbox(params)
    table = np.array(params["embed"]["embedding"])  # (V, m)
    source = np.asarray(vectors.vectors, np.float32)  # (n, m)
    if source.shape[1] != table.shape[1]:
        raise ValueError(f"with_word_vectors: vectors of {source.shape[1]} dimensions for a table of width "
                         f"{table.shape[1]}; expected them equal")
    if first_word + len(words) > table.shape[0]:
        raise ValueError(f"with_word_vectors: {len(words)} words from id {first_word} do not fit a table of "
                         f"{table.shape[0]} rows")
    rows = [(first_word + i, vectors.key_to_index[w]) for i, w in enumerate(words) if w in vectors.key_to_index]
    if rows:
        ids, src = map(np.asarray, zip(*rows))
        table[ids] = source[src]
    out = dict(params)
    out["embed"] = {**params["embed"], "embedding": jnp.asarray(table, params["embed"]["embedding"].dtype)}
    return out, len(rows)
