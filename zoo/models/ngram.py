"""Count-based language models: interpolated Kneser-Ney n-grams, and what sparsity costs them.

The first rung of the ladder. An n-gram model predicts the next token from
the previous ``order - 1`` by counting: P(w | h) = c(h, w) / c(h). Two
problems follow, and this module measures both:

* **sparsity**: most long contexts were never seen in training, so their
  counts are zero. Kneser-Ney smoothing (Kneser and Ney 1995; the
  interpolated form of Chen and Goodman 1998) subtracts a discount D from
  every seen count and hands the freed mass to the next shorter context::

      P_k(w | h) = max(c_k(h, w) - D_k, 0) / C_k(h)  +  D_k T_k(h) / C_k(h) * P_{k-1}(w | h')

  where h' drops h's oldest token, C_k(h) = sum_w c_k(h, w) and T_k(h) is
  the number of distinct w seen after h. The highest order counts
  occurrences; every lower order counts *continuations*: c_k(h', w) is the
  number of distinct tokens seen before (h', w), so a token that is
  frequent only inside one phrase ("Francisco" after "San") gets little
  weight in new contexts. An unseen context (C_k(h) = 0) passes straight to
  the shorter one; below the unigram is the uniform distribution over the
  vocabulary, so every token, even one never seen, has some probability
  and each level sums to one. The discount per order is Ney's estimate
  D = n1 / (n1 + 2 n2) from the counts of counts.
* **out-of-vocabulary words**: a word-level model has no entry at all for a
  word missing from its training text. :func:`unseen_rates` reports the
  OOV rate and the share of validation n-grams never seen in training as
  n grows: the numbers behind "neural models with embeddings fix that".

Plain Python and NumPy (no JAX): counts live in dictionaries; the stored
n-gram counts are this model's "parameters".
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["KneserNeyLM", "NGramStats", "unseen_rates"]


@dataclasses.dataclass
class _Level:
    """One order's counts: context -> {token: count}, each context's total and number of distinct tokens."""

    counts: dict[tuple[int, ...], dict[int, float]]
    totals: dict[tuple[int, ...], float]
    types: dict[tuple[int, ...], int]
    discount: float


def _ney_discount(counts: Iterable[float]) -> float:
    """D = n1 / (n1 + 2 n2) from how many n-grams occur once and twice; 0.75 when undefined."""
    n1 = n2 = 0
    for c in counts:
        n1 += c == 1
        n2 += c == 2
    if n1 == 0 or n2 == 0:
        return 0.75
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def _check_ids(name: str, ids: Sequence[int], vocab_size: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{name}: token id {bad} is out of range [0, vocab_size={vocab_size})")
    return arr.astype(np.int64, copy=False)


class KneserNeyLM:
    """Interpolated Kneser-Ney language model of a given ``order`` over ``vocab_size`` token ids.

        lm = KneserNeyLM(order=5, vocab_size=65).fit(train_ids)
        lm.bits_per_token(val_ids)      # cross-entropy in bits (bits per character at char level)
        lm.distribution(context)        # (vocab_size,) probabilities of the next token

    Examples:
      >>> train = [0, 1, 2, 0, 1, 2, 0, 1, 3] * 4
      >>> lm = zoo.KneserNeyLM(order=3, vocab_size=4).fit(train)
      >>> p = lm.distribution([0, 1])                      # next-token probabilities after "0 1"
      >>> p.shape, round(float(p.sum()), 6), int(p.argmax())
      ((4,), 1.0, 2)
      >>> round(lm.bits_per_token([0, 1, 2, 0, 1, 2]), 3)
      0.364
    """

    def __init__(self, order: int, vocab_size: int, discount: float | None = None):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"KneserNeyLM: order must be an integer >= 1, got {order!r}")
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"KneserNeyLM: vocab_size must be an integer >= 1, got {vocab_size!r}")
        if discount is not None and not 0 < discount < 1:
            raise ValueError(f"KneserNeyLM: discount must be in (0, 1) or None (estimated), got {discount!r}")
        self.order, self.vocab_size, self.fixed_discount = order, vocab_size, discount
        self.levels: list[_Level] = []  # levels[k - 1]: n-grams of length k

    # ------------------------------------------------------------------ fitting

    def fit(self, ids: Sequence[int]) -> KneserNeyLM:
        """Count the n-grams of ``ids`` (one sequence; returns self)."""
        arr = _check_ids("ids", ids, self.vocab_size)
        if arr.size < self.order:
            raise ValueError(f"KneserNeyLM.fit: ids has {arr.size} tokens, fewer than the order {self.order}")
        seq = arr.tolist()
        # the highest order counts occurrences; each lower order counts distinct left extensions
        grams: list[collections.Counter] = [collections.Counter() for _ in range(self.order)]
        grams[-1] = collections.Counter(zip(*(seq[i:] for i in range(self.order))))
        for k in range(self.order - 1, 0, -1):  # n-grams of length k from the distinct ones of length k + 1
            grams[k - 1] = collections.Counter(g[1:] for g in grams[k])
        self.levels = []
        for k, counter in enumerate(grams, start=1):
            counts: dict[tuple[int, ...], dict[int, float]] = collections.defaultdict(dict)
            for g, c in counter.items():
                counts[g[:-1]][g[-1]] = float(c)
            totals = {h: sum(ws.values()) for h, ws in counts.items()}
            types = {h: len(ws) for h, ws in counts.items()}
            d = self.fixed_discount or _ney_discount(counter.values())
            self.levels.append(_Level(dict(counts), totals, types, d))
        return self

    @property
    def num_counts(self) -> int:
        """Stored n-gram counts over all orders: the model's size ("parameters")."""
        return sum(len(ws) for level in self.levels for ws in level.counts.values())

    def _fitted(self) -> None:
        if not self.levels:
            raise ValueError("KneserNeyLM: call fit(ids) before asking for probabilities")

    # ------------------------------------------------------------------ probabilities

    def prob(self, context: Sequence[int], token: int) -> float:
        """P(token | the last ``order - 1`` tokens of context)."""
        self._fitted()
        ctx = tuple(_check_ids("context", context, self.vocab_size).tolist())
        _check_ids("token", [token], self.vocab_size)
        return self._prob(ctx, int(token))

    def _prob(self, ctx: tuple[int, ...], token: int) -> float:
        p = 1.0 / self.vocab_size
        longest = min(len(ctx), self.order - 1)
        for k in range(1, longest + 2):  # n-gram length k: context of k - 1 tokens
            level = self.levels[k - 1]
            h = ctx[len(ctx) - (k - 1):] if k > 1 else ()
            total = level.totals.get(h)
            if not total:
                continue  # unseen context: the shorter one's estimate stands
            c = level.counts[h].get(token, 0.0)
            d = level.discount
            p = max(c - d, 0.0) / total + d * level.types[h] / total * p
        return p

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(. | context) over the whole vocabulary, float64 (vocab_size,); sums to one."""
        self._fitted()
        ctx = tuple(_check_ids("context", context, self.vocab_size).tolist())
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        longest = min(len(ctx), self.order - 1)
        for k in range(1, longest + 2):
            level = self.levels[k - 1]
            h = ctx[len(ctx) - (k - 1):] if k > 1 else ()
            total = level.totals.get(h)
            if not total:
                continue
            seen = np.zeros(self.vocab_size)
            ws = level.counts[h]
            seen[list(ws)] = np.maximum(np.fromiter(ws.values(), float, len(ws)) - level.discount, 0.0)
            p = seen / total + level.discount * level.types[h] / total * p
        return p

    def log2_probs(self, ids: Sequence[int]) -> np.ndarray:
        """log2 P(ids[i] | ids[:i]) for i >= 1 (the first token has no context and is not scored)."""
        self._fitted()
        seq = _check_ids("ids", ids, self.vocab_size).tolist()
        n = self.order - 1
        return np.array([math.log2(self._prob(tuple(seq[max(0, i - n):i]), seq[i])) for i in range(1, len(seq))])

    def bits_per_token(self, ids: Sequence[int]) -> float:
        """Cross-entropy in bits per token over ``ids`` (bits per character for a character model)."""
        lp = self.log2_probs(ids)
        if lp.size == 0:
            raise ValueError("bits_per_token: ids needs at least two tokens")
        return float(-lp.mean())

    def perplexity(self, ids: Sequence[int]) -> float:
        return float(2.0 ** self.bits_per_token(ids))


# ---------------------------------------------------------------------------- sparsity, measured


@dataclasses.dataclass(frozen=True)
class NGramStats:
    """Validation tokens unknown to the training vocabulary, and unseen n-grams by order."""

    vocab_size: int  # distinct training tokens
    oov_rate: float  # share of validation tokens not in the training vocabulary
    unseen: dict[int, float]  # n -> share of validation n-grams (occurrences) never seen in training


def unseen_rates(train: Sequence, val: Sequence, max_order: int = 5) -> NGramStats:
    """How sparse counting is: the OOV rate and, for n = 1..max_order, the share of unseen n-grams.

    ``train`` and ``val`` are sequences of hashable tokens (words or ids).

    Examples:
      >>> stats = zoo.unseen_rates("to be or not to be".split(), "to be or to die".split(), max_order=2)
      >>> stats.vocab_size, stats.oov_rate, stats.unseen
      (4, 0.2, {1: 0.2, 2: 0.5})
    """
    if max_order < 1:
        raise ValueError(f"unseen_rates: max_order must be >= 1, got {max_order}")
    if len(val) < max_order:
        raise ValueError(f"unseen_rates: val has {len(val)} tokens, fewer than max_order={max_order}")
    train, val = list(train), list(val)
    vocab = set(train)
    oov = sum(t not in vocab for t in val) / len(val)
    unseen = {}
    for n in range(1, max_order + 1):
        seen = set(zip(*(train[i:] for i in range(n))))
        grams = list(zip(*(val[i:] for i in range(n))))
        unseen[n] = sum(g not in seen for g in grams) / len(grams)
    return NGramStats(len(vocab), oov, unseen)
