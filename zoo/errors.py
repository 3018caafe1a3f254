"""The exceptions zoo raises on purpose, with what a caller needs to report them well.

Each is a subclass of the built-in exception a Python caller would catch
anyway (``ValueError`` for bad input, ``FloatingPointError`` for a run that
went non-finite, ...), and carries the facts as attributes, so that the
``zoo`` command can word its one-line message in command-line flags
(``--train.warmup-steps``) while the library's own message speaks Python
(``TrainConfig.warmup_steps``).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from typing import Any

__all__ = ["ConfigError", "NonFiniteError", "RunInUseError", "TrainingInterrupted", "config_error", "parsing_flags"]


class ConfigError(ValueError):
    """A config field with a value that cannot work: names the config, the field, the value and what was expected.

    ``str(e)`` is ``"TrainConfig: warmup_steps=50, expected ..."``; the CLI
    turns ``(config, field)`` into its flag (``--train.warmup-steps``).
    """

    def __init__(self, config: str, field: str, value: Any, expected: str):
        self.config, self.field, self.value, self.expected = config, field, value, expected
        super().__init__(f"{config}: {field}={value!r}, expected {expected}")


class FlagError(Exception):
    """A :class:`ConfigError` met while the command line is parsed (see :func:`parsing_flags`).

    Deliberately not a ``ValueError``: the flag parser (tyro) catches those
    and draws its own multi-line box; this one reaches ``zoo.cli``, which
    prints the config error as one line that names the flag.
    """

    def __init__(self, error: ConfigError):
        self.error = error
        super().__init__(str(error))


_parsing = contextvars.ContextVar("zoo_parsing_flags", default=False)


@contextlib.contextmanager
def parsing_flags():
    """Within the block, :func:`config_error` gives :class:`FlagError` instead of :class:`ConfigError`."""
    token = _parsing.set(True)
    try:
        yield
    finally:
        _parsing.reset(token)


def config_error(config: str, field: str, value: Any, expected: str) -> Exception:
    """The exception a config's check raises: a :class:`ConfigError` (a :class:`FlagError` while parsing flags)."""
    error = ConfigError(config, field, value, expected)
    return FlagError(error) if _parsing.get() else error


_BOX = str.maketrans("", "", "│╭╮╰╯")


def flag_parse_error(message: str) -> ValueError:
    """tyro's boxed report of a flag it could not parse, as one line (for ``zoo.cli``'s ``error:`` line).

    tyro (1.0) draws a box: a title (``Unrecognized options``, ``Value error``), sections split by rules,
    the first holding what went wrong, another ``Perhaps you meant:`` with similar flags. Kept here: the
    first section and the suggested flag names, with where to read the full help.
    """
    sections, lines = [], []
    for raw in message.splitlines():
        line = raw.translate(_BOX).strip()
        if line.startswith("─") and line.strip("─ ") == "" or raw.lstrip().startswith("╰"):
            sections.append(lines)
            lines = []
        elif line and not raw.lstrip().startswith("╭"):
            lines.append(line)
    sections = [s for s in [*sections, lines] if s]
    if not sections:
        return ValueError(message.strip() or "could not parse the flags")
    what = " ".join(sections[0]).rstrip(".")
    hint = [s for s in sections if s[0].startswith("For full helptext")]
    for section in sections[1:]:
        if section[0] == "Perhaps you meant:":
            flags = [line.split()[0] for line in section[1:] if line.startswith("-")]
            if flags:
                what += f" (perhaps you meant {' or '.join(dict.fromkeys(flags))})"
    if what.startswith("Error parsing "):
        what = "cannot parse " + what.removeprefix("Error parsing ")
    if hint and (command := re.search(r"(?:run|see) (.+--help)", " ".join(hint[0]))):
        what += f"; see {command.group(1)}"
    return ValueError(what[0].lower() + what[1:])


class NonFiniteError(FloatingPointError):
    """Training stopped at a step whose loss or gradient was NaN or infinite (``on_nonfinite='stop'``).

    The parameters are those from before that step; ``checkpoints`` lists the
    saved steps.
    """

    def __init__(self, step: int, loss: float, grad_norm: float, directory: Any, checkpoints: list[int]):
        self.step, self.loss, self.grad_norm = step, loss, grad_norm
        self.directory, self.checkpoints = directory, checkpoints
        super().__init__(
            f"non-finite loss or gradient at step {step} (loss={loss}, grad_norm={grad_norm}); the run stopped "
            f"with the parameters from before that step. Checkpoints in {directory}: steps {checkpoints}. "
            "TrainConfig.on_nonfinite='skip' skips such steps instead"
        )


class RunInUseError(RuntimeError):
    """Another live process holds the run directory's lock."""

    def __init__(self, run_dir: Any, holder: dict[str, Any]):
        self.run_dir, self.holder = run_dir, holder
        who = f"process {holder.get('pid', '?')}"
        if holder.get("host"):
            who += f" on {holder['host']}"
        since = f" since {holder['started']}" if holder.get("started") else ""
        super().__init__(f"{run_dir} is in use by {who}{since}; wait for it to finish or choose another run directory")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the state was saved: ``step`` and the ``checkpoint`` folder (or None)."""

    def __init__(self, step: int | None, checkpoint: Any):
        self.step, self.checkpoint = step, checkpoint
        where = f"checkpoint saved in {checkpoint}" if checkpoint is not None else "no checkpoint of this step"
        super().__init__(f"interrupted at step {step}: {where}")
