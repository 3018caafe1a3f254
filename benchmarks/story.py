"""Publish the story's measurements (the ladder, gradient flow, long-range tasks) into README.

    zoo ladder --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu \\
        --out benchmarks/results/ladder-tinyshakespeare
    python benchmarks/story.py ladder benchmarks/results/ladder-tinyshakespeare --update-readme

    zoo gradflow --out benchmarks/results/gradflow
    python benchmarks/story.py gradflow benchmarks/results/gradflow --update-readme

    zoo tasks sweep --out benchmarks/results/tasks
    python benchmarks/story.py tasks benchmarks/results/tasks --update-readme

The measuring is done by the commands, which write their results (JSON, Markdown, a plot) into the
folder; this script only renders that folder's results, with the plot linked from the repository
root, and with ``--update-readme`` puts them between ``<!-- story:NAME:start -->`` and
``<!-- story:NAME:end -->`` in README.md. Nothing here is typed by hand. Results measured while
other processes took more than 5% of the CPU say so in their table (the ladder records the share).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NAMES = ("ladder", "gradflow", "tasks")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- story:{name}:start -->", f"<!-- story:{name}:end -->"


def render(name: str, folder: Path, command: str | None = None) -> str:
    """The Markdown of ``folder``'s results, its images linked as ``<folder>/<file>`` from the repository root."""
    shown = folder.resolve().relative_to(ROOT).as_posix() if folder.resolve().is_relative_to(ROOT) else str(folder)
    module = importlib.import_module(f"zoo.experiments.{name}")
    result = json.loads((folder / f"{name}.json").read_text())
    result["command"] = result.get("command") or command
    return module.render(result, images=f"{shown}/")


def replace_between_markers(text: str, body: str, start: str, end: str) -> str:
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found (in that order)")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/story.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("folder", type=Path, help="the --out folder of the command that measured")
    parser.add_argument("--command", help="the measuring command, for results that did not record it")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    body = render(args.name, args.folder, args.command)
    print(body, end="")
    if args.update_readme:
        start, end = markers(args.name)
        try:
            README.write_text(replace_between_markers(README.read_text(), body, start, end))
        except ValueError as e:
            print(f"python benchmarks/story.py: error: {e}", file=sys.stderr)
            return 2
        print(f"updated {README.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
