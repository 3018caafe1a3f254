"""The standard evaluation sets of word embeddings, read from files: similarity pairs and analogy questions.

* WordSim353 (``wordsim353.tsv``) and SimLex-999 (``simlex999.txt``): lines
  ``word1<TAB>word2<TAB>score``, ``#`` comments (:func:`load_similarity`);
* Mikolov et al.'s analogies (``questions-words.txt``): ``: section`` lines,
  then ``a b c d`` lines, "a is to b as c is to d" (:func:`load_analogies`).

zoo ships none of them. gensim 4 installs all three in
``gensim/test/test_data/`` (:func:`evaluation_file` finds them there without
importing gensim); any other copy can be named by path. questions-words.txt
comes with word2vec (Apache-2.0); WordSim353 and SimLex-999 are distributed
by their authors for research without a stated licence, so they are not
copied into this repository (the tests use small files of their own).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["EVALUATION_FILES", "evaluation_file", "load_analogies", "load_similarity"]

EVALUATION_FILES = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt",
                    "questions-words": "questions-words.txt"}


def evaluation_file(name: str) -> Path:
    """The path of evaluation set ``name`` (a key of :data:`EVALUATION_FILES`) in the installed gensim.

    ``FileNotFoundError`` when gensim is not installed (it says how to get it or pass a path).
    """
    if name not in EVALUATION_FILES:
        raise ValueError(f"unknown evaluation set {name!r}; expected one of {', '.join(EVALUATION_FILES)}")
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the evaluation set {name} ({EVALUATION_FILES[name]}) is read from an installed "
                                "gensim (pip install gensim), or pass its path")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / EVALUATION_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed gensim; pass the file's path")
    return path


def _lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such evaluation file")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]


def load_similarity(path: str | os.PathLike) -> list[tuple[str, str, float]]:
    """``(word1, word2, human score)`` of each line of a similarity file (tab- or space-separated)."""
    out = []
    for number, line in _lines(path):
        if line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            out.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
        except (IndexError, ValueError):
            raise ValueError(f"{path}: line {number} is {line[:80]!r}; expected 'word1<TAB>word2<TAB>score'") from None
    if not out:
        raise ValueError(f"{path}: no word pairs; expected lines 'word1<TAB>word2<TAB>score'")
    return out


def load_analogies(path: str | os.PathLike) -> dict[str, list[tuple[str, str, str, str]]]:
    """``{section: [(a, b, c, d), ...]}`` of a questions-words file, sections in file order."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for number, line in _lines(path):
        if line.startswith(":"):
            current = line[1:].strip()
            sections.setdefault(current, [])
            continue
        words = line.split()
        if current is None or len(words) != 4:
            raise ValueError(f"{path}: line {number} is {line[:80]!r}; expected ': section' or four words 'a b c d'")
        sections[current].append(tuple(words))
    if not any(sections.values()):
        raise ValueError(f"{path}: no analogy questions; expected ': section' lines and 'a b c d' lines")
    return sections
