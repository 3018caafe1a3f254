"""Measurements in worker processes: one runner for every benchmark.

A benchmark that reports peak memory, or that may run out of it, or whose
libraries must not share a process (XLA's and PyTorch's thread pools),
measures in a fresh process: :class:`Worker` starts
``python -m zoo.harness.worker MODULE:FUNCTION`` and sends it requests,
JSON, one line each; the worker answers each with one stdout line,
:data:`RESULT_PREFIX` then JSON: ``FUNCTION(request)`` as
:func:`run_measurement` runs it (under the request's address-space limit,
``RLIMIT_AS``, with the status ``ok``, ``oom`` or ``error``, the pid and the
peak resident memory so far, :func:`peak_rss_kib`). Everything else the process
writes to stdout goes to stderr, so library messages never mix with the
answers. The worker exits when its stdin closes.

One request per process (:func:`spawn`) gives every measurement its own
peak memory; several in one process make a session (``zoo bench bert``: set
up once, then timed rounds on request, a FUNCTION that keeps its state in
its module) or a quick run (``zoo bench --quick``). When a worker dies
without answering, the parent classifies the death from its exit status and
stderr (:func:`failure`): a SIGKILL out of the blue is the kernel's OOM
killer, and XLA's and the C library's out-of-memory messages are recognised
by :data:`OOM_PATTERN`. A worker that overruns its time is killed and
reported as ``timeout``. A dead worker answers every later request with its
failure.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

__all__ = [
    "RESULT_PREFIX", "OOM_PATTERN", "DEFAULT_MEM_SHARE", "peak_rss_kib", "device_peak_bytes", "set_memory_limit", "physical_memory_bytes",
    "default_memory_limit", "short", "failure", "run_measurement", "serve", "Worker", "spawn", "environment",
]

# the worker's answer: one stdout line, this prefix, then JSON
RESULT_PREFIX = "ZOO_BENCH_RESULT "
# failure messages that mean the memory ran out (or the address-space limit was hit)
OOM_PATTERN = re.compile(
    r"RESOURCE_EXHAUSTED|out of memory|can't allocate memory|cannot allocate memory|bad_alloc|"
    r"MemoryError|pthread_create\(\) failed|failed to map segment",
    re.IGNORECASE,
)
# Default per-worker address-space limit on CPU, as a share of the physical memory.
DEFAULT_MEM_SHARE = 0.75
# Seconds the worker that describes the environment may take, whatever the benchmark's timeout.
ENV_TIMEOUT_S = 300.0


def peak_rss_kib() -> int:
    """This process's peak resident memory so far, KiB: ``VmHWM`` of /proc/self/status on Linux.

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a worker started
    from a parent that once held 14 GB reported 14 GB for a measurement of
    0.7 GB; ``VmHWM`` belongs to the process's own address space, new at
    ``execve`` (tests/test_harness_memory.py). Without /proc (macOS),
    ``ru_maxrss`` (bytes there).
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError, IndexError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss // 1024 if sys.platform == "darwin" else rss


