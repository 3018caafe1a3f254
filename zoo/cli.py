"""The ``zoo`` command: a thin dispatcher over a tree of subcommands.

    zoo --version
    zoo bench recurrent --quick
    zoo bench --quick          # a group's default command: the benchmark suite

Each leaf is a :class:`Command` naming a function ``"module:function"`` that
takes ``(argv, prog)`` (the remaining arguments and the command's full name,
for its own ``--help``) and returns an exit code (or None for 0). Modules are
imported only when their command runs. Adding a command is one entry in
:data:`COMMANDS`, e.g. ``"pretrain": Command("zoo.train.pretrain:main", ...)``
at the top level or ``"attention": Command("zoo.bench.attention:main", ...)``
under ``bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Callable, Sequence, Union

from zoo._version import __version__


@dataclasses.dataclass(frozen=True)
class Command:
    """A leaf: ``target`` is ``"module:function"``, called as ``function(argv, prog=prog)``."""

    target: str
    help: str

    def resolve(self) -> Callable[..., int | None]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class Group:
    """A node with named children (commands or further groups)."""

    help: str
    commands: dict[str, Union[Command, "Group"]]
    default: str | None = None  # the child that runs when the arguments name none (e.g. `zoo bench --quick`)


COMMANDS = Group(
    "zoo: a JAX model zoo, from recurrent networks to Transformers.",
    {
        "bench": Group(
            "Run a benchmark; print a Markdown table (stdout), progress on stderr.\n\n"
            "zoo bench [FLAGS] runs the suite (scan vs attention); see 'zoo bench suite --help'.",
            {
                "suite": Command(
                    "zoo.bench.suite:main",
                    "the suite (default): scan vs attention tokens/s over T and batch, decode latency, "
                    "compile time, memory, FLOPs, roofline; tables, CSV and plots",
                ),
                "recurrent": Command(
                    "zoo.bench.recurrent:main",
                    "fwd and fwd+bwd tokens/s of zoo's recurrent cells vs flax.linen and torch",
                ),
                "pretrain": Command(
                    "zoo.bench.pretrain:main",
                    "wall time of zoo pretrain on nanoGPT's CPU recipe, beside a nanoGPT log you provide",
                ),
                "attention": Command(
                    "zoo.bench.attention:main",
                    "fwd and fwd+bwd tokens/s and peak memory of zoo's attention vs jax.nn and torch",
                ),
                "bert": Command(
                    "zoo.bench.bert:main",
                    "masked-LM training tokens/s of zoo's BERT train step vs Hugging Face's BertForMaskedLM",
                ),
            },
            default="suite",
        ),
        "pretrain": Command(
            "zoo.commands:pretrain_main",
            "pretrain a model: zoo pretrain gpt|lstm|gru|rnn|mingru|bert|seq2seq --preset NAME [--data ...]",
        ),
        "fill-mask": Command(
            "zoo.commands.bert:fill_mask_main",
            "the likeliest fillings of each [MASK]: zoo fill-mask RUN_DIR \"text with [MASK]\"",
        ),
        "finetune": Command(
            "zoo.commands.bert:finetune_main",
            "fine-tune a pretrained BERT run for classification: zoo finetune RUN_DIR --data ...",
        ),
        "translate": Command(
            "zoo.commands.seq2seq:translate_main",
            "translate with a seq2seq run (beam search): zoo translate RUN_DIR \"input\"",
        ),
        "ladder": Command(
            "zoo.ladder:main",
            "the language-model ladder: Kneser-Ney n-gram, RNN, LSTM, GRU, minGRU and GPT in bits per character",
        ),
        "gradflow": Command(
            "zoo.gradflow:main",
            "vanishing and exploding gradients: |dL_T/dx_(T-k)| against k for RNN, LSTM, GRU, Transformer",
        ),
        "tasks": Group(
            "Long-range dependency tasks (adding, copy, selective-copy, recall) for rnn|lstm|gru|mingru|gpt.",
            {
                "run": Command("zoo.tasks:run_main", "train and evaluate one model on one task: zoo tasks run TASK "
                               "--model M --length T"),
                "sweep": Command("zoo.tasks:sweep_main", "tasks x models x lengths with one budget: table, JSON, "
                                 "plot"),
            },
        ),
        "sample": Command("zoo.commands:sample_main", "print continuations of a prompt: zoo sample RUN_DIR --prompt TEXT"),
        "eval": Command("zoo.commands:eval_main", "evaluate a run of any family on held-out data: zoo eval "
                        "RUN_DIR [--data SPEC]"),
    },
)


def _parser(node: Group, prog: str, top: bool) -> argparse.ArgumentParser:
    width = max(map(len, node.commands)) + 2
    listing = "\n".join(
        f"  {name:<{width}}{child.help.splitlines()[0]}" for name, child in node.commands.items()
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=node.help,
        epilog=f"commands:\n{listing}\n\nRun '{prog} COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if top:
        parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("command", metavar="COMMAND", choices=list(node.commands), help="one of: %(choices)s")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def dispatch(node: Group | Command, argv: Sequence[str], prog: str, top: bool = False) -> int:
    """Walk ``argv`` down the command tree and run the leaf it names."""
    if isinstance(node, Command):
        code = node.resolve()(list(argv), prog=prog)
        return 0 if code is None else int(code)
    parser = _parser(node, prog, top)
    if node.default and (not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help"))):
        return dispatch(node.commands[node.default], argv, prog)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    ns = parser.parse_args(list(argv))  # unknown COMMAND: lists the choices, exits 2
    return dispatch(node.commands[ns.command], ns.args, f"{prog} {ns.command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script and of ``python -m zoo``."""
    argv = sys.argv[1:] if argv is None else argv
    return dispatch(COMMANDS, argv, "zoo", top=True)
