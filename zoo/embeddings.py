"""Word vectors of a word2vec or fastText run: nearest neighbours, similarity, analogies, word2vec files.

    run = zoo.load_run("runs/fasttext")
    run.vectors.most_similar("king", topn=5)          # [(word, cosine), ...]
    run.vectors.similarity("king", "queen")
    run.vectors.analogy("man", "king", "woman")        # man is to king as woman is to ?
    run.vectors["kingz"]                               # fastText: any string; word2vec: UnknownWordError
    run.vectors.save_word2vec_format("vectors.txt")   # what gensim's KeyedVectors.load_word2vec_format reads

:class:`KeyedVectors` answers as gensim's ``KeyedVectors`` does: cosine
similarity of the vectors, ``most_similar`` by 3CosAdd (the mean of the unit
vectors of ``positive`` minus those of ``negative``, the query words left
out). A word of a fastText run that is not in the vocabulary gets the mean
of its character n-gram vectors; in a word2vec run it is an
:class:`UnknownWordError` (a ``KeyError`` and a ``ValueError``) that says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EMBEDDING_FAMILIES", "KeyedVectors", "UnknownWordError", "load_embedding_run", "load_word2vec_format"]

EMBEDDING_FAMILIES = ("word2vec", "fasttext")


class UnknownWordError(KeyError, ValueError):
    """A word with no vector (not in a word2vec run's vocabulary)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown word"


class KeyedVectors:
    """Words and their vectors ``(n, D)``; ``oov`` (optional) gives a vector for any other string."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, *, oov=None, name: str = "these vectors"):
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"KeyedVectors: {len(words)} words but vectors of shape {vectors.shape}; expected "
                             f"({len(words)}, D)")
        self.index_to_key = list(words)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        self.vectors = vectors
        self._oov, self.name = oov, name
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._unit = vectors / np.maximum(norms, 1e-12)  # (n, D)

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, word: str) -> bool:
        return word in self.key_to_index

    def has_vector(self, word: str) -> bool:
        """Whether ``word`` gets a vector: in the vocabulary, or any non-empty string for fastText."""
        return word in self.key_to_index or (self._oov is not None and bool(word))

    def __getitem__(self, word: str) -> np.ndarray:
        return self.get_vector(word)

    def get_vector(self, word: str) -> np.ndarray:
        """The vector of ``word`` (D,): its row, else fastText's n-gram mean, else :class:`UnknownWordError`."""
        i = self.key_to_index.get(word)
        if i is not None:
            return self.vectors[i]
        if self._oov is not None and word:
            return np.asarray(self._oov(word), np.float32)
        raise UnknownWordError(f"{word!r} is not in the vocabulary of {self.name} ({len(self):,} words), and a "
                               "word2vec model has no vector for an unseen word (fastText has)")

    def _unit_vector(self, word: str) -> np.ndarray:
        i = self.key_to_index.get(word)
        if i is not None:
            return self._unit[i]
        v = self.get_vector(word)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words' vectors."""
        return float(self._unit_vector(a) @ self._unit_vector(b))

    def most_similar(self, positive: str | Iterable[str] = (), negative: Iterable[str] = (), topn: int = 10,
                     ) -> list[tuple[str, float]]:
        """The ``topn`` words nearest (cosine) to the mean of the unit vectors of ``positive`` minus ``negative``,
        the query words excluded."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = list(negative)
        if not positive and not negative:
            raise ValueError("most_similar: give at least one word")
        if not isinstance(topn, int) or topn < 1:
            raise ValueError(f"most_similar: topn={topn!r}; expected an int >= 1")
        query = np.mean([self._unit_vector(w) for w in positive] + [-self._unit_vector(w) for w in negative], axis=0)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = self._unit @ query  # (n,)
        exclude = [self.key_to_index[w] for w in positive + negative if w in self.key_to_index]
        scores[exclude] = -np.inf
        top = np.argsort(-scores)[: min(topn, len(self) - len(set(exclude)))]
        return [(self.index_to_key[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """``a`` is to ``b`` as ``c`` is to ?: 3CosAdd, ``most_similar(positive=[b, c], negative=[a])``."""
        return self.most_similar(positive=[b, c], negative=[a], topn=topn)

    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> Path:
        """Write word2vec's format: a header ``"<words> <dims>"``, then one word and its vector a line (text,
        ``%.6g`` floats) or the word, a space and its float32 little-endian bytes (binary, then a newline)."""
        path = Path(path)
        with open(path, "wb") as f:
            f.write(f"{len(self)} {self.vector_size}\n".encode())
            for word, vector in zip(self.index_to_key, self.vectors):
                if binary:
                    f.write(word.encode("utf-8") + b" " + vector.astype("<f4").tobytes() + b"\n")
                else:
                    f.write((word + " " + " ".join(f"{x:.6g}" for x in vector) + "\n").encode("utf-8"))
        return path


def load_word2vec_format(path: str | os.PathLike, binary: bool = False) -> KeyedVectors:
    """Read a word2vec text or binary file (as :meth:`KeyedVectors.save_word2vec_format` writes, or gensim);
    a file that is truncated or malformed is a ``ValueError`` naming the line or word where it breaks."""
    path = Path(path)
    data = path.read_bytes()
    newline = data.find(b"\n")
    try:
        n, dims = (int(x) for x in data[:newline].split())
        if n < 0 or dims < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{path}: the header is {data[:max(newline, 0)][:60]!r}; expected '<words> <dimensions>' "
                         "(a word2vec file)") from None
    words, vectors = [], np.empty((n, dims), np.float32)
    pos = newline + 1
    for i in range(n):
        if binary:
            while pos < len(data) and data[pos : pos + 1] in (b"\n", b"\r"):
                pos += 1
            space = data.find(b" ", pos)
            end = space + 1 + 4 * dims
            if space < 0 or end > len(data):
                raise ValueError(f"{path}: truncated at word {i + 1} of {n} (binary, {dims} float32 each)")
            words.append(data[pos:space].decode("utf-8", errors="replace"))
            vectors[i] = np.frombuffer(data[space + 1 : end], "<f4")
            pos = end
        else:
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            parts = data[pos:end].decode("utf-8", errors="replace").rstrip().split(" ")
            if len(parts) != dims + 1:
                raise ValueError(f"{path}: line {i + 2} has {len(parts) - 1 if parts != [''] else 0} numbers after "
                                 f"its word; expected {dims} (word {i + 1} of {n}; truncated or not a text file?)")
            try:
                vectors[i] = [float(x) for x in parts[1:]]
            except ValueError:
                raise ValueError(f"{path}: line {i + 2} holds something that is not a number") from None
            words.append(parts[0])
            pos = end + 1
    return KeyedVectors(words, vectors, name=str(path))


def keyed_vectors(model: Any, tables: dict[str, Any], tokenizer: Any, name: str) -> KeyedVectors:
    """The vocabulary words of a trained word2vec/fastText ``model`` (ids from 2) and their vectors."""
    from zoo.data.words import FIRST_WORD  # noqa: PLC0415

    vectors = model.word_vectors(tables)[FIRST_WORD:]
    oov = (lambda word: model.vector(tables, word)) if model.family == "fasttext" else None  # noqa: E731
    return KeyedVectors(tokenizer.words, vectors, oov=oov, name=name)


def load_embedding_run(run_dir: str | os.PathLike, info: dict[str, Any], *, step: int | None = None):
    """``zoo.load_run`` for a word2vec or fastText run: a :class:`zoo.run.Run` with ``vectors`` set."""
    import jax  # noqa: PLC0415

    from zoo.data import load_tokenizer  # noqa: PLC0415
    from zoo.models.fasttext import FastText, FastTextConfig  # noqa: PLC0415
    from zoo.models.word2vec import Word2Vec, Word2VecConfig  # noqa: PLC0415
    from zoo.run import Run, nonfinite_summary  # noqa: PLC0415
    from zoo.train.checkpoint import Checkpointer  # noqa: PLC0415
    from zoo.train.embeddings import EmbeddingTrainConfig  # noqa: PLC0415

    run_dir = Path(run_dir)
    family = info["family"]
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    if family == "fasttext":
        config = FastTextConfig(**info["model"])
        model = FastText(config, tokenizer.words)
    else:
        config = Word2VecConfig(**info["model"])
        model = Word2Vec(config)
    train_config = EmbeddingTrainConfig(**info["train"])
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no checkpoints (was the run started with `zoo pretrain {family}`?)")
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"tables": {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device) for k, v in shapes.items()},
              "step": jax.ShapeDtypeStruct((), np.int32, sharding=device)}
    with Checkpointer(directory, keep=train_config.keep_checkpoints, create=False) as ckpt:
        state, _ = ckpt.restore(target, step)
    tables = jax.device_get(state["tables"])
    problem = nonfinite_summary(tables, prefix="tables")
    if problem:
        raise ValueError(f"{run_dir}: checkpoint step {int(state['step'])} has non-finite vectors ({problem})")
    run = Run(run_dir, family, config, train_config, model, tables, tokenizer, int(state["step"]), info)
    run.vectors = keyed_vectors(model, tables, tokenizer, f"the {family} run {run_dir}")
    return run