def device_peak_bytes(device: Any) -> int | None:
    """A JAX accelerator's peak allocation so far, bytes; None on a CPU (there :func:`peak_rss_kib` says it)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    return stats.get("peak_bytes_in_use") if stats else None


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
    """(status, message) of a worker that died without answering."""
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
    "error" with its message, or "oom" when it is a memory error), ``pid``,
    ``peak_rss_kib`` and ``wall_s`` (the seconds ``measure`` took), plus
    what ``measure`` returned.
    """
    set_memory_limit(spec.get("mem_limit_bytes"))
    result: dict[str, Any] = {"pid": os.getpid()}
    start = time.perf_counter()
    try:
        result.update(measure(spec))
        result["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - every failure becomes a row, MemoryError included
        message = f"{type(e).__name__}: {e}"
        result["status"] = "oom" if isinstance(e, MemoryError) or OOM_PATTERN.search(message) else "error"
        result["error"] = short(message)
    result["peak_rss_kib"] = peak_rss_kib()
    result["wall_s"] = time.perf_counter() - start
    return result


def serve(target: str) -> None:
    """The worker: answer each request line on stdin with ``run_measurement(request, FUNCTION)``, then exit."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library messages go to stderr
    module, _, name = target.partition(":")
    measure = getattr(importlib.import_module(module), name)
    for line in sys.stdin:
        channel.write(RESULT_PREFIX + json.dumps(run_measurement(json.loads(line), measure), default=str) + "\n")
    # Every answer is out: skip the interpreter's teardown, which took 0.5 s after a JAX measurement and
    # 2 s after a torch one on 2 cores (time the next worker would wait for, or compete with).
    sys.stderr.flush()
    os._exit(0)


class Worker:
    """A running ``python -m zoo.harness.worker TARGET``: :meth:`request` measurements, then :meth:`close`."""

    def __init__(self, target: str):
        # a file, not a pipe: a pipe could fill up and block the worker; closed with the object
        self.stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        env = dict(os.environ)
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # GPU: allocate what is used, not 75%
        self.start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo.harness.worker", target], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.failed: dict[str, Any] | None = None
        self._buffer = b""

    def request(self, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The answer to ``spec``, plus ``process_wall_s`` (seconds since the worker started); or the failure.

        A worker that dies without answering, or takes over ``timeout_s``, is a
        failure (status ``oom``, ``error`` or ``timeout`` and an ``error``
        message), the answer to this request and to every later one.
        """
        if self.failed is not None:
            return dict(self.failed)
        try:
            self.proc.stdin.write((json.dumps(spec, default=str) + "\n").encode())
            self.proc.stdin.flush()
            answer = self._receive(timeout_s)
        except TimeoutError:
            self.kill()
            answer = self.failed = {"status": "timeout", "error": f"no result within {timeout_s:g} s (--timeout-s)"}
        except OSError:  # a broken pipe: the worker is gone
            answer = None
        if answer is None:  # the worker died: its exit status and stderr say how
            self.stderr.seek(0)
            status, message = failure(self.proc.wait(), self.stderr.read().decode(errors="replace"))
            answer = self.failed = {"status": status, "error": message}
        answer["process_wall_s"] = time.perf_counter() - self.start
        return dict(answer)

    def _receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next answer; None when the worker exits first, TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    if line.startswith(RESULT_PREFIX.encode()):
                        return json.loads(line[len(RESULT_PREFIX):])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                if sel.select(remaining):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        return None
                    self._buffer += chunk

    def close(self) -> None:
        """Let the worker finish (its stdin closes), killing it if it does not within a minute."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:  # interrupted (Ctrl-C included): do not wait for the measurement
            self.kill()
        self.close()


def spawn(target: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One measurement in a fresh worker: ``TARGET(spec)``'s result (see :meth:`Worker.request`)."""
    with Worker(target) as worker:
        return worker.request(spec, timeout_s)


def environment(target: str, spec: dict[str, Any], timeout_s: float, shared: Worker | None = None) -> dict[str, Any]:
    """The environment as a worker describes it (``TARGET(spec)["environment"]``); a RuntimeError if it fails.

    The parent of a benchmark that measures in workers never starts a JAX
    backend itself: on a GPU it would hold the memory the workers measure.
    A fresh worker describes it, or ``shared``, a running one that will also
    measure (one process start less, for runs that measure in one process).
    """
    timeout_s = max(timeout_s, ENV_TIMEOUT_S)
    described = spawn(target, spec, timeout_s) if shared is None else shared.request(spec, timeout_s)
    if described["status"] != "ok":
        raise RuntimeError(f"the environment worker failed: {described['error']}")
    return described["environment"] | {"peak_rss": "VmHWM" if os.path.exists("/proc/self/status") else "ru_maxrss"}


if __name__ == "__main__":
    serve(sys.argv[1])
