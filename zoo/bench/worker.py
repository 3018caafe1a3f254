"""One measurement per process: the worker harness shared by zoo's benchmarks.

A benchmark that reports peak memory, or that may run out of it, measures
each configuration in a fresh process: ``python -m <module> --worker SPEC``
where ``SPEC`` is JSON. The worker sets an address-space limit
(``RLIMIT_AS``) before anything allocates, runs the module's measuring
function, and prints one line, :data:`RESULT_PREFIX` then JSON, with the
status (``ok``, ``oom``, ``error``) and its peak resident memory
(``ru_maxrss``). The parent (:func:`spawn`) reads that line, or, when the
worker died without one, classifies the death from its exit status and
stderr: a SIGKILL out of the blue is the kernel's OOM killer, and XLA's and
the C library's out-of-memory messages are recognised by
:data:`OOM_PATTERN`. A worker that overruns its time is killed and reported
as ``timeout``.

Used by ``zoo bench attention`` and ``zoo bench`` (the suite); ``zoo bench
bert`` keeps a long-lived worker per side (interleaved rounds) but reads
its memory with :func:`maxrss_kib` too.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

__all__ = [
    "WORKER_FLAG",
    "RESULT_PREFIX",
    "OOM_PATTERN",
    "DEFAULT_MEM_SHARE",
    "maxrss_kib",
    "set_memory_limit",
    "physical_memory_bytes",
    "default_memory_limit",
    "short",
    "failure",
    "run_measurement",
    "worker_main",
    "spawn",
]

# the hidden first argument that makes ``python -m <module>`` a worker
WORKER_FLAG = "--worker"
# the worker's result: one stdout line, this prefix, then JSON
RESULT_PREFIX = "ZOO_BENCH_RESULT "
# failure messages that mean the memory ran out (or the address-space limit was hit)
OOM_PATTERN = re.compile(
    r"RESOURCE_EXHAUSTED|out of memory|can't allocate memory|cannot allocate memory|bad_alloc|"
    r"MemoryError|pthread_create\(\) failed|failed to map segment",
    re.IGNORECASE,
)
# Default per-worker address-space limit on CPU, as a share of the physical memory.
DEFAULT_MEM_SHARE = 0.75


def maxrss_kib() -> int:
    """This process's peak resident memory so far, KiB (Linux reports KiB; macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def set_memory_limit(limit: int | None) -> None:
    """Cap this process's address space at ``limit`` bytes (None or 0: leave it alone)."""
    if not limit:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def physical_memory_bytes() -> int | None:
    """MemTotal from /proc/meminfo, else the page count times the page size."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def default_memory_limit(mem_limit_gb: float | None, jax_platform: str) -> int | None:
    """A worker's RLIMIT_AS: ``mem_limit_gb`` (0: none), else 75% of RAM on CPU and none elsewhere.

    No default limit on GPU/TPU: their drivers reserve address space far beyond what is used.
    """
    if mem_limit_gb is not None:
        return int(mem_limit_gb * 2**30) or None
    ram = physical_memory_bytes()
    return int(DEFAULT_MEM_SHARE * ram) if ram and jax_platform == "cpu" else None


def short(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure(returncode: int, stderr: str) -> tuple[str, str]:
    """(status, message) of a worker that printed no result."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("@ 0x")]
    oom_lines = [ln for ln in lines if OOM_PATTERN.search(ln)]
    detail = short((oom_lines or lines or ["no output"])[-1])
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        # SIGKILL out of the blue is the kernel's OOM killer
        oom = bool(oom_lines) or sig == signal.SIGKILL
        return ("oom" if oom else "error"), f"killed by {name}: {detail}"
    return ("oom" if oom_lines else "error"), f"exit status {returncode}: {detail}"


def run_measurement(spec: dict[str, Any], measure: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """``measure(spec)`` under ``spec["mem_limit_bytes"]``, as a JSON-ready result that never raises.

    The result has ``status`` ("ok", "oom" or "error"; an exception becomes
    "error" with its message, or "oom" when it is a memory error), ``pid``
    and ``peak_rss_kib``, plus what ``measure`` returned.
    """
    set_memory_limit(spec.get("mem_limit_bytes"))
    result: dict[str, Any] = {"pid": os.getpid()}
    try:
        result.update(measure(spec))
        result["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - every failure becomes a row, MemoryError included
        message = f"{type(e).__name__}: {e}"
        result["status"] = "oom" if isinstance(e, MemoryError) or OOM_PATTERN.search(message) else "error"
        result["error"] = short(message)
    result["peak_rss_kib"] = maxrss_kib()
    return result


def worker_main(argv: Sequence[str], module: str, work: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The body of ``python -m <module> --worker SPEC``: print ``work(spec)``'s result line."""
    if len(argv) != 1:
        print(f"usage: python -m {module} {WORKER_FLAG} JSON_SPEC", file=sys.stderr)
        return 2
    result = work(json.loads(argv[0]))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


def spawn(module: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``python -m <module> --worker SPEC``; its result (plus ``wall_s``), or the failure."""
    cmd = [sys.executable, "-m", module, WORKER_FLAG, json.dumps(spec)]
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # GPU: allocate what is used, not 75%
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s (--timeout-s)",
                "wall_s": time.perf_counter() - start}
    wall_s = time.perf_counter() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX):]), "wall_s": wall_s}
    status, message = failure(proc.returncode, proc.stderr)
    return {"status": status, "error": message, "wall_s": wall_s}
