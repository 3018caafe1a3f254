"""BERT's masked-language-model data: dynamic masking and pretraining batches.

:func:`mask_tokens` is the masking of BERT's ``create_pretraining_data.py``,
applied afresh to every batch (dynamic masking, as RoBERTa), in numpy:

* the *candidates* of a row are its real tokens (position < ``seq_lengths``)
  that are not special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ...);
* ``num = min(P, max(1, round(mask_prob * n_candidates)))`` of them are chosen
  uniformly at random (none when a row has no candidates), where ``P`` is
  :func:`max_predictions` of the sequence length unless given;
* each chosen token becomes ``[MASK]`` with probability 0.8, a random
  non-special token with probability 0.1, and stays itself with probability
  0.1; the model must predict the original token at every chosen position.

The count is exact per row (BERT's rule), not a Bernoulli draw per token (Hugging
Face's ``DataCollatorForLanguageModeling``), so a short row still gets one
prediction. Positions are sorted within a row and padded with 0 to ``P``::

    ids            (B, T) int32    the masked copy of the input
    mlm_positions  (B, P) int32    chosen positions, ascending, then 0
    mlm_labels     (B, P) int32    the original ids there, then 0
    mlm_weights    (B, P) float32  1 for a real prediction, 0 for padding

:func:`mlm_batch` cuts pretraining rows out of a token stream (documents
joined by ``[SEP]``, as :func:`zoo.data.tokenize_corpus` writes them with a
WordPiece tokenizer): ``[CLS] window [SEP]``, every row packed to the full
length ``T``, one segment, then :func:`mask_tokens`. It is a pure function of
``(seed, step)``: a resumed run sees the same batches, and each step draws new
masks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np

__all__ = ["mask_tokens", "max_predictions", "mlm_batch", "mlm_special_ids"]

MASK_PROB = 0.15


def max_predictions(seq_len: int, mask_prob: float = MASK_PROB) -> int:
    """Predictions per row that a batch makes room for: ``max(1, ceil(mask_prob * seq_len))``.

    At most ``round(mask_prob * n) <= ceil(mask_prob * seq_len)`` tokens of a
    row are chosen, so nothing is ever cut (BERT's ``max_predictions_per_seq``
    is 20 for T = 128, i.e. this value). ``zoo.models.bert`` sizes its example
    batch with this same function.

    Examples:
      >>> zoo.data.max_predictions(128), zoo.data.max_predictions(10), zoo.data.max_predictions(2)
      (20, 2, 1)
    """
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"max_predictions: mask_prob={mask_prob!r}, expected a fraction in (0, 1]")
    return max(1, math.ceil(round(mask_prob * seq_len, 6)))  # round: 0.07 * 100 is 7.000000000000001


_max_predictions = max_predictions  # mask_tokens's keyword argument shadows the function


def mlm_special_ids(tokenizer) -> dict:
    """The keyword arguments of :func:`mlm_batch` that come from a WordPiece tokenizer.

    Examples:
      >>> tok = zoo.data.make_tokenizer("wordpiece", ["the cat sat on the mat"] * 20, vocab_size=60)
      >>> zoo.data.mlm_special_ids(tok)
      {'cls_id': 2, 'sep_id': 3, 'mask_id': 4, 'special_ids': (0, 1, 2, 3, 4), 'vocab_size': 26}
    """
    return {
        "cls_id": tokenizer.cls_id,
        "sep_id": tokenizer.sep_id,
        "mask_id": tokenizer.mask_id,
        "special_ids": tuple(tokenizer.special_ids),
        "vocab_size": tokenizer.vocab_size,
    }


@functools.lru_cache(maxsize=16)
def _ordinary_ids(vocab_size: int, special_ids: tuple[int, ...]) -> np.ndarray:
    """The ids in ``[0, vocab_size)`` that are not special, ascending: what a random replacement draws from."""
    ids = np.setdiff1d(np.arange(vocab_size, dtype=np.int32), np.asarray(special_ids, np.int32))
    if ids.size == 0:
        raise ValueError(f"mask_tokens: every id in [0, {vocab_size}) is special; nothing to draw a random token from")
    ids.flags.writeable = False
    return ids


def mask_tokens(
    ids: np.ndarray,
    *,
    rng: np.random.Generator,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    seq_lengths: np.ndarray | None = None,
    mask_prob: float = MASK_PROB,
    max_predictions: int | None = None,
) -> dict[str, np.ndarray]:
    """BERT's 80/10/10 masking of ``ids`` (B, T) (see the module docstring); ``ids`` is not modified.

    ``seq_lengths`` (B,): the real tokens of each row (default: all T);
    ``max_predictions``: P, default ``max_predictions(T, mask_prob)``.

    Examples:
      >>> rng = np.random.default_rng(0)
      >>> ids = np.full((2, 20), 7)                          # (B, T)
      >>> out = zoo.data.mask_tokens(ids, rng=rng, vocab_size=30, mask_id=4, special_ids=[0, 1, 2, 3, 4])
      >>> {name: a.shape for name, a in out.items()}
      {'ids': (2, 20), 'mlm_positions': (2, 3), 'mlm_labels': (2, 3), 'mlm_weights': (2, 3)}
      >>> int(out["mlm_weights"].sum(axis=1).max()) <= zoo.data.max_predictions(20)
      True
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"mask_tokens: ids must be a (B, T) integer array, got shape {ids.shape} dtype {ids.dtype}")
    if not 0 < mask_prob <= 1:
        raise ValueError(f"mask_tokens: mask_prob={mask_prob!r}; expected a number in (0, 1]")
    B, T = ids.shape
    P = _max_predictions(T, mask_prob) if max_predictions is None else int(max_predictions)
    if P < 1:
        raise ValueError(f"mask_tokens: max_predictions={max_predictions!r}; expected an int >= 1")
    special_ids = tuple(sorted({int(i) for i in special_ids}))
    lengths = np.full((B,), T) if seq_lengths is None else np.asarray(seq_lengths).reshape(B)

    # Candidates: real tokens that are not special.
    real = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
    candidate = real & ~np.isin(ids, special_ids)  # (B, T)
    n_candidates = candidate.sum(axis=1)  # (B,)
    num = np.minimum(P, np.maximum(1, np.rint(mask_prob * n_candidates).astype(np.int64)))
    num = np.where(n_candidates > 0, num, 0)  # (B,), <= n_candidates since round(p n) <= n

    # A uniform subset of `num` candidates per row: the smallest random keys;
    # non-candidates get key 2 > any uniform draw, so they sort last.
    keys = np.where(candidate, rng.random((B, T)), 2.0)  # (B, T)
    K = min(P, T)
    order = np.argsort(keys, axis=1)[:, :K]  # (B, K) candidate positions in random order
    chosen = np.arange(K)[None, :] < num[:, None]  # (B, K)
    positions = np.sort(np.where(chosen, order, T), axis=1)  # (B, K) chosen positions ascending, then T
    weights = positions < T  # (B, K), True exactly num times, first
    positions = np.where(weights, positions, 0)
    if K < P:  # more prediction slots than positions: pad
        positions = np.pad(positions, ((0, 0), (0, P - K)))
        weights = np.pad(weights, ((0, 0), (0, P - K)))

    labels = np.where(weights, np.take_along_axis(ids, positions, axis=1), 0)  # (B, P) original ids

    # 80% [MASK], 10% a random ordinary token, 10% unchanged.
    u = rng.random((B, P))
    ordinary = _ordinary_ids(int(vocab_size), special_ids)
    random_tokens = ordinary[rng.integers(0, len(ordinary), size=(B, P))]
    replacement = np.where(u < 0.8, mask_id, np.where(u < 0.9, random_tokens, labels))  # (B, P)

    masked = ids.astype(np.int32, copy=True)
    rows = np.broadcast_to(np.arange(B)[:, None], (B, P))
    masked[rows[weights], positions[weights]] = replacement[weights]
    return {
        "ids": masked,
        "mlm_positions": positions.astype(np.int32),
        "mlm_labels": labels.astype(np.int32),
        "mlm_weights": weights.astype(np.float32),
    }


