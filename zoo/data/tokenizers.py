"""Tokenizers for language-model pretraining: bytes, characters, byte-level BPE and WordPiece.

Every tokenizer has the same small interface (:class:`Tokenizer`):

* ``encode(text) -> np.ndarray`` — 1-D int32 token ids, each in ``[0, vocab_size)``;
* ``decode(ids) -> str`` — the inverse; special tokens are written as their
  names (``"<|endoftext|>"``), so a sample shows where a document ended;
* ``vocab_size``, ``eot_id`` (the ``<|endoftext|>`` token that the pipeline puts
  between documents), ``kind`` (``"byte"``, ``"char"`` or ``"bpe"``);
* ``save(directory)`` writes ``directory/tokenizer.json``, and
  :func:`load_tokenizer` restores any kind from it.

Text is always text: ``encode("<|endoftext|>")`` gives the ids of those 13
characters, never ``eot_id`` (only the pipeline inserts special tokens), so a
corpus that happens to contain the string cannot forge a document boundary.
(WordPiece is the exception, as BERT's tokenizer: ``[MASK]``, ``[SEP]``, ...
written in the text are its special tokens, which fill-mask prompts need.)

Kinds:

* :class:`ByteTokenizer` (the default): the UTF-8 bytes 0..255 plus
  ``<|endoftext|>`` = 256, ``vocab_size`` 257. Nothing is ever out of
  vocabulary, and nothing needs training. A model can sample byte sequences
  that are not valid UTF-8; ``decode`` replaces them with U+FFFD.
* :class:`CharTokenizer`: one id per character of the training split (sorted,
  as nanoGPT's ``shakespeare_char``), then ``<unk>`` and ``<|endoftext|>``.
  Characters not seen in training encode to ``<unk>``.
* :class:`BPETokenizer`: byte-level BPE (GPT-2 style) trained with Hugging
  Face ``tokenizers``: the ByteLevel pre-tokenizer maps every byte to a
  symbol, so any text round-trips. ``save`` writes the library's own JSON, so
  a ``tokenizer.json`` made elsewhere (e.g. GPT-2's) loads too, provided it
  has an ``<|endoftext|>`` token.
* :class:`WordPieceTokenizer`: BERT's uncased WordPiece trained with Hugging
  Face ``tokenizers`` (BertNormalizer: lowercase, accents stripped, control
  characters dropped, CJK characters split; BertPreTokenizer: whitespace and
  punctuation). Ids 0..4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``; documents are
  joined by ``[SEP]`` (``eot_id == sep_id``). A word with a character not in
  the vocabulary encodes to ``[UNK]``. ``decode`` glues ``##`` pieces back to
  words and lowercases what it cannot know (``"Hello, World" -> "hello,
  world"``). Saved in the ``tokenizers`` library's own JSON, so a BERT
  ``tokenizer.json`` made elsewhere (e.g. bert-base-uncased's, whose specials
  are at 0 and 100..103) loads too: the specials are found by name.
* ``WordTokenizer`` (kind ``"word"``, :mod:`zoo.data.words`): lower-cased
  words, punctuation dropped, a closed vocabulary (by ``min_count`` or size)
  with ``<unk>``; for word2vec and fastText.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

EOT = "<|endoftext|>"
UNK = "<unk>"
TOKENIZER_FILE = "tokenizer.json"
KINDS = ("byte", "char", "bpe", "wordpiece", "word")
DEFAULT_BPE_VOCAB_SIZE = 4096
DEFAULT_WORDPIECE_VOCAB_SIZE = 8192
# BERT's special tokens, in the order a trained WordPiece vocabulary numbers them (0..4).
PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"
WORDPIECE_UNK = "[UNK]"
WORDPIECE_SPECIALS = (PAD, WORDPIECE_UNK, CLS, SEP, MASK)
_FORMAT_VERSION = 1


class Tokenizer(abc.ABC):
    """The interface shared by all tokenizers (see the module docstring).

    Examples:
      >>> tok = zoo.data.make_tokenizer("byte")
      >>> isinstance(tok, zoo.data.Tokenizer), tok.kind
      (True, 'byte')
      >>> path = tok.save("my_tokenizer")          # tokenizer.json in that directory
      >>> zoo.data.load_tokenizer("my_tokenizer").encode("hi")
      array([104, 105], dtype=int32)
    """

    kind: str

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids: every id is in ``[0, vocab_size)``."""

    @property
    @abc.abstractmethod
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>``, the token that separates documents."""

    @abc.abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """``text`` -> token ids, shape (n,), int32."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids (any integer sequence or 1-D array) -> text."""

    @abc.abstractmethod
    def to_json(self) -> str:
        """The contents of ``tokenizer.json``."""

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]``; BPE overrides it with a parallel version."""
        return [self.encode(t) for t in texts]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/tokenizer.json`` (atomically) and return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def fingerprint(self) -> str:
        """Hash of the kind and the whole vocabulary: equal iff encoding is equal."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eot_id={self.eot_id})"

    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.zeros((0,), np.int64)
        if arr.ndim > 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"decode: ids must be a 1-D sequence of integers, got an array of shape "
                f"{arr.shape} and dtype {arr.dtype}"
            )
        arr = arr.reshape(-1).astype(np.int64)
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise ValueError(
                f"decode: token id {int(arr[bad][0])} is out of range for this {self.kind} "
                f"tokenizer; expected ids in [0, {self.vocab_size})"
            )
        return arr


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes 0..255 and ``<|endoftext|>`` = 256 (``vocab_size`` 257).

    Examples:
      >>> tok = zoo.data.ByteTokenizer()
      >>> tok.encode("hé!")                        # UTF-8 bytes
      array([104, 195, 169,  33], dtype=int32)
      >>> tok.decode([104, 195, 169, 33]), tok.vocab_size, tok.eot_id
      ('hé!', 257, 256)
    """

    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def eot_id(self) -> int:
        return 256

    def encode(self, text: str) -> np.ndarray:
        # Lone surrogates (not valid Unicode scalar values) are kept as their
        # three bytes ("surrogatepass"), so encode never fails; they decode to U+FFFD.
        data = text.encode("utf-8", errors="surrogatepass")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)  # (n_bytes,)

    def decode(self, ids) -> str:
        arr = self._check_ids(ids)
        specials = np.flatnonzero(arr == self.eot_id)
        parts, start = [], 0
        for pos in [*specials.tolist(), len(arr)]:
            parts.append(arr[start:pos].astype(np.uint8).tobytes().decode("utf-8", errors="replace"))
            if pos < len(arr):
                parts.append(EOT)
            start = pos + 1
        return "".join(parts)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "version": _FORMAT_VERSION}, indent=2)


class CharTokenizer(Tokenizer):
    """One id per known character (sorted), then ``<unk>`` and ``<|endoftext|>``.

    Examples:
      >>> tok = zoo.data.CharTokenizer.train(["hello world"])
      >>> tok.vocab_size                           # 8 characters, <unk>, <|endoftext|>
      10
      >>> tok.encode("hold!")                      # "!" is unknown
      array([3, 5, 4, 1, 8], dtype=int32)
      >>> tok.decode(tok.encode("hello"))
      'hello'
    """

    kind = "char"

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if any(len(c) != 1 for c in chars):
            bad = next(c for c in chars if len(c) != 1)
            raise ValueError(f"CharTokenizer: every vocabulary entry must be one character, got {bad!r}")
        if len(set(chars)) != len(chars) or chars != sorted(chars):
            raise ValueError("CharTokenizer: chars must be sorted and unique (use CharTokenizer.train)")
        self.chars: list[str] = chars
        # Code points of the vocabulary, sorted (str order is code-point order),
        # for a vectorised lookup with searchsorted.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters in ``texts`` (the training split only)."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        if not seen:
            raise ValueError("CharTokenizer.train: the training texts contain no characters")
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 2

    @property
    def unk_id(self) -> int:
        return len(self.chars)

    @property
    def eot_id(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        if len(self._codes) == 0:
            return np.full(codes.shape, self.unk_id, np.int32)
        pos = np.searchsorted(self._codes, codes)  # (n_chars,)
        known = self._codes[np.minimum(pos, len(self._codes) - 1)] == codes
        return np.where(known, pos, self.unk_id).astype(np.int32)

    def decode(self, ids) -> str:
        table = [*self.chars, UNK, EOT]
        return "".join(table[i] for i in self._check_ids(ids).tolist())

    def to_json(self) -> str:
        return json.dumps(
            # A list, not one string: JSON would merge an escaped surrogate pair into one character.
            {"kind": self.kind, "version": _FORMAT_VERSION, "chars": self.chars},
            ensure_ascii=True,
        )


class BPETokenizer(Tokenizer):
    """Byte-level BPE, a thin wrapper around a Hugging Face ``tokenizers.Tokenizer``.

    Examples:
      >>> texts = ["the cat sat on the mat", "the dog sat on the log"] * 20
      >>> tok = zoo.data.BPETokenizer.train(texts, vocab_size=300)
      >>> ids = tok.encode("the cat sat")
      >>> ids.dtype, tok.decode(ids)
      (dtype('int32'), 'the cat sat')
      >>> tok.vocab_size, tok.eot_id
      (274, 0)
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer):
        eot = hf_tokenizer.token_to_id(EOT)
        if eot is None:
            raise ValueError(
                f"BPETokenizer: the tokenizer has no {EOT!r} token; it is needed between documents"
            )
        # Text is text: a literal "<|endoftext|>" in the input is split like
        # any other string (only the pipeline inserts eot_id).
        hf_tokenizer.encode_special_tokens = True
        self.hf = hf_tokenizer
        self._eot = eot
        self._vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = DEFAULT_BPE_VOCAB_SIZE) -> BPETokenizer:
        """Train byte-level BPE on ``texts`` (the training split) up to ``vocab_size`` ids.

        The vocabulary can come out smaller on a tiny corpus (no pair left to
        merge); ``vocab_size`` then reports the real size.
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        minimum = 256 + 1
        if not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(
                f"BPETokenizer.train: vocab_size={vocab_size!r} is too small; expected an int >= {minimum} "
                f"(256 byte symbols and {EOT})"
            )
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        texts = list(texts)
        hf.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eot_id(self) -> int:
        return self._eot

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        # Rust encodes the batch on all cores.
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids) -> str:
        return self.hf.decode(self._check_ids(ids).tolist(), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.hf.to_str(pretty=True)


def _without_lone_surrogates(text: str) -> str:
    """``text`` with unpaired surrogates (which Rust strings cannot hold) replaced by U+FFFD."""
    return text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")


class WordPieceTokenizer(Tokenizer):
    """BERT's uncased WordPiece, a thin wrapper around a Hugging Face ``tokenizers.Tokenizer``.

    ``encode`` adds no special tokens (the data code writes ``[CLS] a [SEP] b
    [SEP]`` itself), but recognises them in the text: ``encode("the cat [MASK]")``
    ends with ``mask_id``.

    Examples:
      >>> texts = ["the cat sat on the mat", "the dog sat on the log"] * 20
      >>> tok = zoo.data.WordPieceTokenizer.train(texts, vocab_size=100)
      >>> ids = tok.encode("the cat [MASK]")       # no [CLS]/[SEP] added; [MASK] recognised
      >>> int(ids[-1]) == tok.mask_id, tok.decode(ids[:2])
      (True, 'the cat')
      >>> tok.pad_id, tok.cls_id, tok.sep_id
      (0, 2, 3)
    """

    kind = "wordpiece"

    def __init__(self, hf_tokenizer):
        ids = {name: hf_tokenizer.token_to_id(name) for name in WORDPIECE_SPECIALS}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(
                f"WordPieceTokenizer: the tokenizer has no {', '.join(missing)} token(s); "
                f"expected all of {', '.join(WORDPIECE_SPECIALS)}"
            )
        self.hf = hf_tokenizer
        self._ids = ids
        self._vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = DEFAULT_WORDPIECE_VOCAB_SIZE) -> WordPieceTokenizer:
        """Train uncased WordPiece on ``texts`` (the training split) up to ``vocab_size`` ids.

        As BERT's: the 1,000 most frequent characters form the alphabet (rarer
        ones become ``[UNK]``), and the vocabulary can come out smaller on a
        tiny corpus, or larger than a ``vocab_size`` below the alphabet's size;
        ``vocab_size`` then reports the real size.
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        minimum = len(WORDPIECE_SPECIALS) + 1
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
            raise ValueError(
                f"WordPieceTokenizer.train: vocab_size={vocab_size!r} is too small; expected an int >= {minimum} "
                f"({', '.join(WORDPIECE_SPECIALS)} and at least one piece)"
            )
        hf = HFTokenizer(models.WordPiece(unk_token=WORDPIECE_UNK))
        hf.normalizer = normalizers.BertNormalizer(lowercase=True)
        hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        hf.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            special_tokens=list(WORDPIECE_SPECIALS),
            limit_alphabet=1000,
            show_progress=False,
        )
        texts = [_without_lone_surrogates(t) for t in texts]
        hf.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[WORDPIECE_UNK]

    @property
    def cls_id(self) -> int:
        return self._ids[CLS]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP]

    @property
    def mask_id(self) -> int:
        return self._ids[MASK]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """The ids of ``[PAD] [UNK] [CLS] [SEP] [MASK]``, in that order."""
        return tuple(self._ids[name] for name in WORDPIECE_SPECIALS)

    @property
    def eot_id(self) -> int:
        """``[SEP]``: the pipeline joins documents with it."""
        return self.sep_id

    def encode(self, text: str) -> np.ndarray:
        try:
            encoding = self.hf.encode(text, add_special_tokens=False)
        except TypeError:  # lone surrogates
            encoding = self.hf.encode(_without_lone_surrogates(text), add_special_tokens=False)
        return np.asarray(encoding.ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        texts = list(texts)
        try:
            encodings = self.hf.encode_batch(texts, add_special_tokens=False)
        except TypeError:  # lone surrogates somewhere in the batch
            texts = [_without_lone_surrogates(t) for t in texts]
            encodings = self.hf.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids) -> str:
        return self.hf.decode(self._check_ids(ids).tolist(), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.hf.to_str(pretty=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_ids={self.special_ids})"


def make_tokenizer(
    kind: str = "byte", train_texts: Iterable[str] | None = None, vocab_size: int | None = None
) -> Tokenizer:
    """Build a tokenizer of ``kind`` ("byte", "char", "bpe" or "wordpiece").

    ``train_texts`` (the training split only, so validation stays unseen) is
    needed for "char", "bpe" and "wordpiece"; ``vocab_size`` applies to "bpe"
    (default 4096) and "wordpiece" (default 8192) only.

    Examples:
      >>> zoo.data.make_tokenizer("byte").vocab_size
      257
      >>> tok = zoo.data.make_tokenizer("char", ["abc abc"])
      >>> tok.kind, tok.vocab_size
      ('char', 6)
      >>> tok = zoo.data.make_tokenizer("bpe", ["the cat sat on the mat"] * 20, vocab_size=280)
      >>> tok.kind, tok.vocab_size <= 280
      ('bpe', True)
    """
    if kind not in KINDS:
        raise ValueError(f"tokenizer kind {kind!r} is unknown; expected one of {', '.join(KINDS)}")
    if vocab_size is not None and kind not in ("bpe", "wordpiece", "word"):
        raise ValueError(
            f"vocab_size={vocab_size} applies only to kind='bpe' and kind='wordpiece'; the {kind} tokenizer's "
            f"vocabulary is fixed by {'UTF-8' if kind == 'byte' else 'the training characters'}"
        )
    if kind == "byte":
        return ByteTokenizer()
    if train_texts is None:
        raise ValueError(
            f"tokenizer kind {kind!r} needs train_texts (the training split) to build its vocabulary"
        )
    if kind == "char":
        return CharTokenizer.train(train_texts)
    if kind == "word":  # the words seen at least 5 times (gensim's min_count), at most vocab_size - 2 of them
        from .words import WordTokenizer  # noqa: PLC0415

        return WordTokenizer.train(train_texts, max_size=None if vocab_size is None else max(1, vocab_size - 2))
    if kind == "wordpiece":
        vocab_size = DEFAULT_WORDPIECE_VOCAB_SIZE if vocab_size is None else vocab_size
        return WordPieceTokenizer.train(train_texts, vocab_size=vocab_size)
    vocab_size = DEFAULT_BPE_VOCAB_SIZE if vocab_size is None else vocab_size
    return BPETokenizer.train(train_texts, vocab_size=vocab_size)


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Restore the tokenizer saved by ``save(directory)`` (any kind).

    ``directory`` may also be the path of the ``tokenizer.json`` file itself.

    Examples:
      >>> zoo.data.ByteTokenizer().save("tokenizer").name
      'tokenizer.json'
      >>> tok = zoo.data.load_tokenizer("tokenizer")
      >>> tok.kind, tok.vocab_size
      ('byte', 257)
    """
    path = Path(directory)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise ValueError(
            f"load_tokenizer: {str(path)!r} does not exist; expected a directory written by save()"
        )
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if "model" in data:  # Hugging Face tokenizers' own format: BPE or WordPiece
        from tokenizers import Tokenizer as HFTokenizer

        if (data.get("model") or {}).get("type") == "WordPiece":
            return WordPieceTokenizer(HFTokenizer.from_str(text))
        return BPETokenizer(HFTokenizer.from_str(text))
    kind = data.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(data["chars"])
    if kind == "word":  # zoo.data.words (word2vec, fastText)
        from .words import WordTokenizer  # noqa: PLC0415

        return WordTokenizer.from_json(data)
    raise ValueError(
        f"load_tokenizer: {str(path)!r} has kind={kind!r}; expected one of {', '.join(KINDS)} "
        "(or a Hugging Face tokenizer.json)"
    )
