"""Publish the BERT masked-LM training benchmark: the only source of the docs' BERT throughput numbers.

    python benchmarks/bert.py                   # bert-mini, batch 32 x 128, vocabulary 8192, HF included
    python benchmarks/bert.py --update-docs   # ... and refresh docs/benchmarks.md

Runs :func:`zoo.bench.bert.run` (the code behind ``zoo bench bert``; every
flag of that command is accepted here too: zoo's compiled train step and
Hugging Face's ``BertForMaskedLM``, each in its own process, taking turns)
and writes ``benchmarks/results/bert-<device>.json`` (all raw timings) and
``.md`` (the table). With ``--update-docs`` the generated report replaces
the text between ``<!-- bench:bert:start -->`` and ``<!-- bench:bert:end -->``
in docs/benchmarks.md; it is an error if the markers are missing, and ``--quick`` is
refused. the page is left alone (exit 1) if other processes took more than 5%
of the CPU time during the run.

Without torch and transformers installed the Hugging Face rows are skipped
(with a note) and there is no ratio. On an idle 2-core CPU the default run
takes about two minutes; on a busy one, PyTorch's timings suffer most (the
report says how much CPU time other processes took).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish

PAGE = _publish.BENCHMARKS_PAGE  # tests point this elsewhere
START, END = _publish.markers("bert")
PROG = "python benchmarks/bert.py"


def main(argv: list[str] | None = None) -> int:
    """Run, write ``benchmarks/results/bert-<device>.*``; with --update-docs, refresh docs/benchmarks.md."""
    return _publish.publish("bert", argv, prog=PROG, page=PAGE, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
