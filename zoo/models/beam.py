"""Decoding a :class:`~zoo.models.seq2seq.Seq2SeqTransformer`: greedy search and beam search.

    out = greedy_decode(model, params, src, src_lengths)                 # out.ids (B, L)
    out = beam_search(model, params, src, src_lengths, beam_size=4)      # best of 4 beams
    texts = [tok.decode(row[:n]) for row, n in zip(out.ids, out.lengths)]

Both run under ``jax.jit`` as one program: the source is encoded once, the
first step feeds BOS with the encoder output (filling the cross-attention
caches), and a ``lax.while_loop`` with one compiled step feeds back one token
per row, reading and writing the decoder's caches. The loop stops when every
row (every beam) has emitted EOS, or after ``max_len`` tokens.

Output format (:class:`Decoded`): ``ids`` (B, L) int32 hold the generated
tokens without BOS; a finished row holds its EOS at index ``lengths[b]``, and
every position after it holds EOS too (the fill), so ``ids[b, :lengths[b]]``
is the translation. A row that never emitted EOS has ``lengths[b] == L``.
``L = max_len`` (default ``max_target_len``) whether or not the rows
finished early. ``scores`` are length-normalised log-probabilities::

    score = log P(y | x) / lp(y),   lp(y) = ((5 + |y|) / 6) ** length_penalty

(GNMT, Wu et al. 2016), with ``|y|`` counting the EOS token when there is one
and the log-probability summed over the same tokens. ``length_penalty=0``
ranks by plain log-probability.

Beam search keeps ``beam_size`` hypotheses per example as B * beam rows of the
caches. At each step every live beam proposes every token; a finished beam
proposes only the fill token, at no cost, so it keeps its length and score;
the ``beam_size`` best candidates by score survive and the caches are
reordered to follow their parents (:func:`zoo.reorder_cache`). With
``beam_size=1`` it is greedy search.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.layers import reorder_cache
from zoo.models.seq2seq import Seq2SeqTransformer

Array = jax.Array

__all__ = ["Decoded", "beam_search", "greedy_decode", "init_cache", "length_penalty_factor", "score_sequences"]


class Decoded(NamedTuple):
    """Decoder output: ``ids`` (B, L) or (B, beam, L), ``lengths`` and ``scores`` (B,) or (B, beam).

    Examples:
      >>> out = zoo.models.Decoded(ids=jnp.array([[8, 9, 2]]), lengths=jnp.array([3]),
      ...                          scores=jnp.array([-0.5]))
      >>> ids, lengths, scores = out                         # a NamedTuple
      >>> ids[0, :lengths[0]].tolist()
      [8, 9, 2]
    """

    ids: Array
    lengths: Array
    scores: Array


def length_penalty_factor(length: Array, alpha: float) -> Array:
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (float32); scores are log-probs divided by it."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def init_cache(model: Seq2SeqTransformer, batch: int, source_len: int, cache_len: int) -> Any:
    """A zero decoding cache for ``batch`` rows, sources of ``source_len`` and ``cache_len`` target positions."""
    def allocate(module, src, tgt):
        return module.decode(tgt, module.encode(src), decode=True)

    shapes = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((batch, source_len), jnp.int32), jnp.zeros((batch, cache_len), jnp.int32),
        method=allocate,
    ))["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


# -- input checks -------------------------------------------------------------------


def _check_source(fn: str, model, src, src_lengths):
    if not isinstance(model, Seq2SeqTransformer):
        raise ValueError(f"{fn}: model must be a Seq2SeqTransformer, got {type(model).__name__}")
    cfg = model.config
    src = np.asarray(src) if not hasattr(src, "dtype") else src
    if src.ndim == 1:
        src = src[None]
    if src.ndim != 2 or src.shape[1] < 1:
        raise ValueError(f"{fn}: src must have shape (B, S) with S >= 1, got {shape_str(src.shape)}")
    if not jnp.issubdtype(src.dtype, jnp.integer):
        raise ValueError(f"{fn}: src must hold integer token ids, got dtype {src.dtype}")
    b, s = src.shape
    if s > cfg.max_source_len:
        raise ValueError(f"{fn}: src has length {s}, longer than max_source_len={cfg.max_source_len}")
    check_range(f"{fn}: src", src, 0, cfg.vocab_size - 1, f"token ids of the vocabulary (size {cfg.vocab_size})")
    src_lengths = np.full((b,), s, np.int32) if src_lengths is None else np.asarray(src_lengths)
    if src_lengths.shape != (b,) or not np.issubdtype(src_lengths.dtype, np.integer):
        raise ValueError(
            f"{fn}: src_lengths must be ({b},) integers, got {src_lengths.dtype}{shape_str(src_lengths.shape)}"
        )
    check_range(f"{fn}: src_lengths", src_lengths, 0, s, "lengths of the source rows")
    return jnp.asarray(src, jnp.int32), jnp.asarray(src_lengths, jnp.int32)


def _check_max_len(fn: str, model, max_len):
    limit = model.config.max_target_len
    if max_len is None:
        return limit
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or not 1 <= max_len <= limit:
        raise ValueError(f"{fn}: max_len must be an int in [1, max_target_len={limit}], got {max_len!r}")
    return int(max_len)


def _check_alpha(fn: str, length_penalty):
    if not isinstance(length_penalty, (int, float, np.floating)) or not length_penalty >= 0:
        raise ValueError(f"{fn}: length_penalty must be a float >= 0, got {length_penalty!r}")
    return float(length_penalty)


# -- the compiled programs ----------------------------------------------------------


def _start(model, params, src, src_lengths, max_len):
    """Encode, allocate a cache of B rows and max_len positions, feed BOS: (log-probs (B, V) float32, cache)."""
    b, s = src.shape
    encoded = model.apply({"params": params}, src, src_lengths=src_lengths, method="encode")  # (B, S, D)
    cache = init_cache(model, b, s, max_len)
    bos = jnp.full((b, 1), model.config.bos, jnp.int32)
    logits, cache = _step(model, params, cache, bos, encoded, src_lengths)
    return jax.nn.log_softmax(logits), cache


def _step(model, params, cache, tokens, encoded=None, src_lengths=None):
    """Feed tokens (R, 1) at each row's next position: (logits (R, V), new cache)."""
    logits, mutated = model.apply(
        {"params": params, "cache": cache}, tokens, encoded, src_lengths=src_lengths,
        decode=True, mutable=["cache"], method="decode",
    )  # (R, 1, V)
    return logits[:, 0], mutated["cache"]


