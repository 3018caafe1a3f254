"""Synthetic long-range tasks: adding, copy memory, selective copying, associative recall.

Each task asks a sequence model to carry information over a distance ``T``
that the generator sets, so that sweeping ``T`` shows where a model's memory
runs out. The generators are pure NumPy and deterministic: the same
arguments and ``seed`` give the same batch (``seed`` is an int or a tuple of
ints, e.g. ``(run_seed, stream, step)``, passed to
``numpy.random.default_rng``).

**Batches.** Every generator returns a :class:`Batch` of three arrays with
the same leading shape ``(B, L)``, where ``L`` is the total sequence length
(:func:`sequence_length`):

    inputs   (B, L) int32 token ids, or (B, L, 2) float32 for adding
    targets  (B, L) int32 answer ids, or (B, L) float32 for adding; 0 where not scored
    mask     (B, L) bool, True at the positions that are scored

The model reads ``inputs`` left to right and makes one prediction per
position; the prediction at position ``t`` may use ``inputs[:, :t + 1]``
only (a causal model), and the loss and the metric count only the positions
where ``mask`` is True. The answer positions always come after the inputs
that determine them.

**Token convention** (copy, selective copying, associative recall): id 0 is
the *blank* (padding, noise, "nothing to say"), ids ``1..S`` are the task's
data symbols, and the last id, ``vocab_size - 1``, is the *delimiter* that
tells the model to start answering. Inputs and targets share the vocabulary.

The tasks
---------

**Adding problem** (Hochreiter & Schmidhuber 1997, experiment 4; in the form
of Le et al. 2015 and Arjovsky et al. 2016). ``L = T`` steps, each a pair
``(value, marker)`` with ``value ~ U[0, 1]``; exactly two markers are 1, one
at a uniform position in the first half ``[0, T // 2)`` and one in the second
half ``[T // 2, T)``. The target, scored at the last step only, is the sum of
the two marked values. Regression; metric: mean squared error. The trivial
baseline always predicts the mean, 1.0, and has MSE = Var(X1 + X2) =
2/12 = 1/6 ≈ 0.167; a model must beat it clearly to show it found the
markers.

**Copy memory** (Arjovsky, Shah & Bengio 2016, section 4.1, following
Hochreiter & Schmidhuber 1997). The first ``num_copy = 10`` inputs are
symbols drawn uniformly from ``num_symbols = 8`` categories (ids 1..8);
then come ``T - 1`` blanks, the delimiter (id 9), and ``num_copy`` more
blanks: ``L = T + 2 * num_copy`` (T + 20, the paper's layout, in which the
delimiter is the last of the T steps between the data and the answer). The
model must output the 10 symbols, in order, at the last 10 positions (the
paper's target sequence is ``T + 10`` blanks followed by the symbols; the
blanks are not scored here). Metric: accuracy over those 10 positions. The
memoryless baseline knows that answers are symbols but not which: accuracy
1/8 = 12.5% (cross-entropy log 8 ≈ 2.08 nats per scored token).

**Selective copying** (Gu & Dao 2023, Mamba, section 3.1 and appendix E.1;
the layout of the H3/Zoology generator). A region of ``T`` positions holds
``num_tokens`` data tokens (uniform over ``num_symbols`` symbols, ids
``1..num_symbols``) at distinct random positions, in increasing order of
position; every other position is the blank (the "noise" token). Then come
``num_tokens`` delimiters, ``L = T + num_tokens``; at those positions the
model must output the data tokens in the order they appeared. Unlike copy
memory, where the data sit at fixed positions, the model must select the
tokens by content. Metric: accuracy over the answer positions; memoryless
baseline 1/num_symbols.

**Associative recall** (Ba et al. 2016, "Using fast weights to attend to the
recent past", section 4.1; Fu et al. 2023, H3, section 3.1). ``num_pairs = 4``
key-value pairs, keys distinct, drawn from ``num_keys = 8`` key ids
(``1..num_keys``), values drawn with replacement from ``num_values = 8``
value ids (``num_keys + 1 .. num_keys + num_values``). Each pair is two adjacent
tokens, key then value, in one of the ``T // 2`` two-token slots of a region
of ``T`` positions (slots chosen at random; the rest is blank). Then the
delimiter and a query key (one of the pairs' keys, uniform): ``L = T + 2``.
The model must output the query key's value at the last position. With
``T = 2 * num_pairs`` the region is dense and this is the task of Ba et al.
(who also separate the query with a marker) and H3; a longer ``T`` spreads
the same pairs over blanks, so the distance from a pair to the query grows
with ``T``. Metric: accuracy at the last position; the memoryless baseline
guesses a value, 1/num_values = 12.5%. A model that remembers which values
occurred but not which key each belongs to gets about 32% (one of the 3.2
distinct values, on average, of 4 draws from 8): only accuracy well above
that shows recall. (The vocabulary is smaller than H3's so that a small model
can learn the binding in a CPU-sized budget: with 16 keys and 16 values,
none of zoo's models got past the "which values occurred" guess in 1,500
steps.)

:data:`TASKS` names the tasks for the command line; :func:`make_batch` and
:func:`task_spec` dispatch on those names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "TASKS",
    "Batch",
    "TaskSpec",
    "adding_problem",
    "copy_memory",
    "selective_copy",
    "associative_recall",
    "make_batch",
    "task_spec",
    "sequence_length",
]

TaskName = Literal["adding", "copy", "selective-copy", "recall"]
TASKS: tuple[str, ...] = ("adding", "copy", "selective-copy", "recall")

BLANK = 0  # the blank / noise / padding id of every token task


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of a task: inputs, targets and the mask of scored positions (see the module docstring)."""

    inputs: np.ndarray  # (B, L) int32, or (B, L, 2) float32 for adding
    targets: np.ndarray  # (B, L) int32, or (B, L) float32 for adding
    mask: np.ndarray  # (B, L) bool

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about a task at one length ``T``."""

    name: str
    length: int  # T, the task's distance parameter
    seq_len: int  # L, the total sequence length
    kind: Literal["tokens", "regression"]
    vocab_size: int  # token tasks: ids in [0, vocab_size) for inputs and targets; 0 for adding
    input_features: int  # adding: 2 (value, marker); token tasks: 0 (ids instead)
    num_outputs: int  # token tasks: vocab_size logits; adding: 1
    scored_per_example: int  # positions where mask is True in every row
    metric: Literal["accuracy", "mse"]
    baseline: float  # the memoryless / trivial baseline of the metric
    baseline_note: str

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"


# ----------------------------------------------------------------------------
# argument checks


def _check_int(fn: str, name: str, value: Any, low: int, why: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{fn}: {name}={value!r}, expected an int >= {low}{why}")
    return int(value)


def _rng(fn: str, seed: Any) -> np.random.Generator:
    ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0
    if not ok and isinstance(seed, (tuple, list)) and seed:
        ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 0 for s in seed)
    if not ok:
        raise ValueError(f"{fn}: seed={seed!r}, expected a non-negative int or a non-empty tuple of them")
    return np.random.default_rng(list(seed) if isinstance(seed, (tuple, list)) else int(seed))


# ----------------------------------------------------------------------------
# generators


def adding_problem(batch_size: int, length: int, seed: int | Sequence[int] = 0) -> Batch:
    """The adding problem: inputs (B, T, 2) float32 ``(value, marker)``, target the sum of the 2 marked values.

    One marker lies in ``[0, T // 2)``, the other in ``[T // 2, T)``; the
    target and the mask are set at the last position only.
    """
    fn = "adding_problem"
    b = _check_int(fn, "batch_size", batch_size, 1)
    t = _check_int(fn, "length", length, 2, " (one marker in each half of the sequence)")
    rng = _rng(fn, seed)
    values = rng.random((b, t))  # (B, T) in [0, 1)
    first = rng.integers(0, t // 2, b)  # (B,)
    second = rng.integers(t // 2, t, b)  # (B,)
    rows = np.arange(b)
    markers = np.zeros((b, t))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype(np.float32)  # (B, T, 2)
    targets = np.zeros((b, t), np.float32)
    targets[:, -1] = inputs[rows, first, 0] + inputs[rows, second, 0]  # the float32 values the model sees
    mask = np.zeros((b, t), bool)
    mask[:, -1] = True
    return Batch(inputs, targets, mask)


def copy_memory(
    batch_size: int, length: int, seed: int | Sequence[int] = 0, *, num_symbols: int = 8, num_copy: int = 10
) -> Batch:
    """Copy memory: ``num_copy`` symbols, ``T - 1`` blanks, the delimiter, ``num_copy`` blanks (L = T + 2 num_copy).

    Symbols are ids ``1..num_symbols``, the delimiter ``num_symbols + 1``;
    the targets at the last ``num_copy`` positions are the first
    ``num_copy`` inputs.
    """
    fn = "copy_memory"
    b = _check_int(fn, "batch_size", batch_size, 1)
    t = _check_int(fn, "length", length, 1, " (the delay: T - 1 blanks and the delimiter)")
    s = _check_int(fn, "num_symbols", num_symbols, 1)
    k = _check_int(fn, "num_copy", num_copy, 1)
    rng = _rng(fn, seed)
    n = t + 2 * k
    symbols = rng.integers(1, s + 1, (b, k))  # (B, K)
    inputs = np.zeros((b, n), np.int32)
    inputs[:, :k] = symbols
    inputs[:, k + t - 1] = s + 1  # the delimiter, the last of the T steps after the data
    targets = np.zeros((b, n), np.int32)
    targets[:, -k:] = symbols
    mask = np.zeros((b, n), bool)
    mask[:, -k:] = True
    return Batch(inputs, targets, mask)


def selective_copy(
    batch_size: int, length: int, seed: int | Sequence[int] = 0, *, num_tokens: int = 8, num_symbols: int = 8
) -> Batch:
    """Selective copying: ``num_tokens`` data tokens at random places among ``T`` positions, then delimiters.

    Data are ids ``1..num_symbols`` (blank 0 elsewhere in the region), the
    delimiter is ``num_symbols + 1``; the targets at the last ``num_tokens``
    positions are the data tokens in order of position (L = T + num_tokens).
    """
    fn = "selective_copy"
    b = _check_int(fn, "batch_size", batch_size, 1)
    k = _check_int(fn, "num_tokens", num_tokens, 1)
    t = _check_int(fn, "length", length, k, f" (room for num_tokens={k} data tokens)")
    s = _check_int(fn, "num_symbols", num_symbols, 1)
    rng = _rng(fn, seed)
    n = t + k
    # k distinct positions per row, sorted: the k smallest of T uniform keys
    positions = np.sort(np.argsort(rng.random((b, t)), axis=1)[:, :k], axis=1)  # (B, K)
    data = rng.integers(1, s + 1, (b, k))  # (B, K), in order of position
    inputs = np.zeros((b, n), np.int32)
    np.put_along_axis(inputs, positions, data, axis=1)
    inputs[:, t:] = s + 1  # the delimiters
    targets = np.zeros((b, n), np.int32)
    targets[:, t:] = data
    mask = np.zeros((b, n), bool)
    mask[:, t:] = True
    return Batch(inputs, targets, mask)


def associative_recall(
    batch_size: int,
    length: int,
    seed: int | Sequence[int] = 0,
    *,
    num_pairs: int = 4,
    num_keys: int = 8,
    num_values: int = 8,
) -> Batch:
    """Associative recall: key-value pairs in a region of ``T`` positions, the delimiter, a query key (L = T + 2).

    Keys are ids ``1..num_keys`` (distinct within a row), values
    ``num_keys + 1 .. num_keys + num_values``, the delimiter
    ``num_keys + num_values + 1``; the target at the last position is the
    value paired with the query key.
    """
    fn = "associative_recall"
    b = _check_int(fn, "batch_size", batch_size, 1)
    n = _check_int(fn, "num_pairs", num_pairs, 1)
    t = _check_int(fn, "length", length, 2 * n, f" (room for num_pairs={n} key-value pairs, 2 tokens each)")
    nk = _check_int(fn, "num_keys", num_keys, n, f" (num_pairs={n} distinct keys)")
    nv = _check_int(fn, "num_values", num_values, 1)
    rng = _rng(fn, seed)
    keys = np.argsort(rng.random((b, nk)), axis=1)[:, :n] + 1  # (B, N) distinct, in 1..num_keys
    values = rng.integers(nk + 1, nk + nv + 1, (b, n))  # (B, N)
    slots = np.sort(np.argsort(rng.random((b, t // 2)), axis=1)[:, :n], axis=1)  # (B, N) two-token slots
    query = rng.integers(0, n, b)  # (B,) which pair is asked for
    rows = np.arange(b)
    inputs = np.zeros((b, t + 2), np.int32)
    np.put_along_axis(inputs, 2 * slots, keys, axis=1)
    np.put_along_axis(inputs, 2 * slots + 1, values, axis=1)
    inputs[:, t] = nk + nv + 1  # the delimiter
    inputs[:, t + 1] = keys[rows, query]
    targets = np.zeros((b, t + 2), np.int32)
    targets[:, -1] = values[rows, query]
    mask = np.zeros((b, t + 2), bool)
    mask[:, -1] = True
    return Batch(inputs, targets, mask)


# ----------------------------------------------------------------------------
# dispatch by name

_GENERATORS = {
    "adding": adding_problem,
    "copy": copy_memory,
    "selective-copy": selective_copy,
    "recall": associative_recall,
}


def _check_name(fn: str, name: str) -> None:
    if name not in _GENERATORS:
        raise ValueError(f"{fn}: task={name!r}, expected one of {list(TASKS)}")


def make_batch(task: str, batch_size: int, length: int, seed: int | Sequence[int] = 0, **options) -> Batch:
    """The batch of task ``task`` (a name in :data:`TASKS`); ``options`` go to its generator."""
    _check_name("make_batch", task)
    return _GENERATORS[task](batch_size, length, seed, **options)


def sequence_length(task: str, length: int, **options) -> int:
    """The total length L of a task's sequences at distance ``length`` (T)."""
    return task_spec(task, length, **options).seq_len


def task_spec(task: str, length: int, **options) -> TaskSpec:
    """Shapes, vocabulary, metric and baseline of ``task`` at ``length``; checks the arguments as the generator does."""
    _check_name("task_spec", task)
    probe = make_batch(task, 1, length, 0, **options)  # validates, and gives L without a formula to drift
    seq_len, scored = probe.length, int(probe.mask.sum())
    if task == "adding":
        return TaskSpec(task, length, seq_len, "regression", 0, 2, 1, scored, "mse", 1.0 / 6.0,
                        "always predict 1.0: MSE = Var(U1 + U2) = 1/6")
    if task == "copy":
        s = options.get("num_symbols", 8)
        vocab = s + 2
    elif task == "selective-copy":
        s = options.get("num_symbols", 8)
        vocab = s + 2
    else:
        s = options.get("num_values", 8)
        vocab = options.get("num_keys", 8) + s + 2
    note = f"memoryless guess among {s} {'values' if task == 'recall' else 'symbols'}: accuracy 1/{s}"
    return TaskSpec(task, length, seq_len, "tokens", vocab, 0, vocab, scored, "accuracy", 1.0 / s, note)
