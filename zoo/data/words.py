"""A word tokenizer: lower-cased words, punctuation dropped, a closed vocabulary with an unknown token.

The rules (:func:`split_words`), applied in this order:

1. lower-case with ``str.lower`` (Unicode-aware: ``"ÉTÉ" -> "été"``);
2. a word is a run of letters and digits (Unicode ``\\w`` without the
   underscore), which may hold apostrophes between such runs: ``"don't"``,
   ``"o'clock"`` and ``"rock'n'roll"`` are one word each (``'`` and ``’``,
   the latter written as ``'``);
3. everything else separates words and is dropped: whitespace, punctuation,
   hyphens (``"well-known"`` is two words), symbols and underscores. Numbers
   are words (``"1913"``).

Sentences (:func:`split_sentences`): the training text of the embedding models
is cut into sentences at blank lines (a paragraph is one sentence), and a
paragraph longer than :data:`MAX_SENTENCE_WORDS` words (gensim's
``MAX_WORDS_IN_BATCH``, 10,000) into pieces of that length, as gensim does
with its input. A context window never crosses a sentence boundary.

The vocabulary (:meth:`WordTokenizer.train`) is closed: the words seen at
least ``min_count`` times (gensim's default 5), the most frequent first (ties
alphabetically), cut to ``max_size`` words when that is set. Ids 0 and 1 are
``<unk>`` and ``<|endoftext|>``; the words follow from id 2
(:data:`FIRST_WORD`). Every other word encodes to ``<unk>``. The word counts
are kept with the vocabulary (saved in ``tokenizer.json``): word2vec's
sub-sampling and noise distribution are computed from them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .tokenizers import EOT, UNK, Tokenizer

__all__ = ["FIRST_WORD", "MAX_SENTENCE_WORDS", "WordTokenizer", "prepare_words", "split_sentences", "split_words"]

FIRST_WORD = 2  # ids 0 and 1 are <unk> and <|endoftext|>
MAX_SENTENCE_WORDS = 10_000  # gensim's MAX_WORDS_IN_BATCH: longer sentences are cut
DEFAULT_MIN_COUNT = 5
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
_FORMAT_VERSION = 1


def split_words(text: str) -> list[str]:
    """The words of ``text`` by the rules of the module docstring: ``"Don't stop-me, 1913!"`` ->
    ``["don't", "stop", "me", "1913"]``."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def split_sentences(texts: Iterable[str]) -> list[list[str]]:
    """The sentences of ``texts`` as lists of words: paragraphs (split at blank lines), cut to at most
    :data:`MAX_SENTENCE_WORDS` words; sentences without words are left out."""
    out = []
    for text in texts:
        for paragraph in _PARAGRAPH.split(text):
            words = split_words(paragraph)
            out.extend(words[i : i + MAX_SENTENCE_WORDS] for i in range(0, len(words), MAX_SENTENCE_WORDS))
    return out


class WordTokenizer(Tokenizer):
    """Lower-cased words with a closed vocabulary: ``<unk>`` = 0, ``<|endoftext|>`` = 1, words from 2.

    ``words`` are the vocabulary (most frequent first) and ``counts`` their
    counts in the training text.
    """

    kind = "word"

    def __init__(self, words: Sequence[str], counts: Sequence[int], *, min_count: int = 1,
                 max_size: int | None = None):
        words, counts = list(words), [int(c) for c in counts]
        if len(words) != len(counts):
            raise ValueError(f"WordTokenizer: {len(words)} words but {len(counts)} counts; expected one count a word")
        if len(set(words)) != len(words):
            raise ValueError("WordTokenizer: the words must be unique")
        bad = next((w for w in words if split_words(w) != [w]), None)
        if bad is not None:
            raise ValueError(f"WordTokenizer: {bad!r} is not one word by the tokenizer's rules (lower-case, letters, "
                             "digits and inner apostrophes)")
        self.words: list[str] = words
        self.counts = np.asarray(counts, np.int64)  # (len(words),)
        self.min_count, self.max_size = int(min_count), max_size
        self._index = {w: i + FIRST_WORD for i, w in enumerate(words)}

    @classmethod
    def train(cls, texts: Iterable[str], *, min_count: int = DEFAULT_MIN_COUNT,
              max_size: int | None = None) -> WordTokenizer:
        """The words of ``texts`` seen at least ``min_count`` times, the most frequent first, at most ``max_size``.

        Raises ``ValueError`` when no word is left (an empty text, or a
        ``min_count`` above every count: the message gives the highest count).
        """
        if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
            raise ValueError(f"WordTokenizer.train: min_count={min_count!r}; expected an int >= 1")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise ValueError(f"WordTokenizer.train: max_size={max_size!r}; expected None or an int >= 1")
        counter: Counter[str] = Counter()
        for text in texts:
            counter.update(split_words(text))
        return cls.from_counts(counter, min_count=min_count, max_size=max_size)

    @classmethod
    def from_counts(cls, counter: dict[str, int], *, min_count: int = DEFAULT_MIN_COUNT,
                    max_size: int | None = None) -> WordTokenizer:
        """The vocabulary of a ``{word: count}`` table (see :meth:`train`)."""
        if not counter:
            raise ValueError("WordTokenizer.train: the text has no words (letters or digits); expected some text")
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if not kept:
            top = max(counter.values())
            raise ValueError(f"min_count={min_count} leaves no word in the vocabulary: the most frequent of the "
                             f"{len(counter):,} distinct words occurs {top} time(s); expected min_count <= {top}")
        kept = kept[:max_size] if max_size is not None else kept
        return cls([w for w, _ in kept], [c for _, c in kept], min_count=min_count, max_size=max_size)

    @property
    def vocab_size(self) -> int:
        return len(self.words) + FIRST_WORD

    @property
    def unk_id(self) -> int:
        return 0

    @property
    def eot_id(self) -> int:
        return 1

    def id_of(self, word: str) -> int:
        """The id of ``word`` as written (no lower-casing), ``unk_id`` when it is not in the vocabulary."""
        return self._index.get(word, 0)

    def encode_words(self, words: Iterable[str]) -> np.ndarray:
        """Words already split -> ids (n,) int32, ``<unk>`` for words outside the vocabulary."""
        get = self._index.get
        return np.fromiter((get(w, 0) for w in words), np.int32)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_words(split_words(text))

    def decode(self, ids) -> str:
        table = [UNK, EOT, *self.words]
        return " ".join(table[i] for i in self._check_ids(ids).tolist())

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "version": _FORMAT_VERSION, "min_count": self.min_count,
                           "max_size": self.max_size, "words": self.words, "counts": self.counts.tolist()},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, data: dict) -> WordTokenizer:
        return cls(data["words"], data["counts"], min_count=data.get("min_count", 1), max_size=data.get("max_size"))

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, min_count={self.min_count}, max_size={self.max_size})"


def prepare_words(texts: list[str], tokenizer: WordTokenizer | None = None, *, min_count: int = 5,
                  max_size: int | None = None) -> tuple[WordTokenizer, list[np.ndarray], int]:
    """(tokenizer, sentences of ids, raw words): the word tokenizer trained on ``texts`` (unless given), and
    ``texts`` cut into sentences of word ids (what ``zoo pretrain word2vec`` and ``zoo bench embeddings`` train on)."""
    sentences = split_sentences(texts)
    if tokenizer is None:
        tokenizer = WordTokenizer.from_counts(Counter(w for s in sentences for w in s), min_count=min_count,
                                              max_size=max_size)
    return tokenizer, [tokenizer.encode_words(s) for s in sentences], sum(len(s) for s in sentences)
