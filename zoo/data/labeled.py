"""Labeled text for sequence classification (fine-tuning BERT): loading, encoding, batches.

:func:`load_labeled` turns a spec into a :class:`LabeledData` — training and
validation lists of :class:`Example` ``(text, text_pair, label)`` (``text_pair``
is ``None`` for single-sentence tasks) and the sorted label set. Specs:

a path ending in ``.csv``, ``.json``, ``.jsonl`` or ``.parquet``
    One file, read with ``datasets.load_dataset("csv" | "json" | "parquet")``
    (JSON: one object per line, or an array of objects). 10% of it, chosen by
    ``seed``, is held out for validation.
``"hf:NAME[:CONFIG]"``
    ``datasets.load_dataset(NAME, CONFIG)`` from the Hugging Face hub (the
    network the first time, then the local cache), or from a local folder
    NAME holding ``train.csv`` and ``validation.csv`` (or ``.jsonl``,
    ``.parquet``; the names ``datasets`` infers splits from): split ``train`` and, for
    validation, ``split`` or else the first of ``validation``, ``valid``,
    ``val``, ``test`` that exists, else a held-out 10%. E.g. SST-2 is
    ``load_labeled("hf:glue:sst2", text_column="sentence")``.
``"synthetic:NAME"``
    A built-in task, generated from ``seed`` with no files (2,000 training
    and 500 validation examples, labels exactly balanced, no sentence in both
    splits), small enough that a tiny BERT learns it in a minute of CPU:

    ``synthetic:sentiment``
        Sentences about a movie, book, meal, ... with one opinion word
        (``"the film was really dull"``), sometimes negated (``"this meal is
        not delightful"``, ``"... was never good"``; 30% of them), labelled
        ``positive`` or ``negative``: the opinion word's polarity, flipped by
        a negation. Counting positive and negative words gives ~70%; the
        rest needs the negation read with the word it modifies.
    ``synthetic:pair``
        Two opinions of the same thing, without negation (``"the book was
        dull"``, ``"my friends said the book was superb"``), labelled
        ``agree`` if their opinion words have the same polarity, else
        ``disagree``: a sentence-pair task (segments 0 and 1) that no single
        word decides. To get a tiny model from scratch off the plateau of an
        XOR, 40% of the second sentences carry a cue (``"yes , the book was
        also ..."`` when they agree, ``"but the book was ..."`` when not), which
        alone gives 70%; the rest needs both opinions compared.

Errors: a missing column (naming the columns there are), an empty dataset, a
missing text or label, a single label, and validation labels that the
training split lacks are all ValueErrors.

:func:`encode_examples` makes the model's arrays, ``[CLS] a [SEP]`` or
``[CLS] a [SEP] b [SEP]`` (segment ids 0 then 1), padded to ``max_len``::

    ids          (N, max_len) int32   padded with [PAD]
    segment_ids  (N, max_len) int32   0 for [CLS] a [SEP], 1 for b [SEP], 0 padding
    seq_lengths  (N,) int32           real tokens per row
    labels       (N,) int32           label_to_id[label]

:func:`classification_batch` samples training batches of those (a pure
function of ``(seed, step)``), :func:`eval_batches` walks them in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "SYNTHETIC_TASKS",
    "Example",
    "LabeledData",
    "classification_batch",
    "encode_examples",
    "eval_batches",
    "load_examples",
    "load_labeled",
    "longest_first",
]

SPEC_HELP = "expected a .csv/.json/.jsonl/.parquet file, 'hf:NAME[:CONFIG]' or 'synthetic:NAME'"
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
VAL_SPLITS = ("validation", "valid", "val", "test")


class Example(NamedTuple):
    """One labeled example: ``text``, ``text_pair`` (None for a single sentence) and ``label``.

    Examples:
      >>> example = zoo.data.Example("the film was great", None, "positive")
      >>> example.text, example.text_pair, example.label
      ('the film was great', None, 'positive')
    """

    text: str
    text_pair: str | None
    label: Any


@dataclass
class LabeledData:
    """``train`` and ``validation`` examples, ``labels`` (sorted), and ``info`` to record with the run.

    Examples:
      >>> data = zoo.data.load_labeled("synthetic:sentiment")
      >>> len(data.train), len(data.validation), data.labels
      (2000, 500, ['negative', 'positive'])
      >>> data.train[0].label in data.labels
      True
    """

    train: list[Example]
    validation: list[Example]
    labels: list
    info: dict = field(default_factory=dict)

    @property
    def label_to_id(self) -> dict:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def load_labeled(
    spec: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    split: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> LabeledData:
    """Load the labeled data named by ``spec`` (see the module docstring).

    ``split`` names the validation split of an ``hf:`` dataset; ``val_fraction``
    and ``seed`` choose the held-out examples when there is none (and seed the
    synthetic tasks).

    Examples:
      >>> from pathlib import Path
      >>> _ = Path("reviews.csv").write_text("text,label\\n" + "great film,pos\\ndull meal,neg\\n" * 10)
      >>> data = zoo.data.load_labeled("reviews.csv")
      >>> len(data.train), len(data.validation), data.labels
      (18, 2, ['neg', 'pos'])
      >>> data = zoo.data.load_labeled("synthetic:pair", seed=0)
      >>> data.train[0].text_pair is not None, data.labels
      (True, ['agree', 'disagree'])
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"labeled data spec {spec!r} is empty; {SPEC_HELP}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r}; expected a number in (0, 1)")
    columns = (text_column, text_pair_column, label_column)
    if spec.startswith("synthetic:"):
        name = spec[len("synthetic:"):]
        if name not in SYNTHETIC_TASKS:
            raise ValueError(f"synthetic task {name!r} is unknown; expected one of {', '.join(SYNTHETIC_TASKS)}")
        train, val = SYNTHETIC_TASKS[name](seed)
        info = {"source": "synthetic"}
    elif spec.startswith("hf:"):
        train, val, info = _load_hf(spec, columns, split)
    else:
        if split is not None:
            raise ValueError(f"split={split!r} applies to 'hf:' datasets only; {spec!r} is one file")
        train, val, info = _load_file(spec, columns), None, {"source": "file"}
    if not train:
        raise ValueError(f"labeled data {spec!r} is empty: its training split has no rows")
    if val is None:
        train, val = holdout(train, val_fraction, seed)
        info["validation"] = f"held out {val_fraction:.0%} of train (seed {seed})"
    labels = sorted({ex.label for ex in train})
    if len(labels) < 2:
        raise ValueError(f"labeled data {spec!r}: every training example has label {labels[0]!r}; "
                         f"column {label_column!r} must hold at least two labels")
    unknown = sorted({ex.label for ex in val} - set(labels), key=repr)
    if unknown:
        raise ValueError(f"labeled data {spec!r}: validation has labels {unknown} that training lacks "
                         f"(training labels: {labels})")
    info = {"spec": spec, **info, "train_examples": len(train), "val_examples": len(val), "labels": labels,
            "pairs": train[0].text_pair is not None}
    return LabeledData(train, val, labels, info)


