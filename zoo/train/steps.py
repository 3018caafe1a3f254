"""A loop over hand-written steps with zoo.train's run-directory pieces: lock, checkpoints, metrics, Ctrl-C.

:func:`zoo.train.trainer.train` owns an optax optimizer and a linen model;
word2vec and fastText have neither (their update is a scatter-add written by
hand, their learning rate a linear decay over words). :func:`run_steps` is
the part of the trainer they share, with the trainer's own pieces: the
run lock (:class:`~zoo.train.lock.RunLock`), checkpoints that verify
themselves and resume from the newest good step, moving damaged ones aside
(:class:`~zoo.train.checkpoint.Checkpointer` and the trainer's resume), and
``metrics.jsonl`` (:func:`~zoo.train.metrics.append_metrics`, truncated on
resume). The caller's ``step(state, i)`` does the work; the state is any
pytree of arrays (donated or not), saved whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from tqdm.auto import tqdm

from zoo.errors import TrainingInterrupted
from zoo.train.checkpoint import Checkpointer
from zoo.train.lock import RunLock
from zoo.train.metrics import append_metrics, truncate_metrics
from zoo.train.trainer import CHECKPOINT_DIR, CORRUPT_CHECKPOINT_DIR, _is_deleted, _resume

__all__ = ["run_steps"]

logger = logging.getLogger("zoo.train")


def run_steps(
    state: Any,
    step: Callable[[Any, int], tuple[Any, dict[str, Any]]],
    total_steps: int,
    *,
    run_dir: str | Path | None = None,
    record: Callable[[int, list[dict[str, Any]], float], dict[str, Any]] | None = None,
    log_interval: int = 50,
    checkpoint_interval: int = 0,
    keep_checkpoints: int = 2,
    metadata: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    progress: bool = True,
    unit: str = "step",
) -> tuple[Any, int, dict[str, Any]]:
    """Run ``state, stats = step(state, i)`` for i from the resumed step (or 0) to ``total_steps``.

    Args:
      state: the initial state (a pytree of arrays); replaced by the newest good checkpoint in
        ``run_dir`` when there is one (its metadata's ``model_config`` must equal ``model_config``).
      step: the work of step ``i``; ``stats`` (device scalars) are fetched only at log points.
      run_dir: where ``checkpoints/`` and ``metrics.jsonl`` go (locked for the call); None: nothing is
        written, nothing resumed.
      record: ``record(i, stats_since_last_line, seconds_since_last_line)`` -> the metrics line
        (``step`` is added); called every ``log_interval`` steps and at the end.
      checkpoint_interval: save every so many steps (0: only at the end; always at the end).
      metadata: JSON-able facts saved with every checkpoint.
      progress: a tqdm bar of ``unit``.

    Returns:
      ``(state, start_step, last_record)``: the final state, the step it resumed from, the last line.

    Raises:
      zoo.errors.TrainingInterrupted on Ctrl-C, after saving the last finished step (when ``run_dir``).
    """
    lock = RunLock(run_dir).acquire() if run_dir is not None else None
    ckpt = None
    pbar = None
    try:
        start = 0
        meta = {"model_config": model_config or {}, "metadata": metadata or {}}
        if run_dir is not None:
            run_dir = Path(run_dir)
            ckpt = Checkpointer(run_dir / CHECKPOINT_DIR, keep=keep_checkpoints)
            if ckpt.latest_step() is not None:
                state, start = _resume(ckpt, state, meta["model_config"], run_dir / CORRUPT_CHECKPOINT_DIR)
                logger.info("resumed from step %d", start)
            truncate_metrics(run_dir, start if start else -1)
        pbar = tqdm(total=total_steps, initial=start, disable=not progress, unit=unit, dynamic_ncols=True)
        pending: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        saved = start if start else None
        t_log = time.perf_counter()

        def log(i: int) -> None:
            nonlocal t_log, last
            now = time.perf_counter()
            stats = jax.device_get(pending)
            pending.clear()
            if record is not None and stats:
                last = {"step": i, **record(i, stats, now - t_log)}
                if run_dir is not None:
                    append_metrics(run_dir, last)
                pbar.set_postfix({k: f"{v:.4g}" for k, v in last.items() if k in ("loss", "lr", "words_per_s")},
                                 refresh=False)
            t_log = now

        def save(i: int) -> None:
            nonlocal saved
            if ckpt is not None and saved != i:
                ckpt.save(i, state, {**meta, "step": i})
                saved = i

        i = start
        try:
            while i < total_steps:
                state, stats = step(state, i)
                pending.append(stats)
                i += 1
                pbar.update(1)
                if i % log_interval == 0 or i == total_steps:
                    log(i)
                if (checkpoint_interval and i % checkpoint_interval == 0) or i == total_steps:
                    save(i)
        except KeyboardInterrupt:
            pbar.close()
            if ckpt is None or _is_deleted(state):  # nothing to save, or interrupted inside a donating step
                steps = ckpt.all_steps() if ckpt is not None else []
                raise TrainingInterrupted(steps[-1] if steps else None,
                                          ckpt.directory / str(steps[-1]) if steps else None) from None
            save(i)
            raise TrainingInterrupted(i, ckpt.directory / str(i)) from None
        if ckpt is not None and saved != i:
            save(i)
        return state, start, last
    finally:
        if pbar is not None:
            pbar.close()
        if ckpt is not None:
            ckpt.close()
        if lock is not None:
            lock.release()
