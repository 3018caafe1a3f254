"""word2vec (Mikolov et al. 2013) in JAX: skip-gram and CBOW with negative sampling, as gensim trains them.

The model is two tables of plain arrays, ``input`` (gensim's ``syn0``, the word
vectors) and ``output`` (``syn1neg``), both (V, D) float32, indexed by the
word tokenizer's ids (:mod:`zoo.data.words`; rows 0 and 1, ``<unk>`` and
``<|endoftext|>``, are never trained). Training follows gensim's
``word2vec_inner.pyx`` (itself word2vec.c):

* **sub-sampling** of frequent words: each occurrence of word ``w`` is kept
  with probability ``(sqrt(f/t) + 1) * t/f`` (capped at 1), where ``f`` is its
  count and ``t = sample * total`` (:func:`keep_probabilities`); the window
  then runs over the words kept, as in gensim;
* the **dynamic window**: each center word draws ``b`` uniformly in
  ``[0, window)`` and sees the ``window - b`` words on each side, within its
  sentence;
* **negative sampling**: ``negative`` noise words per prediction from the
  unigram distribution raised to ``ns_exponent`` (0.75) (:func:`noise_table`,
  an integer cumulative table as gensim's ``cum_table``); a noise word equal
  to the target is skipped;
* **CBOW** (the default): the mean of the context words' input vectors
  predicts the center word; **skip-gram**: each context word's input vector
  predicts the center word (gensim's pairing);
* the update is plain SGD with the learning rate ``alpha`` decaying linearly
  to ``min_alpha`` over the run (:func:`learning_rate`), and word2vec's rule
  for CBOW's context words: each gets the whole error of the mean, ``work``,
  not ``work / count`` (``cbow_mean``; :func:`sgns_grads` gives the exact
  gradients, which the tests check).

Batching is the one departure: gensim updates after each center word; here a
step updates ``batch_size`` center words at once from the same tables, each
update a gather and a scatter-add of rows (the sum of the batch's updates, a
synchronous version of gensim's lock-free threads). A step is one jitted
call of ``steps_per_call`` such batches (``lax.fori_loop``), the tables
donated, so nothing is copied between calls.

Work per batch is arranged by position, not by (center, context) pair: the
input rows of the ``batch_size + 2 * window`` positions a batch touches are
gathered once (``X``, (P, D)), each center's window is a masked sum of
shifted slices of ``X``, and the updates of every position are summed before
one scatter-add. fastText (:mod:`zoo.models.fasttext`) reuses the whole step
with a different ``X``: each position's word vector plus its character
n-gram vectors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import config_error

__all__ = [
    "EpochPlan", "Word2VecConfig", "Word2Vec", "keep_probabilities", "learning_rate", "make_train_step",
    "noise_table", "plan_epoch", "sample_noise", "sentence_stream", "sgns_grads", "sgns_loss", "subsample",
]

NOISE_TABLE_MAX = 2**31 - 1  # the integer range of the cumulative noise table (gensim's domain)


@dataclasses.dataclass(frozen=True)
class Word2VecConfig:
    """word2vec's model settings; every default is gensim 4's (``gensim.models.Word2Vec``).

    ``vocab_size`` is the word tokenizer's (words + 2 specials) and comes from
    it. ``min_count`` and ``max_vocab_size`` build that vocabulary;
    ``sample`` sub-samples frequent words (0: off).
    """

    vocab_size: int = 0
    vector_size: int = 100
    sg: bool = False  # skip-gram (True) or CBOW (False, gensim's default)
    window: int = 5
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    cbow_mean: bool = True  # CBOW's input is the mean of the context vectors (False: their sum)
    min_count: int = 5
    max_vocab_size: int | None = None  # keep at most this many words (the most frequent)

    def __post_init__(self):
        name = type(self).__name__
        for field, low in (("vocab_size", 0), ("vector_size", 1), ("window", 1), ("negative", 1), ("min_count", 1)):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise config_error(name, field, value, f"an int >= {low}")
        if self.max_vocab_size is not None and self.max_vocab_size < 1:
            raise config_error(name, "max_vocab_size", self.max_vocab_size, "None or an int >= 1")
        if not (math.isfinite(self.sample) and 0 <= self.sample < 1):
            raise config_error(name, "sample", self.sample, "a number in [0, 1) (0: no sub-sampling)")
        if not math.isfinite(self.ns_exponent):
            raise config_error(name, "ns_exponent", self.ns_exponent, "a finite number (0.75: word2vec's)")

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


# -- the data side (NumPy, on the host) ----------------------------------------------


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping one occurrence of each word under sub-sampling: (V,) float64.

    word2vec.c's and gensim's formula: with ``t = sample * counts.sum()``,
    ``p(w) = min(1, (sqrt(c_w / t) + 1) * t / c_w)``; 1 for every word when
    ``sample`` is 0, 0 for words of count 0 (the specials).
    """
    counts = np.asarray(counts, np.float64)
    if sample <= 0:
        return (counts > 0).astype(np.float64)
    t = sample * counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (np.sqrt(counts / t) + 1) * t / counts
    return np.where(counts > 0, np.minimum(p, 1.0), 0.0)


