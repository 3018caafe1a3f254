"""fastText (Bojanowski et al. 2017) in JAX: word2vec whose input vector of a word is the sum of its parts.

A word's input vector is its own row of ``input`` (V, D) plus one row of
``ngrams`` (bucket, D) per character n-gram of ``"<" + word + ">"``, of
lengths ``min_n``..``max_n`` (3..6), each n-gram hashed into one of
``bucket`` rows exactly as Facebook's fastText (and gensim) do:

* n-grams are cut from the UTF-8 bytes, starting only at the first byte of a
  character and spanning whole characters (:func:`char_ngrams`), in
  fastText's order (by start, then length), repeats kept;
* the hash is fastText's FNV-1a variant (:func:`ft_hash`): 32-bit, offset
  basis 2166136261, prime 16777619, but each byte is XORed in as
  ``uint32(int8(byte))``, sign-extended, so a byte >= 0x80 flips the top 24
  bits too and a non-ASCII n-gram hashes differently from textbook FNV-1a
  (:func:`fnv1a_32`, for contrast);
* the bucket is ``hash % bucket``.

Training is word2vec's step (:func:`zoo.models.word2vec.make_train_step`)
with these inputs, as gensim's ``fasttext_inner.pyx``: CBOW's input is the
mean of every row of every context word (word rows and n-gram rows alike) and
each row gets the whole error; skip-gram's input is the mean of the context
word's rows (fastText's, ``1 / (1 + n)``; gensim divides by ``n``) and each
row gets the whole error.

A word's vector (:meth:`FastText.word_vectors`) is the mean of its word row
and its n-gram rows; any other string gets the mean of its n-gram rows
(:meth:`FastText.vector`), so every non-empty string has a vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import config_error
from zoo.models.word2vec import Word2Vec, Word2VecConfig, make_train_step

__all__ = ["FastText", "FastTextConfig", "char_ngrams", "fnv1a_32", "ft_hash", "ngram_buckets", "subword_table"]

BOUNDARY_START, BOUNDARY_END = "<", ">"


@dataclasses.dataclass(frozen=True)
class FastTextConfig(Word2VecConfig):
    """fastText's settings: word2vec's (gensim's defaults) and the n-grams (gensim's defaults too)."""

    min_n: int = 3
    max_n: int = 6
    bucket: int = 2_000_000  # rows of the n-gram table

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if not isinstance(self.min_n, int) or self.min_n < 1:
            raise config_error(name, "min_n", self.min_n, "an int >= 1")
        if not isinstance(self.max_n, int) or self.max_n < self.min_n:
            raise config_error(name, "max_n", self.max_n, f"an int >= min_n={self.min_n}")
        if not isinstance(self.bucket, int) or self.bucket < 1:
            raise config_error(name, "bucket", self.bucket, "an int >= 1 (the rows of the n-gram table)")


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[bytes]:
    """The character n-grams of ``<word>`` as UTF-8 bytes, in fastText's order (``computeSubwords``).

    >>> char_ngrams("cat", 3, 4)
    [b'<ca', b'<cat', b'cat', b'cat>', b'at>']
    """
    data = (BOUNDARY_START + word + BOUNDARY_END).encode("utf-8", errors="surrogatepass")
    out = []
    for i in range(len(data)):
        if data[i] & 0xC0 == 0x80:  # a continuation byte: n-grams start at a character
            continue
        j, n = i, 1
        while j < len(data) and n <= max_n:
            j += 1
            while j < len(data) and data[j] & 0xC0 == 0x80:
                j += 1
            if n >= min_n and not (n == 1 and (i == 0 or j == len(data))):
                out.append(data[i:j])
            n += 1
    return out


def ft_hash(data: bytes) -> int:
    """fastText's 32-bit FNV-1a variant: each byte XORed in sign-extended from int8 (see the module docstring)."""
    h = 2166136261
    for byte in data:
        h = ((h ^ (byte | 0xFFFFFF00 if byte & 0x80 else byte)) * 16777619) & 0xFFFFFFFF
    return h


def fnv1a_32(data: bytes) -> int:
    """Textbook 32-bit FNV-1a (the byte XORed in as is): equal to :func:`ft_hash` on ASCII only."""
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    """The n-gram rows of ``word``: ``ft_hash(g) % bucket`` for each n-gram, in order (repeats kept)."""
    return [ft_hash(g) % bucket for g in char_ngrams(word, min_n, max_n)]


