"""Evaluating word vectors: similarity (Spearman), analogies (3CosAdd by section), unseen word forms.

* :func:`word_similarity`: Spearman's rank correlation between the cosine
  similarity of each pair and the human score, over the pairs whose two words
  both have a vector; ``coverage`` is how many pairs that is. Words are
  lower-cased, as the word tokenizer does (gensim's ``case_insensitive``).
* :func:`analogies`: "a is to b as c is to d" answered by 3CosAdd, the
  vocabulary word nearest to ``b - a + c`` (unit vectors), a, b and c left
  out, as gensim's ``evaluate_word_analogies``; accuracy per section and in
  all over the questions whose four words are in the vocabulary (coverage).
  Only vocabulary words answer, for word2vec and fastText alike.
* :func:`unseen_forms`: for word forms not in the vocabulary, inflections
  (``(form, base)``, e.g. ``("kingdoms", "kingdom")``) and misspellings one
  edit away from frequent words (:func:`misspellings`), whether the intended
  word is the nearest vocabulary word (hit@1) or among the 10 nearest
  (hit@10) to the form's vector. fastText answers every one from its
  n-grams; word2vec has no vector for any (coverage 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["analogies", "inflection_candidates", "misspellings", "unseen_forms", "word_similarity",
           "evaluate_all"]

SUFFIXES = ("s", "es", "ed", "ing", "ly", "er", "ness")


def word_similarity(vectors: Any, pairs: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """``spearman``, ``pearson``, ``coverage`` (pairs with both vectors) and ``pairs`` (all)."""
    from scipy import stats  # noqa: PLC0415

    model, human = [], []
    for a, b, score in pairs:
        a, b = a.lower(), b.lower()
        if a in vectors and b in vectors:
            model.append(vectors.similarity(a, b))
            human.append(score)
    out: dict[str, Any] = {"pairs": len(pairs), "coverage": len(model), "spearman": None, "pearson": None}
    if len(model) >= 3:
        out["spearman"] = float(stats.spearmanr(model, human).statistic)
        out["pearson"] = float(stats.pearsonr(model, human).statistic)
    return out


def analogies(vectors: Any, sections: dict[str, Sequence[tuple[str, str, str, str]]], *,
              chunk: int = 512) -> dict[str, Any]:
    """3CosAdd accuracy: ``{"sections": {name: {"correct", "coverage", "questions", "accuracy"}}, "total": ...}``;
    the total also splits into ``semantic`` and ``syntactic`` (the ``gram*`` sections)."""
    index = vectors.key_to_index
    unit = vectors._unit  # (n, D)
    results: dict[str, dict[str, Any]] = {}
    for name, questions in sections.items():
        covered = [tuple(index[w.lower()] for w in q) for q in questions if all(w.lower() in index for w in q)]
        correct = 0
        for i in range(0, len(covered), chunk):
            q = np.array(covered[i : i + chunk])  # (Q, 4): a, b, c, d
            query = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]  # (Q, D)
            scores = query @ unit.T  # (Q, n)
            rows = np.arange(len(q))[:, None]
            scores[rows, q[:, :3]] = -np.inf
            correct += int(np.sum(np.argmax(scores, axis=1) == q[:, 3]))
        results[name] = {"questions": len(questions), "coverage": len(covered), "correct": correct,
                         "accuracy": correct / len(covered) if covered else None}

    def total(names: Iterable[str]) -> dict[str, Any]:
        names = list(names)
        c = sum(results[n]["correct"] for n in names)
        cov = sum(results[n]["coverage"] for n in names)
        return {"questions": sum(results[n]["questions"] for n in names), "coverage": cov, "correct": c,
                "accuracy": c / cov if cov else None}

    return {"sections": results, "total": total(results),
            "semantic": total(n for n in results if not n.startswith("gram")),
            "syntactic": total(n for n in results if n.startswith("gram"))}


def inflection_candidates(words: Sequence[str], *, limit: int = 200, top: int = 3000) -> list[tuple[str, str]]:
    """``(form, base)`` for frequent alphabetic words ``base`` (the ``top`` first of ``words``, at least 4
    letters) and suffixes whose ``base + suffix`` is not in ``words``: unseen forms, at most ``limit``."""
    known = set(words)
    out = []
    for base in words[:top]:
        if len(base) < 4 or not base.isalpha():
            continue
        for suffix in SUFFIXES:
            if base + suffix not in known:
                out.append((base + suffix, base))
                break
        if len(out) >= limit:
            break
    return out


def misspellings(words: Sequence[str], *, limit: int = 200, top: int = 2000, seed: int = 0) -> list[tuple[str, str]]:
    """``(typo, word)``: frequent alphabetic words (the ``top`` first, at least 5 letters) with one edit (a
    deletion, an insertion, a substitution or a swap of neighbours, drawn from ``seed``) that makes a string
    not in ``words``; at most ``limit``."""
    rng = np.random.default_rng(seed)
    known = set(words)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for word in words[:top]:
        if len(word) < 5 or not word.isalpha() or not word.isascii():
            continue
        for _ in range(10):
            op, i = rng.integers(4), int(rng.integers(1, len(word) - 1))  # keep the first and last letters
            c = letters[rng.integers(26)]
            typo = [word[:i] + word[i + 1 :], word[:i] + c + word[i:], word[:i] + c + word[i + 1 :],
                    word[:i] + word[i + 1] + word[i] + word[i + 2 :]][op]
            if typo != word and typo not in known:
                out.append((typo, word))
                break
        if len(out) >= limit:
            break
    return out


def unseen_forms(vectors: Any, cases: Sequence[tuple[str, str]], k: int = 10) -> dict[str, Any]:
    """For each ``(form, intended)``: is ``intended`` the nearest vocabulary word to ``form``'s vector (hit@1),
    among the ``k`` nearest (hit@k)? Forms without a vector (word2vec) only lower the coverage."""
    covered = [(f, w) for f, w in cases if f not in vectors and vectors.has_vector(f) and w in vectors]
    hits1 = hitsk = 0
    examples = []
    for form, word in covered:
        near = [x for x, _ in vectors.most_similar(form, topn=k)]
        hits1 += bool(near) and near[0] == word
        hitsk += word in near
        if len(examples) < 5:
            examples.append({"form": form, "intended": word, "nearest": near[:3]})
    n = len(covered)
    return {"cases": len(cases), "coverage": n, "hit@1": hits1 / n if n else None,
            f"hit@{k}": hitsk / n if n else None, "examples": examples}


def evaluate_all(vectors: Any, *, wordsim=None, simlex=None, questions=None,
                 inflections: Sequence[tuple[str, str]] | None = None,
                 typos: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Every evaluation whose data is given (pairs, sections, cases as loaded by :mod:`zoo.data.wordsim`)."""
    out: dict[str, Any] = {}
    if wordsim is not None:
        out["wordsim353"] = word_similarity(vectors, wordsim)
    if simlex is not None:
        out["simlex999"] = word_similarity(vectors, simlex)
    if questions is not None:
        out["analogies"] = analogies(vectors, questions)
    if inflections is not None:
        out["unseen_inflections"] = unseen_forms(vectors, inflections)
    if typos is not None:
        out["misspellings"] = unseen_forms(vectors, typos)
    return out