def load_examples(spec: str, *, text_column: str = "text", label_column: str = "label",
                  text_pair_column: str | None = None) -> list[Example]:
    """Every row of one labeled file (``.csv``, ``.json``, ``.jsonl``, ``.parquet``) as Examples, in order,
    nothing held out: a test set. Errors as :func:`load_labeled`'s."""
    if not isinstance(spec, str) or not spec or spec.startswith(("hf:", "synthetic:")):
        raise ValueError(f"labeled data spec {spec!r}: expected a .csv/.json/.jsonl/.parquet file")
    return _load_file(spec, (text_column, text_pair_column, label_column))


def holdout(examples: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): ``max(1, round(n * val_fraction))`` examples chosen by ``seed``, order kept."""
    n = len(examples)
    if n < 2:
        raise ValueError(f"cannot hold out validation examples from {n} example(s); give at least 2")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return [ex for ex, v in zip(examples, is_val) if not v], [ex for ex, v in zip(examples, is_val) if v]


# ---------------------------------------------------------------------------
# Files and the hub


def _examples(ds, spec: str, split: str, columns: tuple) -> list[Example]:
    """The rows of a ``datasets.Dataset`` as Examples; checks that the columns exist and hold values."""
    text_column, pair_column, label_column = columns
    wanted = [c for c in columns if c is not None]
    for column in wanted:
        if column not in ds.column_names:
            raise ValueError(f"labeled data {spec!r}: split {split!r} has no column {column!r}; its columns "
                             f"are {ds.column_names}")
    rows = ds.select_columns(wanted).to_dict()
    texts, labels = rows[text_column], rows[label_column]
    pairs = rows[pair_column] if pair_column is not None else [None] * len(texts)
    for i, (text, pair, label) in enumerate(zip(texts, pairs, labels)):
        if not isinstance(text, str) or (pair_column is not None and not isinstance(pair, str)):
            column, value = (text_column, text) if not isinstance(text, str) else (pair_column, pair)
            raise ValueError(f"labeled data {spec!r}: split {split!r} row {i}: column {column!r} holds "
                             f"{value!r}, expected text")
        if label is None or (isinstance(label, float) and np.isnan(label)):
            raise ValueError(f"labeled data {spec!r}: split {split!r} row {i} has no label ({label_column!r})")
    return [Example(t, p, label) for t, p, label in zip(texts, pairs, labels)]


def _load_file(spec: str, columns: tuple) -> list[Example]:
    import datasets

    path = Path(os.path.expanduser(spec))
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"labeled data spec {spec!r}: unknown file type {path.suffix!r}; {SPEC_HELP}")
    if not path.is_file():
        raise ValueError(f"labeled data spec {spec!r}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"labeled data {spec!r} is empty: the file has no rows")
    try:
        ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train")
    except (ValueError, datasets.exceptions.DatasetGenerationError) as e:
        if "corresponds to no data" in str(e):  # a CSV header without rows, a JSON "[]"
            raise ValueError(f"labeled data {spec!r} is empty: the file has no rows") from e
        raise ValueError(f"labeled data {spec!r}: cannot read it as {builder} ({type(e).__name__}: {e})") from e
    if len(ds) == 0:
        raise ValueError(f"labeled data {spec!r} is empty: the file has no rows")
    return _examples(ds, spec, "train", columns)


def _load_hf(spec: str, columns: tuple, split: str | None):
    import datasets

    from .hub import load_hub_dataset

    dsd = load_hub_dataset(spec, "labeled data")
    if isinstance(dsd, datasets.Dataset):  # a single split saved with save_to_disk
        dsd = datasets.DatasetDict({"train": dsd})
    if "train" not in dsd:
        raise ValueError(f"labeled data {spec!r} has no 'train' split; its splits are {list(dsd)}")
    if split is not None and split not in dsd:
        raise ValueError(f"labeled data {spec!r} has no split {split!r}; its splits are {list(dsd)}")
    val_split = split or next((s for s in VAL_SPLITS if s in dsd), None)
    train = _examples(dsd["train"], spec, "train", columns)
    val = _examples(dsd[val_split], spec, val_split, columns) if val_split else None
    info = {"source": "load_dataset", "validation": val_split}
    names = getattr(dsd["train"].features[columns[2]], "names", None)
    if names:  # a ClassLabel: the labels are ints, these are their names
        info["label_names"] = list(names)
    return train, val, info


# ---------------------------------------------------------------------------
# Synthetic tasks

N_TRAIN, N_VAL = 2000, 500
POSITIVE = ("good", "great", "excellent", "wonderful", "fantastic", "brilliant", "delightful", "superb",
            "lovely", "charming", "enjoyable", "amazing")
NEGATIVE = ("bad", "terrible", "awful", "boring", "dull", "horrible", "dreadful", "poor", "weak",
            "disappointing", "tedious", "mediocre")
SUBJECTS = ("movie", "film", "book", "show", "play", "story", "album", "meal", "game", "concert", "novel", "series")
ADVERBS = ("", "very ", "really ", "quite ", "truly ")
SENTIMENT_TEMPLATES = ("the {noun} was {neg}{adv}{adj}", "this {noun} is {neg}{adv}{adj}",
                       "i thought the {noun} was {neg}{adj}", "honestly , the {noun} is {neg}{adv}{adj}",
                       "my friends said the {noun} was {neg}{adj}")
NEGATION_RATE = 0.3
AGREE_CUES = "yes , the {noun} was also {adv}{adj}"  # in 40% of the "agree" pairs' second sentences
DISAGREE_CUES = "but the {noun} was {adv}{adj}"  # in 40% of the "disagree" ones
CUE_RATE = 0.4


def _opinion(rng: np.random.Generator, noun: str, positive: bool, negated: bool = False,
             template: str | None = None) -> str:
    """One sentence about ``noun`` with an opinion word of that polarity (then "not"/"never" if ``negated``)."""
    adjectives = POSITIVE if positive else NEGATIVE
    template = template or SENTIMENT_TEMPLATES[rng.integers(len(SENTIMENT_TEMPLATES))]
    return template.format(
        noun=noun,
        neg=("not ", "never ")[rng.integers(2)] if negated else "",
        adv=ADVERBS[rng.integers(len(ADVERBS))],
        adj=adjectives[rng.integers(len(adjectives))],
    )


def _sentiment_example(rng: np.random.Generator, i: int) -> Example:
    label = ("negative", "positive")[i % 2]
    negated = (i // 2) % 10 < 10 * NEGATION_RATE  # exactly 30% of each label in every 20 examples
    noun = SUBJECTS[rng.integers(len(SUBJECTS))]
    return Example(_opinion(rng, noun, (label == "positive") != negated, negated), None, label)


def _pair_example(rng: np.random.Generator, i: int) -> Example:
    label = ("agree", "disagree")[i % 2]
    noun = SUBJECTS[rng.integers(len(SUBJECTS))]
    first = bool(rng.integers(2))
    second = first if label == "agree" else not first
    cued = (i // 2) % 10 < 10 * CUE_RATE  # exactly 40% of each label in every 20 examples
    template = (AGREE_CUES if label == "agree" else DISAGREE_CUES) if cued else None
    return Example(_opinion(rng, noun, first), _opinion(rng, noun, second, template=template), label)


def _generate(make, seed: int, name: str) -> tuple[list[Example], list[Example]]:
    """N_TRAIN + N_VAL distinct examples, each split shuffled.

    ``make(rng, i)`` draws example i; its label (and any other proportion that
    must be exact) depends on i only, and a repeated sentence is drawn again
    with the same i, so the proportions hold exactly in both splits.
    """
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    seen, out = set(), []
    for i in range(N_TRAIN + N_VAL):
        for _ in range(1000):
            example = make(rng, i)
            if example[:2] not in seen:
                break
        else:
            raise RuntimeError(f"synthetic:{name}: cannot find {N_TRAIN + N_VAL} distinct examples")
        seen.add(example[:2])
        out.append(example)
    train, val = out[:N_TRAIN], out[N_TRAIN:]
    return [train[i] for i in rng.permutation(len(train))], [val[i] for i in rng.permutation(len(val))]


SYNTHETIC_TASKS = {
    "sentiment": lambda seed: _generate(_sentiment_example, seed, "sentiment"),
    "pair": lambda seed: _generate(_pair_example, seed, "pair"),
}


# ---------------------------------------------------------------------------
# Encoding and batches


def longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths of a pair truncated to ``len_a + len_b <= budget`` by "longest first".

    The rule of Hugging Face's ``truncation="longest_first"``: drop the last
    token of the longer segment, one token at a time (of the second on a tie),
    until the pair fits. Computed in closed form.

    Examples:
      >>> zoo.data.longest_first(10, 4, budget=8)      # the longer segment loses tokens first
      (4, 4)
      >>> zoo.data.longest_first(5, 5, budget=7)       # a tie: the second segment first
      (4, 3)
    """
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    gap = abs(len_a - len_b)
    if excess <= gap:  # only the longer one shrinks
        return (len_a - excess, len_b) if len_a > len_b else (len_a, len_b - excess)
    shorter, rest = min(len_a, len_b), excess - gap  # equal now; b loses first, then they alternate
    return shorter - rest // 2, shorter - (rest + 1) // 2


