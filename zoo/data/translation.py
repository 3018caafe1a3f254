"""Data for translation: toy tasks generated on the fly, local parallel corpora, exact match.

Toy tasks need no files and no downloads; a task is a function
``(rng, **options) -> (source, target)`` that draws one example::

    number_words   "4071"       -> "four thousand seventy one"
    dates          "2024-03-07" -> "7 March 2024"       (style="mdy": "March 7, 2024")

:func:`toy_pairs` draws ``n`` of them, deterministically from a seed. The
``val`` split is held out from ``train`` by a hash of the source string:
a source belongs to exactly one split (``val_percent`` of all sources go to
``val``), so no validation source is ever trained on. Pairs are drawn with
replacement: a split may repeat an example.

Real data: :func:`load_parallel_corpus` reads a local CSV/TSV, JSON lines or
Parquet file (or ``hf:NAME[:CONFIG]``) with Hugging Face ``datasets`` into
``[(source, target), ...]`` strings. Tokenize both sides with one zoo
tokenizer and build batches with :func:`make_translation_batch`.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TASKS",
    "dates",
    "exact_match",
    "is_val_source",
    "load_parallel_corpus",
    "number_to_words",
    "number_words",
    "toy_pairs",
]

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # not calendar.month_name, which follows the locale
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"), (100, "hundred"))


def number_to_words(n: int) -> str:
    """English words of ``0 <= n < 10**12``, no "and", no hyphens: 4071 -> "four thousand seventy one"."""
    if not isinstance(n, (int, np.integer)) or not 0 <= n < 10**12:
        raise ValueError(f"number_to_words: expected an int in [0, 10**12), got {n!r}")
    n = int(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for scale, word in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {word}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def number_words(rng: np.random.Generator, *, max_number: int = 999_999, min_number: int = 0) -> tuple[str, str]:
    """One ``("4071", "four thousand seventy one")`` pair: a uniform digit count, then a number of that many digits."""
    if not isinstance(max_number, (int, np.integer)) or not 0 <= max_number < 10**12:
        raise ValueError(f"number_words: max_number must be an int in [0, 10**12), got {max_number!r}")
    if not isinstance(min_number, (int, np.integer)) or not 0 <= min_number <= max_number:
        raise ValueError(
            f"number_words: min_number must be an int in [0, max_number={max_number}], got {min_number!r}"
        )
    digits = int(rng.integers(len(str(min_number)), len(str(max_number)) + 1))
    low = max(min_number, 0 if digits == 1 else 10 ** (digits - 1))
    n = int(rng.integers(low, min(10**digits - 1, max_number) + 1))
    return str(n), number_to_words(n)


def dates(
    rng: np.random.Generator, *, style: str = "dmy", min_year: int = 1900, max_year: int = 2099
) -> tuple[str, str]:
    """One ISO date and its spelled-out form: ``("2024-03-07", "7 March 2024")`` ("March 7, 2024" for style="mdy")."""
    if style not in ("dmy", "mdy"):
        raise ValueError(f"dates: style must be 'dmy' or 'mdy', got {style!r}")
    if not 1 <= min_year <= max_year <= 9999:
        raise ValueError(f"dates: need 1 <= min_year <= max_year <= 9999, got {min_year}, {max_year}")
    year = int(rng.integers(min_year, max_year + 1))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
    name = _MONTHS[month - 1]
    target = f"{day} {name} {year}" if style == "dmy" else f"{name} {day}, {year}"
    return f"{year:04d}-{month:02d}-{day:02d}", target


TASKS: dict[str, Callable[..., tuple[str, str]]] = {"number_words": number_words, "dates": dates}

# Sources that are always in ``train``: 0..99 each have their own words ("eleven", "forty"), which
# no other example teaches, so holding one out would make it unlearnable; val holds out compositions.
_TRAIN_ONLY: dict[str, Callable[[str], bool]] = {"number_words": lambda source: len(source) <= 2}


def is_val_source(source: str, val_percent: float = 10.0) -> bool:
    """Whether a source belongs to the held-out split: decided by a stable hash (BLAKE2b) of its text alone."""
    digest = hashlib.blake2b(source.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 10_000 < val_percent * 100


def toy_pairs(
    task: str, n: int, seed: int = 0, split: str = "train", *, val_percent: float = 10.0, **options: Any
) -> list[tuple[str, str]]:
    """``n`` (source, target) pairs of a toy task, the same for the same arguments.

    Args:
      task: a name in :data:`TASKS`.
      n: number of pairs (drawn with replacement).
      seed: the random seed; ``train`` and ``val`` use their own streams.
      split: ``"train"`` or ``"val"``; a source is in exactly one of them
        (see :func:`is_val_source`), so the splits never share a source.
        ``number_words`` keeps 0..99 in ``train``: their words are the
        task's vocabulary, and ``val`` tests the composition of them.
      val_percent: the share of sources held out for ``val``.
      **options: passed to the task (e.g. ``max_number=999`` for ``number_words``).

    Raises ``ValueError`` for an unknown task or split, and when the split
    has too few sources to draw from (e.g. ``val`` of a tiny ``max_number``).

    Examples:
      >>> for source, target in zoo.data.toy_pairs("number_words", 2, seed=0):
      ...     print(source, "->", target)
      ...
      673265 -> six hundred seventy three thousand two hundred sixty five
      3428 -> three thousand four hundred twenty eight
      >>> sorted(zoo.data.TRANSLATION_TASKS)
      ['dates', 'number_words']
    """
    if task not in TASKS:
        raise ValueError(f"toy_pairs: unknown task {task!r}; expected one of {sorted(TASKS)}")
    if split not in ("train", "val"):
        raise ValueError(f"toy_pairs: split must be 'train' or 'val', got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"toy_pairs: n must be a non-negative int, got {n!r}")
    if not 0.0 < val_percent < 100.0:
        raise ValueError(f"toy_pairs: val_percent must be in (0, 100), got {val_percent!r}")
    draw, train_only = TASKS[task], _TRAIN_ONLY.get(task, lambda source: False)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    want_val = split == "val"
    pairs: list[tuple[str, str]] = []
    attempts = 0
    budget = 200 * n + 10_000
    while len(pairs) < n:
        attempts += 1
        if attempts > budget:
            raise ValueError(
                f"toy_pairs: found only {len(pairs)} of {n} {split!r} pairs of {task!r} with options "
                f"{options} in {budget} draws; the task has too few distinct sources for this split"
            )
        source, target = draw(rng, **options)
        if (is_val_source(source, val_percent) and not train_only(source)) == want_val:
            pairs.append((source, target))
    return pairs


# -- parallel corpora -----------------------------------------------------------------

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _load_dataset(spec: str, split: str):
    import datasets

    if spec.startswith("hf:"):
        from .hub import load_hub_dataset

        return load_hub_dataset(spec, "parallel corpus", split=split)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(
            f"load_parallel_corpus: {spec!r} is not a file; expected a .csv, .tsv, .json, .jsonl or "
            ".parquet file, or 'hf:NAME[:CONFIG]'"
        )
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"load_parallel_corpus: cannot read {path.suffix!r} files; expected one of {sorted(_BUILDERS)}"
        )
    kwargs = {}
    if builder == "csv":  # read every column as text: "0071" stays "0071", "NA" stays "NA"
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter=sep), None)
        if not header:
            raise ValueError(f"load_parallel_corpus: {spec!r} is empty (no header row)")
        kwargs = {"sep": sep, "na_filter": False,
                      "features": datasets.Features({c: datasets.Value("string") for c in header})}
    try:
        return datasets.load_dataset(builder, data_files=os.fspath(path), split="train", **kwargs)
    except ValueError as e:
        if "no data" in str(e):  # datasets: 'Instruction "train" corresponds to no data!'
            raise ValueError(f"load_parallel_corpus: {spec!r} has no rows") from e
        raise


def _column(ds, spec: str, column: str) -> list:
    """The values of ``column``; "a.b" reads field b of a struct column a (e.g. "translation.de")."""
    top, _, field = column.partition(".")
    if top not in ds.column_names:
        raise ValueError(
            f"load_parallel_corpus: {spec!r} has no column {column!r}; its columns are {ds.column_names}"
        )
    values = ds.select_columns([top]).to_dict()[top]
    if field:
        if values and not isinstance(values[0], dict):
            raise ValueError(
                f"load_parallel_corpus: column {top!r} of {spec!r} is not a struct; cannot read {column!r}"
            )
        if values and field not in values[0]:
            raise ValueError(
                f"load_parallel_corpus: {spec!r} has no field {column!r}; column {top!r} has {sorted(values[0])}"
            )
        values = [v[field] for v in values]
    return values


def load_parallel_corpus(
    path_or_hf_spec: str | os.PathLike, source_column: str, target_column: str, *, split: str = "train"
) -> list[tuple[str, str]]:
    """Read ``[(source, target), ...]`` strings from a local file or a Hugging Face dataset.

    Args:
      path_or_hf_spec: a ``.csv`` / ``.tsv`` (header row; every column is
        read as text), ``.json`` / ``.jsonl`` (JSON lines) or ``.parquet``
        file, or ``"hf:NAME[:CONFIG]"`` for ``datasets.load_dataset``.
      source_column: the source's column name; ``"a.b"`` reads field
        ``b`` of a struct column ``a`` (WMT's ``"translation.de"``).
      target_column: the target's column name, likewise.
      split: the split of an ``hf:`` dataset (a local file is one split).

    Raises ``ValueError`` naming the column and listing the available ones
    when a column is missing, when a value is not a string (or is missing),
    and when there are no pairs.

    Examples:
      >>> from pathlib import Path
      >>> _ = Path("pairs.csv").write_text("de,en\\nHallo,Hello\\nDanke,Thank you\\n")
      >>> zoo.data.load_parallel_corpus("pairs.csv", "de", "en")
      [('Hallo', 'Hello'), ('Danke', 'Thank you')]
    """
    spec = os.fspath(path_or_hf_spec)
    ds = _load_dataset(spec, split)
    sources, targets = _column(ds, spec, source_column), _column(ds, spec, target_column)
    pairs = []
    for i, (s, t) in enumerate(zip(sources, targets)):
        for column, value in ((source_column, s), (target_column, t)):
            if not isinstance(value, str):
                raise ValueError(
                    f"load_parallel_corpus: row {i} of {spec!r}: column {column!r} holds {value!r} "
                    f"({type(value).__name__}), expected a string"
                )
        pairs.append((s, t))
    if not pairs:
        raise ValueError(f"load_parallel_corpus: {spec!r} has no rows")
    return pairs


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The fraction of predictions equal to their reference (leading and trailing whitespace ignored).

    Examples:
      >>> zoo.data.exact_match(["twenty one", "three "], ["twenty one", "four"])
      0.5
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"exact_match: {len(predictions)} predictions but {len(references)} references; expected as many"
        )
    if not references:
        raise ValueError("exact_match: no references given")
    return float(np.mean([p.strip() == r.strip() for p, r in zip(predictions, references)]))


def make_translation_batch(pairs_ids: Sequence[tuple[Any, Any]], config: Any) -> dict[str, np.ndarray]:
    """A translation batch (``zoo.train.objectives.TRANSLATION``) from ``[(src_ids, tgt_ids), ...]`` (1-D integer sequences, no special tokens).

    Every row is right-padded with the EOS id to the config's fixed shapes
    (src (b, max_source_len), targets (b, max_target_len) of a ``zoo.Seq2SeqConfig``), so a jitted step
    compiles once::

        src         = x + pad                src_lengths = len(x)
        tgt_in      = [BOS] + y + pad        tgt_lengths = len(y) + 1
        tgt_out     = y + [EOS] + pad

    Nothing is truncated: a source longer than ``max_source_len`` or a target
    longer than ``max_target_len - 1`` (room for BOS/EOS) raises
    ``ValueError`` naming the pair; filter such pairs out beforehand. Ids
    outside ``[0, vocab_size)`` raise too.
    """
    if len(pairs_ids) == 0:
        raise ValueError("make_translation_batch: no pairs given")
    s, t, bos, eos = config.max_source_len, config.max_target_len, config.bos, config.eos
    b = len(pairs_ids)
    batch = {
        "src": np.full((b, s), eos, np.int32), "src_lengths": np.zeros((b,), np.int32),
        "tgt_in": np.full((b, t), eos, np.int32), "tgt_out": np.full((b, t), eos, np.int32),
        "tgt_lengths": np.zeros((b,), np.int32),
    }
    for i, pair in enumerate(pairs_ids):
        if len(pair) != 2:
            raise ValueError(f"make_translation_batch: pair {i} is not a (src_ids, tgt_ids) pair")
        x, y = (np.asarray(a).reshape(-1) for a in pair)
        for name, ids in (("source", x), ("target", y)):
            if ids.size and (
                not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= config.vocab_size
            ):
                raise ValueError(
                    f"make_translation_batch: pair {i}: {name} ids must be integers in [0, vocab_size="
                    f"{config.vocab_size}), got {ids.dtype} values {ids.min()}..{ids.max()}"
                )
        if len(x) > s:
            raise ValueError(
                f"make_translation_batch: pair {i}: source has {len(x)} tokens, more than max_source_len={s}; "
                "filter long pairs out (nothing is truncated)"
            )
        if len(y) + 1 > t:
            raise ValueError(
                f"make_translation_batch: pair {i}: target has {len(y)} tokens, more than max_target_len - 1 = "
                f"{t - 1} (one position holds BOS/EOS); filter long pairs out (nothing is truncated)"
            )
        batch["src"][i, : len(x)] = x
        batch["src_lengths"][i] = len(x)
        batch["tgt_in"][i, 0] = bos
        batch["tgt_in"][i, 1 : len(y) + 1] = y
        batch["tgt_out"][i, : len(y)] = y
        batch["tgt_out"][i, len(y)] = eos
        batch["tgt_lengths"][i] = len(y) + 1
    return batch
