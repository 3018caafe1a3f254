"""Checkpoints: a thin wrapper around orbax-checkpoint's ``CheckpointManager``, with integrity checks.

Layout (orbax's)::

    directory/
      1000/            one folder per saved step
        state/         the TrainState pytree (arrays, with their shapes and dtypes)
        metadata/      JSON: the step, the run's config dicts, whatever the caller adds,
                       and the arrays' digests (under "integrity", see below)
      2000/

Saves are synchronous (the train state is donated to the next step right
after a save, and checkpoints are rare). orbax writes each step to a
temporary folder and renames it into place only once everything is written,
and deletes old steps (beyond ``keep``) only after that, so a save that fails
half-way leaves the previous checkpoints as they were; its temporary folder
is removed when the directory is next opened.

Integrity. orbax 0.12 writes arrays as zarr (v2 by default) in an OCDBT
database: the database's own index is checksummed, but the array chunks are
not, so a flipped byte in a data file restores silently as garbage (or NaN).
TensorStore has a zarr3 ``crc32c`` codec that would catch it, but orbax
builds the codec chain itself (only the shard index gets ``crc32c``) and has
no option to add one. So :meth:`Checkpointer.save` records, in the metadata
item, a CRC-32 (``zlib.crc32``) of every array's bytes (C order,
little-endian) with its shape and dtype::

    "integrity": {"version": 1, "algorithm": "crc32",
                  "arrays": {"params/wte/embedding": {"shape": [50304, 768], "dtype": "float32",
                                                      "crc32": "8c1f03a2"}, ...}}

and :meth:`Checkpointer.restore` recomputes them on the restored arrays
(for a GPT-2-small train state, 1.5 GB with AdamW, about 0.8 s each way on
two CPU cores: some 15% of the save or restore).

Sharded arrays (:mod:`zoo.train.sharding`). The digest is of each array's
whole value, assembled from its shards (one replica of each block), in C
order: it does not depend on how the array was split. A state saved under
``fsdp=4`` is verified when it is restored under ``data=1`` on one device,
or under any other mesh. An array that this process cannot read whole (a
mesh over several processes) gets, instead of ``crc32``, the digests of
the blocks this process holds, keyed by their index (``start:stop`` per
axis)::

    "params/wte/embedding": {"shape": [50304, 768], "dtype": "float32",
                             "shards": {"0:50304,0:192": "1b2c3d4e", ...}, "partial": "..."}

and restoring checks every recorded block that the restoring process can
read: all of them when it holds the whole array (its blocks are cut from
the assembled value, whatever the new mesh), else those whose index it
holds. Orbax writes the metadata from process 0 only, so with several
processes :meth:`Checkpointer.save` first gathers every process's block
digests into it (:func:`merge_digests`).

Several processes (:mod:`zoo.train.distributed`). Every call is then a
collective: every process makes it, in the same order (Orbax's saves and
restores synchronise the processes). The list of saved steps is process 0's
reading of the directory, broadcast, so that every process resumes from, and
skips, the same steps; moving a damaged step aside is done by process 0.
Checkpoints written before digests existed restore without verification.

Fallback. ``restore(target)`` (no explicit step) takes the newest step that
can be read and verifies; each newer step that fails (digest mismatch,
unreadable arrays or metadata, missing files) is reported by a one-line
:class:`CheckpointWarning` naming it and the step used, and left on disk
(:meth:`Checkpointer.move_aside` moves one away; the trainer does that when it
resumes). When no step is usable the ``ValueError`` lists every step and why.
A checkpoint whose recorded arrays do not match the target's structure or
shapes (another model or optimizer) is an error at once, not a fallback.

Errors name the path: a missing directory or step is a ``FileNotFoundError``,
a checkpoint that cannot be read into the expected structure a
``ValueError`` (:class:`CorruptCheckpointError`, a ``ValueError``, when it is
damaged), a failed save a ``RuntimeError`` (each chained ``from`` the orbax
exception, which has the details).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

__all__ = [
    "CheckpointWarning",
    "Checkpointer",
    "CorruptCheckpointError",
    "Restored",
    "array_digests",
    "latest_checkpoint_step",
    "leaves_with_paths",
    "merge_digests",
    "verify_digests",
]

_STATE, _METADATA = "state", "metadata"
INTEGRITY_KEY = "integrity"  # reserved key of the JSON metadata
_INTEGRITY_VERSION = 1
_ALGORITHM = "crc32"


class CheckpointWarning(UserWarning):
    """A checkpoint step was skipped (corrupt or unreadable) in favour of an older one."""


class CorruptCheckpointError(ValueError):
    """A checkpoint step is damaged: its arrays or metadata cannot be read, or fail their digests."""

    def __init__(self, directory: Path, step: int, reason: str):
        self.directory, self.step, self.reason = directory, step, reason
        super().__init__(f"checkpoint {directory / str(step)} could not be restored: {reason}")


@dataclasses.dataclass
class Restored:
    """What :meth:`Checkpointer.restore_newest` gives back."""

    step: int
    state: Any
    metadata: dict[str, Any]
    skipped: list[tuple[int, str]]  # newer steps that failed, newest first, with why
    verified: bool  # False for a checkpoint written without digests


def _brief(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _abstract(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays (or of ShapeDtypeStructs)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


# -- digests --------------------------------------------------------------------------


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    """(path, leaf) pairs in flattening order, the path written ``params/block_0/kernel``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(_key_name(k) for k in path), x) for path, x in flat]