def encode_examples(examples: Sequence[Example], tokenizer, max_len: int, label_to_id: dict) -> dict[str, np.ndarray]:
    """Examples -> ``ids, segment_ids, seq_lengths, labels`` (see the module docstring).

    A single text longer than ``max_len - 2`` loses its end; a pair longer
    than ``max_len - 3`` is cut by :func:`longest_first`. ``tokenizer`` needs
    ``cls_id``, ``sep_id`` and ``pad_id`` (a WordPiece tokenizer).

    Examples:
      >>> texts = ["the film was great", "the meal was dull"] * 20
      >>> tok = zoo.data.make_tokenizer("wordpiece", texts, vocab_size=100)
      >>> examples = [zoo.data.Example("the film was great", None, "pos"),
      ...             zoo.data.Example("the meal", "was dull", "neg")]
      >>> arrays = zoo.data.encode_examples(examples, tok, max_len=8, label_to_id={"neg": 0, "pos": 1})
      >>> {name: a.shape for name, a in arrays.items()}
      {'ids': (2, 8), 'segment_ids': (2, 8), 'seq_lengths': (2,), 'labels': (2,)}
      >>> arrays["segment_ids"][1].tolist(), arrays["seq_lengths"].tolist(), arrays["labels"].tolist()
      ([0, 0, 0, 0, 1, 1, 1, 0], [6, 7], [1, 0])
    """
    missing = [a for a in ("cls_id", "sep_id", "pad_id") if not hasattr(tokenizer, a)]
    if missing:
        raise ValueError(f"encode_examples: the {tokenizer.kind} tokenizer has no {', '.join(missing)}; "
                         "use a 'wordpiece' tokenizer")
    pairs = any(ex.text_pair is not None for ex in examples)
    if max_len < (4 if pairs else 3):
        raise ValueError(f"encode_examples: max_len={max_len} leaves no room for text beside [CLS] and [SEP]")
    for i, ex in enumerate(examples):
        if ex.label not in label_to_id:
            raise ValueError(f"encode_examples: example {i} has label {ex.label!r}, which is not in the label set "
                             f"{list(label_to_id)}")
    n = len(examples)
    ids = np.full((n, max_len), tokenizer.pad_id, np.int32)
    segment_ids = np.zeros((n, max_len), np.int32)
    seq_lengths = np.zeros((n,), np.int32)
    labels = np.array([label_to_id[ex.label] for ex in examples], np.int32).reshape(n)
    firsts = tokenizer.encode_batch([ex.text for ex in examples])
    seconds = tokenizer.encode_batch([ex.text_pair or "" for ex in examples]) if pairs else [None] * n
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    for i, (a, b) in enumerate(zip(firsts, seconds)):
        if examples[i].text_pair is None:
            a, b = a[: max_len - 2], None
            row = [cls, *a, sep]
        else:
            la, lb = longest_first(len(a), len(b), max_len - 3)
            a, b = a[:la], b[:lb]
            row = [cls, *a, sep, *b, sep]
            segment_ids[i, la + 2 : len(row)] = 1
        ids[i, : len(row)] = row
        seq_lengths[i] = len(row)
    return {"ids": ids, "segment_ids": segment_ids, "seq_lengths": seq_lengths, "labels": labels}


