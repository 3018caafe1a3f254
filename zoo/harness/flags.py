"""Flags: a config dataclass from the command line (tyro), presets, and the one way a config is resolved.

Every command's flags are a frozen dataclass parsed by :func:`parse_flags`.
A benchmark's or experiment's config has ``resolved()``: the config that
runs, ``--quick`` applied (:func:`quick`), its values checked (a
``ValueError`` naming the flag, a usage error); :func:`zoo.harness.main.main`
calls it before anything runs, and every ``run`` calls it again (it is
idempotent), so that a config built in Python is checked too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["parse_flags", "parse_preset_args", "renamed_flags", "notice", "cache_dir", "quick", "at_least"]


def parse_flags(cls, **kwargs: Any):
    """``tyro.cli(cls, **kwargs)`` where a bad flag or value is one line from ``zoo.cli`` (not tyro's box)."""
    import tyro  # noqa: PLC0415

    from zoo.errors import flag_parse_error, parsing_flags  # noqa: PLC0415

    captured = io.StringIO()
    try:
        with parsing_flags(), contextlib.redirect_stderr(captured):
            return tyro.cli(cls, **kwargs)
    except SystemExit as e:
        if e.code in (0, None):  # --help (printed to stdout)
            raise
        raise flag_parse_error(captured.getvalue()) from None


def notice(prog: str, message: str) -> None:
    """A one-line note on stderr (something the user should know; not an error); in a ``--distributed``
    run, from process 0 only."""
    from zoo.train import distributed  # noqa: PLC0415  (imports nothing heavy; asks JAX only if imported)

    if distributed.is_multiprocess() and not distributed.is_primary():
        return
    print(f"{prog}: note: {message}", file=sys.stderr, flush=True)


def renamed_flags(argv: Sequence[str], prog: str, renamed: dict[str, str]) -> list[str]:
    """``argv`` with old flag names (``--width``, ``--width=8``) replaced by the new ones, each with a notice."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in renamed:
            notice(prog, f"{name} is now called {renamed[name]} (the old name goes in the next release)")
            arg = renamed[name] + eq + value
        out.append(arg)
    return out


def parse_preset_args(argv: Sequence[str], prog: str, family: str, cls: type, description: str, **defaults: Any):
    """``FAMILY --preset NAME [flags]`` -> (preset, args): the preset fills ``cls``'s defaults, tyro the rest.

    ``defaults`` maps fields of ``cls`` to functions of the preset (e.g. ``model=lambda p: p.model``).
    """
    from zoo import presets  # noqa: PLC0415

    first = argparse.ArgumentParser(prog=prog, add_help=False)
    first.add_argument("family", choices=[family])
    first.add_argument("--preset", default=presets.names(family)[0])
    known, rest = first.parse_known_args(list(argv))
    preset = presets.get(family, known.preset)
    default = cls(preset=known.preset, **{k: f(preset) for k, f in defaults.items()})
    listing = "; ".join(f"{name} ({presets.get(family, name).description})" for name in presets.names(family))
    args = parse_flags(cls, default=default, args=list(rest), prog=f"{prog} {family}",
                       description=f"{description} --preset NAME chooses the model and training configs "
                                   f"together; the presets of {family}: {listing}. Every flag below defaults to "
                                   f"the value of the preset chosen, now {known.preset}.")
    if args.model.vocab_size != preset.model.vocab_size:
        raise ValueError("--model.vocab-size cannot be set: the vocabulary size comes from the tokenizer")
    return preset, args


def cache_dir(explicit: Path | None) -> Path:
    """The tokenized-corpus cache of ``--cache-dir``: the flag, else ($ZOO_CACHE_DIR or ~/.cache/zoo)/tokens."""
    if explicit is not None:
        return explicit.expanduser()
    root = os.environ.get("ZOO_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "zoo"
    return Path(root).expanduser() / "tokens"


def quick(cfg: Any, settings: dict[str, Any]) -> Any:
    """``cfg`` with ``settings`` (its ``--quick`` sizes) when ``cfg.quick`` is set, else ``cfg`` unchanged."""
    return dataclasses.replace(cfg, **settings) if cfg.quick else cfg


def at_least(cfg: Any, minimum: float, *fields: str) -> None:
    """A ``ValueError`` naming the first flag of ``fields`` below ``minimum``: ``--seq-len must be >= 1, got 0``
    (a field that is None, not set, passes)."""
    for name in fields:
        if getattr(cfg, name) is not None and getattr(cfg, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum:g}, got {getattr(cfg, name)}")