def _dtype_name(x: Any) -> str:
    return str(x.dtype)


def _host_value(x: Any) -> np.ndarray:
    """``x`` (fully addressable) as a NumPy array, read shard by shard: ``np.asarray`` on a ``jax.Array``
    would keep the host copy cached on it (on an accelerator, a second copy of the whole state)."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    shards = [s for s in x.addressable_shards if s.replica_id == 0]
    if len(shards) == 1:
        return np.asarray(shards[0].data).reshape(x.shape)
    out = np.empty(x.shape, x.dtype)
    for s in shards:
        out[s.index] = np.asarray(s.data)
    return out


def _crc32_host(a: np.ndarray) -> str:
    """CRC-32 of a host array's bytes, C order, little-endian."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return f"{zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8)):08x}"


def _keys_as_data(x: Any) -> Any:
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _crc32(x: Any) -> str:
    return _crc32_host(_host_value(_keys_as_data(x)))


def _not_addressable(x: Any) -> bool:
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def _index_key(index: tuple, shape: tuple[int, ...]) -> str:
    """A block's index as ``"0:8,0:32"`` (start:stop per axis; ``""`` for a scalar)."""
    return ",".join(f"{sl.start or 0}:{n if sl.stop is None else sl.stop}" for sl, n in zip(index, shape))


def _parse_index_key(key: str) -> tuple[slice, ...]:
    return tuple(slice(*map(int, part.split(":"))) for part in key.split(",")) if key else ()


def _shard_digests(x: Any) -> dict[str, str]:
    """CRC-32 of each block of ``x`` that this process holds (one replica of each), keyed by its index."""
    x = _keys_as_data(x)
    return {_index_key(s.index, x.shape): _crc32_host(np.asarray(s.data))
            for s in x.addressable_shards if s.replica_id == 0}


_PARTIAL = "digests of the blocks held by the process that saved (multi-process sharding)"


def array_digests(tree: Any) -> dict[str, Any]:
    """The integrity record of a tree of arrays: ``{"version", "algorithm", "arrays": {path: entry}}``.

    Each entry has the array's ``shape``, ``dtype`` and ``crc32`` (hex) of its whole value, or, for an
    array this process cannot read whole, ``shards``: the digests of the blocks it holds, by index.
    """
    arrays = {}
    for path, x in leaves_with_paths(tree):
        if path in arrays:
            raise ValueError(f"Checkpointer.save: two arrays of the state have the path {path!r}; expected "
                             f"distinct paths (a key containing '/'?)")
        entry: dict[str, Any] = {"shape": list(np.shape(x)), "dtype": _dtype_name(x)}
        if _not_addressable(x):
            entry["shards"] = _shard_digests(x)
            entry["partial"] = _PARTIAL
        else:
            entry[_ALGORITHM] = _crc32(x)
        arrays[path] = entry
    return {"version": _INTEGRITY_VERSION, "algorithm": _ALGORITHM, "arrays": arrays}


