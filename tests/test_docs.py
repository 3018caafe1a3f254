"""Every fenced example in README.md and docs/ runs as written, or is marked as not run.

For each Markdown file, the fenced blocks run in document order in one
temporary working directory, so a later block can use what an earlier one
made (``runs/shakespeare``). ``python`` blocks run in one namespace per
file; ``bash`` blocks run with ``bash -e``, with ``zoo`` on the PATH: each ``zoo`` command is its own
process, forked from the tests' fork server where it can be (:mod:`zoo_server`). Blocks
without a language (layouts, outputs) are text.

An HTML comment on the lines right before a block's fence changes how it is
run; the comment is invisible where the Markdown is rendered:

* ``<!-- doc-test: skip WHY -->``: not run (the reason says why, e.g. it
  needs the network or hours);
* ``<!-- doc-test: replace "OLD" "NEW" -->``: run with OLD replaced by NEW,
  how the text says its tiny settings are chosen (repeatable).

The working directory holds the small example files the docs name
(:data:`EXAMPLE_FILES`), made here: ``shakespeare.txt`` is a few kilobytes of
generated words, not Tiny Shakespeare.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zoo_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*doc-test:\s*(skip|replace)\s*(.*?)\s*-->")


def _words(seed: int, n: int) -> str:
    vocab = ["the", "king", "and", "queen", "of", "a", "far", "land", "spoke", "to", "all", "their", "people", "by", "night", "and", "day"]
    return " ".join(np.random.default_rng(seed).choice(vocab, n))


def _example_files(root: Path) -> None:
    (root / "shakespeare.txt").write_text("\n".join(_words(i, 12) for i in range(1200)) + "\n")
    rows = [f"{_words(i, 6)},{i % 3}" for i in range(60)]
    (root / "reviews.csv").write_text("review,stars\n" + "\n".join(rows) + "\n")
    lines = [f'{{"premise": "{_words(i, 5)}", "hypothesis": "{_words(i + 1, 4)}", "label": {i % 2}}}'
             for i in range(60)]
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    pairs = [f"{_words(i, 3)},{' '.join(reversed(_words(i, 3).split()))}" for i in range(60)]
    (root / "pairs.csv").write_text("en,de\n" + "\n".join(pairs) + "\n")


EXAMPLE_FILES = ("shakespeare.txt", "reviews.csv", "pairs.jsonl", "pairs.csv")

# What the text claims of the names its Python examples leave behind (shapes in the comments).
CLAIMS = {
    "README.md": lambda ns: ns["y"].shape == (8, 100, 64) and ns["out"].shape == ns["grads"].shape == (2, 512, 8, 64),
    "layers.md": lambda ns: (ns["out"].shape == (2, 1024, 8, 64) and ns["y1"].shape == (2, 1, 128)
                             and ns["y"].shape == (2, 64, 128)),
    "cli.md": lambda ns: ns["new"].shape == (1, 200),
}


def blocks(text: str) -> list[dict]:
    """The fenced blocks of ``text``: language, code (dedented), markers, line number."""
    out = []
    for m in _FENCE.finditer(text):
        indent, lang, body = m.group(1), m.group(2), m.group(3)
        before = text[: m.start()].rstrip("\n").splitlines()
        markers = []
        while before and _MARKER.search(before[-1]):
            markers.insert(0, _MARKER.search(before[-1]).groups())
            before.pop()
        code = "\n".join(line.removeprefix(indent) for line in body.splitlines())
        out.append({"lang": lang, "code": code, "markers": markers, "line": text[: m.start()].count("\n") + 1})
    return out


def prepared(block: dict) -> str | None:
    """The code to run, with the replacements applied; None when marked as not run."""
    code = block["code"]
    for kind, arg in block["markers"]:
        if kind == "skip":
            assert arg, f"line {block['line']}: a skip needs a reason"
            return None
        old, new = shlex.split(arg)
        assert old in code, f"line {block['line']}: {old!r} is not in the block"
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_examples_run(path, tmp_path, monkeypatch):
    found = [b for b in blocks(path.read_text()) if b["lang"] in ("python", "bash", "sh")]
    if not found:
        pytest.skip(f"{path.name} has no examples")
    _example_files(tmp_path)
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "XLA_FLAGS": zoo_server.QUICK_XLA_FLAGS}
    zoo_server.seed_cache(env["ZOO_CACHE_DIR"])
    server = zoo_server.get()
    if server is not None and zoo_server.compatible(env, server.env):
        shim = tmp_path / "bin" / "zoo"  # the fork server's client, ahead of the installed `zoo` on the PATH
        shim.parent.mkdir()
        shim.write_text(f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                        "import zoo_server\nsys.exit(zoo_server.shim())\n")
        shim.chmod(0o755)
        env.update(PATH=f"{shim.parent}{os.pathsep}{env['PATH']}", ZOO_FORK_SERVER=server.path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in found:
        code = prepared(block)
        if code is None:
            continue
        where = f"{path.name}:{block['line']}"
        if block["lang"] == "python":
            exec(compile(code, where, "exec"), namespace)  # noqa: S102
        else:
            proc = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, f"{where}:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
    if path.name in CLAIMS:
        assert CLAIMS[path.name](namespace), f"{path.name}: a shape its examples state is wrong"


def test_readme_tables_are_current():
    """README's families and results tables are written by benchmarks/readme.py, never by hand."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_markers_are_understood():
    """A marker must sit right above its fence, and every example block is either run or skipped with a why."""
    text = """<!-- doc-test: replace "a b" "c" -->
```bash
echo a b
```
<!-- doc-test: skip needs the network -->
```python
print(1)
```
"""
    first, second = blocks(text)
    assert prepared(first) == "echo c" and prepared(second) is None
    for path in DOCS:
        for block in blocks(path.read_text()):
            for kind, arg in block["markers"]:
                assert kind == "replace" or arg, f"{path.name}:{block['line']}: skip without a reason"
