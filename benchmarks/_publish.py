"""What every publishing script here shares: run ``zoo.bench.<name>``, write results, refresh README.

A script ``benchmarks/<name>.py`` is a docstring and one call::

    publish("<name>", argv, prog="python benchmarks/<name>.py", readme=README, doc=__doc__)

which runs :func:`zoo.bench.<name>.run` (every flag of ``zoo bench <name>``
is accepted), prints the Markdown report, writes
``benchmarks/results/<name>-<device>.json`` (all raw timings) and ``.md``
(the table), plus the benchmark's CSV and plots (:func:`zoo.harness.main.write`),
and with ``--update-readme`` replaces the text between
``<!-- bench:<name>:start -->`` and ``<!-- bench:<name>:end -->`` in
README.md. With ``--update-readme`` it is an error (exit 2, before running
anything) if the markers are missing or ``--quick`` is given, and README is
left alone (exit 1) if other processes took more than a 5%
share of the CPU time during the run (``zoo.harness.results.MAX_OTHER_LOAD``,
or the benchmark's own ``MAX_OTHER_LOAD``).
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
UPDATE_README = "--update-readme"


def markers(name: str) -> tuple[str, str]:
    """README's start and end markers of benchmark ``name``'s section."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_between_markers(text: str, body: str, start: str, end: str) -> str:
    """``text`` with everything between the ``start`` and ``end`` markers replaced by ``body``."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found (in that order)")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def publish(
    name: str, argv: list[str] | None, *, prog: str, readme: Path = README, doc: str | None = None
) -> int:
    """Run benchmark ``name`` on ``argv``, write its results; with --update-readme, refresh ``readme``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    update_readme = UPDATE_README in argv
    bench_argv = [a for a in argv if a != UPDATE_README]
    if doc and ("-h" in argv or "--help" in argv):
        print(doc)

    from zoo.harness import main, results  # after --help text; imports JAX

    bench = importlib.import_module(f"zoo.bench.{name}")
    start, end = markers(name)
    cfg = main.parse(bench.EXPERIMENT, bench_argv, prog=prog)
    if update_readme:
        if cfg.quick:
            print(f"{prog}: error: {UPDATE_README} needs full shapes, not --quick", file=sys.stderr)
            return 2
        try:
            replace_between_markers(readme.read_text(), "", start, end)
        except (OSError, ValueError) as e:
            print(f"{prog}: error: {readme}: {e}", file=sys.stderr)
            return 2

    data = bench.run(cfg, command=" ".join([prog, *map(shlex.quote, argv)]))
    print(bench.render(data, images=None), end="")
    out = Path(cfg.out or RESULTS)
    for path in main.write(bench.EXPERIMENT, data, out, stem=f"{name}-{{device}}"):
        print(f"wrote {_shown(path)}", file=sys.stderr)
    if not update_readme:
        return 0
    other = data["environment"].get("other_processes_cpu_share")
    if other is not None and other > getattr(bench, "MAX_OTHER_LOAD", results.MAX_OTHER_LOAD):  # embeddings: 1.0
        print(
            f"{prog}: error: README not updated: other processes used {other:.0%} of the CPU time "
            "during the run; rerun on an idle machine",
            file=sys.stderr,
        )
        return 1
    markdown = bench.render(data, images=f"{_shown(out).as_posix()}/")  # plots linked from README's folder
    readme.write_text(replace_between_markers(readme.read_text(), markdown, start, end))
    print(f"updated {_shown(readme)}", file=sys.stderr)
    return 0
