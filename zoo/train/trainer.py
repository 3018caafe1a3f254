"""The training loop: ``train(model, ...)`` from initialisation (or the latest checkpoint) to max_steps.

What is trained is an :class:`~zoo.train.objectives.Objective` (next-token
prediction by default; BERT's masked LM and classification, translation):
the loop only moves batch dicts between the sampler and the compiled steps.

Per optimizer step the host only samples the next batch and dispatches the
compiled step; it waits for the device only at sync points (every
``log_interval``, ``eval_interval`` and ``checkpoint_interval`` steps, and at
the end), where it fetches the per-step losses and flags. The next batch is
sampled and transferred while the device runs the current step.

    RUN_DIR/
      checkpoints/<step>/   orbax checkpoints (state + JSON metadata with the arrays' digests),
                             the newest keep_checkpoints
      checkpoints-corrupt/<step>/  checkpoints that failed verification on resume, moved aside (never deleted)
      metrics.jsonl          one JSON object per log/eval line (see zoo.train.metrics)
      loss.png               train and validation loss against the step

Data: ``get_batch(data, batch_size, block_size, *, seed, step)`` returns a
batch dict ``{name: (B, ...)}`` of host arrays, or for next-token prediction
a pair ``(x, y)`` of (B, T) int32 arrays with y = x shifted by one (taken as
``{"inputs": x, "targets": y}``); it must be a pure function of (seed, step).
Training batch ``s`` is ``get_batch(train_data, ..., seed=cfg.seed, step=s)``,
so a resumed run sees the same data (and, for BERT, the same masks). Evaluation uses the same
``eval_batches`` batches every time (seed :data:`EVAL_SEED`, steps 0..N-1), so
its curve is not noisy from resampling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from zoo._version import __version__
from zoo.errors import NonFiniteError, TrainingInterrupted
from zoo.train.checkpoint import Checkpointer, CheckpointWarning, ctrl_c_after
from zoo.train.config import TrainConfig
from zoo.train.lock import RunLock
from zoo.train.metrics import append_metrics, peak_flops, plot_losses, read_metrics, truncate_metrics
from zoo.train.objectives import NEXT_TOKEN, Objective
from zoo.train import distributed, sharding
from zoo.train.step import (
    TrainState,
    batch_sharding,
    init_train_state,
    make_eval_step,
    make_mesh,
    make_train_step,
    local_rows,
    put_global,
    replicated_sharding,
    shard_batch,
)

__all__ = ["CHECKPOINT_DIR", "EVAL_SEED", "evaluate_batches", "evaluation_batches", "random_windows", "train"]

logger = logging.getLogger("zoo.train")

EVAL_SEED = 1_000_003  # the evaluation batches' seed, the same in every run
CHECKPOINT_DIR = "checkpoints"
CORRUPT_CHECKPOINT_DIR = "checkpoints-corrupt"  # damaged checkpoints found on resume are moved here

GetBatch = Callable[..., tuple[np.ndarray, np.ndarray]]


def random_windows(
    tokens: np.ndarray, batch_size: int, block_size: int, *, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``tokens``: x (B, T) and y = x shifted by one, int32.

    A pure function of (seed, step): ``np.random.default_rng([seed, step])``
    draws the window starts.

    Examples:
      >>> tokens = np.arange(50, dtype=np.int32)
      >>> x, y = zoo.train.random_windows(tokens, 2, 4, seed=0, step=3)
      >>> x.shape, y.dtype, bool((y == x + 1).all())
      ((2, 4), dtype('int32'), True)
      >>> x_again, _ = zoo.train.random_windows(tokens, 2, 4, seed=0, step=3)   # pure in (seed, step)
      >>> bool((x_again == x).all())
      True
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


def _takes_rows(get_batch: GetBatch) -> bool:
    try:
        return "rows" in inspect.signature(get_batch).parameters
    except (TypeError, ValueError):
        return False


def _host_batch(
    get_batch: GetBatch, data: Any, cfg: TrainConfig, block_size: int, *, seed: int, step: int,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Batch ``step`` on the host, checked: all ``batch_size`` rows, or only ``rows`` of them (a process's
    share of the global batch; ``get_batch(..., rows=rows)`` when it takes ``rows``, else sliced)."""
    out = get_batch(data, cfg.batch_size, block_size, seed=seed, step=step,
                    **({"rows": rows} if rows is not None and _takes_rows(get_batch) else {}))
    if rows is not None and not _takes_rows(get_batch):  # the whole batch, then this process's rows
        out = (out[0][rows], out[1][rows]) if isinstance(out, tuple) else {k: np.asarray(v)[rows] for k, v in
                                                                            out.items()}
    n_rows = cfg.batch_size if rows is None else len(rows)
    if isinstance(out, tuple):  # next-token (x, y)
        x, y = np.asarray(out[0]), np.asarray(out[1])
        want = (n_rows, block_size)
        if x.shape != want or y.shape != want:
            raise ValueError(
                f"get_batch returned x {x.shape} and y {y.shape}, expected both (batch_size, block_size) = {want}"
            )
        return {"inputs": x.astype(np.int32, copy=False), "targets": y.astype(np.int32, copy=False)}
    if not isinstance(out, dict) or not out:
        raise TypeError(f"get_batch must return a dict of arrays or an (x, y) pair, got {type(out).__name__}")
    batch = {k: np.asarray(v) for k, v in out.items()}
    bad = {k: v.shape for k, v in batch.items() if v.ndim < 1 or v.shape[0] != n_rows}
    if bad:
        raise ValueError(f"get_batch returned entries {bad}, expected a leading batch axis of "
                         f"{'batch_size' if rows is None else 'this process rows'}={n_rows}")
    return batch