def subword_table(words: Sequence[str], min_n: int, max_n: int, bucket: int, first: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram rows of every vocabulary word: ``(rows (V, M) int32, counts (V,) int32)``.

    Row ``first + i`` is ``words[i]``'s list, padded with ``bucket`` (an index
    past the table, read as 0 and dropped by the scatter); the ``first``
    special ids have none. M is the longest list.
    """
    lists = [[] for _ in range(first)] + [ngram_buckets(w, min_n, max_n, bucket) for w in words]
    counts = np.array([len(x) for x in lists], np.int32)
    table = np.full((len(lists), max(1, int(counts.max(initial=0)))), bucket, np.int32)
    for i, x in enumerate(lists):
        table[i, : len(x)] = x
    return table, counts


def _slots(static: dict[str, jax.Array], ids: jax.Array, capacity: int):
    """The n-gram rows of the positions ``ids`` (P,) as one flat list of ``capacity`` slots (CSR, not padded
    to the longest word: a batch's words have far fewer n-grams in all than P times the longest list).

    Returns ``(position (C,), row (C,))``: slot s holds n-gram row ``row[s]`` of position ``position[s]``;
    the slots past the batch's total hold row ``bucket`` (past the table: read as 0, dropped on update).
    """
    count = jnp.where(ids >= 0, static["subword_count"][jnp.maximum(ids, 0)], 0)  # (P,)
    end = jnp.cumsum(count)  # (P,)
    s = jnp.arange(capacity)
    position = jnp.minimum(jnp.searchsorted(end, s, side="right"), ids.shape[0] - 1)  # (C,)
    k = s - (end[position] - count[position])
    rows = static["subwords"][jnp.maximum(ids[position], 0), jnp.minimum(k, static["subwords"].shape[1] - 1)]
    return position, jnp.where(s < end[-1], rows, static["bucket"])


def _ngram_rows(capacity: int):
    def rows(tables: dict[str, jax.Array], static: dict[str, jax.Array], ids: jax.Array):
        """fastText's input side for the positions ``ids`` (P,): each word's row plus its n-gram rows, summed,
        and how many rows that is: ``(x (P, D), count (P,))``."""
        w = jnp.maximum(ids, 0)
        position, grams = _slots(static, ids, capacity)
        summed = jax.ops.segment_sum(tables["ngrams"].at[grams].get(mode="fill", fill_value=0), position,
                                     num_segments=ids.shape[0])  # (P, D)
        return tables["input"][w] + summed, 1 + static["subword_count"][w]

    return rows


def _add_ngram_rows(capacity: int):
    def add(tables: dict[str, jax.Array], static: dict[str, jax.Array], ids: jax.Array, dx: jax.Array):
        """Add ``dx`` (P, D) to the word row and every n-gram row of each position's word (padding dropped)."""
        vocab = tables["input"].shape[0]
        position, grams = _slots(static, ids, capacity)
        return {**tables, "input": tables["input"].at[jnp.where(ids >= 0, ids, vocab)].add(dx, mode="drop"),
                "ngrams": tables["ngrams"].at[grams].add(dx[position], mode="drop")}

    return add


class FastText(Word2Vec):
    """fastText's tables (``input``, ``ngrams``, ``output``) and functions for one config and vocabulary.

    ``words`` are the tokenizer's words (ids from 2), whose n-gram lists the
    step reads (:meth:`static_tables`).
    """

    family = "fasttext"

    def __init__(self, config: FastTextConfig, words: Sequence[str]):
        super().__init__(config)
        if len(words) + 2 != config.vocab_size:
            raise ValueError(f"FastText: {len(words)} words for vocab_size={config.vocab_size}; expected "
                             "vocab_size - 2 words (the tokenizer's, after <unk> and <|endoftext|>)")
        self.words = list(words)
        self._subwords, self._subword_count = subword_table(self.words, config.min_n, config.max_n, config.bucket)

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        """gensim's initialisation: word and n-gram rows uniform in [-1/D, 1/D), output rows 0."""
        c = self.config
        k1, k2 = jax.random.split(key)
        d = c.vector_size
        return {"input": jax.random.uniform(k1, (c.vocab_size, d), jnp.float32, -1 / d, 1 / d),
                "ngrams": jax.random.uniform(k2, (c.bucket, d), jnp.float32, -1 / d, 1 / d),
                "output": jnp.zeros((c.vocab_size, d), jnp.float32)}

    def static_tables(self) -> dict[str, np.ndarray]:
        return {"subwords": self._subwords, "subword_count": self._subword_count,
                "bucket": np.int32(self.config.bucket)}

    def rows_per_word(self) -> np.ndarray:
        """(V,) how many n-gram rows each word has: the trainer sizes each batch's n-gram slots from it."""
        return self._subword_count

    def train_step(self, batch_size: int, steps_per_call: int, capacity: int | None = None):
        """The step of :func:`~zoo.models.word2vec.make_train_step` with n-grams; ``capacity``: the most n-gram
        rows any batch's ``batch_size + 2 * window`` positions hold (default: all of them the longest)."""
        capacity = capacity or (batch_size + 2 * self.config.window) * self._subwords.shape[1]
        return make_train_step(self.config, batch_size, steps_per_call, rows=_ngram_rows(capacity),
                               add=_add_ngram_rows(capacity))

    def word_vectors(self, tables: dict[str, Any]) -> np.ndarray:
        """The (V, D) vectors of the vocabulary: the mean of each word's row and its n-gram rows."""
        ngrams = np.asarray(tables["ngrams"])
        out = np.asarray(tables["input"], np.float32).copy()
        for i in range(out.shape[0]):
            n = self._subword_count[i]
            if n:
                out[i] = (out[i] + ngrams[self._subwords[i, :n]].sum(0)) / (1 + n)
        return out

    def vector(self, tables: dict[str, Any], text: str) -> np.ndarray:
        """The vector of any string not in the vocabulary: the mean of its n-gram rows (D,)."""
        rows = ngram_buckets(text, self.config.min_n, self.config.max_n, self.config.bucket)
        if not rows:
            raise ValueError(f"{text!r} has no character n-grams of length {self.config.min_n}..{self.config.max_n}")
        return np.asarray(tables["ngrams"])[rows].mean(0)
