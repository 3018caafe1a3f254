"""Shared timing and environment helpers for zoo's benchmarks.

Every benchmark (recurrent layers and attention now; GPT later) measures the
same way, with :func:`time_calls`:

* the function is compiled (JAX: :func:`compile_jax`, ahead of time, and the
  compile time is recorded) and called ``warmup`` times before timing, so
  neither compilation nor first-call allocation is measured;
* each timed call is bracketed by a synchronisation
  (``jax.block_until_ready`` for JAX, which dispatches asynchronously), so
  the clock stops only when the result exists;
* the inputs rotate through a few pre-generated arrays, so no call sees the
  same buffer twice in a row and no cache flatters a repeat;
* the statistic reported is the median of ``repeats`` calls, with min, max
  and the quartiles kept as the spread.

The environment helpers describe where numbers came from (device, processor,
library versions, thread count) for the header above every results table,
and :func:`markdown_table` / :func:`write_results` write the table and the
raw timings; :class:`OtherLoad` measures how much CPU time other
processes took meanwhile (a shared machine spoils timings, PyTorch's most).
torch is never imported here: its version is read from the
installed package metadata.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax

__all__ = [
    "Timing",
    "time_calls",
    "time_within_budget",
    "compile_jax",
    "num_threads",
    "cpu_model",
    "package_version",
    "torch_available",
    "environment",
    "OtherLoad",
    "other_load_notes",
    "device_slug",
    "utc_now",
    "format_rate",
    "format_ratio",
    "format_ms",
    "device_line",
    "versions_line",
    "markdown_table",
    "write_results",
    "bench_main",
]


# ----------------------------------------------------------------------------
# timing


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``len(times_s)`` timed calls, plus the compile time.

    ``compile_s`` is the ahead-of-time lower + compile time for JAX, or None
    where there is no compile step (eager PyTorch).
    """

    times_s: tuple[float, ...]
    compile_s: float | None = None

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
        out = {
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "q1_s": q1,
            "q3_s": q3,
            "compile_s": self.compile_s,
            "times_s": list(self.times_s),
        }
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


# ----------------------------------------------------------------------------
# environment


def num_threads() -> int:
    """CPU cores this process may run on (what XLA's CPU thread pool sizes itself to)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


class OtherLoad:
    """Share of all CPU time that *other* processes used since construction (Linux only).

    Reads the machine's busy time from /proc/stat and subtracts this
    process's own CPU time (all its threads) and that of its children that
    have ended (benchmark worker processes, waited for). On a shared machine
    the timings are only as good as this is close to zero; :meth:`fraction`
    is None where /proc/stat is unavailable.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                jiffies = [int(v) for v in f.readline().split()[1:]]
            hz = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        total = sum(jiffies[:8]) / hz  # user..steal; guest time is already in user
        idle = (jiffies[3] + jiffies[4]) / hz  # idle + iowait
        t = os.times()
        return total - idle, total, time.process_time() + t.children_user + t.children_system

    def fraction(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy, total, own = (b - a for a, b in zip(self._start, end))
        return min(max(busy - own, 0.0) / max(total, 1e-9), 1.0)


def other_load_notes(share: float | None, limit: float) -> list[str]:
    """The note for under a table when other processes took more than ``limit`` of the CPU (else none)."""
    if share is None or share <= limit:
        return []
    return [
        f"Other processes used {share:.0%} of the CPU time during the run: timings are unreliable "
        "(PyTorch's spinning threads suffer most); rerun on an idle machine."
    ]


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (without importing it), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_available() -> bool:
    """Whether ``import torch`` would find a package (it is not imported)."""
    return importlib.util.find_spec("torch") is not None


def environment() -> dict[str, Any]:
    """Where the numbers come from: JAX device, processor, versions, threads."""
    device = jax.devices()[0]
    return {
        "jax_device": str(device),
        "jax_platform": device.platform,
        "jax_device_kind": device.device_kind,
        "cpu": cpu_model(),
        "threads": num_threads(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": package_version("jaxlib"),
            "flax": package_version("flax"),
            "torch": package_version("torch"),
            "zoo": package_version("jax-zoo"),
        },
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_slug(env: dict[str, Any]) -> str:
    """A file-name-safe device name: e.g. ``cpu-amd-epyc-2t`` or ``gpu-nvidia-h100-80gb-hbm3``."""
    if env["jax_platform"] == "cpu":
        return f"cpu-{_slug(env['cpu'])}-{env['threads']}t"
    return f"{env['jax_platform']}-{_slug(env['jax_device_kind'])}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------
# output


def format_rate(x: float | None) -> str:
    """Thousands-separated integer (``1,234,567``), or an em dash for missing."""
    return "—" if x is None else f"{x:,.0f}"


def format_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def format_ms(t: Timing) -> str:
    """Median and range in milliseconds: ``12.3 (11.9–14.0)`` (two decimals below 10 ms)."""

    def f(s: float) -> str:
        ms = s * 1e3
        return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"

    return f"{f(t.median_s)} ({f(t.min_s)}–{f(t.max_s)})"


def device_line(env: dict[str, Any]) -> str:
    """The header's ``- device: ...`` line: JAX device, processor, threads, and torch's if it ran."""
    torch_part = ""
    if "torch_device" in env:
        torch_part = f"; torch on {env['torch_device']} with torch.set_num_threads({env['torch_threads']})"
    kind = env["jax_platform"]
    if env["jax_device_kind"].lower() != kind:
        kind += f" ({env['jax_device_kind']})"
    return f"- device: JAX {kind}, {env['cpu']}, {env['threads']} CPU threads{torch_part}"


def versions_line(env: dict[str, Any]) -> str:
    """The header's ``- versions: ...`` line."""
    v = env["versions"]
    torch = v["torch"] or "absent"
    return f"- versions: jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, torch {torch}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` has one of ``l``/``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(r) + " |" for r in [list(headers), rule, *map(list, rows)]]
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike, stem: str, data: dict[str, Any], markdown: str) -> list[Path]:
    """Write ``<stem>.json`` (raw timings) and ``<stem>.md`` (the table) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown.rstrip("\n") + "\n")
    return [json_path, md_path]


def bench_main(
    argv: Sequence[str] | None,
    prog: str,
    parse_config: Callable[[Sequence[str], str], Any],
    run: Callable[..., tuple[dict[str, Any], str]],
    stem: str | Callable[[dict[str, Any]], str],
    extras: Callable[[dict[str, Any], Path, str], list[Path]] | None = None,
) -> int:
    """The body of every ``zoo bench <name>`` command.

    Parses the flags into a config (``parse_config(argv, prog)``), checks it
    (``config.resolved()``: a ``ValueError`` is a usage error, exit 2), runs
    ``run(config, command=...)``, prints the Markdown report on stdout and,
    when the config's ``out`` is set, writes ``<stem>.json`` and ``<stem>.md``
    there (``stem`` may be a function of the results, e.g. to name the device),
    and whatever ``extras(data, out, stem)`` writes beside them (CSV, plots).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_config(argv, prog)
    try:
        cfg.resolved()
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    data, markdown = run(cfg, command=" ".join([prog, *map(shlex.quote, argv)]))
    print(markdown, end="")
    if cfg.out is not None:
        name = stem(data) if callable(stem) else stem
        paths = write_results(cfg.out, name, data, markdown)
        if extras is not None:
            paths += extras(data, Path(cfg.out), name)
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
    return 0