def _is_deleted(state: TrainState) -> bool:
    return any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _config_mismatch(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose values differ, as (saved, given)."""
    return {k: (saved.get(k), given.get(k)) for k in sorted(set(saved) | set(given)) if saved.get(k) != given.get(k)}


def _resume(
    ckpt: Checkpointer, state: TrainState, model_config: dict[str, Any], corrupt_dir: Path
) -> tuple[TrainState, int]:
    """The newest good checkpoint's state and step. Newer steps that are damaged are moved into
    ``corrupt_dir`` (so that the resumed run can save those steps again), each with a warning."""

    def check(step: int, metadata: dict[str, Any]) -> None:
        saved = metadata.get("model_config", {})
        if saved != model_config:
            raise ValueError(
                f"train: checkpoint {ckpt.directory / str(step)} was written for another model config; "
                f"differences (saved, given): {_config_mismatch(saved, model_config)}"
            )

    found = ckpt.restore_newest(state, check_metadata=check)
    for bad, reason in found.skipped:
        moved = ckpt.move_aside(bad, corrupt_dir)
        warnings.warn(
            f"checkpoint step {bad} in {ckpt.directory} is corrupt ({reason}); moved it to {moved}; "
            f"resuming from step {found.step}",
            CheckpointWarning, stacklevel=3,
        )
    return found.state, found.step


# -- metrics records (pure) --------------------------------------------------------------


_STEP_KEYS = ("loss", "grad_norm", "lr", "finite")


def train_record(
    step: int, steps: list[dict[str, Any]], *, tokens: int, seconds: float, elapsed: float,
    nonfinite_steps: int, flops_per_token: float | None, peak: float | None,
) -> dict[str, Any]:
    """The log line for the fetched per-step metrics ``steps`` since the previous line.

    Besides the loss, every metric of the objective (e.g. ``accuracy``) is
    averaged over the finite steps and logged as ``train_NAME``.
    """
    finite = [m for m in steps if m["finite"]]
    losses = [float(m["loss"]) for m in finite]
    extra = [k for k in steps[-1] if k not in _STEP_KEYS]
    tps = tokens / seconds
    return {
        "step": step,
        "train_loss": float(np.mean(losses)) if losses else None,
        **{f"train_{k}": float(np.mean([float(m[k]) for m in finite])) if finite else None for k in extra},
        "lr": float(steps[-1]["lr"]),
        "grad_norm": float(steps[-1]["grad_norm"]),
        "tokens_per_s": tps,
        "mfu": flops_per_token * tps / peak if flops_per_token and peak else None,
        "elapsed_s": elapsed,
        "nonfinite_steps": nonfinite_steps,
    }


def eval_record(
    step: int, results: dict[str, dict[str, float]], *, elapsed: float, perplexity: bool = True
) -> dict[str, Any]:
    """The evaluation line: ``{split}_loss``, ``{split}_ppl`` (when perplexity means something) and
    ``{split}_NAME`` for the objective's other metrics, for each split."""
    record: dict[str, Any] = {"step": step}
    for split, metrics in results.items():
        loss = float(metrics["loss"])
        record[f"{split}_loss"] = loss
        if perplexity:
            record[f"{split}_ppl"] = math.exp(loss) if loss < 700 else math.inf
        record.update({f"{split}_{k}": float(v) for k, v in metrics.items() if k != "loss"})
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
    train_data: Any
    eval_data: dict[str, dict[str, jax.Array]]  # split -> {name: (eval_batches, B, ...)}
    objective: Objective
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
    rows: np.ndarray | None = None  # this process's rows of each global batch (None: all; one process)
    primary: bool = True  # process 0: writes metrics and plots, prints
    stop_requested: bool = False  # Ctrl-C seen (several processes: they stop together at the next sync)

    def next_batch(self, step: int) -> dict[str, jax.Array]:
        batch = _host_batch(self.get_batch, self.train_data, self.cfg, self.block_size, seed=self.cfg.seed,
                            step=step, rows=self.rows)
        return shard_batch(batch, self.cfg.grad_accum_steps, self.mesh, global_rows=self.cfg.batch_size)

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
                raise NonFiniteError(first + i, float(m["loss"]), float(m["grad_norm"]), self.ckpt.directory,
                                     self.ckpt.all_steps())
        self.interval.extend(fetched)

    def log(self, step: int) -> None:
        now = time.perf_counter()
        record = train_record(
            step, self.interval, tokens=self.tokens_since_log, seconds=now - self.t_log, elapsed=now - self.t_start,
            nonfinite_steps=self.nonfinite_steps, flops_per_token=self.flops_per_token, peak=self.peak,
        )
        if self.primary:
            append_metrics(self.run_dir, record)
        self.summary.update({k: v for k, v in record.items() if k.startswith("train_")})
        loss = record["train_loss"]
        postfix = {"loss": "nan" if loss is None else f"{loss:.4f}", "tok/s": f"{record['tokens_per_s']:,.0f}"}
        if record["mfu"] is not None:
            postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
        self.pbar.set_postfix(postfix, refresh=False)
        self.interval.clear()
        self.t_log, self.tokens_since_log = now, 0

    def evaluate(self, step: int) -> None:
        results = jax.device_get({k: self.eval_step(self.state.params, b) for k, b in self.eval_data.items()})
        record = eval_record(step, results, elapsed=time.perf_counter() - self.t_start,
                             perplexity=self.objective.perplexity)
        if self.primary:
            append_metrics(self.run_dir, record)
        self.summary.update({k: _finite_or_none(v) for k, v in record.items() if k not in ("step", "elapsed_s")})
        extra = "".join(f", val {k} {v:.4f}" for k, v in results["val"].items() if k != "loss")
        self.say(f"step {step}: val loss {record['val_loss']:.4f}, train loss {record['eval_train_loss']:.4f}{extra}")

    def save(self, step: int) -> None:
        self.ckpt.save(step, self.state, {**self.checkpoint_meta, "step": step})
        self.last_save = step

    def run(self, start_step: int) -> int:
        """Steps from ``start_step`` to max_steps; returns the last step."""
        cfg, step = self.cfg, start_step
        batch = self.next_batch(step)
        tokens_per_step = int(np.prod(batch[self.objective.tokens_key].shape))
        # Several CPU "devices" (XLA_FLAGS=--xla_force_host_platform_device_count) share one
        # thread pool; with many multi-device steps queued, XLA:CPU's in-process all-reduce
        # rendezvous can wait forever for a participant and abort the process (seen with
        # jax 0.10.2 on 2 cores). One step in flight at a time avoids it.
        one_at_a_time = self.mesh.devices.size > 1 and self.mesh.devices.flat[0].platform == "cpu"
        while step < cfg.max_steps:
            with ctrl_c_after():  # the call donates self.state: a Ctrl-C inside it would lose the state
                self.state, metrics = self.train_step(self.state, batch)
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
                if not end and distributed.is_multiprocess() and distributed.any_process(self.stop_requested):
                    raise KeyboardInterrupt  # Ctrl-C on some process: every process stops at this step
            if not end:
                batch = self.next_batch(step)  # between syncs, overlaps with the device running this step
        return step

    def save_on_interrupt(self) -> TrainingInterrupted:
        """Save the state of the last finished step (unless saved already); what to re-raise."""
        self.pbar.close()
        if _is_deleted(self.state):  # interrupted inside the step call, after donating the state
            steps = self.ckpt.all_steps()
            self.say(f"interrupted during a step; its state is lost. Checkpoints in {self.ckpt.directory}: "
                     f"steps {steps}")
            return TrainingInterrupted(steps[-1] if steps else None,
                                       self.ckpt.directory / str(steps[-1]) if steps else None)
        at = int(self.state.step)
        if at != self.last_save:
            self.save(at)
        return TrainingInterrupted(at, self.ckpt.directory / str(at))


@contextlib.contextmanager
def _stop_together(loop: _Loop):
    """Several processes: the first Ctrl-C (SIGINT) only asks to stop; the processes agree on it at the next
    sync point (log, eval or checkpoint step) and stop there together, each saving the same step (a
    process that stopped on its own would leave the others waiting in a collective). A second Ctrl-C
    interrupts at once. One process: nothing changes (Ctrl-C interrupts at once)."""
    if not distributed.is_multiprocess() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum, frame):
        if loop.stop_requested:
            raise KeyboardInterrupt
        loop.stop_requested = True
        loop.say("Ctrl-C: stopping at the next sync point (with a checkpoint); press it again to stop at once")

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def evaluation_batches(
    get_batch: GetBatch, data: Any, train_config: TrainConfig, block_size: int, *, num_batches: int | None = None,
    seed: int = EVAL_SEED,
) -> dict[str, np.ndarray]:
    """The evaluation batches of one split, on the host: ``{name: (N, B, ...)}``.

    Batch i is ``get_batch(data, batch_size, block_size, seed=seed, step=i)``
    for i < N (default N: ``train_config.eval_batches``). With the defaults
    these are the batches :func:`train` evaluates on (``zoo eval`` reuses them).
    """
    n = train_config.eval_batches if num_batches is None else num_batches
    if n < 1:
        raise ValueError(f"evaluation_batches: num_batches={n}; expected at least 1")
    batches = [_host_batch(get_batch, data, train_config, block_size, seed=seed, step=i) for i in range(n)]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def evaluate_batches(
    model: nn.Module, params: Any, batches: dict[str, np.ndarray], objective: Objective = NEXT_TOKEN,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, float]:
    """The objective's ``loss`` and metrics on ``batches`` ``{name: (N, B, ...)}`` (means over the N batches):
    the compiled evaluation step of :func:`train`, rows sharded over ``devices`` (default: all; one when B
    does not split evenly over them)."""
    mesh = make_mesh(devices)
    rows = next(iter(batches.values())).shape[1]
    if rows % mesh.devices.size:
        mesh = make_mesh(list(mesh.devices.flat[:1]))
    params = jax.device_put(params, replicated_sharding(mesh))  # data parallel: whatever mesh trained them
    out = make_eval_step(model, mesh, objective)(params, jax.device_put(batches, batch_sharding(mesh)))
    return {k: float(v) for k, v in jax.device_get(out).items()}


