"""The ``zoo`` subcommands that build a config and call the library (``zoo.cli`` dispatches to them).

    zoo pretrain gpt|lstm|gru|rnn|mingru|nplm  language models        (zoo.commands.lm)
    zoo sample RUN_DIR
    zoo pretrain bert ...                      masked-LM pretraining  (zoo.commands.bert)
    zoo fill-mask RUN_DIR "text with [MASK]" / zoo finetune RUN_DIR ...
    zoo pretrain seq2seq ...                   translation            (zoo.commands.seq2seq)
    zoo translate RUN_DIR "input"
    zoo eval RUN_DIR                           any family             (zoo.commands.evaluate)
    zoo export RUN_DIR OUT_DIR                 to Hugging Face        (zoo.commands.export)
    zoo pretrain word2vec|fasttext ...         word vectors           (zoo.commands.embed)
    zoo embed neighbors|analogy|eval|export RUN_DIR ...

Every RUN_DIR may also be a Hugging Face GPT-2 or BERT directory (zoo.pretrained).

Modules import JAX and the models only when their command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["pretrain_main", "sample_main", "eval_main"]


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain FAMILY --preset NAME [flags]``: the family picks the command."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("family", nargs="?")
    family = first.parse_known_args(list(argv))[0].family
    if family == "bert":
        from zoo.commands.bert import pretrain_main as main  # noqa: PLC0415
    elif family == "seq2seq":
        from zoo.commands.seq2seq import pretrain_main as main  # noqa: PLC0415
    elif family in ("word2vec", "fasttext"):
        from zoo.commands.embed import pretrain_main as main  # noqa: PLC0415
    else:
        from zoo.commands.lm import pretrain_main as main  # noqa: PLC0415
    return main(argv, prog)


def sample_main(argv: Sequence[str], prog: str = "zoo sample") -> int:
    from zoo.commands.lm import sample_main as main  # noqa: PLC0415

    return main(argv, prog)


def eval_main(argv: Sequence[str], prog: str = "zoo eval") -> int:
    from zoo.commands.evaluate import eval_main as main  # noqa: PLC0415

    return main(argv, prog)
