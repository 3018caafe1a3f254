"""From a corpus to training batches: tokenize once (cached), then sample windows.

* :func:`tokenize_corpus` encodes every document and joins each split into
  one long 1-D stream of token ids, with the tokenizer's ``eot_id`` between
  documents (``doc0 <eot> doc1 <eot> doc2``), as GPT-2's pretraining data. With
  ``cache_dir`` the streams are saved as ``.npy`` files named by a hash of the
  corpus content and the tokenizer's vocabulary, so the next run with the same
  data and tokenizer loads them instead of tokenizing (and a changed document
  or vocabulary can never hit a stale cache). On disk the ids are ``uint16``
  when the vocabulary has at most 65,536 ids (half the size), ``int32``
  otherwise; in memory they are ``int32``, or, with ``mmap=True``, the cached
  files memory-mapped as stored (several processes on one machine then share
  one copy in the page cache).
* :func:`get_batch` cuts ``batch_size`` random windows of ``block_size + 1``
  tokens out of a stream: inputs ``x`` and next-token targets ``y`` (``x``
  shifted left by one). The windows are a pure function of ``(seed, step)``,
  so a run resumed at step ``s`` sees exactly the batches it would have seen;
  ``rows=`` cuts only some of them (a process's share of a global batch: the
  same windows, whatever the number of processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpora import Corpus
from .tokenizers import Tokenizer

_CACHE_VERSION = 1


@dataclass
class TokenizedCorpus:
    """Token streams for training and validation.

    ``train``: (n_train,) int32, ``val``: (n_val,) int32, ids in
    ``[0, vocab_size)``. ``info``: the corpus's ``info`` (key ``corpus``), the
    tokenizer (``tokenizer``), ``train_tokens``, ``val_tokens``, ``cache``
    ("hit", "miss" or "off"), ``cache_key`` and ``tokenize_seconds``.

    Examples:
      >>> corpus = zoo.data.Corpus(train=["hello world"], val=["hi"])
      >>> tokens = zoo.data.tokenize_corpus(corpus, zoo.data.ByteTokenizer())
      >>> type(tokens).__name__, tokens.train.shape, tokens.val.dtype
      ('TokenizedCorpus', (11,), dtype('int32'))
      >>> tokens.info["train_tokens"], tokens.info["cache"]
      (11, 'off')
    """

    train: np.ndarray
    val: np.ndarray
    info: dict = field(default_factory=dict)


def storage_dtype(vocab_size: int) -> np.dtype:
    """The smallest dtype for ids in ``[0, vocab_size)`` on disk: uint16 or int32.

    Examples:
      >>> zoo.data.storage_dtype(257), zoo.data.storage_dtype(50257), zoo.data.storage_dtype(100_000)
      (dtype('uint16'), dtype('uint16'), dtype('int32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def cache_key(corpus: Corpus, tokenizer: Tokenizer) -> str:
    """Hash of (corpus content, tokenizer kind + vocabulary, cache format).

    Examples:
      >>> corpus = zoo.data.Corpus(train=["hello world"], val=["hi"])
      >>> key = zoo.data.cache_key(corpus, zoo.data.ByteTokenizer())
      >>> key == zoo.data.cache_key(corpus, zoo.data.ByteTokenizer()), len(key)
      (True, 32)
      >>> key == zoo.data.cache_key(corpus, zoo.data.CharTokenizer.train(corpus.train))
      False
    """
    h = hashlib.sha256(f"zoo-tokens-v{_CACHE_VERSION}\0".encode())
    h.update(corpus.fingerprint().encode())
    h.update(b"\0")
    h.update(tokenizer.fingerprint().encode())
    return h.hexdigest()[:32]


def join_documents(pieces: list[np.ndarray], eot_id: int) -> np.ndarray:
    """Concatenate encoded documents with ``eot_id`` between them: (sum(n_i) + len - 1,) int32."""
    if not pieces:
        return np.zeros((0,), np.int32)
    total = sum(len(p) for p in pieces) + len(pieces) - 1
    out = np.empty((total,), np.int32)
    pos = 0
    for i, piece in enumerate(pieces):
        if i:
            out[pos] = eot_id
            pos += 1
        out[pos : pos + len(piece)] = piece
        pos += len(piece)
    return out


def _encode_split(docs: list[str], tokenizer: Tokenizer, split: str) -> np.ndarray:
    tokens = join_documents(tokenizer.encode_batch(docs), tokenizer.eot_id)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= tokenizer.vocab_size):
        raise ValueError(
            f"tokenize_corpus: the {tokenizer.kind} tokenizer produced ids in "
            f"[{tokens.min()}, {tokens.max()}] for the {split} split; expected [0, {tokenizer.vocab_size})"
        )
    return tokens


def _atomic_save(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _cache_paths(cache_dir: Path, key: str) -> dict[str, Path]:
    return {
        "train": cache_dir / f"tokens-{key}-train.npy",
        "val": cache_dir / f"tokens-{key}-val.npy",
        "meta": cache_dir / f"tokens-{key}.json",  # written last: its presence marks a complete entry
    }


def _load_cached(paths: dict[str, Path], mmap: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    if not all(p.exists() for p in paths.values()):
        return None
    try:
        train = np.load(paths["train"], allow_pickle=False, mmap_mode="r" if mmap else None)
        val = np.load(paths["val"], allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError):  # unreadable: tokenize again and overwrite it
        return None
    if mmap:
        return train, val
    return train.astype(np.int32), val.astype(np.int32)


def tokenize_corpus(
    corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | os.PathLike | None = None, *, mmap: bool = False
) -> TokenizedCorpus:
    """Encode both splits of ``corpus`` into 1-D int32 streams (see the module docstring).

    ``mmap``: a cache hit returns the cached files memory-mapped (read-only, their stored dtype, uint16
    or int32) instead of int32 copies.

    Examples:
      >>> corpus = zoo.data.Corpus(train=["hello", "world"], val=["hi"])
      >>> tokens = zoo.data.tokenize_corpus(corpus, zoo.data.ByteTokenizer())
      >>> tokens.train.tolist()                     # documents joined by <|endoftext|> (256)
      [104, 101, 108, 108, 111, 256, 119, 111, 114, 108, 100]
      >>> tokens = zoo.data.tokenize_corpus(corpus, zoo.data.ByteTokenizer(), cache_dir="cache")
      >>> zoo.data.tokenize_corpus(corpus, zoo.data.ByteTokenizer(), cache_dir="cache").info["cache"]
      'hit'
    """
    start = time.perf_counter()
    key = cache_key(corpus, tokenizer)
    info = {
        "corpus": dict(corpus.info),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id},
        "cache_key": key,
    }
    paths = None
    cached = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir).expanduser()
        cache_dir.mkdir(parents=True, exist_ok=True)
        paths = _cache_paths(cache_dir, key)
        cached = _load_cached(paths, mmap)
    if cached is not None:
        train, val = cached
        info["cache"] = "hit"
    else:
        train = _encode_split(corpus.train, tokenizer, "train")
        val = _encode_split(corpus.val, tokenizer, "val")
        info["cache"] = "off" if paths is None else "miss"
        if paths is not None:
            dtype = storage_dtype(tokenizer.vocab_size)
            _atomic_save(paths["train"], lambda f: np.save(f, train.astype(dtype)))
            _atomic_save(paths["val"], lambda f: np.save(f, val.astype(dtype)))
            meta = {"corpus": info["corpus"], "tokenizer": info["tokenizer"], "dtype": dtype.name}
            _atomic_save(paths["meta"], lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    info.update(train_tokens=len(train), val_tokens=len(val), tokenize_seconds=time.perf_counter() - start)
    unk = getattr(tokenizer, "unk_id", None)
    if unk is not None:  # text the vocabulary cannot encode: counted, so the caller can say so
        info["unknown_tokens"] = {"train": int(np.count_nonzero(train == unk)), "val": int(np.count_nonzero(val == unk))}
        if tokenizer.kind == "char" and any(info["unknown_tokens"].values()):
            info["unknown_characters"] = unknown_characters(tokenizer, corpus.train + corpus.val)
    return TokenizedCorpus(train, val, info)


def unknown_characters(tokenizer: Tokenizer, texts: list[str], most: int = 10) -> dict[str, int]:
    """The characters of ``texts`` that a char tokenizer encodes as unknown, with their counts (the most frequent)."""
    known = set(tokenizer.chars)
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    counts = {c: sum(t.count(c) for t in texts) for c in seen - known}
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:most])


