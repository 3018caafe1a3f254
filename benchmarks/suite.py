"""Publish the benchmark suite (scan vs attention): the only source of README's suite figures.

    python benchmarks/suite.py                   # full default shapes on this machine's JAX device
    python benchmarks/suite.py --update-readme   # ... and refresh README.md

Runs :func:`zoo.bench.suite.run` (the code behind ``zoo bench``; every flag
of that command is accepted here too) and writes
``benchmarks/results/suite-<device>.json`` (all raw timings), ``.md`` (the
report), ``.csv`` (one row per measurement) and the plots
(``-throughput.png``, ``-decode.png``, ``-roofline.png``). With
``--update-readme`` the report, its plots linked, replaces the text between
``<!-- bench:suite:start -->`` and ``<!-- bench:suite:end -->`` in
README.md; it is an error if the markers are missing, and ``--quick`` is
refused. README is left alone (exit 1) if other processes took more than 5%
of the CPU time during the run.

On a GPU the same command writes ``suite-gpu-<model>.*`` (bfloat16, and the
cuDNN attention kernel as an extra row).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

README = _publish.README
PROG = "python benchmarks/suite.py"


def main(argv: list[str] | None = None) -> int:
    return _publish.publish("suite", argv, prog=PROG, readme=README, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
