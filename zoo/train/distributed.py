"""Several processes, one mesh: ``jax.distributed`` set up for zoo, and the few host-side agreements a run needs.

    initialize()                                  # auto-detects Slurm, Open MPI, TPU pods, or ZOO_* from `zoo launch`
    initialize("10.0.0.1:8476", num_processes=4, process_id=2)
    if is_primary(): write(...)                   # process 0 writes metrics, plots, run.json
    ok = agree(flag)                              # process 0's value, on every process (a collective)

After :func:`initialize`, ``jax.devices()`` lists every process's devices
and a mesh over them (:func:`zoo.train.sharding.make_mesh`) spans the
processes: XLA inserts the cross-process collectives (on CPU, gloo over TCP;
on GPU, NCCL; on TPU, the ICI/DCN links). Each process runs the same
program on its own devices' shards; host code that touches the file system
(metrics, plots, run.json, the run lock) runs on process 0 only, while every
process takes part in every collective: compiled steps, Orbax's checkpoint
calls, and the agreements below.

Faults. A process that stops sending heartbeats for ``heartbeat_timeout_s``
(default 30 s here, JAX's is 100 s) is declared dead by the coordination
service, and every other process is then terminated with an error that names
the dead task (``The following tasks are unhealthy (stopped sending
heartbeats): 1``). ``zoo launch`` also watches its children and stops the
rest at once when one exits with an error.

The ``ZOO_COORDINATOR``, ``ZOO_NUM_PROCESSES`` and ``ZOO_PROCESS_ID``
environment variables (set by ``zoo launch``) fill the arguments not given.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ENV_COORDINATOR",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "agree",
    "allgather_json",
    "barrier",
    "initialize",
    "is_multiprocess",
    "is_primary",
    "primary_first",
    "process_count",
    "process_index",
]

ENV_COORDINATOR = "ZOO_COORDINATOR"
ENV_NUM_PROCESSES = "ZOO_NUM_PROCESSES"
ENV_PROCESS_ID = "ZOO_PROCESS_ID"
HEARTBEAT_TIMEOUT_S = 30  # JAX's default is 100 s; a dead peer should stop the others well within a minute


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r}, expected an int") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S, initialization_timeout_s: int = 300) -> None:
    """``jax.distributed.initialize`` for a zoo run; call it before anything touches a JAX device.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordination service (default ``$ZOO_COORDINATOR``,
        else auto-detected by JAX: Slurm, Open MPI, TPU pods, ``$JAX_COORDINATOR_ADDRESS``).
      num_processes: how many processes take part (default ``$ZOO_NUM_PROCESSES`` or auto-detected).
      process_id: this process's index in ``[0, num_processes)`` (default ``$ZOO_PROCESS_ID`` or auto-detected).
      heartbeat_timeout_s: after this long without heartbeats a process is declared dead and the others stop.

    Raises ``ValueError`` for inconsistent arguments, ``RuntimeError`` when the processes cannot join
    (JAX's message, chained).
    """
    import jax  # noqa: PLC0415

    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if coordinator is not None and (":" not in coordinator or not coordinator.rsplit(":", 1)[1].isdigit()):
        raise ValueError(f"--coordinator {coordinator}: expected HOST:PORT, e.g. 10.0.0.1:8476")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num-processes {num_processes}: expected a positive int")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id}: expected an int in [0, --num-processes {num_processes})")
    if jax.distributed.is_initialized():
        return
    # On CPU the processes' collectives go over gloo (TCP); it is JAX's default, set here so that an
    # environment that changed it does not leave the processes without cross-process collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s,
                                   initialization_timeout=initialization_timeout_s)
    except ValueError as e:
        raise ValueError(f"--distributed: {e}; give --coordinator HOST:PORT --num-processes N --process-id I, "
                         "or run under Slurm, Open MPI or on a TPU pod (auto-detected)") from e
    except Exception as e:  # noqa: BLE001  (XlaRuntimeError and friends: could not join)
        raise RuntimeError(f"--distributed: the processes could not join ({str(e).splitlines()[0][:300]})") from e


def is_multiprocess() -> bool:
    """Whether this process is one of several (``jax.distributed`` initialized with more than one)."""
    if "jax" not in sys.modules:  # JAX not even imported: one process (and no import for asking)
        return False
    import jax  # noqa: PLC0415

    return jax.distributed.is_initialized() and jax.process_count() > 1


def process_index() -> int:
    import jax  # noqa: PLC0415

    return jax.process_index()


def process_count() -> int:
    import jax  # noqa: PLC0415

    return jax.process_count()


def is_primary() -> bool:
    """Whether this is process 0, the one that writes the run's files (always True in one process)."""
    return process_index() == 0


def agree(value: int | bool | float, *, name: str = "value") -> Any:
    """Process 0's ``value`` on every process (a collective: every process must call it, in the same order).
    One process: ``value`` as it is."""
    if not is_multiprocess():
        return value
    from jax.experimental import multihost_utils  # noqa: PLC0415

    # int32 for ints and flags (JAX computes in 32 bits unless x64 is on)
    dtype = np.int32 if isinstance(value, (bool, int, np.integer)) else np.float32
    out = multihost_utils.broadcast_one_to_all(np.asarray(value, dtype=dtype))
    return type(value)(out.item()) if isinstance(value, (bool, int, float)) else out


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (a collective)."""
    if not is_multiprocess():
        return bool(flag)
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag), np.int32))))


def primary_first(fn: Callable[[], Any], others: Callable[[], Any] | None = None, *, what: str) -> Any:
    """Run ``fn`` on process 0 first (writing files, filling caches), then ``others`` (default ``fn``) on the
    other processes once process 0 succeeded; when it failed, they raise a ``RuntimeError`` saying so
    (process 0 raises its own error). A collective; in one process simply ``fn()``."""
    if not is_multiprocess():
        return fn()
    result, error = None, None
    if is_primary():
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001  (re-raised below, after telling the others)
            error = e
    ok = agree(error is None)
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError(f"process 0 failed while {what}; its error says why")
    return result if is_primary() else (others or fn)()


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (a collective; no-op in one process)."""
    if not is_multiprocess():
        return
    from jax.experimental import multihost_utils  # noqa: PLC0415

    multihost_utils.sync_global_devices(name)


def allgather_json(value: Any) -> list[Any]:
    """Every process's JSON-able ``value``, in process order (a collective; ``[value]`` in one process)."""
    if not is_multiprocess():
        return [value]
    from jax.experimental import multihost_utils  # noqa: PLC0415

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray(len(data), np.int32))  # (P,)
    # padded to a power of two: each length is a program to compile, and a few lengths cover every call
    padded = np.zeros(1 << int(sizes.max() - 1).bit_length(), np.uint8)
    padded[: len(data)] = data
    gathered = multihost_utils.process_allgather(padded)  # (P, max)
    return [json.loads(bytes(row[: int(n)]).decode()) for row, n in zip(gathered, sizes)]
