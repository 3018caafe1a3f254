"""Publish the recurrent-layer benchmark: the only source of the docs' numbers.

    python benchmarks/recurrent.py                   # full default shapes, torch included
    python benchmarks/recurrent.py --update-docs   # ... and refresh docs/benchmarks.md

Runs :func:`zoo.bench.recurrent.run` (the code behind ``zoo bench
recurrent``; every flag of that command is accepted here too) and writes
``benchmarks/results/recurrent-<device>.json`` (all raw timings) and
``.md`` (the table). With ``--update-docs`` the generated report replaces
the text between ``<!-- bench:recurrent:start -->`` and
``<!-- bench:recurrent:end -->`` in docs/benchmarks.md; it is an error if the markers
are missing, and ``--quick`` is refused. the page is left alone (exit 1) if
other processes took more than 5% of the CPU time during the run: on a
shared machine the numbers, PyTorch's above all, are not worth publishing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

ROOT, RESULTS = _publish.ROOT, _publish.RESULTS
PAGE = _publish.BENCHMARKS_PAGE
START, END = _publish.markers("recurrent")
PROG = "python benchmarks/recurrent.py"


def replace_between_markers(text: str, body: str, start: str = START, end: str = END) -> str:
    """``text`` with everything between the ``start`` and ``end`` markers replaced by ``body``."""
    return _publish.replace_between_markers(text, body, start, end)


def main(argv: list[str] | None = None) -> int:
    return _publish.publish("recurrent", argv, prog=PROG, page=PAGE, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
