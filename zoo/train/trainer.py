"""The training loop: ``train(model, ...)`` from initialisation (or the latest checkpoint) to max_steps.

Per optimizer step the host only samples the next batch and dispatches the
compiled step; it waits for the device only at sync points (every
``log_interval``, ``eval_interval`` and ``checkpoint_interval`` steps, and at
the end), where it fetches the per-step losses and flags. The next batch is
sampled and transferred while the device runs the current step.

    RUN_DIR/
      checkpoints/<step>/   orbax checkpoints (state + JSON metadata), newest keep_checkpoints
      metrics.jsonl          one JSON object per log/eval line (see zoo.train.metrics)
      loss.png               train and validation loss against the step

Data: ``get_batch(tokens, batch_size, block_size, *, seed, step) -> (x, y)``
int32 (B, T) arrays, a pure function of (seed, step) with y = x shifted by
one; training batch ``s`` is ``get_batch(train_tokens, ..., seed=cfg.seed,
step=s)``, so a resumed run sees the same data. Evaluation uses the same
``eval_batches`` batches every time (seed :data:`EVAL_SEED`, steps 0..N-1), so
its curve is not noisy from resampling.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from tqdm.auto import tqdm

from zoo._version import __version__
from zoo.train.checkpoint import Checkpointer
from zoo.train.config import TrainConfig
from zoo.train.metrics import append_metrics, peak_flops, plot_losses, read_metrics, truncate_metrics
from zoo.train.step import (
    TrainState,
    batch_sharding,
    init_train_state,
    make_eval_step,
    make_mesh,
    make_train_step,
    shard_batch,
)

__all__ = ["CHECKPOINT_DIR", "EVAL_SEED", "random_windows", "train"]

logger = logging.getLogger("zoo.train")

EVAL_SEED = 1_000_003  # the evaluation batches' seed, the same in every run
CHECKPOINT_DIR = "checkpoints"

GetBatch = Callable[..., tuple[np.ndarray, np.ndarray]]


def random_windows(
    tokens: np.ndarray, batch_size: int, block_size: int, *, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``tokens``: x (B, T) and y = x shifted by one, int32.

    A pure function of (seed, step): ``np.random.default_rng([seed, step])``
    draws the window starts.
    """
    n = len(tokens)
    if n < block_size + 1:
        raise ValueError(f"tokens has {n} tokens, expected at least block_size + 1 = {block_size + 1}")
    starts = np.random.default_rng([seed, step]).integers(0, n - block_size, size=batch_size)  # (B,)
    windows = np.asarray(tokens)[starts[:, None] + np.arange(block_size + 1)]  # (B, T + 1)
    return windows[:, :-1].astype(np.int32), windows[:, 1:].astype(np.int32)


# -- checks ---------------------------------------------------------------------------