def _eval_data(get_batch: GetBatch, data: Any, cfg: TrainConfig, block_size: int, mesh) -> dict[str, jax.Array]:
    """The fixed evaluation batches of one split on the devices: {name: (eval_batches, B, ...)}."""
    return put_global(evaluation_batches(get_batch, data, cfg, block_size), batch_sharding(mesh))


def train(
    model: nn.Module,
    model_config: Any,
    train_config: TrainConfig,
    train_data: Any,
    val_data: Any,
    run_dir: str | os.PathLike,
    *,
    objective: Objective = NEXT_TOKEN,
    flops_per_token: float | None = None,
    get_batch: GetBatch = random_windows,
    progress: bool = True,
    resume: bool = True,
    metadata: dict[str, Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
    initial_params: Any = None,
    mesh: Any = None,
) -> dict[str, Any]:
    """Train ``model`` on ``objective`` (default: next-token prediction); returns the final metrics.

    Args:
      model: a zoo model, e.g. ``zoo.GPT``, ``zoo.RNNLM`` (next-token: ``apply({'params': p}, ids
        (B, T), deterministic=..., rngs={'dropout': key})`` -> logits (B, T, V)), ``zoo.BERTForMaskedLM``.
      model_config: its config (a dataclass with ``block_size``, the training
        window, and ``vocab_size``); saved with checkpoints and checked on resume.
      train_config: optimisation, evaluation and checkpointing settings.
      train_data: what ``get_batch`` samples from: for the default
        sampler, 1-D integer token arrays (checked against the vocabulary).
      val_data: the same for evaluation.
      objective: the loss and metrics (:mod:`zoo.train.objectives`).
      run_dir: where checkpoints, metrics.jsonl and loss.png go.
      flops_per_token: training FLOPs per token (e.g. ``zoo.gpt_flops_per_token``);
        with it the log reports MFU against a measured matmul peak.
      get_batch: the batch sampler (see the module docstring).
      progress: show a tqdm bar (and print messages through it; else they go
        to the ``zoo.train`` logger).
      resume: continue from the latest checkpoint in ``run_dir/checkpoints`` if
        there is one. With False, a ``run_dir`` that has checkpoints is an error.
        A newer checkpoint that is damaged (its arrays fail their digests or
        cannot be read) is moved to ``run_dir/checkpoints-corrupt/<step>`` with
        a :class:`~zoo.train.checkpoint.CheckpointWarning`, and the run resumes
        from the newest good one; when none is good, a ``ValueError`` lists them.
      metadata: JSON-able extras saved with every checkpoint (e.g. tokenizer).
      devices: the devices to train on (default: all).
      mesh: how to split the steps over them (:mod:`zoo.train.sharding`): ``"data=2,fsdp=2"``, a dict
        ``{"data": 2, "fsdp": 2}`` or a ``jax.sharding.Mesh`` with axes (data, fsdp, tensor); default all
        devices on data. Checked (against the device count, the model and the batch size) before
        anything is compiled. A run saved under one mesh resumes under any other.
      initial_params: parameters to start from instead of a fresh
        initialisation (fine-tuning); ignored when resuming from a checkpoint.

    Returns:
      ``step``, ``steps_run``, ``train_loss``, ``val_loss``, ``val_ppl``,
      ``eval_train_loss``, ``eval_train_ppl``, ``elapsed_s`` (wall time since
      the call), ``tokens_per_s`` (tokens of the steps run / elapsed_s),
      ``mfu``, ``nonfinite_steps``.

    Raises:
      zoo.errors.NonFiniteError (a ``FloatingPointError``): with
        ``on_nonfinite='stop'``, at the first sync point after a step with a
        NaN/inf loss or gradient (it names the step).
      zoo.errors.TrainingInterrupted (a ``KeyboardInterrupt``): on Ctrl-C,
        after saving a checkpoint of the last finished step (its ``step`` and
        ``checkpoint`` folder are attributes).
      zoo.errors.RunInUseError: another process holds ``run_dir``'s lock
        (:mod:`zoo.train.lock`).

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> cfg = zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1, eval_interval=2,
      ...                             eval_batches=1)
      >>> tokens = zoo.data.ByteTokenizer().encode("to be or not to be " * 10)
      >>> result = zoo.train.train(zoo.RNNLM(config), config, cfg, tokens, tokens, "run", progress=False,
      ...                          devices=jax.devices()[:1])
      >>> result["step"], result["steps_run"], result["val_loss"] > 0
      (2, 2, True)
      >>> zoo.train.latest_checkpoint_step("run/checkpoints"), zoo.train.read_metrics("run")[-1]["step"]
      (2, 2)
    """
    t_start = time.perf_counter()
    cfg = train_config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train: train_config must be a zoo.train.TrainConfig, got {type(cfg).__name__}")
    block_size = getattr(model_config, "block_size", None)
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"train: model_config.block_size={block_size!r}, expected a positive int (the window length)")
    vocab_size = getattr(model_config, "vocab_size", None)
    if not isinstance(objective, Objective):
        raise TypeError(f"train: objective must be a zoo.train.objectives.Objective, got {type(objective).__name__}")
    if isinstance(train_data, (np.ndarray, list)) and np.ndim(train_data) == 1:  # token streams
        train_data = _check_tokens("train_data", train_data, block_size, vocab_size)
        val_data = _check_tokens("val_data", val_data, block_size, vocab_size)
    checkpoint_meta = {
        "model": type(model).__name__,
        "objective": objective.name,
        "model_config": _config_dict(model_config, "model_config"),
        "train_config": _config_dict(cfg, "train_config"),
        "metadata": _config_dict(metadata or {}, "metadata"),
        "zoo_version": __version__,
    }
    primary = distributed.is_primary()  # several processes: process 0 prints and writes the run's files
    say = (tqdm.write if progress else logger.info) if primary else (lambda _: None)
    run_dir = Path(run_dir)
    if primary:
        run_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(mesh, Mesh):
        mesh = make_mesh(devices, mesh)
    elif devices is not None:
        raise ValueError("train: give devices or a Mesh, not both (a Mesh has its devices)")
    checkpoint_meta["mesh"] = sharding.mesh_shape(mesh)  # informative: a run resumes under any mesh
    # checks the batch split, the schedule and the model against the mesh
    train_step = make_train_step(model, cfg, mesh, objective, model_config=model_config)
    eval_step = make_eval_step(model, mesh, objective, model_config=model_config)

    lock = RunLock(run_dir).acquire()  # RunInUseError if another process trains in run_dir
    ckpt = None
    pbar = None
    try:
        ckpt = Checkpointer(run_dir / CHECKPOINT_DIR, keep=cfg.keep_checkpoints)
        # Start: fresh, or the latest checkpoint.
        latest = ckpt.latest_step()
        if latest is not None and not resume:
            raise ValueError(
                f"train: {ckpt.directory} has checkpoints (latest step {latest}) and resume is off; "
                f"resume that run, or use another run_dir"
            )
        state = init_train_state(model, cfg, model_config=model_config, mesh=mesh, objective=objective,
                                 params=initial_params if latest is None else None)
        if latest is not None:
            corrupt_dir = run_dir / CORRUPT_CHECKPOINT_DIR
            state, latest = _resume(ckpt, state, checkpoint_meta["model_config"], corrupt_dir)
            say(f"resumed from checkpoint {ckpt.directory / str(latest)}")
        start_step = int(state.step)
        if primary:
            truncate_metrics(run_dir, start_step if latest is not None else -1)

        peak = None
        if flops_per_token:
            device = mesh.local_devices[0]  # one of this process's (several processes: the others are remote)
            # CPU "devices" share the host's cores, and the probe already uses all of them.
            peak = peak_flops(device) * (1 if device.platform == "cpu" else mesh.devices.size)
        summary: dict[str, Any] = {"step": start_step, "steps_run": 0}
        for r in read_metrics(run_dir):  # the latest values logged before a resume
            summary.update({k: v for k, v in r.items() if k.endswith(("_loss", "_ppl"))})

        rows = local_rows(cfg.batch_size, cfg.grad_accum_steps, mesh)  # None: one process holds every row
        first_batch = _host_batch(get_batch, train_data, cfg, block_size, seed=cfg.seed, step=start_step, rows=rows)
        if objective.tokens_key not in first_batch:
            raise ValueError(f"train: the batches have entries {sorted(first_batch)}, but objective "
                             f"{objective.name!r} counts tokens in {objective.tokens_key!r}")
        tokens = first_batch[objective.tokens_key]
        tokens_per_step = int(np.prod(tokens.shape)) * cfg.batch_size // tokens.shape[0]  # of the global batch

        def finish(step: int, nonfinite_steps: int) -> dict[str, Any]:
            elapsed = time.perf_counter() - t_start
            tps = (step - start_step) * tokens_per_step / elapsed
            summary.update(
                step=step, steps_run=step - start_step, elapsed_s=elapsed, tokens_per_s=tps,
                mfu=flops_per_token * tps / peak if peak else None, nonfinite_steps=nonfinite_steps,
            )
            if primary:
                plot_losses(run_dir)
            return summary

        if start_step >= cfg.max_steps:
            say(f"nothing to do: the run in {run_dir} is at step {start_step} >= max_steps={cfg.max_steps}")
            return finish(start_step, int(state.nonfinite_steps))

        pbar = tqdm(total=cfg.max_steps, initial=start_step, disable=not (progress and primary), unit="step",
                    dynamic_ncols=True)
        loop = _Loop(
            cfg=cfg, run_dir=run_dir, block_size=block_size, mesh=mesh, ckpt=ckpt,
            checkpoint_meta=checkpoint_meta, get_batch=get_batch, train_data=train_data, objective=objective,
            eval_data={
                "val": _eval_data(get_batch, val_data, cfg, block_size, mesh),
                "eval_train": _eval_data(get_batch, train_data, cfg, block_size, mesh),
            },
            train_step=train_step, eval_step=eval_step, state=state, t_start=t_start,
            flops_per_token=flops_per_token, peak=peak, pbar=pbar, say=say, summary=summary,
            nonfinite_steps=int(state.nonfinite_steps), t_log=t_start, rows=rows, primary=primary,
        )
        del state  # the loop owns it (it is donated every step)
        try:
            with _stop_together(loop):
                if latest is None and start_step % cfg.eval_interval == 0:
                    loop.evaluate(start_step)  # the initial loss
                step = loop.run(start_step)
        except jax.errors.JaxRuntimeError as e:
            if not distributed.is_multiprocess():
                raise
            # gloo/NCCL report a peer that went away as a failed collective ("Connection closed by peer")
            raise RuntimeError(f"process {distributed.process_index()}: a collective with the other processes "
                               f"failed ({str(e).splitlines()[0][:200]}); another process has probably stopped: "
                               "its error, or the launcher's, says which") from e
        except KeyboardInterrupt:
            interrupted = loop.save_on_interrupt()
            if primary:
                plot_losses(run_dir)
            raise interrupted from None
        return finish(step, loop.nonfinite_steps)
    finally:
        if pbar is not None:
            pbar.close()
        if ckpt is not None:
            ckpt.close()
        lock.release()
