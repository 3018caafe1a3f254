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
import errno
import importlib
import os
import re
import shlex
import sys
import threading
import warnings
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
                "embeddings": Command(
                    "zoo.bench.embeddings:main",
                    "word2vec and fastText: zoo's vs gensim's training words/s and evaluations, over seeds",
                ),
                "device-report": Command(
                    "zoo.bench.device_report:main",
                    "the prepared GPU/TPU report: correctness, scan vs attention, GPT-2 small MFU, decode "
                    "latency (--dry-run: tiny, on CPU)",
                ),
            },
            default="suite",
        ),
        "pretrain": Command(
            "zoo.commands:pretrain_main",
            "pretrain a model: zoo pretrain gpt|lstm|gru|rnn|mingru|nplm|bert|seq2seq|word2vec|fasttext --preset NAME "
            "[--data ...]",
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
            "zoo.experiments.ladder:main",
            "the language-model ladder: Kneser-Ney n-gram, RNN, LSTM, GRU, minGRU and GPT in bits per character "
            "(--level word: n-grams, NPLM, LSTM, GPT in perplexity per word)",
        ),
        "gradflow": Command(
            "zoo.experiments.gradflow:main",
            "vanishing and exploding gradients: |dL_T/dx_(T-k)| against k for RNN, LSTM, GRU, Transformer",
        ),
        "tasks": Group(
            "Long-range dependency tasks (adding, copy, selective-copy, recall) for rnn|lstm|gru|mingru|gpt.",
            {
                "run": Command("zoo.experiments.tasks:run_main", "train and evaluate one model on one task: zoo tasks run TASK "
                               "--model M --length T"),
                "sweep": Command("zoo.experiments.tasks:sweep_main", "tasks x models x lengths with one budget: table, JSON, "
                                 "plot"),
            },
        ),
        "export": Command("zoo.commands.export:export_main", "write a gpt or bert run as a Hugging Face model "
                          "directory (safetensors): zoo export RUN_DIR OUT_DIR"),
        "embed": Group(
            "Word vectors of a word2vec or fasttext run (zoo pretrain word2vec|fasttext).",
            {
                "neighbors": Command("zoo.commands.embed:neighbors_main", "the nearest words: zoo embed neighbors "
                                     "RUN WORD [--k 10]"),
                "analogy": Command("zoo.commands.embed:analogy_main", "A is to B as C is to ?: zoo embed analogy "
                                   "RUN A B C"),
                "eval": Command("zoo.commands.embed:eval_main", "word similarity, analogies and unseen word forms: "
                                "zoo embed eval RUN"),
                "export": Command("zoo.commands.embed:export_main", "word2vec text/binary file: zoo embed export "
                                  "RUN FILE [--binary]"),
            },
        ),
        "launch": Command("zoo.commands.launch:launch_main", "run a command in N processes joined by "
                          "jax.distributed on this machine: zoo launch --nproc 2 -- pretrain gpt ..."),
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
    """Entry point of the ``zoo`` console script and of ``python -m zoo``.

    Every failure the library knows of ends in one line on stderr, ``zoo
    COMMAND: error: ...``, and exit status 2 (the input: a flag, a file, a
    run directory) or 1 (something that happened while running: a full
    disk, a run that went non-finite, a run directory in use). Ctrl-C says
    where the checkpoint is and how to resume, and exits 130. ``--debug``
    (anywhere on the line) or ``ZOO_DEBUG=1`` shows the full traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ZOO_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    prog = _prog(argv)
    if not debug:
        _quiet_libraries()
        # A warning (a checkpoint skipped as corrupt, say) is one line too, without Python's source line.
        warnings.showwarning = lambda message, category, *args, **kwargs: print(
            f"{prog}: warning: {message}", file=sys.stderr, flush=True)
    try:
        return dispatch(COMMANDS, argv, "zoo", top=True)
    except KeyboardInterrupt as e:
        if debug:
            raise
        print(f"{prog}: {interrupted_message(e, argv)}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (one line for the user; --debug shows the traceback)
        if debug:
            raise
        message, code = describe_error(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code


def _quiet_libraries() -> None:
    """Keep the libraries' own reports of a failure off the terminal: zoo reports it in one line.

    Orbax logs a failed write through absl at ERROR level, and its writer
    threads and TensorStore's callbacks print tracebacks of their own when a
    save fails (a full disk printed about 300 lines of them).
    """
    import logging  # noqa: PLC0415

    logging.getLogger("absl").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    threading.excepthook = lambda args: None


def interrupted_message(e: KeyboardInterrupt, argv: Sequence[str]) -> str:
    """What Ctrl-C left behind, and the command that continues (the same one, without --overwrite)."""
    from zoo.errors import TrainingInterrupted  # noqa: PLC0415

    if not isinstance(e, TrainingInterrupted):
        return "interrupted; nothing was saved"
    from zoo.commands.launch import ENV_LAUNCHED_BY  # noqa: PLC0415

    # under `zoo launch` (which sets ENV_LAUNCHED_BY to "zoo launch --nproc N --"), the whole launch again
    again = os.environ.get(ENV_LAUNCHED_BY, "zoo") + " " + shlex.join(a for a in argv if a != "--overwrite")
    if e.checkpoint is None:
        return f"interrupted during a step before any checkpoint; nothing was saved. Start again with: {again}"
    return f"interrupted at step {e.step}; checkpoint saved in {e.checkpoint}. Resume with: {again}"


def describe_error(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) of an exception, worded for the command line."""
    from zoo.errors import ConfigError, FlagError, NonFiniteError, RunInUseError  # noqa: PLC0415

    if isinstance(e, FlagError):
        e = e.error
    if isinstance(e, ConfigError):
        group = {"TrainConfig": "train", "SequenceModelConfig": "model"}.get(e.config, "model")
        # The other fields named in the text become flags too: "num_heads=3" -> "--model.num-heads 3".
        expected = re.sub(r"\b([a-z][a-z0-9_]*)=", lambda m: f"--{group}.{m.group(1).replace('_', '-')} ", e.expected)
        return f"--{group}.{e.field.replace('_', '-')} {e.value!r}: expected {expected}", 2
    if isinstance(e, NonFiniteError):
        return (f"non-finite loss or gradient at step {e.step} (loss {e.loss}, gradient norm {e.grad_norm}); "
                f"training stopped with the parameters from before that step (checkpoints in {e.directory}: "
                f"steps {e.checkpoints}). To skip such steps instead, add --train.on-nonfinite skip"), 1
    if isinstance(e, RunInUseError):
        return str(e).replace("another run directory", "another --out"), 1
    full = _oserror_in(e, errno.ENOSPC)
    if full is not None:
        what = f"writing {full.filename}" if full.filename else _first_line(e).split(" failed (")[0][:300]
        return (f"no space left on device while {what}; free some space, then run the same command again: a run "
                "resumes from its last complete checkpoint"), 1
    if isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return _first_line(e), 2
    if isinstance(e, OSError):
        return f"{e.strerror or _first_line(e)}{f': {e.filename}' if e.filename else ''}", 1
    if isinstance(e, (RuntimeError, FloatingPointError, MemoryError)):
        return _first_line(e), 1
    return f"internal error: {type(e).__name__}: {_first_line(e)} (run with --debug for the traceback)", 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _oserror_in(e: BaseException | None, code: int) -> OSError | None:
    """The first OSError with errno ``code`` in ``e``'s chain of causes (or one made from a message that
    names it: TensorStore's errors carry the OS error only as text)."""
    chain, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for x in chain:
        if isinstance(x, OSError) and x.errno == code:
            return x
    text = os.strerror(code)
    return next((OSError(code, text) for x in chain if text in str(x)), None)


def _prog(argv: Sequence[str]) -> str:
    """The command's name as the user typed it (``zoo pretrain``, ``zoo bench suite``)."""
    node, words = COMMANDS, ["zoo"]
    for a in argv:
        if not isinstance(node, Group) or a not in node.commands:
            break
        node = node.commands[a]
        words.append(a)
    return " ".join(words)
