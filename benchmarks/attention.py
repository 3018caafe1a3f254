"""Publish the attention benchmark: the only source of the docs' attention numbers.

    python benchmarks/attention.py                   # default shapes and lengths, torch included
    python benchmarks/attention.py --update-docs   # ... and refresh docs/benchmarks.md

Runs :func:`zoo.bench.attention.run` (the code behind ``zoo bench
attention``; every flag of that command is accepted here too: each
implementation, T and mode in its own process, under a memory limit) and
writes ``benchmarks/results/attention-<device>.json`` (all raw timings) and
``.md`` (the tables). With ``--update-docs`` the generated report replaces
the text between ``<!-- bench:attention:start -->`` and
``<!-- bench:attention:end -->`` in docs/benchmarks.md; it is an error if the markers
are missing, and ``--quick`` is refused. the page is left alone (exit 1) if
other processes took more than 5% of the CPU time during the run.

On a 2-core CPU the default run takes of the order of an hour, most of it
in T=16384 (one blockwise fwd+bwd call alone is about a minute there).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

PAGE = _publish.BENCHMARKS_PAGE  # tests point this elsewhere
START, END = _publish.markers("attention")
PROG = "python benchmarks/attention.py"


def main(argv: list[str] | None = None) -> int:
    """Run, write ``benchmarks/results/attention-<device>.*``; with --update-docs, refresh docs/benchmarks.md."""
    return _publish.publish("attention", argv, prog=PROG, page=PAGE, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
