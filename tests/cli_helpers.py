"""Running the ``zoo`` command in its own process, for the end-to-end CLI tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import zoo_server


def zoo_cmd(*args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m zoo ARGS`` in ``cwd`` with its own cache (ZOO_CACHE_DIR, seeded: :func:`zoo_server.seed_cache`)
    and quick XLA compiles.

    The process is forked from the tests' fork server (:mod:`zoo_server`: the same command in its own
    process, without re-importing jax and zoo) where the environment allows, else started afresh.
    """
    env = {**os.environ, "ZOO_CACHE_DIR": str(cwd / "cache"), "XLA_FLAGS": zoo_server.QUICK_XLA_FLAGS,
           **(env or {})}
    zoo_server.seed_cache(env["ZOO_CACHE_DIR"])
    return zoo_server.zoo_cmd(list(args), cwd=cwd, env=env, timeout=timeout)
