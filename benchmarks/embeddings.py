"""Publish word2vec and fastText beside gensim: the only source of docs/embeddings.md's table.

    python benchmarks/embeddings.py --update-docs

Runs :func:`zoo.bench.embeddings.run` (``zoo bench embeddings``: GCIDE, gensim's
defaults, 3 interleaved seeds, zoo's and gensim's Word2Vec and FastText on the same
sentences with the same threads), writes ``benchmarks/results/embeddings-<device>.json``
and ``.md``; with ``--update-docs`` the report replaces the text between
``<!-- bench:embeddings:start -->`` and ``<!-- bench:embeddings:end -->`` in
docs/embeddings.md (refused with ``--quick``). Needs ``apt-get install dict-gcide``
and ``pip install gensim``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

DOC = _publish.ROOT / "docs" / "embeddings.md"
PROG = "python benchmarks/embeddings.py"


def main(argv: list[str] | None = None) -> int:
    """Run, write ``benchmarks/results/embeddings-<device>.*``; with --update-docs, refresh docs/embeddings.md."""
    return _publish.publish("embeddings", argv, prog=PROG, page=DOC, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
