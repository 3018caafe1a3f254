"""What the ``zoo`` subcommands share: the run directory (claimed, compared, written), data with notices,
the warm-up fitted to the run, error exits, the process clock. Flags and presets are parsed by
:mod:`zoo.harness.flags`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.harness.flags import cache_dir, notice

__all__ = [
    "RunDir", "check_out_path", "check_same_run", "claim_run_dir", "corpus_tokens", "fail", "fit_warmup",
    "is_primary_process", "load_text_corpus", "notice", "process_elapsed_s", "say", "start_distributed",
]


def process_elapsed_s() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere: since zoo was imported)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def is_primary_process() -> bool:
    """Whether this process prints and writes the run's files: process 0 of a ``--distributed`` run, or
    the only one."""
    from zoo.train import distributed  # noqa: PLC0415

    return not distributed.is_multiprocess() or distributed.is_primary()


def say(*args: Any, **kwargs: Any) -> None:
    """``print`` on the process that prints (:func:`is_primary_process`), flushed."""
    if is_primary_process():
        print(*args, **kwargs, flush=True)


def start_distributed(args: Any) -> bool:
    """``--distributed`` (with ``--coordinator``, ``--num-processes``, ``--process-id``): join the other
    processes with ``jax.distributed`` before any device is used. Whether it did."""
    given = [f for f, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                            ("--process-id", args.process_id)) if v is not None]
    if not args.distributed:
        if given:
            raise ValueError(f"{', '.join(given)}: only with --distributed")
        return False
    from zoo.train import distributed  # noqa: PLC0415

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    return True


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


# -- the run directory: claimed, compared, written ------------------------------------------

_RUN_ENTRIES = ("run.json", "tokenizer", "checkpoints", "metrics.jsonl", "loss.png")  # what --overwrite removes


def latest_saved_step(run_dir: Path) -> int | None:
    """The newest complete checkpoint step in ``run_dir`` (orbax renames a step folder to its number only
    once it is complete), read from the folder names without opening orbax; None when there is none."""
    folder = run_dir / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=None)


@dataclasses.dataclass
class RunDir:
    """A run directory claimed by :func:`claim_run_dir`: ``step`` is its newest checkpoint (None: a new run)
    and ``saved`` its run.json when it has one to resume."""

    path: Path
    step: int | None
    saved: dict[str, Any] | None

    @property
    def resuming(self) -> bool:
        return self.step is not None


def check_out_path(run_dir: Path, flag: str = "--out") -> None:
    """An early, write-free check that ``run_dir`` can be a run directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{flag} {run_dir} is a file; expected a directory (a new one, or a run to resume)")


