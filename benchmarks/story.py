"""Publish the story's measurements (the ladder, gradient flow, long-range tasks) into README.

    zoo ladder --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu \\
        --out benchmarks/results/ladder-tinyshakespeare
    python benchmarks/story.py ladder benchmarks/results/ladder-tinyshakespeare --update-readme

    zoo gradflow --out benchmarks/results/gradflow
    python benchmarks/story.py gradflow benchmarks/results/gradflow --update-readme

    zoo tasks sweep --out benchmarks/results/tasks
    python benchmarks/story.py tasks benchmarks/results/tasks --update-readme

    zoo ladder --level word --data tinyshakespeare.txt --max-steps 300 --out word-ladder-tinyshakespeare
    python benchmarks/story.py word-ladder word-ladder-tinyshakespeare --update-readme

The measuring is done by the commands, which write their results (JSON, Markdown, a plot) into the
folder; this script only renders that folder's results, with the plot linked from the repository
root, and with ``--update-readme`` puts them between ``<!-- story:NAME:start -->`` and
``<!-- story:NAME:end -->`` in README.md (the word-level ladder: in docs/story.md, its results, not its
runs, copied into ``benchmarks/results/<folder name>/`` and its plot into ``docs/figures/``, where the
page links it). Nothing here is typed by hand. Results measured while
other processes took more than 5% of the CPU say so in their table (the ladder records the share).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
STORY = ROOT / "docs" / "story.md"
NAMES = ("ladder", "gradflow", "tasks", "word-ladder")
WORD_LADDER_FILES = ("word_ladder.json", "word_ladder.md", "word_ladder.png")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- story:{name}:start -->", f"<!-- story:{name}:end -->"


def render(name: str, folder: Path, command: str | None = None) -> str:
    """The Markdown of ``folder``'s results, its images linked as ``<folder>/<file>`` from the repository root."""
    shown = folder.resolve().relative_to(ROOT).as_posix() if folder.resolve().is_relative_to(ROOT) else str(folder)
    if name == "ladder":
        from zoo.experiments.ladder import render_markdown

        result = json.loads((folder / "ladder.json").read_text())
        return render_markdown(result, command=result.get("command") or command, image=f"{shown}/ladder.png")
    if name == "word-ladder":
        from zoo.experiments.word_ladder import render_markdown

        result = json.loads((folder / "word_ladder.json").read_text())
        return render_markdown(result, command=result.get("command") or command, image=f"figures/{folder.name}.png")
    if name == "gradflow":
        from zoo.experiments.gradflow import render_markdown

        result = json.loads((folder / "gradflow.json").read_text())
        return render_markdown(result, image=f"{shown}/gradflow.png")
    from zoo.experiments.tasks import render_markdown

    result = json.loads((folder / "tasks.json").read_text())
    return render_markdown(result, command=result.get("command") or command, image=f"{shown}/tasks.png")


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
    target = STORY if args.name == "word-ladder" else README
    if args.name == "word-ladder" and args.update_readme:  # keep the results (not the runs), the plot for the page
        import shutil

        from zoo.experiments.word_ladder import plot_word_ladder

        kept = ROOT / "benchmarks" / "results" / args.folder.name
        result = json.loads((args.folder / "word_ladder.json").read_text())
        if kept.resolve() != args.folder.resolve():
            kept.mkdir(parents=True, exist_ok=True)
            for f in WORD_LADDER_FILES[:2]:
                shutil.copyfile(args.folder / f, kept / f)
        for png in (kept / "word_ladder.png", ROOT / "docs" / "figures" / f"{args.folder.name}.png"):
            plot_word_ladder(result, png)  # drawn again from the results, by today's code
    body = render(args.name, args.folder, args.command)
    print(body, end="")
    if args.update_readme:
        start, end = markers(args.name)
        try:
            target.write_text(replace_between_markers(target.read_text(), body, start, end))
        except ValueError as e:
            print(f"python benchmarks/story.py: error: {e}", file=sys.stderr)
            return 2
        print(f"updated {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