def get_batch(
    tokens: np.ndarray, batch_size: int, block_size: int, *, seed: int, step: int, split: str = "token",
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of a token stream: ``(x, y)``, both (B, T) int32.

    ``x[b] = tokens[i_b : i_b + T]`` and ``y[b] = tokens[i_b + 1 : i_b + T + 1]``
    for start positions ``i_b`` drawn from ``np.random.default_rng([seed,
    step])``: the same (seed, step) always gives the same batch, whatever came
    before. ``split`` only names the stream in error messages. ``rows`` (int
    indices into the batch): only those rows, (len(rows), T) each, cut from the
    stream (the other windows' starts are drawn, not read).

    Examples:
      >>> tokens = np.arange(100, dtype=np.int32)
      >>> x, y = zoo.data.get_batch(tokens, 2, 4, seed=0, step=0)
      >>> x.shape, y.dtype
      ((2, 4), dtype('int32'))
      >>> bool((y[:, :-1] == x[:, 1:]).all())
      True
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"get_batch: tokens must be 1-D, got shape {tokens.shape}")
    for name, value, low in [
        ("batch_size", batch_size, 1),
        ("block_size", block_size, 1),
        ("seed", seed, 0),
        ("step", step, 0),
    ]:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"get_batch: {name}={value!r}; expected an int >= {low}")
    n = len(tokens)
    if n < block_size + 1:
        raise ValueError(
            f"the {split} split has {n} tokens, too short for block_size={block_size}: a window needs "
            f"block_size + 1 = {block_size + 1} tokens (input and next-token target). Use a larger "
            "corpus or a smaller block_size."
        )
    rng = np.random.default_rng([int(seed), int(step)])
    starts = rng.integers(0, n - block_size, size=batch_size)  # (B,), last valid start n - T - 1
    if rows is not None:
        starts = starts[np.asarray(rows)]  # (R,)
    windows = tokens[starts[:, None] + np.arange(block_size + 1)].astype(np.int32)  # (B, T + 1)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
