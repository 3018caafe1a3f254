"""Checkpoints: a thin wrapper around orbax-checkpoint's ``CheckpointManager``.

Layout (orbax's)::

    directory/
      1000/            one folder per saved step
        state/         the TrainState pytree (arrays, with their shapes and dtypes)
        metadata/      JSON: the step, the run's config dicts, whatever the caller adds
      2000/

Saves are synchronous (the train state is donated to the next step right
after a save, and checkpoints are rare). orbax writes each step to a
temporary folder and renames it into place only once everything is written,
and deletes old steps (beyond ``keep``) only after that, so a save that fails
half-way leaves the previous checkpoints as they were; its temporary folder
is removed when the directory is next opened.

Errors name the path: a missing directory or step is a ``FileNotFoundError``,
a checkpoint that cannot be read into the expected structure a
``ValueError``, a failed save a ``RuntimeError`` (each chained ``from`` the
orbax exception, which has the details).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Self

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "latest_checkpoint_step"]

_STATE, _METADATA = "state", "metadata"


def _brief(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _abstract(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays (or of ShapeDtypeStructs)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


def latest_checkpoint_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step in ``directory``, or None when there is none (or no directory)."""
    path = Path(directory)
    if not path.is_dir():
        return None
    with Checkpointer(path, create=False) as ckpt:
        return ckpt.latest_step()


class Checkpointer:
    """Save and restore train states with metadata in ``directory``, keeping the newest ``keep``.

    >>> with Checkpointer(run_dir / "checkpoints", keep=2) as ckpt:    # doctest: +SKIP
    ...     ckpt.save(step, state, {"step": step, "train_config": {...}})
    ...     state, metadata = ckpt.restore(state)                    # latest step
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2, create: bool = True):
        self.directory = Path(directory).expanduser().absolute()
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"Checkpointer: keep={keep!r}, expected a positive int")
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"checkpoint directory {self.directory} exists but is not a directory")
        if not create and not self.directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory {self.directory} does not exist")
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=create,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,  # leftovers of failed saves
        )
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        try:
            return ocp.CheckpointManager(self.directory, options=self._options, item_names=(_STATE, _METADATA))
        except Exception as e:
            raise ValueError(f"could not open checkpoint directory {self.directory} ({_brief(e)})") from e

    # -- queries --------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        """The saved steps, oldest first (only complete checkpoints)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def _resolve(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} (saved steps: {steps})")
        return step

    # -- save and restore -------------------------------------------------------------

    def save(self, step: int, state: Any, metadata: dict[str, Any]) -> bool:
        """Save ``state`` (a pytree of arrays) and JSON-able ``metadata`` as ``step``.

        Returns False, saving nothing, when ``step`` is already saved. On
        failure raises ``RuntimeError``; the earlier checkpoints are untouched.
        """
        step = int(step)
        if step in self.all_steps():
            return False
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(dict(metadata))}
        )
        try:
            self._manager.save(step, args=args, force=True)
            self._manager.wait_until_finished()
        except Exception as e:
            # Start over with a fresh manager: it deletes the failed save's temporary folder.
            with contextlib.suppress(Exception):  # the manager may be half-way through the failed save
                self._manager.close()
            self._manager = self._open()
            raise RuntimeError(
                f"saving checkpoint step {step} in {self.directory} failed ({_brief(e)}); "
                f"the earlier checkpoints {self.all_steps()} are intact"
            ) from e
        return True

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(state, metadata) of ``step`` (default: the latest), with ``target``'s structure and shardings.

        ``target`` is a state of the expected structure (arrays or
        ``jax.ShapeDtypeStruct`` with shardings); it is only read.
        """
        step = self._resolve(step)
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardRestore(_abstract(target)), _METADATA: ocp.args.JsonRestore()}
        )
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as e:
            raise ValueError(
                f"checkpoint {self.directory / str(step)} could not be restored: it is corrupt or was "
                f"written for a different model or optimizer ({_brief(e)})"
            ) from e
        return restored[_STATE], dict(restored[_METADATA] or {})

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata saved with ``step`` (default: the latest)."""
        step = self._resolve(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()}))
        except Exception as e:
            raise ValueError(
                f"checkpoint metadata {self.directory / str(step) / _METADATA} could not be read ({_brief(e)})"
            ) from e
        return dict(restored[_METADATA] or {})

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