@contextlib.contextmanager
def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, prog: str, flag: str = "--out"):
    """Hold ``run_dir``'s lock for the ``with`` block and say whether it resumes (:class:`RunDir`).

    A directory with no complete checkpoint is a new run, whatever else it
    holds (a run that failed before its first checkpoint never blocks the
    next command). ``overwrite`` removes a previous run's files first. If the
    block fails before any checkpoint exists, a directory that the claim
    created is removed again: nothing is left behind that the next command
    would have to deal with.
    """
    from zoo.run import read_run_json  # noqa: PLC0415
    from zoo.train import distributed  # noqa: PLC0415
    from zoo.train.lock import RunLock  # noqa: PLC0415

    check_out_path(run_dir, flag)
    created = not run_dir.exists()
    lock = RunLock(run_dir).acquire()  # creates the directory; RunInUseError if another process holds it

    def inspect() -> int:  # process 0 looks (and removes, with overwrite); every process gets its answer
        step = latest_saved_step(run_dir)
        if step is not None and overwrite:
            for name in _RUN_ENTRIES:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            notice(prog, f"--overwrite: removed the run at step {step} in {run_dir}; starting afresh")
            step = None
        return -1 if step is None else step

    try:
        found = distributed.agree(distributed.primary_first(inspect, lambda: 0, what=f"claiming {run_dir}"))
        step = None if found < 0 else found
        if step is not None and not resume:
            raise ValueError(f"{flag} {run_dir} already holds a run (step {step}); resume it (drop --no-resume), "
                             f"start it afresh with --overwrite, or choose another {flag}")
        yield RunDir(run_dir, step, read_run_json(run_dir) if step is not None else None)
    except BaseException:
        if created and distributed.is_primary() and latest_saved_step(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()


def _flag(name: str) -> str:
    """A run.json field as the user wrote it: ``model.num_layers`` -> ``--model.num-layers``."""
    return "--" + name.replace("_", "-")


def run_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The data and tokenizer settings recorded in a run.json (runs from zoo 0.1 kept fewer of them)."""
    if "settings" in saved:
        return saved["settings"]
    legacy = {k: saved[k] for k in ("data", "text_column") if k in saved}
    kind = saved.get("tokens", {}).get("tokenizer", {}).get("kind")
    return {**legacy, **({"tokenizer": kind} if kind else {})}


def check_same_run(run: RunDir, *, settings: dict[str, Any], **configs: Any) -> None:
    """Refuse to resume ``run`` with other settings: a ``ValueError`` naming every field that differs.

    ``configs`` are dataclasses compared field by field with run.json's
    (``model=``, ``train=``); ``settings`` are the data and tokenizer choices
    (data spec, tokenizer, corpus fingerprint, ...), compared with those the
    run recorded (fields it did not record are not compared).
    """
    saved = run.saved or {}
    diffs = []
    for name, now in configs.items():
        before = saved.get(name, {})
        for k, v in dataclasses.asdict(now).items():
            if before.get(k, v) != v:
                diffs.append(f"{_flag(f'{name}.{k}')}: {before.get(k)!r} -> {v!r}")
    recorded = run_settings(saved)
    for k, v in settings.items():
        if k in recorded and recorded[k] != v:
            label = "the corpus (fingerprint)" if k == "corpus_fingerprint" else _flag(k)
            was, now = (recorded[k][:12] + "...", v[:12] + "...") if k.endswith("fingerprint") else (recorded[k], v)
            diffs.append(f"{label}: {was!r} -> {now!r}")
    if diffs:
        raise ValueError(
            f"{run.path} holds a run (step {run.step}) with other settings ({'; '.join(diffs)}); pass its settings "
            "to resume it, --overwrite to start it afresh, or choose another --out"
        )


def fit_warmup(train, preset_train, argv: Sequence[str], prog: str):
    """The training config with a warm-up that fits the run, and a notice when it had to change.

    A preset's warm-up longer than a shortened run (``--train.max-steps 30``
    with a 50-step warm-up) is scaled to the same share of the run as in the
    preset, with a notice; a warm-up the user set explicitly that does not fit
    is an error. Then the whole schedule is checked (before anything is written).
    """
    from zoo.errors import ConfigError  # noqa: PLC0415
    from zoo.train.optim import make_schedule  # noqa: PLC0415

    decay = train.max_steps if train.decay_steps is None else train.decay_steps
    explicit = any(a == "--train.warmup-steps" or a.startswith("--train.warmup-steps=") for a in argv)
    if train.warmup_steps >= decay and not explicit and train.decay_steps is None:
        scaled = train.warmup_steps * train.max_steps // preset_train.max_steps
        notice(prog, f"the preset's warm-up of {train.warmup_steps} steps does not fit --train.max-steps "
                     f"{train.max_steps}: warm-up scaled to {scaled} steps, the preset's share of the run "
                     f"({train.warmup_steps}/{preset_train.max_steps}); set --train.warmup-steps to choose")
        train = train.replace(warmup_steps=scaled)
    if train.warmup_steps >= decay:
        raise ConfigError("TrainConfig", "warmup_steps", train.warmup_steps,
                          f"fewer than {'decay_steps' if train.decay_steps else 'max_steps'}={decay}: the cosine "
                          "decay starts after the warm-up")
    make_schedule(train)
    return train


def load_text_corpus(spec: str, text_column: str, *, allow_binary: bool, prog: str, val_fraction: float = 0.1):
    """``zoo.data.load_corpus`` for a command: errors name ``--data``, undecodable bytes get a notice."""
    from zoo import data  # noqa: PLC0415

    try:
        corpus = data.load_corpus(spec, text_column=text_column, allow_binary=allow_binary, val_fraction=val_fraction)
    except ValueError as e:
        raise ValueError(f"--data {spec}: {e}") from e
    if corpus.info.get("undecodable_characters"):
        notice(prog, f"--data {spec}: {corpus.info['undecodable_characters']:,} bytes are not valid UTF-8; they "
                     "read as U+FFFD")
    return corpus


def corpus_tokens(run: RunDir, corpus, *, tokenizer_kind: str, vocab_size: int | None, cache: Path | None, prog: str):
    """(tokenizer, tokens) of a run on a text corpus: the run's saved tokenizer when it resumes, else one
    trained on the training split; the corpus tokenized (cached). Text the tokenizer cannot encode gets a notice."""
    from zoo import data  # noqa: PLC0415
    from zoo.train import distributed  # noqa: PLC0415

    several = distributed.is_multiprocess()

    def make(saved: bool):
        tokenizer = (data.load_tokenizer(run.path / "tokenizer") if saved else
                     data.make_tokenizer(tokenizer_kind, corpus.train, vocab_size=vocab_size))
        # several processes: the cache is filled once (process 0) and memory-mapped by each
        return tokenizer, data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(cache), mmap=several)

    def first():
        tokenizer, tokens = make(run.resuming)
        if several and not run.resuming:  # the other processes load process 0's tokenizer
            tokenizer.save(run.path / "tokenizer")
        return tokenizer, tokens

    tokenizer, tokens = distributed.primary_first(first, lambda: make(True), what="tokenizing the corpus")
    unknown = tokens.info.get("unknown_tokens", {})
    for split in ("train", "val"):
        if unknown.get(split):
            chars = tokens.info.get("unknown_characters")
            which = f" (most frequent: {', '.join(f'{c!r} x{n}' for c, n in chars.items())})" if chars else ""
            notice(prog, f"the {split} split has {unknown[split]:,} tokens the {tokenizer.kind} vocabulary cannot "
                         f"encode{which}; they encode as unknown")
    return tokenizer, tokens
