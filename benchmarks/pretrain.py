"""Publish the pretraining comparison with nanoGPT: the only source of the docs' pretraining numbers.

    python benchmarks/pretrain.py --data shakespeare.txt --nanogpt-log nanogpt.log --update-docs

Runs :func:`zoo.bench.pretrain.run` (``zoo bench pretrain``: one ``zoo
pretrain gpt --preset shakespeare-char-cpu`` in a fresh process) and reads
nanoGPT's figures from the log of a run you made on the same machine just
before (see the docstring of ``zoo/bench/pretrain.py`` for its command;
this repository never runs nanoGPT). Writes
``benchmarks/results/pretrain-<device>.json`` and ``.md``; with
``--update-docs`` the report replaces the text between
``<!-- bench:pretrain:start -->`` and ``<!-- bench:pretrain:end -->`` in
README.md (refused with ``--quick``, or if other processes took more than
5% of the CPU time).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

PAGE = _publish.BENCHMARKS_PAGE
PROG = "python benchmarks/pretrain.py"


def main(argv: list[str] | None = None) -> int:
    """Run, write ``benchmarks/results/pretrain-<device>.*``; with --update-docs, refresh docs/benchmarks.md."""
    return _publish.publish("pretrain", argv, prog=PROG, page=PAGE, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