@functools.partial(jax.jit, static_argnames=("model", "max_len", "alpha"))
def _greedy(model, params, src, src_lengths, max_len, alpha):
    eos = model.config.eos
    b = src.shape[0]
    log_probs, cache = _start(model, params, src, src_lengths, max_len)  # (B, V)

    def pick(i, log_probs, ids, total, gen_len, finished):
        token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)  # (B,)
        token_lp = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]  # (B,)
        total = total + jnp.where(finished, 0.0, token_lp)
        gen_len = jnp.where(finished, gen_len, i + 1)
        token = jnp.where(finished, eos, token)
        return ids.at[:, i].set(token), total, gen_len, finished | (token == eos)

    ids = jnp.full((b, max_len), eos, jnp.int32)
    zeros = jnp.zeros((b,), jnp.int32)
    state = (jnp.int32(1), cache, *pick(0, log_probs, ids, jnp.zeros((b,)), zeros, zeros.astype(bool)))

    def cond(state):
        i, _, _, _, _, finished = state
        return (i < max_len) & ~jnp.all(finished)

    def body(state):
        i, cache, ids, total, gen_len, finished = state
        logits, cache = _step(model, params, cache, jax.lax.dynamic_slice_in_dim(ids, i - 1, 1, axis=1))  # (B, V)
        return (i + 1, cache, *pick(i, jax.nn.log_softmax(logits), ids, total, gen_len, finished))

    _, _, ids, total, gen_len, finished = jax.lax.while_loop(cond, body, state)
    scores = total / length_penalty_factor(gen_len, alpha)
    return Decoded(ids, gen_len - finished.astype(jnp.int32), scores)


