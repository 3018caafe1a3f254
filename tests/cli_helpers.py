"""Running the ``zoo`` command in a subprocess, for the end-to-end CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def zoo_cmd(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m zoo ARGS`` in ``cwd`` with its own cache (ZOO_CACHE_DIR) and quick XLA compiles."""
    env = {**os.environ, "ZOO_CACHE_DIR": str(cwd / "cache"), "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