def merge_digests(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One integrity record from several processes' (:func:`array_digests` of each): the block digests of
    every array, all processes' blocks together."""
    merged = {**records[0], "arrays": {p: dict(e) for p, e in records[0]["arrays"].items()}}
    for record in records[1:]:
        for path, entry in record["arrays"].items():
            if "shards" in entry:
                merged["arrays"][path]["shards"] = {**merged["arrays"][path].get("shards", {}), **entry["shards"]}
    return merged


def _malformed(record: Any) -> str | None:
    """What is wrong with the form of an integrity record read back, or None."""
    if not isinstance(record, dict) or not isinstance(record.get("arrays"), dict):
        return f"its {INTEGRITY_KEY!r} metadata is not an object with an 'arrays' object"
    for path, e in record["arrays"].items():
        ok = (isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
              and all(isinstance(n, int) for n in e["shape"]))
        if not ok:
            return f"its {INTEGRITY_KEY!r} metadata entry for {path} is malformed ({e!r:.100})"
    return None


def _structure_mismatch(target: Any, record: dict[str, Any]) -> str | None:
    """Why ``target``'s arrays cannot be those recorded (paths or shapes), or None."""
    want = {path: list(np.shape(x)) for path, x in leaves_with_paths(target)}
    saved = {path: e.get("shape") for path, e in record.get("arrays", {}).items()}
    missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
    if missing or extra:
        parts = [f"{len(missing)} expected arrays not saved (first: {missing[0]})"] if missing else []
        parts += [f"{len(extra)} saved arrays not expected (first: {extra[0]})"] if extra else []
        return "; ".join(parts)
    for path in want:
        if want[path] != saved[path]:
            return f"{path} has shape {tuple(saved[path])} in the checkpoint, expected {tuple(want[path])}"
    return None


def verify_digests(tree: Any, record: dict[str, Any]) -> str | None:
    """Check a restored tree against its integrity record: what is wrong, or None.

    A whole-value digest is checked when this process can read the restored array whole; block
    digests (``shards``) are checked for the blocks it can read (all of them when it holds the whole
    array, whatever the mesh). Arrays hashed with an algorithm this version does not know, or recorded
    without digests (``skipped`` by older versions), are not verified.
    """
    algorithm = record.get("algorithm")
    arrays = record.get("arrays", {})
    bad: list[str] = []
    for path, x in leaves_with_paths(tree):
        entry = arrays.get(path)
        if entry is None:
            return f"no digest recorded for {path}"
        if list(np.shape(x)) != entry.get("shape") or _dtype_name(x) != entry.get("dtype"):
            return (f"{path} restored with shape {tuple(np.shape(x))} dtype {_dtype_name(x)}, saved as "
                    f"shape {tuple(entry.get('shape', ()))} dtype {entry.get('dtype')}")
        if algorithm != _ALGORITHM:
            continue
        if _ALGORITHM in entry and not _not_addressable(x):
            if _crc32(x) != entry[_ALGORITHM]:
                bad.append(path)
        elif isinstance(entry.get("shards"), dict) and _shards_mismatch(x, entry["shards"]):
            bad.append(path)
    if bad:
        more = f" and {len(bad) - 1} more array{'s' if len(bad) > 2 else ''}" if len(bad) > 1 else ""
        return f"digest mismatch in {bad[0]}{more}"
    return None


def _shards_mismatch(x: Any, recorded: dict[str, str]) -> bool:
    """Whether a recorded block digest disagrees with the block of ``x`` this process can read."""
    if not _not_addressable(x):  # the whole array is here: cut every recorded block from it
        value = _host_value(_keys_as_data(x))
        return any(_crc32_host(value[_parse_index_key(k)]) != crc for k, crc in recorded.items())
    held = _shard_digests(x)
    return any(held[k] != crc for k, crc in recorded.items() if k in held)


def _as_saved_dtypes(abstract: Any, record: dict[str, Any]) -> Any:
    """``abstract`` with each array's dtype as saved, so that what is read can be checked against its digest
    (the restored state is cast to the target's dtypes afterwards)."""
    saved = {path: e.get("dtype") for path, e in record["arrays"].items()}
    leaves, treedef = jax.tree.flatten(abstract)
    out = []
    for (path, _), x in zip(leaves_with_paths(abstract), leaves, strict=True):
        if str(x.dtype) != saved[path]:
            with contextlib.suppress(TypeError):  # a dtype this JAX does not know: let orbax cast
                x = jax.ShapeDtypeStruct(x.shape, jnp.dtype(saved[path]), sharding=x.sharding)
        out.append(x)
    return jax.tree.unflatten(treedef, out)


# -- the checkpointer ------------------------------------------------------------------


def latest_checkpoint_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step in ``directory``, or None when there is none (or no directory).

    Complete means fully written; it is not read or verified (``Checkpointer.restore`` does that).

    Examples:
      >>> zoo.train.latest_checkpoint_step("no-such-run") is None
      True
      >>> with zoo.train.Checkpointer("checkpoints") as ckpt:
      ...     for step in (5, 10):
      ...         saved = ckpt.save(step, {"w": jnp.zeros(2)}, {"step": step})
      ...
      >>> zoo.train.latest_checkpoint_step("checkpoints")
      10
    """
    path = Path(directory)
    if not path.is_dir():
        return None
    with Checkpointer(path, create=False) as ckpt:
        return ckpt.latest_step()


@contextlib.contextmanager
def ctrl_c_after():
    """Ctrl-C during the block takes effect when it ends (main thread; elsewhere nothing changes).

    For work that must not stop half-way: an Orbax save interrupted half-way leaves its writer threads
    filling the temporary folder, and the save the interrupt then makes collides with them (CI: "Directory
    not empty: 'ocdbt.process_0'"); a training step interrupted inside its call has donated the state it was
    given (CI: "interrupted during a step before any checkpoint"). Both take a second or so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        if callable(previous):
            previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt; zoo's multi-process one asks
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


class Checkpointer:
    """Save and restore train states with metadata in ``directory``, keeping the newest ``keep``.

    Examples:
      >>> state = {"w": jnp.ones((2, 3)), "step": jnp.array(7)}
      >>> with zoo.train.Checkpointer("checkpoints", keep=2) as ckpt:
      ...     saved = ckpt.save(7, state, {"step": 7, "note": "any JSON"})
      ...     restored, metadata = ckpt.restore(state)        # the newest good step, shaped like ``state``
      ...     ckpt.all_steps()
      ...
      [7]
      >>> metadata["note"], restored["w"].shape, int(restored["step"])
      ('any JSON', (2, 3), 7)
      >>> zoo.train.latest_checkpoint_step("checkpoints")
      7
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
        """The saved steps, oldest first (only complete checkpoints); process 0's list on every process."""
        from zoo.train import distributed  # noqa: PLC0415

        self._manager.reload()
        steps = sorted(self._manager.all_steps())
        return distributed.allgather_json(steps)[0] if distributed.is_multiprocess() else steps

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
        """Save ``state`` (a pytree of arrays) and JSON-able ``metadata`` as ``step``, with the digests.

        Returns False, saving nothing, when ``step`` is already saved. On
        failure raises ``RuntimeError``; the earlier checkpoints are untouched.
        """
        step = int(step)
        if INTEGRITY_KEY in metadata:
            raise ValueError(f"Checkpointer.save: metadata key {INTEGRITY_KEY!r} is reserved (the digests)")
        if step in self.all_steps():
            return False
        from zoo.train import distributed  # noqa: PLC0415

        record = array_digests(state)
        if distributed.is_multiprocess():  # orbax writes the metadata from process 0: every process's blocks
            record = merge_digests(distributed.allgather_json(record))
        metadata = {**metadata, INTEGRITY_KEY: record}
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(metadata)}
        )
        try:
            with ctrl_c_after():
                self._manager.save(step, args=args, force=True)
                self._manager.wait_until_finished()
        except BaseException as e:
            # Start over with a fresh manager: it deletes the failed save's temporary folder.
            with contextlib.suppress(Exception):  # the manager may be half-way through the failed save
                self._manager.close()
            self._manager = self._open()
            if not isinstance(e, Exception):  # Ctrl-C during the save: the trainer saves this step again
                raise
            raise RuntimeError(
                f"saving checkpoint step {step} in {self.directory} failed ({_brief(e)}); "
                f"the earlier checkpoints {self.all_steps()} are intact"
            ) from e
        return True

    def _read_metadata(self, step: int) -> dict[str, Any]:
        """The step's JSON metadata, integrity record included; CorruptCheckpointError when unreadable."""
        try:
            args = ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()})
            metadata = self._manager.restore(step, args=args)[_METADATA]
        except Exception as e:
            reason = f"its metadata cannot be read ({_brief(e)})"
            raise CorruptCheckpointError(self.directory, step, reason) from e
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            reason = f"its metadata is a {type(metadata).__name__}, expected a JSON object"
            raise CorruptCheckpointError(self.directory, step, reason)
        return dict(metadata)

    def _restore_step(
        self, target: Any, step: int, check_metadata: Callable[[int, dict[str, Any]], None] | None = None
    ) -> tuple[Any, dict[str, Any], bool]:
        """(state, metadata, verified) of ``step``; CorruptCheckpointError when it is damaged."""
        metadata = self._read_metadata(step)
        record = metadata.pop(INTEGRITY_KEY, None)
        if check_metadata is not None:
            check_metadata(step, metadata)
        abstract = abstract_target = _abstract(target)
        if record is not None:
            malformed = _malformed(record)
            if malformed:
                raise CorruptCheckpointError(self.directory, step, malformed)
            mismatch = _structure_mismatch(target, record)
            if mismatch:
                raise ValueError(
                    f"checkpoint {self.directory / str(step)} could not be restored: it was written for a "
                    f"different model or optimizer ({mismatch})"
                )
            abstract = _as_saved_dtypes(abstract, record)
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract)})
        try:
            state = self._manager.restore(step, args=args)[_STATE]
        except Exception as e:
            reason = f"its arrays cannot be read ({_brief(e)})"
            if record is None:  # no record to tell a damaged checkpoint from another model's
                reason += "; it is corrupt or was written for a different model or optimizer"
            raise CorruptCheckpointError(self.directory, step, reason) from e
        if record is None:
            return state, metadata, False
        failure = verify_digests(state, record)
        if failure:
            raise CorruptCheckpointError(self.directory, step, failure)
        # Cast arrays read with their saved dtype to the target's.
        state = jax.tree.map(lambda x, t: x if x.dtype == t.dtype else x.astype(t.dtype),
                             state, abstract_target)
        return state, metadata, True

    def restore_newest(
        self, target: Any, *, check_metadata: Callable[[int, dict[str, Any]], None] | None = None
    ) -> Restored:
        """The newest step that can be read and passes its digests, and the newer ones that failed.

        Warns nothing (the caller reports ``skipped``) and changes nothing on
        disk. ``check_metadata(step, metadata)``, when given, is called for
        each step tried before its arrays are read; what it raises propagates
        (a refusal, not a fallback). Raises ``FileNotFoundError`` when there
        is no checkpoint, ``ValueError`` listing every step and why when none
        is usable.
        """
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        skipped: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                state, metadata, verified = self._restore_step(target, step, check_metadata)
            except CorruptCheckpointError as e:
                skipped.append((step, e.reason))
                continue
            return Restored(step, state, metadata, skipped, verified)
        listing = "; ".join(f"step {s}: {reason}" for s, reason in skipped)
        raise ValueError(
            f"no usable checkpoint in {self.directory}: {listing}. Nothing was changed on disk; move the "
            f"damaged steps away (or delete them) to start over"
        )

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(state, metadata) of ``step``, with ``target``'s structure and shardings.

        ``target`` is a state of the expected structure (arrays or
        ``jax.ShapeDtypeStruct`` with shardings); it is only read. Without
        ``step``: the newest step that reads and verifies, with a
        :class:`CheckpointWarning` for each newer one skipped (see the
        module docstring). With ``step``: that step, or a ``ValueError``
        (:class:`CorruptCheckpointError` when it is damaged).
        """
        if step is not None:
            state, metadata, _ = self._restore_step(target, self._resolve(step))
            return state, metadata
        found = self.restore_newest(target)
        for bad, reason in found.skipped:
            warnings.warn(
                f"checkpoint step {bad} in {self.directory} is corrupt ({reason}); using step {found.step}",
                CheckpointWarning, stacklevel=2,
            )
        return found.state, found.metadata

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata saved with ``step`` (default: the latest), without the integrity record.

        Only the metadata is read: the arrays are not checked.
        """
        step = self._resolve(step)
        try:
            metadata = self._read_metadata(step)
        except CorruptCheckpointError as e:
            raise ValueError(
                f"checkpoint metadata {self.directory / str(step) / _METADATA} could not be read ({e.reason})"
            ) from e
        metadata.pop(INTEGRITY_KEY, None)
        return metadata

    def move_aside(self, step: int, destination: str | os.PathLike) -> Path:
        """Move step ``step``'s folder into ``destination`` (as ``destination/STEP``, or ``STEP.1``, ...
        when that exists), so the step can be saved again; nothing is deleted. Returns the new path."""
        from zoo.train import distributed  # noqa: PLC0415

        source = self.directory / str(step)
        destination = Path(destination)
        target = destination / str(step)
        n = 0
        while target.exists():
            n += 1
            target = destination / f"{step}.{n}"

        def move() -> None:
            try:
                destination.mkdir(parents=True, exist_ok=True)
                source.rename(target)
            except OSError as e:
                raise RuntimeError(f"could not move checkpoint {source} to {target} ({_brief(e)}); "
                                   f"move it yourself") from e

        distributed.primary_first(move, lambda: None, what=f"moving {source} aside")
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