def classification_batch(encoded: dict[str, np.ndarray], batch_size: int, *, seed: int, step: int) -> dict:
    """Training batch ``step``: rows of ``encoded`` in epochs of a fresh shuffle each.

    Row k of the whole run (k = step * batch_size + j) is example
    ``perm_e[k % N]`` with ``perm_e = default_rng([seed, e]).permutation(N)``
    for epoch ``e = k // N``: every example once per epoch, and a pure
    function of ``(seed, step)``.

    Examples:
      >>> encoded = {"ids": np.arange(12).reshape(6, 2), "labels": np.arange(6)}
      >>> batch = zoo.data.classification_batch(encoded, 4, seed=0, step=0)
      >>> batch["ids"].shape, batch["labels"].shape
      ((4, 2), (4,))
      >>> sorted(np.concatenate([zoo.data.classification_batch(encoded, 3, seed=0, step=s)["labels"]
      ...                        for s in (0, 1)]).tolist())   # every example once per epoch
      [0, 1, 2, 3, 4, 5]
    """
    n = len(encoded["labels"])
    if n == 0:
        raise ValueError("classification_batch: no examples")
    if batch_size < 1 or step < 0 or seed < 0:
        raise ValueError(f"classification_batch: batch_size={batch_size}, seed={seed}, step={step}; "
                         "expected batch_size >= 1, seed >= 0, step >= 0")
    k = step * batch_size + np.arange(batch_size)  # (B,) row numbers in the run
    epochs = k // n
    index = np.empty((batch_size,), np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        index[sel] = np.random.default_rng([seed, int(e)]).permutation(n)[k[sel] % n]
    return {name: array[index] for name, array in encoded.items()}


def eval_batches(encoded: dict[str, np.ndarray], batch_size: int) -> Iterator[dict]:
    """All rows in order, in batches of exactly ``batch_size`` (one compiled shape) with ``weights`` (B,) float32.

    The last batch is padded with copies of row 0 of weight 0; average a
    metric as ``sum(metric * weights) / sum(weights)``.

    Examples:
      >>> encoded = {"ids": np.arange(10).reshape(5, 2), "labels": np.arange(5)}
      >>> batches = list(zoo.data.eval_batches(encoded, 2))
      >>> len(batches), batches[-1]["ids"].shape, batches[-1]["weights"].tolist()
      (3, (2, 2), [1.0, 0.0])
    """
    n = len(encoded["labels"])
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size)
        real = index < n
        batch = {name: array[np.where(real, index, 0)] for name, array in encoded.items()}
        batch["weights"] = real.astype(np.float32)
        yield batch
