"""How every benchmark times a call: compile excluded, warm-up, synchronised calls, rotated inputs, median.

* the function is compiled first (JAX: :func:`compile_jax`, ahead of time,
  and the compile time is recorded) and called ``warmup`` times before
  timing, so neither compilation nor first-call allocation is measured;
* each timed call is bracketed by a synchronisation
  (``jax.block_until_ready`` for JAX, which dispatches asynchronously), so
  the clock stops only when the result exists;
* the inputs rotate through a few pre-generated arrays, so no call sees the
  same buffer twice in a row and no cache flatters a repeat;
* the statistic reported is the median of ``repeats`` calls, with min, max
  and the quartiles kept as the spread (:class:`Timing`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Sequence

import jax

__all__ = ["Timing", "time_calls", "time_within_budget", "compile_jax", "torch_sync"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``len(times_s)`` timed calls, plus the compile time.

    ``compile_s`` is the ahead-of-time lower + compile time for JAX, or None
    where there is no compile step (eager PyTorch).
    """

    times_s: tuple[float, ...]
    compile_s: float | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Timing | None:
        """The timing stored by :meth:`to_json` (None stays None)."""
        return None if d is None else cls(tuple(d["times_s"]), d.get("compile_s"))

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    def quartiles_s(self) -> tuple[float, float]:
        """(first, third) quartile; both the single value when there is one timing."""
        if len(self.times_s) < 2:
            return self.times_s[0], self.times_s[0]
        q = statistics.quantiles(self.times_s, n=4, method="inclusive")
        return q[0], q[2]

    def rate(self, items_per_call: int) -> float:
        """Items (e.g. tokens) per second at the median time."""
        return items_per_call / self.median_s

    def to_json(self, items_per_call: int | None = None) -> dict[str, Any]:
        q1, q3 = self.quartiles_s()
        out = {"median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s, "q1_s": q1, "q3_s": q3,
               "compile_s": self.compile_s, "times_s": list(self.times_s)}
        if items_per_call is not None:
            out["tokens_per_s"] = self.rate(items_per_call)
        return out


def time_calls(
    fn: Callable[..., Any],
    inputs: Sequence[tuple],
    *,
    repeats: int,
    warmup: int,
    sync: Callable[[Any], Any] = jax.block_until_ready,
    compile_s: float | None = None,
) -> Timing:
    """Time ``fn(*inputs[i % len(inputs)])`` over ``repeats`` calls after ``warmup`` calls.

    ``fn`` should already be compiled (see :func:`compile_jax`); pass its
    compile time as ``compile_s`` to keep it with the timings. ``sync`` is
    applied to each result before the clock stops (``jax.block_until_ready``
    by default; a no-op for synchronous eager code).
    """
    if repeats < 1 or warmup < 0 or not inputs:
        raise ValueError(f"time_calls: need repeats >= 1, warmup >= 0 and inputs; got {repeats}, {warmup}")
    for i in range(warmup):
        sync(fn(*inputs[i % len(inputs)]))
    times = []
    for i in range(repeats):
        args = inputs[(warmup + i) % len(inputs)]
        start = time.perf_counter()
        sync(fn(*args))
        times.append(time.perf_counter() - start)
    return Timing(tuple(times), compile_s)


def time_within_budget(
    fn: Callable[..., Any],
    inputs: Sequence[tuple],
    *,
    repeats: int,
    warmup: int,
    budget_s: float,
    sync: Callable[[Any], Any] = jax.block_until_ready,
    compile_s: float | None = None,
) -> tuple[Timing, float]:
    """:func:`time_calls`, with fewer repeats (never below 3) when they would take over ``budget_s``.

    The first warm-up call (always made) is timed on its own to estimate a
    call; returns (timing, seconds of that first call). The inputs rotate
    from the second one on, so the first timed call does not repeat it.
    """
    start = time.perf_counter()
    sync(fn(*inputs[0]))
    first_s = time.perf_counter() - start
    if first_s * repeats > budget_s:
        repeats = max(min(3, repeats), int(budget_s // max(first_s, 1e-9)))
    rotated = list(inputs[1:]) + list(inputs[:1])
    kw = dict(repeats=repeats, warmup=max(warmup - 1, 0), sync=sync, compile_s=compile_s)
    return time_calls(fn, rotated, **kw), first_s


def compile_jax(fn: Callable[..., Any], *example_args: Any) -> tuple[Callable[..., Any], float]:
    """``jax.jit(fn)`` compiled ahead of time for ``example_args``: (executable, seconds).

    The seconds cover tracing, lowering and XLA compilation; timed calls of
    the returned executable then include none of them.
    """
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*example_args).compile()
    return compiled, time.perf_counter() - start


def torch_sync(device: str) -> Callable[[Any], None]:
    """The ``sync`` of PyTorch on ``device``: ``torch.cuda.synchronize`` on a GPU; nothing on a CPU (synchronous)."""
    if device == "cpu":
        return lambda _: None
    import torch  # noqa: PLC0415  (optional: only where torch rows run)

    return lambda _: torch.cuda.synchronize()
