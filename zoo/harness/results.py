"""Where numbers came from, and how they are written: environment, device slug, Markdown, JSON, files.

Every report starts with the same header (:func:`header`: the JAX device,
the processor and its threads, library versions, date, command) and is a
function of its JSON alone, so a stored result renders again to the same
Markdown. :class:`OtherLoad` measures how much CPU time other processes
took meanwhile (a shared machine spoils timings, PyTorch's most). torch is
never imported here: its version is read from the installed package
metadata.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "MAX_OTHER_LOAD", "num_threads", "cpu_model", "package_version", "torch_available", "torch_device", "environment", "OtherLoad",
    "other_load_notes", "device_mix_notes", "device_slug", "utc_now", "format_rate", "format_ratio", "format_ms",
    "device_line", "versions_line", "header", "sections", "image", "markdown_table", "config_json", "json_text",
    "say",
]


# Above this share of the CPU time used by other processes, a report says its timings are unreliable (and the
# publishing scripts leave README alone).
MAX_OTHER_LOAD = 0.05

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


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (without importing it), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_available() -> bool:
    """Whether ``import torch`` would find a package (it is not imported)."""
    return importlib.util.find_spec("torch") is not None


def torch_device(jax_platform: str) -> str:
    """Where torch runs beside JAX: ``cuda`` when JAX is on a GPU and torch sees one, else ``cpu``."""
    import torch  # noqa: PLC0415  (optional: only where torch rows run)

    return "cuda" if jax_platform == "gpu" and torch.cuda.is_available() else "cpu"


def environment() -> dict[str, Any]:
    """Where the numbers come from: JAX device, processor, versions, threads."""
    import jax  # noqa: PLC0415  (starts a backend: only in the processes that measure)

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


def other_load_notes(share: float | None, limit: float = MAX_OTHER_LOAD) -> list[str]:
    """The note for under a table when other processes took more than ``limit`` of the CPU (else none)."""
    if share is None or share <= limit:
        return []
    return [
        f"Other processes used {share:.0%} of the CPU time during the run: timings are unreliable "
        "(PyTorch's spinning threads suffer most); rerun on an idle machine."
    ]


def device_mix_notes(env: dict[str, Any], what: str = "ratios") -> list[str]:
    """The note when torch ran on another kind of device than JAX (a GPU beside a CPU), else none."""
    if "torch_device" not in env or (env["torch_device"] == "cpu") == (env["jax_platform"] == "cpu"):
        return []
    return [f"torch ran on {env['torch_device']}, JAX on {env['jax_platform']}: {what} mix devices."]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_slug(env: dict[str, Any]) -> str:
    """A file-name-safe device name: e.g. ``cpu-amd-epyc-2t`` or ``gpu-nvidia-h100-80gb-hbm3``."""
    if env["jax_platform"] == "cpu":
        return f"cpu-{_slug(env['cpu'])}-{env['threads']}t"
    return f"{env['jax_platform']}-{_slug(env['jax_device_kind'])}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def say(message: str) -> None:
    """A progress line on stderr (stdout is for the report)."""
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Markdown


def format_rate(x: float | None) -> str:
    """Thousands-separated integer (``1,234,567``), or an em dash for missing."""
    return "—" if x is None else f"{x:,.0f}"


def format_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def format_ms(t: Any) -> str:
    """Median and range of a :class:`~zoo.harness.timing.Timing` in ms: ``12.3 (11.9–14.0)`` (2 decimals below 10)."""

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
    """The header's ``- versions: ...`` line (plus transformers' when it ran)."""
    v = env["versions"]
    line = f"- versions: jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, torch {v['torch'] or 'absent'}"
    return line + (f", transformers {v['transformers']}" if v.get("transformers") else "")


def header(title: str, env: dict[str, Any], *details: str, date: str, command: str | None,
           versions: bool = True) -> list[str]:
    """The lines above every report: title, device, versions, the report's own ``- ...`` lines, date, command."""
    lines = [title, "", device_line(env), *([versions_line(env)] if versions else []), *details, f"- date: {date}"]
    return lines + ([f"- command: `{command}`"] if command else [])


def sections(*parts: str | Sequence[str], notes: Sequence[str] = ()) -> str:
    """A report: the parts (a string, or a list of lines) one blank line apart, then ``Notes: ...``."""
    text = ["\n".join(p) if not isinstance(p, str) else p for p in parts]
    return "\n\n".join(text + ([f"Notes: {' '.join(notes)}"] if notes else [])) + "\n"


def image(alt: str, images: str | None, name: str) -> list[str]:
    """A Markdown image of the plot file ``name`` under the prefix ``images``, then a blank line; none for None."""
    return [] if images is None else [f"![{alt}]({images}{name})", ""]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` has one of ``l``/``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(r) + " |" for r in [list(headers), rule, *map(list, rows)]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# JSON


def config_json(cfg: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def _finite(x: Any) -> Any:
    """JSON has no inf or NaN: write them as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_text(data: dict[str, Any]) -> str:
    """The results as JSON text: indented, non-finite floats as null, anything else unknown as a string."""
    return json.dumps(_finite(data), indent=2, default=str) + "\n"
