"""Publish the recurrent-layer benchmark: the only source of README's numbers.

    python benchmarks/recurrent.py                   # full default shapes, torch included
    python benchmarks/recurrent.py --update-readme   # ... and refresh README.md

Runs :func:`zoo.bench.recurrent.run` (the code behind ``zoo bench
recurrent``; every flag of that command is accepted here too) and writes
``benchmarks/results/recurrent-<device>.json`` (all raw timings) and
``.md`` (the table). With ``--update-readme`` the generated report replaces
the text between ``<!-- bench:recurrent:start -->`` and
``<!-- bench:recurrent:end -->`` in README.md; it is an error if the markers
are missing, and ``--quick`` is refused. README is left alone (exit 1) if
other processes took more than 5% of the CPU time during the run: on a
shared machine the numbers, PyTorch's above all, are not worth publishing.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:recurrent:start -->", "<!-- bench:recurrent:end -->"
PROG = "python benchmarks/recurrent.py"


def replace_between_markers(text: str, body: str, start: str = START, end: str = END) -> str:
    """``text`` with everything between the ``start`` and ``end`` markers replaced by ``body``."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found (in that order)")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    update_readme = "--update-readme" in argv
    bench_argv = [a for a in argv if a != "--update-readme"]
    if "-h" in argv or "--help" in argv:
        print(__doc__)

    from zoo.bench import recurrent, timing  # after --help text; imports JAX

    cfg = recurrent.parse_config(bench_argv, prog=PROG)
    if update_readme:
        if cfg.quick:
            print(f"{PROG}: error: --update-readme needs full shapes, not --quick", file=sys.stderr)
            return 2
        try:
            replace_between_markers(README.read_text(), "")
        except (OSError, ValueError) as e:
            print(f"{PROG}: error: {README}: {e}", file=sys.stderr)
            return 2

    data, markdown = recurrent.run(cfg, command=" ".join([PROG, *map(shlex.quote, argv)]))
    print(markdown, end="")
    stem = f"recurrent-{timing.device_slug(data['environment'])}"
    for path in timing.write_results(cfg.out or RESULTS, stem, data, markdown):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)
    other = data["environment"].get("other_processes_cpu_share")
    if update_readme and other is not None and other > recurrent.MAX_OTHER_LOAD:
        print(
            f"{PROG}: error: README not updated: other processes used {other:.0%} of the CPU time "
            "during the run; rerun on an idle machine",
            file=sys.stderr,
        )
        return 1
    if update_readme:
        README.write_text(replace_between_markers(README.read_text(), markdown))
        print(f"updated {README.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
