"""Publish the story's measurements (the ladder, gradient flow, long-range tasks) into docs/story.md.

    zoo ladder --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu \\
        --out benchmarks/results/ladder-tinyshakespeare
    python benchmarks/story.py ladder benchmarks/results/ladder-tinyshakespeare --update-docs

    zoo gradflow --out benchmarks/results/gradflow
    python benchmarks/story.py gradflow benchmarks/results/gradflow --update-docs

    zoo tasks sweep --out benchmarks/results/tasks
    python benchmarks/story.py tasks benchmarks/results/tasks --update-docs

    zoo ladder --level word --data tinyshakespeare.txt --max-steps 300 --out benchmarks/results/word-ladder-tinyshakespeare
    python benchmarks/story.py word_ladder benchmarks/results/word-ladder-tinyshakespeare --update-docs

    zoo ladder --level word --data gcide --max-vocab 10000 --out benchmarks/results/word-ladder-gcide
    python benchmarks/story.py word_ladder benchmarks/results/word-ladder-gcide --section gcide --update-docs

The measuring is done by the commands, which write their results (JSON, Markdown, a plot) into the
folder; this script only renders that folder's results, with the plot linked from the repository
root, and with ``--update-docs`` puts them between ``<!-- story:NAME:start -->`` and
``<!-- story:NAME:end -->`` in docs/story.md (``--section S``: ``story:NAME:S``, for a second corpus). Nothing here is typed by hand. Results measured while
other processes took more than 5% of the CPU say so in their table (the ladder records the share).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "story.md"
NAMES = ("ladder", "gradflow", "tasks", "word_ladder")


def markers(name: str, section: str | None = None) -> tuple[str, str]:
    key = f"{name}:{section}" if section else name
    return f"<!-- story:{key}:start -->", f"<!-- story:{key}:end -->"


def render(name: str, folder: Path, command: str | None = None) -> str:
    """The Markdown of ``folder``'s results, its images linked as ``<folder>/<file>`` from the repository root."""
    shown = folder.resolve().relative_to(ROOT).as_posix() if folder.resolve().is_relative_to(ROOT) else str(folder)
    module = importlib.import_module(f"zoo.experiments.{name}")
    result = json.loads((folder / f"{name}.json").read_text())
    result["command"] = result.get("command") or command
    return module.render(result, images=f"{shown}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/story.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("folder", type=Path, help="the --out folder of the command that measured")
    parser.add_argument("--command", help="the measuring command, for results that did not record it")
    parser.add_argument("--section", help="a second table of the same measurement (another corpus): its markers "
                        "are story:NAME:SECTION")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    body = render(args.name, args.folder, args.command)
    print(body, end="")
    if args.update_docs:
        start, end = markers(args.name, args.section)
        try:
            PAGE.write_text(_publish.replace_between_markers(PAGE.read_text(), _publish.docs_figures(body), start, end))
        except ValueError as e:
            print(f"python benchmarks/story.py: error: {e}", file=sys.stderr)
            return 2
        print(f"updated {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
