"""The documentation site and its API reference build (mkdocs, warnings are errors).

Public means ``__all__`` of ``zoo`` and of the documented subpackages
(:data:`DOCUMENTED`); constants and type aliases need no example.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = ("zoo", "zoo.data", "zoo.train", "zoo.registry")


def public_objects() -> list[tuple[str, object]]:
    out, seen = [], set()
    for name in DOCUMENTED:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj)) or id(obj) in seen:
                continue
            if isinstance(obj, type) and issubclass(obj, BaseException):
                continue
            seen.add(id(obj))
            out.append((f"{name}.{attr}", obj))
    return out


PUBLIC = public_objects()


def test_site_builds_without_warnings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").stat().st_size > 10_000