def noise_table(counts: np.ndarray, ns_exponent: float = 0.75) -> np.ndarray:
    """The cumulative noise table: (V,) int64, ``table[i] = round(sum_{j<=i} c_j^e / sum_j c_j^e * (2^31 - 1))``.

    Word ``i`` is drawn with probability ``(table[i] - table[i-1]) / table[-1]``
    (:func:`sample_noise`), i.e. proportionally to ``count ** ns_exponent``;
    words of count 0 are never drawn.
    """
    counts = np.asarray(counts, np.float64)
    weights = np.where(counts > 0, counts**ns_exponent, 0.0)
    if weights.sum() <= 0:
        raise ValueError("noise_table: every count is 0; expected at least one word with a positive count")
    return np.round(np.cumsum(weights) / weights.sum() * NOISE_TABLE_MAX).astype(np.int64)


def sample_noise(key: jax.Array, table: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Noise words drawn from the cumulative ``table`` (:func:`noise_table`): ``shape`` int32."""
    r = jax.random.randint(key, tuple(shape), 0, table[-1], dtype=jnp.int32)
    return jnp.searchsorted(table, r, side="right").astype(jnp.int32)


def sentence_stream(sentences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sentences of word ids (``<unk>`` = 0 left out, as gensim drops words under min_count) -> one stream.

    Returns ``(ids, sentence)``, both (n,) int32: the ids of every sentence in
    order, and the index of the sentence each came from. Sentences left empty
    vanish.
    """
    kept = [s[s >= 2] for s in sentences]
    kept = [s for s in kept if len(s)]
    if not kept:
        return np.zeros((0,), np.int32), np.zeros((0,), np.int32)
    ids = np.concatenate(kept).astype(np.int32)
    sentence = np.repeat(np.arange(len(kept), dtype=np.int32), [len(s) for s in kept])
    return ids, sentence


def subsample(ids: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which positions of ``ids`` survive sub-sampling: a bool mask (n,), each kept with ``keep[id]``."""
    return rng.random(len(ids)) < keep[ids]


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """One epoch's words after sub-sampling, padded for the step: arrays of (window + steps * chunk + window,).

    ``ids`` (-1 in the padding), ``sentence`` (-1 in the padding) and ``span``
    (each center's window after the dynamic reduction, in ``[1, window]``);
    ``words`` is how many words were kept and ``steps`` how many steps of
    ``chunk`` positions cover them.
    """

    ids: np.ndarray
    sentence: np.ndarray
    span: np.ndarray
    words: int
    steps: int


def plan_epoch(ids: np.ndarray, sentence: np.ndarray, keep: np.ndarray, *, window: int, chunk: int, seed: int,
               epoch: int) -> EpochPlan:
    """Sub-sample the stream and draw each center's window for ``epoch``: a pure function of (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    mask = subsample(ids, keep, rng)
    kept_ids, kept_sentence = ids[mask], sentence[mask]
    n = len(kept_ids)
    steps = max(1, -(-n // chunk))
    length = window + steps * chunk + window
    out_ids = np.full((length,), -1, np.int32)
    out_sentence = np.full((length,), -1, np.int32)
    span = np.ones((length,), np.int32)
    out_ids[window : window + n] = kept_ids
    out_sentence[window : window + n] = kept_sentence
    span[window : window + n] = window - rng.integers(0, window, size=n)  # b in [0, window): span window - b
    return EpochPlan(out_ids, out_sentence, span, n, steps)


def learning_rate(progress: float, alpha: float, min_alpha: float) -> float:
    """gensim's linear decay: ``alpha - (alpha - min_alpha) * progress`` for progress in [0, 1]."""
    return alpha - (alpha - min_alpha) * min(max(progress, 0.0), 1.0)


# -- the objective (pure JAX) ----------------------------------------------------------


def sgns_loss(h: jax.Array, rows: jax.Array, mask: jax.Array) -> jax.Array:
    """Negative-sampling loss of one prediction per row, summed over the valid terms.

    Args:
      h: (..., D) the input vectors (CBOW: the context mean; skip-gram: a context word's vector).
      rows: (..., K + 1, D) output vectors: the target first, then K noise words.
      mask: (..., K + 1) which terms count (a skipped noise word, a padded position: 0).

    Returns:
      ``-sum(mask * [log sigmoid(h . u_target) + sum_k log sigmoid(-h . u_k)])``, a float32 scalar.
    """
    s = jnp.einsum("...d,...kd->...k", h, rows)  # (..., K + 1)
    sign = jnp.where(jnp.arange(s.shape[-1]) == 0, 1.0, -1.0)
    return -jnp.sum(mask * jax.nn.log_sigmoid(sign * s))


def sgns_grads(h: jax.Array, rows: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The loss of :func:`sgns_loss` and its gradients in closed form: ``(loss, dL/dh (..., D), dL/drows (..., K+1, D))``.

    With ``s = h . u``, label ``y`` (1 for the target, 0 for noise) and
    ``e = mask * (y - sigmoid(s))``: ``dL/du_k = -e_k h`` and ``dL/dh = -sum_k e_k u_k``.
    """
    s = jnp.einsum("...d,...kd->...k", h, rows)
    y = (jnp.arange(s.shape[-1]) == 0).astype(s.dtype)
    e = mask * (y - jax.nn.sigmoid(s))
    sign = 2 * y - 1
    loss = -jnp.sum(mask * jax.nn.log_sigmoid(sign * s))
    return loss, -jnp.einsum("...k,...kd->...d", e, rows), -e[..., None] * h[..., None, :]


def _shifted(x: jax.Array, window: int, n: int) -> jax.Array:
    """(P, ...) with P = n + 2 * window -> (n, 2 * window, ...): entry [i, j] is x[window + i + offset_j], for
    the offsets -window..-1, 1..window."""
    offsets = [o for o in range(-window, window + 1) if o]
    return jnp.stack([x[window + o : window + o + n] for o in offsets], axis=1)


def _unshift_add(d: jax.Array, window: int) -> jax.Array:
    """The adjoint of :func:`_shifted`: (n, 2 * window, ...) -> (n + 2 * window, ...), each entry added back
    at the position it was read from."""
    n = d.shape[0]
    offsets = [o for o in range(-window, window + 1) if o]
    out = jnp.zeros((n + 2 * window, *d.shape[2:]), d.dtype)
    for j, o in enumerate(offsets):
        out = out.at[window + o : window + o + n].add(d[:, j])
    return out


def _batch_update(config: Word2VecConfig, output: jax.Array, table: jax.Array, x: jax.Array, count: jax.Array,
                  ids: jax.Array, sentence: jax.Array, span: jax.Array, key: jax.Array, alpha: jax.Array):
    """One batch's negative-sampling predictions and updates, position-wise.

    Args:
      output: (V, D) the output table.
      table: the cumulative noise table (V,) int32.
      x: (P, D) the input vector of each position's word (summed over its parts for fastText); P = N + 2W.
      count: (P,) how many rows each ``x`` sums (1 for word2vec, 1 + n-grams for fastText).
      ids, sentence, span: (P,) the positions' words (-1: padding), sentences and window spans.
      key: PRNG key of the noise words; alpha: the learning rate.

    Returns:
      ``(dx (P, D), output', loss, predictions)``: the update of each position's input vector (to be
      added to each of its rows), the updated output table, the summed loss and the number of predictions.
    """
    w, k = config.window, config.negative
    n = ids.shape[0] - 2 * w
    center, center_sentence, center_span = ids[w : w + n], sentence[w : w + n], span[w : w + n]  # (N,)
    valid = center >= 0
    offsets = jnp.array([o for o in range(-w, w + 1) if o])
    ok = (valid[:, None] & (_shifted(sentence, w, n) == center_sentence[:, None])
          & (jnp.abs(offsets)[None, :] <= center_span[:, None]))  # (N, 2W) the context words seen
    xs = _shifted(x, w, n)  # (N, 2W, D)
    counts = _shifted(count, w, n).astype(x.dtype)  # (N, 2W)
    center = jnp.maximum(center, 0)
    sign = jnp.where(jnp.arange(k + 1) == 0, 1.0, -1.0)
    vocab = output.shape[0]
    if config.sg:  # each (center, context word) pair: the context word's vector predicts the center
        noise = sample_noise(key, table, (n, 2 * w, k))  # (N, 2W, K)
        targets = jnp.concatenate([jnp.broadcast_to(center[:, None, None], (n, 2 * w, 1)), noise], -1)
        mask = ok[..., None] & jnp.concatenate([jnp.ones((n, 2 * w, 1), bool), noise != center[:, None, None]], -1)
        h = xs / counts[..., None]  # (N, 2W, D): fastText's mean of the word's rows
        rows = output[targets]  # (N, 2W, K + 1, D)
        s = jnp.einsum("npd,npkd->npk", h, rows)
        g = alpha * mask * ((sign + 1) / 2 - jax.nn.sigmoid(s))  # (N, 2W, K + 1): -alpha dL/ds
        dxs = jnp.einsum("npk,npkd->npd", g, rows)  # (N, 2W, D), the whole error to each of the word's rows
        d_rows = g[..., None] * h[..., None, :]
    else:  # CBOW: the mean (or sum) of the context predicts the center
        noise = sample_noise(key, table, (n, k))  # (N, K)
        targets = jnp.concatenate([center[:, None], noise], -1)  # (N, K + 1)
        denominator = jnp.sum(ok * counts, axis=1)  # (N,) rows summed into the context
        has = denominator > 0
        mask = has[:, None] & jnp.concatenate([jnp.ones((n, 1), bool), noise != center[:, None]], -1)
        h = jnp.einsum("np,npd->nd", ok.astype(x.dtype), xs)
        inverse = 1 / jnp.maximum(denominator, 1)
        if config.cbow_mean:
            h = h * inverse[:, None]
        rows = output[targets]  # (N, K + 1, D)
        s = jnp.einsum("nd,nkd->nk", h, rows)
        g = alpha * mask * ((sign + 1) / 2 - jax.nn.sigmoid(s))  # (N, K + 1)
        work = jnp.einsum("nk,nkd->nd", g, rows)
        if not config.cbow_mean:
            work = work * inverse[:, None]
        dxs = ok[..., None] * work[:, None, :]  # (N, 2W, D): word2vec gives each context row all of work
        d_rows = g[..., None] * h[:, None, :]
    loss = -jnp.sum(mask * jax.nn.log_sigmoid(sign * s))
    dx = _unshift_add(dxs, w)  # (P, D)
    flat_targets = jnp.where(mask, targets, vocab).reshape(-1)  # masked terms dropped by the scatter
    output = output.at[flat_targets].add(d_rows.reshape(-1, d_rows.shape[-1]), mode="drop")
    return dx, output, loss, jnp.sum(mask[..., 0])


def input_rows(tables: dict[str, jax.Array], static: dict, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """word2vec's input vectors of the positions ``ids`` (P,) (-1: padding): ``(x (P, D), count (P,))``."""
    return tables["input"][jnp.maximum(ids, 0)], jnp.ones(ids.shape, jnp.int32)


def add_input(tables: dict[str, jax.Array], static: dict, ids: jax.Array, dx: jax.Array) -> dict[str, jax.Array]:
    """Add ``dx`` (P, D) to the input rows of the positions ``ids`` (P,) (padding dropped)."""
    vocab = tables["input"].shape[0]
    return {**tables, "input": tables["input"].at[jnp.where(ids >= 0, ids, vocab)].add(dx, mode="drop")}


def make_train_step(config: Word2VecConfig, batch_size: int, steps_per_call: int, *, rows=input_rows,
                    add=add_input):
    """The jitted training step: ``step(tables, static, plan, table, start, key, alpha, alpha_step) -> (tables, stats)``.

    One call runs ``steps_per_call`` batches of ``batch_size`` center
    positions, from position ``start`` of the epoch ``plan`` (``{"ids",
    "sentence", "span"}`` device arrays of :class:`EpochPlan`), the learning
    rate going from ``alpha`` down by ``alpha_step`` a batch; ``table`` is the
    cumulative noise table (V,) int32. ``tables`` (a dict of arrays) is
    donated. ``stats`` is ``{"loss", "predictions"}`` summed over the call.
    ``rows``/``add`` compose and update the input side (:func:`input_rows`,
    :func:`add_input`; fastText passes its n-gram versions, which read the
    words' n-gram lists from ``static``, a dict of arrays that is not donated).
    """
    w, n = config.window, batch_size
    span_len = n + 2 * w

    def one_batch(i, carry, static, plan, table, start, key, alpha, alpha_step):
        tables, loss, predictions = carry
        at = start + i * n
        ids = jax.lax.dynamic_slice(plan["ids"], (at,), (span_len,))
        sentence = jax.lax.dynamic_slice(plan["sentence"], (at,), (span_len,))
        span = jax.lax.dynamic_slice(plan["span"], (at,), (span_len,))
        x, count = rows(tables, static, ids)
        dx, output, batch_loss, batch_predictions = _batch_update(
            config, tables["output"], table, x, count, ids, sentence, span, jax.random.fold_in(key, i),
            alpha - i * alpha_step)
        tables = add({**tables, "output": output}, static, ids, dx)
        return tables, loss + batch_loss, predictions + batch_predictions

    def step(tables, static, plan, table, start, key, alpha, alpha_step):
        body = lambda i, carry: one_batch(i, carry, static, plan, table, start, key, alpha, alpha_step)  # noqa: E731
        tables, loss, predictions = jax.lax.fori_loop(0, steps_per_call, body,
                                                      (tables, jnp.float32(0), jnp.int32(0)))
        return tables, {"loss": loss, "predictions": predictions}

    return jax.jit(step, donate_argnums=(0,))


# -- the thin module ---------------------------------------------------------------------


class Word2Vec:
    """word2vec's tables and functions for one config (no parameters of its own: the tables are plain arrays).

    ``init(key)`` -> ``{"input", "output"}``; ``word_vectors(tables)`` -> the
    (V, D) vectors a user gets (the input table); ``step(...)`` the training
    step of :func:`make_train_step`.
    """

    family = "word2vec"

    def __init__(self, config: Word2VecConfig):
        self.config = config

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        """gensim's initialisation: input rows uniform in [-0.5/D, 0.5/D), output rows 0."""
        v, d = self.config.vocab_size, self.config.vector_size
        return {"input": jax.random.uniform(key, (v, d), jnp.float32, -0.5 / d, 0.5 / d),
                "output": jnp.zeros((v, d), jnp.float32)}

    def static_tables(self) -> dict[str, np.ndarray]:
        """Arrays the step reads from ``tables`` but never changes (fastText's n-gram lists); none here."""
        return {}

    def rows_per_word(self) -> np.ndarray | None:
        """fastText's n-gram rows per word; None: one row a word."""
        return None

    def train_step(self, batch_size: int, steps_per_call: int, capacity: int | None = None):
        """The jitted step of :func:`make_train_step` (``tables``: ``init``'s and ``static_tables``)."""
        return make_train_step(self.config, batch_size, steps_per_call)

    def word_vectors(self, tables: dict[str, Any]) -> np.ndarray:
        """The (V, D) word vectors: the input table."""
        return np.asarray(tables["input"])
