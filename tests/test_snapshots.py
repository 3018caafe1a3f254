"""Golden snapshots of what users see: every ``--help``, the preset table, and the published reports.

A change to any of them shows up here as a failing diff, so a refactor shows
every change it makes. To accept a change, regenerate the snapshots and say
why in the commit:

    ZOO_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshots.py

Help texts are rendered by tyro and argparse, whose wording and layout move
between versions: the snapshot records the versions it was taken with, and
with others only the set of flags each command lists is compared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from zoo import presets
from zoo.cli import COMMANDS, Group, main

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("ZOO_UPDATE_SNAPSHOTS", "") not in ("", "0")
RENDERERS = f"python {sys.version_info[0]}.{sys.version_info[1]}, tyro {version('tyro')}"


def commands(node=COMMANDS, prefix=()) -> list[tuple[str, ...]]:
    """Every command line whose --help users read: the groups, the leaves, and each pretrain family."""
    out = [prefix]
    for name, child in node.commands.items():
        if isinstance(child, Group):
            out += commands(child, prefix + (name,))
        elif name == "pretrain" and not prefix:
            out += [prefix + (name,)] + [prefix + (name, family) for family in presets.FAMILIES]
        else:
            out.append(prefix + (name,))
    return out


def help_text(words: tuple[str, ...]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main([*words, "--help"])
        except SystemExit:
            pass
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def flags(text: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][\w.-]*", text)))


def check(name: str, text: str, loose=None) -> None:
    """Compare ``text`` with the snapshot ``name`` (or write it when updating)."""
    path = SNAPSHOTS / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no snapshot {name}; run with ZOO_UPDATE_SNAPSHOTS=1"
    saved = path.read_text()
    if loose is None:
        assert text == saved, f"{name} changed; if that is intended, update the snapshots and say why"
    else:
        assert loose(text) == loose(saved), f"{name}: the flags changed"


@pytest.fixture(autouse=True)
def terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")


def test_help_texts():
    recorded = (SNAPSHOTS / "help" / "RENDERERS").read_text().strip() if (SNAPSHOTS / "help").exists() else None
    exact = UPDATE or recorded == RENDERERS
    for words in commands():
        name = "_".join(("zoo", *words)).replace("-", "_") + ".txt"
        check(f"help/{name}", help_text(words), loose=None if exact else flags)
    if UPDATE:
        (SNAPSHOTS / "help" / "RENDERERS").write_text(RENDERERS + "\n")


def preset_table() -> str:
    from zoo.models.bert import bert_param_count
    from zoo.models.gpt import gpt_param_count
    from zoo.models.nplm import nplm_param_count
    from zoo.models.rnn_lm import rnn_lm_param_count

    counts = {"gpt": lambda m: gpt_param_count(m, non_embedding=False), "bert": bert_param_count,
              "nplm": nplm_param_count}
    rows = ["| family | preset | model | parameters | tokenizer | steps x batch |", "|---|---|---|---:|---|---|"]
    for family in presets.FAMILIES:
        for name in presets.names(family):
            p = presets.get(family, name)
            count = counts.get(family, rnn_lm_param_count if family in presets.LM_FAMILIES else None)
            params = f"{count(p.model):,}" if count else ""
            model = json.dumps({k: v for k, v in vars(p.model).items()}, sort_keys=True)
            steps = (f"{p.train.max_steps} x {p.train.batch_size}" if hasattr(p.train, "max_steps")
                     else f"{p.train.epochs} epochs x {p.train.batch_size}")  # word vectors train by epochs
            rows.append(f"| {family} | {name} | `{model}` | {params} | {p.tokenizer} | {steps} |")
    return "\n".join(rows) + "\n"


def test_preset_table():
    check("presets.md", preset_table())


# -- the published reports, re-rendered from their raw JSON --------------------------------------

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def rerender(path: Path) -> str:
    """The Markdown report of a stored result, rendered again from its JSON by today's code.

    Every benchmark and experiment module has ``render(data)``; the file's stem names the module
    (``suite-cpu-...``, ``ladder``).
    """
    import importlib

    name = path.stem.split("-")[0]
    if name in ("chunked_scan", "cpu_processes", "cpu_tricks", "quickstart"):  # published by a script in benchmarks/, loaded by path
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, RESULTS.parent / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        data = json.loads(path.read_text())
        return script.render(data, data["command"]) if name == "chunked_scan" else script.render(data)
    package = "experiments" if name in ("gradflow", "ladder", "tasks", "word_ladder") else "bench"
    return importlib.import_module(f"zoo.{package}.{name}").render(json.loads(path.read_text()))


STORED = sorted(RESULTS.rglob("*.json"))


@pytest.mark.parametrize("path", STORED, ids=[str(p.relative_to(RESULTS)) for p in STORED])
def test_reports_rerender(path):
    check(f"results/{str(path.relative_to(RESULTS)).replace('/', '__')[:-5]}.md", rerender(path))