def mlm_batch(
    tokens: np.ndarray,
    batch_size: int,
    block_size: int,
    *,
    seed: int,
    step: int,
    cls_id: int,
    sep_id: int,
    mask_id: int,
    special_ids: Iterable[int],
    vocab_size: int,
    mask_prob: float = MASK_PROB,
    split: str = "train",
) -> dict[str, np.ndarray]:
    """A masked-LM batch of ``batch_size`` rows of ``block_size`` tokens from a 1-D token stream.

    Row b is ``[CLS] tokens[i_b : i_b + T - 2] [SEP]`` for a start ``i_b``
    drawn, with the masks, from ``np.random.default_rng([seed, step])``.
    Returns ``ids``, ``segment_ids`` (zeros), ``seq_lengths`` (all T), all
    (B, T) / (B,) int32, and the ``mlm_*`` arrays of :func:`mask_tokens`
    (P = ``max_predictions(T, mask_prob)``). ``split`` only names the
    stream in error messages. ``mlm_special_ids(tokenizer)`` gives the id
    arguments.

    Examples:
      >>> texts = ["the cat sat on the mat", "the dog sat on the log"] * 20
      >>> tok = zoo.data.make_tokenizer("wordpiece", texts, vocab_size=100)
      >>> stream = np.concatenate([tok.encode(t) for t in texts])
      >>> batch = zoo.data.mlm_batch(stream, 2, 8, seed=0, step=0, **zoo.data.mlm_special_ids(tok))
      >>> batch["ids"].shape, batch["mlm_positions"].shape     # (B, T), (B, P)
      ((2, 8), (2, 2))
      >>> bool((batch["ids"][:, 0] == tok.cls_id).all())
      True
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"mlm_batch: tokens must be 1-D, got shape {tokens.shape}")
    for name, value, low in [("batch_size", batch_size, 1), ("block_size", block_size, 3), ("seed", seed, 0),
                             ("step", step, 0)]:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"mlm_batch: {name}={value!r}; expected an int >= {low}")
    window = block_size - 2
    n = len(tokens)
    if n < window:
        raise ValueError(
            f"the {split} split has {n} tokens, too short for block_size={block_size}: a row holds "
            f"block_size - 2 = {window} tokens of text between [CLS] and [SEP]. Use a larger corpus or a "
            "smaller block_size."
        )
    rng = np.random.default_rng([int(seed), int(step)])
    starts = rng.integers(0, n - window + 1, size=batch_size)  # (B,), last valid start n - window
    ids = np.empty((batch_size, block_size), np.int32)
    ids[:, 0] = cls_id
    ids[:, 1:-1] = tokens[starts[:, None] + np.arange(window)]
    ids[:, -1] = sep_id
    seq_lengths = np.full((batch_size,), block_size, np.int32)
    masked = mask_tokens(ids, rng=rng, vocab_size=vocab_size, mask_id=mask_id, special_ids=special_ids,
                         seq_lengths=seq_lengths, mask_prob=mask_prob)
    return {
        "ids": masked["ids"],
        "segment_ids": np.zeros((batch_size, block_size), np.int32),
        "seq_lengths": seq_lengths,
        "mlm_positions": masked["mlm_positions"],
        "mlm_labels": masked["mlm_labels"],
        "mlm_weights": masked["mlm_weights"],
    }
