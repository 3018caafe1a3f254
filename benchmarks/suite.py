"""Publish the benchmark suite (scan vs attention): the only source of the docs' suite figures.

    python benchmarks/suite.py                   # full default shapes on this machine's JAX device
    python benchmarks/suite.py --update-docs   # ... and refresh docs/benchmarks.md

Runs :func:`zoo.bench.suite.run` (the code behind ``zoo bench``; every flag
of that command is accepted here too) and writes
``benchmarks/results/suite-<device>.json`` (all raw timings), ``.md`` (the
report), ``.csv`` (one row per measurement) and the plots
(``-throughput.png``, ``-decode.png``, ``-roofline.png``). With
``--update-docs`` the report, its plots linked, replaces the text between
``<!-- bench:suite:start -->`` and ``<!-- bench:suite:end -->`` in
README.md; it is an error if the markers are missing, and ``--quick`` is
refused. README is left alone (exit 1) if other processes took more than 5%
of the CPU time during the run.

``--rerender RESULTS.json`` (with or without ``--update-docs``) recomputes
the derived figures and the report from a run's stored raw results instead
of measuring again: for changes to the analysis, never to what is measured.

On a GPU the same command writes ``suite-gpu-<model>.*`` (bfloat16, and the
cuDNN attention kernel as an extra row).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

PAGE = _publish.BENCHMARKS_PAGE
PROG = "python benchmarks/suite.py"


def rerender_main(argv: list[str]) -> int:
    import json
    import shlex

    from zoo.bench import suite
    from zoo.harness.main import write
    from zoo.harness.results import MAX_OTHER_LOAD

    i = argv.index("--rerender")
    if i + 1 >= len(argv):
        print(f"{PROG}: error: --rerender needs the path of a results JSON", file=sys.stderr)
        return 2
    path = Path(argv[i + 1])
    data = json.loads(path.read_text())
    other = data["environment"].get("other_processes_cpu_share")
    data = suite.rerender(data, command=_publish.portable_command(PROG, argv))
    for p in write(suite.EXPERIMENT, data, path.parent):
        print(f"wrote {p}", file=sys.stderr)
    if _publish.UPDATE_DOCS not in argv:
        return 0
    if other is not None and other > MAX_OTHER_LOAD:
        print(f"{PROG}: error: docs/benchmarks.md not updated: other processes used {other:.0%} of the CPU time "
              "during the measured run", file=sys.stderr)
        return 1
    start, end = _publish.markers("suite")
    folder = path.parent.resolve().relative_to(_publish.ROOT).as_posix()
    markdown = _publish.docs_figures(suite.render(data, images=f"{folder}/"))
    PAGE.write_text(_publish.replace_between_markers(PAGE.read_text(), markdown, start, end))
    print(f"updated {PAGE.relative_to(_publish.ROOT)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--rerender" in argv:
        return rerender_main(argv)
    return _publish.publish("suite", argv, prog=PROG, page=PAGE, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
