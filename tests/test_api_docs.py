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
DOCUMENTED = ("zoo", "zoo.layers", "zoo.models", "zoo.data", "zoo.train", "zoo.registry", "zoo.interop",
              "zoo.nnx")


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


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_example_runs(name, obj, tmp_path, monkeypatch):
    """Every public class and function has an ``Examples:`` section, and it runs as written (doctest).

    Each example runs in its own empty working directory (they write small files) with zoo's cache
    there too; the globals are ``zoo``, ``jax``, ``jnp`` and ``np``. Module examples show shapes with
    ``jax.eval_shape`` where a real init would cost seconds of compilation.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    import zoo

    doc = inspect.getdoc(obj) or ""
    assert ">>> " in doc, f"{name} has no example in its docstring"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    finder = doctest.DocTestFinder(recurse=False)
    globs = {"zoo": zoo, "jax": jax, "jnp": jnp, "np": np}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(obj, name, globs=globs)
    assert tests and tests[0].examples, f"{name}: doctest found no example"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed"
