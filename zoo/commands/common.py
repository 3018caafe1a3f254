"""What the ``zoo`` subcommands share: error exits, the cache directory, the process clock."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "check_same_configs", "corpus_tokens", "fail", "parse_preset_args", "process_elapsed_s"]


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


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def cache_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    root = os.environ.get("ZOO_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "zoo"
    return Path(root).expanduser() / "tokens"




def check_same_configs(run_dir: Path, saved: dict[str, Any], **configs: Any) -> None:
    """A ``ValueError`` naming every field where ``configs`` (dataclasses) differ from run.json's ``saved``."""
    for name, now in configs.items():
        before = saved.get(name, {})
        diff = {k: (before.get(k), v) for k, v in dataclasses.asdict(now).items() if before.get(k) != v}
        if diff:
            raise ValueError(
                f"{run_dir} was trained with a different {name} config "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                "choose another --out to start a new run"
            )


def parse_preset_args(argv: Sequence[str], prog: str, family: str, cls: type, description: str, **defaults: Any):
    """``FAMILY --preset NAME [flags]`` -> (preset, args): the preset fills ``cls``'s defaults, tyro the rest.

    ``defaults`` maps fields of ``cls`` to functions of the preset (e.g. ``model=lambda p: p.model``).
    """
    import tyro  # noqa: PLC0415

    from zoo import presets  # noqa: PLC0415

    first = argparse.ArgumentParser(prog=prog, add_help=False)
    first.add_argument("family", choices=[family])
    first.add_argument("--preset", default=presets.names(family)[0])
    known, rest = first.parse_known_args(list(argv))
    preset = presets.get(family, known.preset)
    default = cls(preset=known.preset, **{k: f(preset) for k, f in defaults.items()})
    args = tyro.cli(cls, default=default, args=list(rest), prog=f"{prog} {family}",
                    description=f"{description} Preset {known.preset}: {preset.description}. "
                                "Every flag below defaults to the preset's value.")
    if args.model.vocab_size != preset.model.vocab_size:
        raise ValueError("--model.vocab-size cannot be set: the vocabulary size comes from the tokenizer")
    return preset, args


def corpus_tokens(run_dir: Path, *, data_spec: str, text_column: str, resume: bool, tokenizer_kind: str,
                  vocab_size: int | None, cache: Path | None):
    """(existing, tokenizer, tokens) of a run on a text corpus: the run's saved tokenizer when it
    exists (``resume`` required), else one trained on the training split; the corpus tokenized (cached)."""
    from zoo import data  # noqa: PLC0415

    corpus = data.load_corpus(data_spec, text_column=text_column)
    existing = (run_dir / "run.json").is_file()
    if existing and not resume:
        raise ValueError(f"{run_dir} already holds a run; pass --resume or choose another --out")
    if existing:
        tokenizer = data.load_tokenizer(run_dir / "tokenizer")
    else:
        tokenizer = data.make_tokenizer(tokenizer_kind, corpus.train, vocab_size=vocab_size)
    return existing, tokenizer, data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(cache))
