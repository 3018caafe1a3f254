"""What the ``zoo`` subcommands share: error exits, the cache directory, the process clock."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

__all__ = ["cache_dir", "fail", "process_elapsed_s"]


def process_elapsed_s() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere: since zoo was imported)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def cache_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    root = os.environ.get("ZOO_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "zoo"
    return Path(root).expanduser() / "tokens"


