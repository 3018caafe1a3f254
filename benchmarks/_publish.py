"""What every publishing script here shares: run ``zoo.bench.<name>``, write results, refresh the docs.

A script ``benchmarks/<name>.py`` is a docstring and one call::

    publish("<name>", argv, prog="python benchmarks/<name>.py", page=PAGE, doc=__doc__)

which runs :func:`zoo.bench.<name>.run` (every flag of ``zoo bench <name>``
is accepted), prints the Markdown report, writes
``benchmarks/results/<name>-<device>.json`` (all raw timings) and ``.md``
(the table), plus the benchmark's CSV and plots (:func:`zoo.harness.main.write`),
and with ``--update-docs`` replaces the text between
``<!-- bench:<name>:start -->`` and ``<!-- bench:<name>:end -->`` in its docs
page (docs/benchmarks.md unless the script names another). With
``--update-docs`` it is an error (exit 2, before running anything) if the
markers are missing or ``--quick`` is given, and the page is left alone (exit 1) if other processes took more than a 5%
share of the CPU time during the run (``zoo.harness.results.MAX_OTHER_LOAD``,
or the benchmark's own ``MAX_OTHER_LOAD``).
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"
UPDATE_DOCS = "--update-docs"


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of benchmark ``name``'s section."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_between_markers(text: str, body: str, start: str, end: str) -> str:
    """``text`` with everything between the ``start`` and ``end`` markers replaced by ``body``."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found (in that order)")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def docs_figures(markdown: str) -> str:
    """``markdown`` with each image it links (a path from the repository root) copied to docs/figures/ and linked
    from there, where the docs site can serve it (a page links nothing outside docs/).

    A figure keeps its file name, unless that name is the stem of its results folder's name
    (``ladder-tinyshakespeare/ladder.png`` -> ``ladder-tinyshakespeare.png``), which says which run it shows.
    """
    figures = ROOT / "docs" / "figures"

    def copy(match: re.Match) -> str:
        source = ROOT / match.group(2)
        if not source.is_file():
            return match.group(0)
        name = source.name
        if source.parent.name.replace("_", "-").startswith(source.stem.replace("_", "-")) and source.parent != RESULTS:
            name = source.parent.name + source.suffix
        figures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, figures / name)
        return f"![{match.group(1)}](figures/{name})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", copy, markdown)


def portable_command(prog: str, argv: list[str]) -> str:
    """The command as published: a path outside the repository by its file name (the machine's own
    directories mean nothing to a reader, tests/test_repository.py refuses them), one inside it relative."""

    def shown(arg: str) -> str:
        flag, eq, value = arg.rpartition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        if value.startswith("/"):
            path = Path(value)
            value = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        return shlex.quote(flag + eq + value)

    return " ".join([prog, *map(shown, argv)])


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def publish(
    name: str, argv: list[str] | None, *, prog: str, page: Path = BENCHMARKS_PAGE, doc: str | None = None
) -> int:
    """Run benchmark ``name`` on ``argv``, write its results; with --update-docs, refresh ``page``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    update_docs = UPDATE_DOCS in argv
    bench_argv = [a for a in argv if a != UPDATE_DOCS]
    if doc and ("-h" in argv or "--help" in argv):
        print(doc)

    from zoo.harness import main, results  # after --help text; imports JAX

    bench = importlib.import_module(f"zoo.bench.{name}")
    start, end = markers(name)
    cfg = main.parse(bench.EXPERIMENT, bench_argv, prog=prog)
    if update_docs:
        if cfg.quick:
            print(f"{prog}: error: {UPDATE_DOCS} needs full shapes, not --quick", file=sys.stderr)
            return 2
        try:
            replace_between_markers(page.read_text(), "", start, end)
        except (OSError, ValueError) as e:
            print(f"{prog}: error: {_shown(page)}: {e}", file=sys.stderr)
            return 2

    data = bench.run(cfg, command=portable_command(prog, argv))
    print(bench.render(data, images=None), end="")
    out = Path(cfg.out or RESULTS)
    for path in main.write(bench.EXPERIMENT, data, out, stem=f"{name}-{{device}}"):
        print(f"wrote {_shown(path)}", file=sys.stderr)
    if not update_docs:
        return 0
    other = data["environment"].get("other_processes_cpu_share")
    if other is not None and other > getattr(bench, "MAX_OTHER_LOAD", results.MAX_OTHER_LOAD):  # embeddings: 1.0
        print(
            f"{prog}: error: {_shown(page)} not updated: other processes used {other:.0%} of the CPU time "
            "during the run; rerun on an idle machine",
            file=sys.stderr,
        )
        return 1
    markdown = docs_figures(bench.render(data, images=f"{_shown(out).as_posix()}/"))
    page.write_text(replace_between_markers(page.read_text(), markdown, start, end))
    print(f"updated {_shown(page)}", file=sys.stderr)
    return 0