@functools.partial(jax.jit, static_argnames=("model", "beam", "max_len", "alpha"))
def _beam(model, params, src, src_lengths, beam, max_len, alpha):
    eos = model.config.eos
    b = src.shape[0]
    log_probs, cache = _start(model, params, src, src_lengths, max_len)  # (B, V)
    vocab = log_probs.shape[-1]
    # the first token: the beam best tokens after BOS; then B * beam rows (row = example * beam + k)
    total, token = jax.lax.top_k(log_probs, beam)  # (B, K) each
    token = token.astype(jnp.int32)
    seqs = jnp.full((b, beam, max_len), eos, jnp.int32).at[:, :, 0].set(token)  # (B, K, L)
    gen_len = jnp.ones((b, beam), jnp.int32)
    cache = reorder_cache(cache, jnp.repeat(jnp.arange(b), beam))  # every cache leaf (B * K, ...)
    fill_only = jnp.where(jnp.arange(vocab) == eos, 0.0, -jnp.inf)  # (V,) a finished beam's only continuation

    def cond(state):
        i, _, _, _, _, finished = state
        return (i < max_len) & ~jnp.all(finished)

    def body(state):
        i, cache, seqs, total, gen_len, finished = state
        logits, cache = _step(model, params, cache, seqs[:, :, i - 1].reshape(b * beam, 1))  # (B * K, V)
        log_probs = jax.nn.log_softmax(logits).reshape(b, beam, vocab)  # (B, K, V)
        log_probs = jnp.where(finished[..., None], fill_only, log_probs)
        cand_total = (total[..., None] + log_probs).reshape(b, beam * vocab)  # (B, K * V)
        cand_len = jnp.where(finished, gen_len, i + 1)  # (B, K)
        cand_score = cand_total / jnp.repeat(length_penalty_factor(cand_len, alpha), vocab, axis=1)  # (B, K * V)
        _, best = jax.lax.top_k(cand_score, beam)  # (B, K) indices into K * V
        parent, token = best // vocab, (best % vocab).astype(jnp.int32)  # (B, K) each
        was_finished = jnp.take_along_axis(finished, parent, axis=1)
        seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1)  # (B, K, L) the parents' prefixes
        seqs = seqs.at[:, :, i].set(token)  # a finished parent's token is the fill, EOS
        total = jnp.take_along_axis(cand_total, best, axis=1)
        gen_len = jnp.take_along_axis(cand_len, parent, axis=1)
        rows = (jnp.arange(b)[:, None] * beam + parent).reshape(-1)  # (B * K,) parent rows of the caches
        return i + 1, reorder_cache(cache, rows), seqs, total, gen_len, was_finished | (token == eos)

    state = (jnp.int32(1), cache, seqs, total, gen_len, token == eos)
    _, _, seqs, total, gen_len, finished = jax.lax.while_loop(cond, body, state)
    scores = total / length_penalty_factor(gen_len, alpha)  # (B, K)
    order = jnp.argsort(-scores, axis=1, stable=True)  # best first
    take = lambda x: jnp.take_along_axis(x, order if x.ndim == 2 else order[..., None], axis=1)
    lengths = gen_len - finished.astype(jnp.int32)
    return Decoded(take(seqs), take(lengths), take(scores))


# -- public entry points ------------------------------------------------------------


def greedy_decode(
    model: Seq2SeqTransformer,
    params: Any,
    src: Array,
    src_lengths: Array | None = None,
    *,
    max_len: int | None = None,
    length_penalty: float = 0.6,
) -> Decoded:
    """Greedy translation: at each step the most likely token (ties: the lowest id).

    Args:
      model: the :class:`zoo.Seq2SeqTransformer`.
      params: its ``params`` collection (boxed or plain).
      src: (B, S) or (S,) source ids, right-padded to ``src_lengths`` (B,).
      max_len: most tokens to generate, EOS included (default and limit:
        ``max_target_len``).
      length_penalty: only for the returned scores (see the module docstring).

    Returns:
      :class:`Decoded` with ids (B, L), lengths (B,) and scores (B,).

    Examples:
      >>> config = zoo.Seq2SeqConfig(vocab_size=32, max_source_len=8, max_target_len=8, num_encoder_layers=1,
      ...                            num_decoder_layers=1, num_heads=2, features=16, bos_id=1, eos_id=2)
      >>> model = zoo.Seq2SeqTransformer(config)
      >>> src, lengths = jnp.array([[5, 6, 7, 2], [5, 2, 0, 0]]), jnp.array([4, 2])   # (B, S) right-padded
      >>> params = jax.eval_shape(model.init, jax.random.key(0), src, src)["params"]  # shapes only
      >>> out = jax.eval_shape(lambda p: zoo.greedy_decode(model, p, src, lengths, max_len=5), params)
      >>> out.ids.shape, out.lengths.shape, out.scores.shape   # greedy_decode(model, params, ...) computes
      ((2, 5), (2,), (2,))
    """
    src, src_lengths = _check_source("greedy_decode", model, src, src_lengths)
    max_len = _check_max_len("greedy_decode", model, max_len)
    alpha = _check_alpha("greedy_decode", length_penalty)
    return _greedy(model, nn.unbox(params), src, src_lengths, max_len, alpha)