def _config_dict(config: Any, name: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        d = dataclasses.asdict(config)
    elif isinstance(config, dict):
        d = dict(config)
    else:
        raise TypeError(f"train: {name} must be a dataclass instance or a dict, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(d))
    except (TypeError, ValueError) as e:
        raise ValueError(f"train: {name} must be JSON-serialisable (it is saved with checkpoints): {e}") from e


def _check_tokens(name: str, tokens: Any, block_size: int, vocab_size: int | None) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"train: {name} must be a 1-D integer array, got shape {tokens.shape} dtype {tokens.dtype}")
    if len(tokens) < block_size + 1:
        raise ValueError(
            f"train: {name} has {len(tokens)} tokens, expected at least block_size + 1 = {block_size + 1}"
        )
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or (vocab_size is not None and hi >= vocab_size):
        raise ValueError(f"train: {name} has token ids in [{lo}, {hi}], expected them in [0, vocab_size={vocab_size})")
    return tokens


def _host_batch(get_batch: GetBatch, tokens: np.ndarray, cfg: TrainConfig, block_size: int, *, seed: int, step: int):
    x, y = get_batch(tokens, cfg.batch_size, block_size, seed=seed, step=step)
    x, y = np.asarray(x), np.asarray(y)
    want = (cfg.batch_size, block_size)
    if x.shape != want or y.shape != want:
        raise ValueError(
            f"get_batch returned x {x.shape} and y {y.shape}, expected both (batch_size, block_size) = {want}"
        )
    return x.astype(np.int32, copy=False), y.astype(np.int32, copy=False)


def _is_deleted(state: TrainState) -> bool:
    return any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _config_mismatch(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose values differ, as (saved, given)."""
    return {k: (saved.get(k), given.get(k)) for k in sorted(set(saved) | set(given)) if saved.get(k) != given.get(k)}


# -- metrics records (pure) --------------------------------------------------------------


def train_record(
    step: int, steps: list[dict[str, Any]], *, tokens: int, seconds: float, elapsed: float,
    nonfinite_steps: int, flops_per_token: float | None, peak: float | None,
) -> dict[str, Any]:
    """The log line for the fetched per-step metrics ``steps`` since the previous line."""
    losses = [float(m["loss"]) for m in steps if m["finite"]]
    tps = tokens / seconds
    return {
        "step": step,
        "train_loss": float(np.mean(losses)) if losses else None,
        "lr": float(steps[-1]["lr"]),
        "grad_norm": float(steps[-1]["grad_norm"]),
        "tokens_per_s": tps,
        "mfu": flops_per_token * tps / peak if flops_per_token and peak else None,
        "elapsed_s": elapsed,
        "nonfinite_steps": nonfinite_steps,
    }


def eval_record(step: int, losses: dict[str, float], *, elapsed: float) -> dict[str, Any]:
    """The evaluation line: ``{split}_loss`` and ``{split}_ppl`` for each split."""
    record: dict[str, Any] = {"step": step}
    for split, loss in losses.items():
        record[f"{split}_loss"] = float(loss)
        record[f"{split}_ppl"] = math.exp(loss) if loss < 700 else math.inf
    record["elapsed_s"] = elapsed
    return record


# -- the loop ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Loop:
    """What a run's step loop shares: the compiled steps, data, checkpointer and counters."""

    cfg: TrainConfig
    run_dir: Path
    block_size: int
    mesh: Any
    ckpt: Checkpointer
    checkpoint_meta: dict[str, Any]
    get_batch: GetBatch
    train_tokens: np.ndarray
    eval_data: dict[str, tuple[jax.Array, jax.Array]]  # split -> xs, ys (eval_batches, B, T)
    train_step: Callable
    eval_step: Callable
    state: TrainState
    t_start: float
    flops_per_token: float | None
    peak: float | None
    pbar: Any
    say: Callable[[str], None]
    summary: dict[str, Any]
    nonfinite_steps: int = 0
    pending: list = dataclasses.field(default_factory=list)  # per-step metrics (device) not yet fetched
    interval: list = dataclasses.field(default_factory=list)  # fetched metrics since the last log line
    t_log: float = 0.0
    tokens_since_log: int = 0
    last_save: int | None = None

    def next_batch(self, step: int) -> tuple[jax.Array, jax.Array]:
        x, y = _host_batch(self.get_batch, self.train_tokens, self.cfg, self.block_size, seed=self.cfg.seed, step=step)
        return shard_batch(x, y, self.cfg.grad_accum_steps, self.mesh)

    def sync(self, step: int) -> None:
        """Fetch the pending per-step metrics (waits for the device); stop on a non-finite step if so configured."""
        fetched = jax.device_get(self.pending)
        first = step - len(self.pending)  # the step index of the first pending step
        self.pending.clear()
        for i, m in enumerate(fetched):
            if m["finite"]:
                continue
            self.nonfinite_steps += 1
            if self.cfg.on_nonfinite == "stop":
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {first + i} (loss={float(m['loss'])}, "
                    f"grad_norm={float(m['grad_norm'])}); the run stopped, its parameters are those before "
                    f"that step. Checkpoints in {self.ckpt.directory}: steps {self.ckpt.all_steps()}. "
                    f"TrainConfig(on_nonfinite='skip') skips such steps instead"
                )
        self.interval.extend(fetched)

    def log(self, step: int) -> None:
        now = time.perf_counter()
        record = train_record(
            step, self.interval, tokens=self.tokens_since_log, seconds=now - self.t_log, elapsed=now - self.t_start,
            nonfinite_steps=self.nonfinite_steps, flops_per_token=self.flops_per_token, peak=self.peak,
        )
        append_metrics(self.run_dir, record)
        self.summary["train_loss"] = record["train_loss"]
        loss = record["train_loss"]
        postfix = {"loss": "nan" if loss is None else f"{loss:.4f}", "tok/s": f"{record['tokens_per_s']:,.0f}"}
        if record["mfu"] is not None:
            postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
        self.pbar.set_postfix(postfix, refresh=False)
        self.interval.clear()
        self.t_log, self.tokens_since_log = now, 0

    def evaluate(self, step: int) -> None:
        losses = jax.device_get({k: self.eval_step(self.state.params, *xy) for k, xy in self.eval_data.items()})
        record = eval_record(step, losses, elapsed=time.perf_counter() - self.t_start)
        append_metrics(self.run_dir, record)
        self.summary.update({k: _finite_or_none(v) for k, v in record.items() if k not in ("step", "elapsed_s")})
        self.say(f"step {step}: val loss {record['val_loss']:.4f}, train loss {record['eval_train_loss']:.4f}")

    def save(self, step: int) -> None:
        self.ckpt.save(step, self.state, {**self.checkpoint_meta, "step": step})
        self.last_save = step

    def run(self, start_step: int) -> int:
        """Steps from ``start_step`` to max_steps; returns the last step."""
        cfg, step = self.cfg, start_step
        tokens_per_step = cfg.batch_size * self.block_size
        batch = self.next_batch(step)
        # Several CPU "devices" (XLA_FLAGS=--xla_force_host_platform_device_count) share one
        # thread pool; with many multi-device steps queued, XLA:CPU's in-process all-reduce
        # rendezvous can wait forever for a participant and abort the process (seen with
        # jax 0.10.2 on 2 cores). One step in flight at a time avoids it.
        one_at_a_time = self.mesh.devices.size > 1 and self.mesh.devices.flat[0].platform == "cpu"
        while step < cfg.max_steps:
            self.state, metrics = self.train_step(self.state, *batch)
            if one_at_a_time:
                jax.block_until_ready(metrics)
            self.pending.append(metrics)
            step += 1
            self.tokens_since_log += tokens_per_step
            self.pbar.update(1)
            end = step == cfg.max_steps
            do_log = step % cfg.log_interval == 0 or end
            do_eval = step % cfg.eval_interval == 0 or end
            do_save = step % cfg.checkpoint_interval == 0 or end
            if do_log or do_eval or do_save:  # wait for the device, then log, evaluate, save
                self.sync(step)
                if do_log:
                    self.log(step)
                if do_eval:
                    self.evaluate(step)
                if do_save:
                    self.save(step)
            if not end:
                batch = self.next_batch(step)  # between syncs, overlaps with the device running this step
        return step

    def save_on_interrupt(self) -> None:
        self.pbar.close()
        if _is_deleted(self.state):  # interrupted inside the step call, after donating the state
            self.say(f"interrupted during a step; its state is lost. Checkpoints in {self.ckpt.directory}: "
                     f"steps {self.ckpt.all_steps()}")
            return
        at = int(self.state.step)
        if at != self.last_save:
            self.save(at)
        self.say(f"interrupted at step {at}: checkpoint saved in {self.ckpt.directory / str(at)}; "
                 f"train again with resume=True to continue")


def _eval_data(get_batch: GetBatch, tokens: np.ndarray, cfg: TrainConfig, block_size: int, mesh) -> tuple:
    """The fixed evaluation batches of one split on the devices: xs, ys (eval_batches, B, T)."""
    xys = [_host_batch(get_batch, tokens, cfg, block_size, seed=EVAL_SEED, step=i) for i in range(cfg.eval_batches)]
    return jax.device_put((np.stack([x for x, _ in xys]), np.stack([y for _, y in xys])), batch_sharding(mesh))


def train(
    model: nn.Module,
    model_config: Any,
    train_config: TrainConfig,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    run_dir: str | os.PathLike,
    *,
    flops_per_token: float | None = None,
    get_batch: GetBatch = random_windows,
    progress: bool = True,
    resume: bool = True,
    metadata: dict[str, Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on next-token prediction; returns the final metrics.

    Args:
      model: a zoo LM (``zoo.GPT``, ``zoo.RNNLM``): ``apply({'params': p}, ids
        (B, T), deterministic=..., rngs={'dropout': key})`` -> logits (B, T, V).
      model_config: its config (a dataclass with ``block_size``, the training
        window, and ``vocab_size``); saved with checkpoints and checked on resume.
      train_config: optimisation, evaluation and checkpointing settings.
      train_tokens, val_tokens: 1-D integer token arrays.
      run_dir: where checkpoints, metrics.jsonl and loss.png go.
      flops_per_token: training FLOPs per token (e.g. ``zoo.gpt_flops_per_token``);
        with it the log reports MFU against a measured matmul peak.
      get_batch: the batch sampler (see the module docstring).
      progress: show a tqdm bar (and print messages through it; else they go
        to the ``zoo.train`` logger).
      resume: continue from the latest checkpoint in ``run_dir/checkpoints`` if
        there is one. With False, a ``run_dir`` that has checkpoints is an error.
      metadata: JSON-able extras saved with every checkpoint (e.g. tokenizer).
      devices: the devices to train on, data parallel (default: all).

    Returns:
      ``step``, ``steps_run``, ``train_loss``, ``val_loss``, ``val_ppl``,
      ``eval_train_loss``, ``eval_train_ppl``, ``elapsed_s`` (wall time since
      the call), ``tokens_per_s`` (tokens of the steps run / elapsed_s),
      ``mfu``, ``nonfinite_steps``.

    Raises:
      FloatingPointError: with ``on_nonfinite='stop'``, at the first sync point
        after a step with a NaN/inf loss or gradient (it names the step).
      KeyboardInterrupt: re-raised after saving a checkpoint of the last step.
    """
    t_start = time.perf_counter()
    cfg = train_config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train: train_config must be a zoo.train.TrainConfig, got {type(cfg).__name__}")
    block_size = getattr(model_config, "block_size", None)
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"train: model_config.block_size={block_size!r}, expected a positive int (the window length)")
    vocab_size = getattr(model_config, "vocab_size", None)
    train_tokens = _check_tokens("train_tokens", train_tokens, block_size, vocab_size)
    val_tokens = _check_tokens("val_tokens", val_tokens, block_size, vocab_size)
    checkpoint_meta = {
        "model": type(model).__name__,
        "model_config": _config_dict(model_config, "model_config"),
        "train_config": _config_dict(cfg, "train_config"),
        "metadata": _config_dict(metadata or {}, "metadata"),
        "zoo_version": __version__,
    }
    say = tqdm.write if progress else logger.info
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(devices)
    train_step = make_train_step(model, cfg, mesh)  # checks the batch split and the schedule
    eval_step = make_eval_step(model, mesh)

    ckpt = Checkpointer(run_dir / CHECKPOINT_DIR, keep=cfg.keep_checkpoints)
    pbar = None
    try:
        # Start: fresh, or the latest checkpoint.
        latest = ckpt.latest_step()
        if latest is not None and not resume:
            raise ValueError(
                f"train: {ckpt.directory} has checkpoints (latest step {latest}) but resume=False; "
                f"pass resume=True to continue that run, or use another run_dir"
            )
        state = init_train_state(model, cfg, block_size=block_size, mesh=mesh)
        if latest is not None:
            saved = ckpt.metadata(latest).get("model_config", {})
            if saved != checkpoint_meta["model_config"]:
                raise ValueError(
                    f"train: checkpoint {ckpt.directory / str(latest)} was written for another model config; "
                    f"differences (saved, given): {_config_mismatch(saved, checkpoint_meta['model_config'])}"
                )
            state, _ = ckpt.restore(state, latest)
            say(f"resumed from checkpoint {ckpt.directory / str(latest)}")
        start_step = int(state.step)
        truncate_metrics(run_dir, start_step if latest is not None else -1)

        peak = None
        if flops_per_token:
            device = mesh.devices.flat[0]
            # CPU "devices" share the host's cores, and the probe already uses all of them.
            peak = peak_flops(device) * (1 if device.platform == "cpu" else mesh.devices.size)
        summary: dict[str, Any] = {"step": start_step, "steps_run": 0}
        for r in read_metrics(run_dir):  # the latest values logged before a resume
            summary.update({k: v for k, v in r.items() if k.endswith(("_loss", "_ppl"))})

        def finish(step: int, nonfinite_steps: int) -> dict[str, Any]:
            elapsed = time.perf_counter() - t_start
            tps = (step - start_step) * cfg.batch_size * block_size / elapsed
            summary.update(
                step=step, steps_run=step - start_step, elapsed_s=elapsed, tokens_per_s=tps,
                mfu=flops_per_token * tps / peak if peak else None, nonfinite_steps=nonfinite_steps,
            )
            plot_losses(run_dir)
            return summary

        if start_step >= cfg.max_steps:
            say(f"nothing to do: the run in {run_dir} is at step {start_step} >= max_steps={cfg.max_steps}")
            return finish(start_step, int(state.nonfinite_steps))

        pbar = tqdm(total=cfg.max_steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
        loop = _Loop(
            cfg=cfg, run_dir=run_dir, block_size=block_size, mesh=mesh, ckpt=ckpt,
            checkpoint_meta=checkpoint_meta, get_batch=get_batch, train_tokens=train_tokens,
            eval_data={
                "val": _eval_data(get_batch, val_tokens, cfg, block_size, mesh),
                "eval_train": _eval_data(get_batch, train_tokens, cfg, block_size, mesh),
            },
            train_step=train_step, eval_step=eval_step, state=state, t_start=t_start,
            flops_per_token=flops_per_token, peak=peak, pbar=pbar, say=say, summary=summary,
            nonfinite_steps=int(state.nonfinite_steps), t_log=t_start,
        )
        del state  # the loop owns it (it is donated every step)
        try:
            if latest is None and start_step % cfg.eval_interval == 0:
                loop.evaluate(start_step)  # the initial loss
            step = loop.run(start_step)
        except KeyboardInterrupt:
            loop.save_on_interrupt()
            plot_losses(run_dir)
            raise
        return finish(step, loop.nonfinite_steps)
    finally:
        if pbar is not None:
            pbar.close()
        ckpt.close()