def beam_search(
    model: Seq2SeqTransformer,
    params: Any,
    src: Array,
    src_lengths: Array | None = None,
    *,
    beam_size: int = 4,
    max_len: int | None = None,
    length_penalty: float = 0.6,
    return_all: bool = False,
) -> Decoded:
    """Beam-search translation (``beam_size`` hypotheses per example, ranked by length-normalised log-prob).

    Args are as :func:`greedy_decode`'s; ``length_penalty`` is GNMT's alpha
    (0.6 in GNMT and the Transformer paper). Returns :class:`Decoded` with
    the best hypothesis of each example, ids (B, L), lengths and scores
    (B,); with ``return_all=True`` every beam, best first: ids (B, beam, L),
    lengths and scores (B, beam).

    Examples:
      >>> config = zoo.Seq2SeqConfig(vocab_size=32, max_source_len=8, max_target_len=8, num_encoder_layers=1,
      ...                            num_decoder_layers=1, num_heads=2, features=16, bos_id=1, eos_id=2)
      >>> model = zoo.Seq2SeqTransformer(config)
      >>> src, lengths = jnp.array([[5, 6, 7, 2], [5, 2, 0, 0]]), jnp.array([4, 2])   # (B, S) right-padded
      >>> params = jax.eval_shape(model.init, jax.random.key(0), src, src)["params"]  # shapes only
      >>> best = jax.eval_shape(
      ...     lambda p: zoo.beam_search(model, p, src, lengths, beam_size=3, max_len=5), params)
      >>> best.ids.shape, best.scores.shape                # zoo.beam_search(model, params, ...) computes
      ((2, 5), (2,))
      >>> beams = jax.eval_shape(
      ...     lambda p: zoo.beam_search(model, p, src, lengths, beam_size=3, max_len=5, return_all=True),
      ...     params)
      >>> beams.ids.shape, beams.scores.shape              # every beam, best first
      ((2, 3, 5), (2, 3))
    """
    src, src_lengths = _check_source("beam_search", model, src, src_lengths)
    vocab = model.config.vocab_size
    if isinstance(beam_size, bool) or not isinstance(beam_size, (int, np.integer)) or not 1 <= beam_size <= vocab:
        raise ValueError(f"beam_search: beam_size must be an int in [1, vocab_size={vocab}], got {beam_size!r}")
    max_len = _check_max_len("beam_search", model, max_len)
    alpha = _check_alpha("beam_search", length_penalty)
    out = _beam(model, nn.unbox(params), src, src_lengths, int(beam_size), max_len, alpha)
    if not return_all:
        out = Decoded(out.ids[:, 0], out.lengths[:, 0], out.scores[:, 0])
    return out


def score_sequences(
    model: Seq2SeqTransformer,
    params: Any,
    src: Array,
    ids: Array,
    src_lengths: Array | None = None,
    *,
    length_penalty: float = 0.6,
) -> Array:
    """Scores (B,) of given outputs under the model, teacher-forced (the decoders' score, computed independently).

    ``ids`` (B, L) are in the decoders' format: the tokens after BOS, up to
    and including the first EOS (the rest is ignored); a row without EOS
    counts all L tokens.
    """
    src, src_lengths = _check_source("score_sequences", model, src, src_lengths)
    cfg = model.config
    ids = jnp.asarray(ids, jnp.int32)
    if ids.ndim != 2 or ids.shape[0] != src.shape[0]:
        raise ValueError(f"score_sequences: ids must have shape (B={src.shape[0]}, L), got {shape_str(ids.shape)}")
    _check_max_len("score_sequences", model, ids.shape[1])
    check_range("score_sequences: ids", ids, 0, cfg.vocab_size - 1, f"token ids (vocabulary size {cfg.vocab_size})")
    alpha = _check_alpha("score_sequences", length_penalty)
    return _score(model, nn.unbox(params), src, src_lengths, ids, alpha)


@functools.partial(jax.jit, static_argnames=("model", "alpha"))
def _score(model, params, src, src_lengths, ids, alpha):
    cfg = model.config
    is_eos = ids == cfg.eos
    gen_len = jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1) + 1, ids.shape[1])  # (B,) EOS included
    tgt_in = jnp.concatenate([jnp.full((ids.shape[0], 1), cfg.bos, jnp.int32), ids[:, :-1]], axis=1)  # (B, L)
    logits = model.apply({"params": params}, src, tgt_in, src_lengths=src_lengths, tgt_lengths=gen_len)
    token_lp = jnp.take_along_axis(jax.nn.log_softmax(logits), ids[..., None], axis=-1)[..., 0]  # (B, L)
    real = jnp.arange(ids.shape[1])[None, :] < gen_len[:, None]
    total = jnp.where(real, token_lp, 0.0).sum(axis=1)
    return total / length_penalty_factor(gen_len, alpha)
