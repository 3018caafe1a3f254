"""Long-range dependency tasks: which sequence models remember across a distance T, on a fixed budget.

    zoo tasks run copy --model lstm --length 64                 # one model, one task, one length
    zoo tasks sweep --out runs/tasks                             # tasks x models x lengths: table and plot
    zoo tasks sweep --quick --out /tmp/tasks                     # a smoke run: 8 tiny runs, ~35 s on 2 cores

The tasks are the synthetic probes of :mod:`zoo.data.long_range` (adding problem,
copy memory, selective copying, associative recall; definitions, sources
and baselines there). Each one puts a distance ``T`` between what the model
must read and where it must answer, so a sweep over ``T`` shows how far each
architecture's memory reaches *when it is trained the same way*.

**The model** (:class:`SequenceModel`) makes one prediction per position::

    inputs (B, L) ids or (B, L, 2) floats
      -> input layer: Embed(V, D) for the token tasks, Dense(2 -> D) for adding    (B, L, D)
      -> backbone: RNNStack of SimpleRNN | LSTM | GRU | minGRU cells (layers x D),
                   or a causal pre-LN Transformer (zoo's Decoder: RoPE, GELU, no biases)
      -> head: Dense(D -> V) logits, or Dense(D -> 1) for adding                    (B, L, C) float32

Everything comes from zoo's layers (``zoo.RNNStack`` with zoo's cells;
``zoo.layers.Decoder``, the blocks of ``zoo.GPT``); nothing here is a new cell
or a new attention. The GPT uses rotary position embeddings, so it has no
position table and its window is set to the task's total length L. The
GPT's width ``--features`` (``--width`` in zoo 0.1) is the reference; each
recurrent model gets the width (a multiple of 4) whose parameter count, input
and head layers included, is closest to the GPT's (:func:`zoo.registry.matched_width`), and the sweep
reports each model's parameters and width. The token embedding starts at
N(0, 0.02^2) for the GPT (GPT-2's) and at N(0, 1) for the recurrent models,
whose input kernels expect unit-variance inputs.

**The budget** is the same for every model, task and length: ``--steps``
AdamW steps (zoo's optimizer, :func:`zoo.train.optim.make_optimizer`, b2 = 0.99: linear
warmup over 5% of the steps, cosine decay to lr/10, global-norm clipping at
1, weight decay 0.01 on matrices) on fresh batches of ``--batch-size``
examples drawn from the generator with seed ``(seed, 0, step)``. The loss is
taken on the scored positions only (the task's mask): cross-entropy in
float32 for the token tasks, squared error for adding. Evaluation uses
held-out batches from another seed stream, ``(seed, 1, i)``, of at least
``--eval-size`` examples: accuracy per scored token (and per whole example)
for the token tasks, MSE for adding.

**Defaults of the sweep**: the four tasks, the five models, lengths T = 16,
64, 128; width 32 (GPT 2 x 32 x 4 heads, about 25k parameters; the recurrent
models 2 layers of 40 to 76 units), 400 steps of 32 examples, lr 3e-3,
evaluation on 512 examples. Measured on an otherwise idle 2-core CPU
(AMD EPYC): one run takes 9-15 s for the recurrent models and 37-43 s for
the GPT at T = 128 (copy, L = 148: GPT 37 s, LSTM 15 s; selective copying,
all five models: 90 s), compilation included (2-4 s of it), and less at the
shorter lengths; from these, the 60 runs of the sweep come to an
estimated 12 minutes. T = 256
would double the cost of the longest runs and take the sweep past 20
minutes; T = 16 is short enough for most models to learn something in the
budget, T = 128 long enough that some do not.

**CPU economies** (same functions, less compile time): minGRU runs its
recurrence step by step (``MinGRUCell(method='sequential')``: the associative
scan computes the same values, but on 2 cores it was slower, 51 against 29
ms per step at T = 128, and twice as slow to compile); the initial parameters are made once per model and seed
and reused at every length (:func:`initial_params`), from an ``rbg`` key.

**Reading the results.** With a fixed small budget some models fail at the
longer lengths: they stay at the memoryless baseline, and that is the point
of the experiment, not a bug to tune away. The figures are what the runs
gave: no model or length gets extra steps, a different learning rate or a
second seed, so a result near the baseline may also mean "not learned *yet*
at this budget". Conclusions about architectures need more than one seed;
``--seed`` and ``--steps`` are there for that.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro

from zoo import registry
from zoo.checks import renamed_arguments
from zoo.data import long_range as data_tasks
from zoo.errors import config_error
from zoo.harness import results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.layers import CELLS, Decoder, Embed, RNNStack, TransformerConfig, cell_param_count
from zoo.train import TrainConfig, fit

Array = jax.Array

__all__ = [
    "MODELS",
    "TASKS",
    "SequenceModelConfig",
    "SequenceModel",
    "initial_params",
    "param_count",
    "model_config",
    "RunConfig",
    "SweepConfig",
    "run_task",
    "run_sweep",
    "render",
    "plots",
    "format_result",
    "run_main",
    "sweep_main",
]

ModelName = Literal["rnn", "lstm", "gru", "mingru", "gpt"]
MODELS: tuple[str, ...] = ("rnn", "lstm", "gru", "mingru", "gpt")
TASKS = data_tasks.TASKS
TaskName = data_tasks.TaskName

# minGRU runs its recurrence step by step: the same function as the associative scan, which on a
# 2-core CPU is slower (selective copy, T = 128: 51 against 29 ms per step) and compiles 2x slower.
CELL_OPTIONS = {"mingru": {"method": "sequential"}}
LABELS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU", "mingru": "minGRU", "gpt": "GPT"}

WEIGHT_DECAY = 0.01
GRAD_CLIP = 1.0
WARMUP_FRACTION = 0.05


# ----------------------------------------------------------------------------
# the model


@dataclasses.dataclass(frozen=True)
class SequenceModelConfig:
    """A per-position sequence model: input layer, backbone, head."""

    model: ModelName = "lstm"
    features: int = 64  # D: embedding, hidden and residual width (was width)
    num_layers: int = 2
    num_heads: int = 4  # gpt only
    vocab_size: int = 0  # token inputs in [0, vocab_size); 0: real-valued inputs of input_features
    input_features: int = 2  # real-valued inputs only
    num_outputs: int = 1  # logits per position (the vocabulary), or 1 for regression
    max_len: int = 1024  # gpt only: the context window (RoPE has no table; longer inputs are refused)

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("SequenceModelConfig", field, getattr(self, field), expected)

        if self.model not in MODELS:
            bad("model", f"one of {list(MODELS)}")
        for f in ("features", "num_layers", "num_heads", "num_outputs", "max_len"):
            if not isinstance(getattr(self, f), (int, np.integer)) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if self.vocab_size < 0 or (self.vocab_size == 0 and self.input_features < 1):
            bad("vocab_size", "a positive int, or 0 with input_features >= 1")
        if self.model == "gpt":
            if self.features % self.num_heads:
                bad("features", f"a multiple of num_heads={self.num_heads}")
            if (self.features // self.num_heads) % 2:
                bad("features", f"an even head size (features // num_heads), for RoPE; num_heads={self.num_heads}")

    def transformer(self) -> TransformerConfig:
        """The GPT backbone: pre-LN causal blocks as in zoo.GPT, with RoPE and without biases or dropout."""
        return TransformerConfig(
            num_layers=self.num_layers, num_heads=self.num_heads, mlp_dim=4 * self.features, activation="gelu_tanh",
            layer_norm="pre", use_bias=False, dropout_rate=0.0, attention_dropout_rate=0.0, rope_base=10000.0,
            scan_layers=False, residual_init_std=0.02 / math.sqrt(2 * self.num_layers),
        )


class SequenceModel(nn.Module):
    """inputs (B, L) ids or (B, L, F) floats -> float32 outputs (B, L, num_outputs), causal."""

    config: SequenceModelConfig

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        cfg = self.config
        if cfg.vocab_size:
            if inputs.ndim != 2:
                raise ValueError(f"SequenceModel: token inputs must have shape (B, L), got {inputs.shape}")
            init = nn.initializers.normal(0.02 if cfg.model == "gpt" else 1.0)
            x = Embed(cfg.vocab_size, cfg.features, embedding_init=init, name="embed")(inputs)  # (B, L, D)
        else:
            if inputs.ndim != 3 or inputs.shape[-1] != cfg.input_features:
                raise ValueError(
                    f"SequenceModel: real-valued inputs must have shape (B, L, {cfg.input_features}), "
                    f"got {inputs.shape}"
                )
            x = nn.Dense(cfg.features, name="input")(inputs.astype(jnp.float32))  # (B, L, D)
        if cfg.model == "gpt":
            if x.shape[1] > cfg.max_len:
                raise ValueError(f"SequenceModel: length {x.shape[1]} is longer than the window max_len={cfg.max_len}")
            x = Decoder(cfg.transformer(), name="decoder")(x)  # (B, L, D), after the final LayerNorm
        else:
            cell = CELLS[cfg.model](features=cfg.features, **CELL_OPTIONS.get(cfg.model, {}))
            x = RNNStack(cell, num_layers=cfg.num_layers, name="rnn")(x)  # (B, L, D)
        return nn.Dense(cfg.num_outputs, name="head")(x).astype(jnp.float32)  # (B, L, C)


def initial_params(config: SequenceModelConfig, seed: int) -> Any:
    """The initial parameters of ``config`` from ``seed``: the same at every length (cached).

    No parameter depends on the sequence length (RoPE has no table), so the
    model is initialised on a (1, 1) input, once per configuration and seed:
    every length of a sweep starts from the same parameters, and the
    initialiser is compiled once. The key is an ``rbg`` key, whose random
    bits compile about 3x faster than threefry's on a CPU (GPT init: 2.5 against 6.9 s).
    """
    return _initial_params(dataclasses.replace(config, max_len=1), int(seed))  # the window is not a parameter


@functools.lru_cache(maxsize=32)
def _initial_params(config: SequenceModelConfig, seed: int) -> Any:
    model = SequenceModel(config)
    x = jnp.zeros((1, 1), jnp.int32) if config.vocab_size else jnp.zeros((1, 1, config.input_features), jnp.float32)
    return nn.unbox(jax.jit(model.init)(jax.random.key(seed, impl="rbg"), x)["params"])


def param_count(config: SequenceModelConfig) -> int:
    """Number of parameters, counted from the config (the tests check it against ``init``)."""
    d = config.features
    if config.vocab_size:
        total = config.vocab_size * d  # embedding table
    else:
        total = config.input_features * d + d  # input Dense
    total += d * config.num_outputs + config.num_outputs  # head
    if config.model == "gpt":
        per_layer = 4 * d * d + 2 * d * (4 * d) + 2 * d  # qkv + output, MLP, two LayerNorm scales
        return total + config.num_layers * per_layer + d  # + final LayerNorm
    return total + config.num_layers * cell_param_count(config.model, d, d)  # every layer reads D features


@renamed_arguments(width="features")
def model_config(model: str, spec: data_tasks.TaskSpec, features: int, num_layers: int = 2,
                 num_heads: int = 4) -> SequenceModelConfig:
    """The config of ``model`` for a task: the GPT at ``features``, a recurrent model at the matched width."""
    io = dict(vocab_size=spec.vocab_size, input_features=max(spec.input_features, 1),
              num_outputs=spec.num_outputs)
    gpt = SequenceModelConfig("gpt", features, num_layers, num_heads, max_len=spec.seq_len, **io)
    if model == "gpt":
        return gpt
    if model not in CELLS:
        raise ValueError(f"model_config: model={model!r}, expected one of {list(MODELS)}")
    rnn = SequenceModelConfig(model, features, num_layers, **io)
    width = registry.matched_width(lambda w: param_count(dataclasses.replace(rnn, features=w)), param_count(gpt),
                                   multiple=4, max_width=4096)
    return dataclasses.replace(rnn, features=width)


# ----------------------------------------------------------------------------
# training and evaluation


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Train one model on one task at one length; print params, metric and seconds."""

    task: tyro.conf.Positional[TaskName]
    """adding | copy | selective-copy | recall (see zoo.data.long_range)."""
    model: ModelName = "lstm"
    """The backbone: rnn (SimpleRNN), lstm, gru, mingru or gpt."""
    length: int = 64
    """T, the task's distance (adding: the sequence length; the others add their answer positions)."""
    steps: int = 400
    """Optimizer steps, each on a fresh batch."""
    batch_size: int = 32
    """Examples per step (and per evaluation batch)."""
    features: int = 32
    """The GPT's width (was --width); a recurrent model gets the width that matches the GPT's parameter count."""
    layers: int = 2
    """Layers of the backbone (recurrent layers or Transformer blocks)."""
    heads: int = 4
    """Attention heads of the GPT."""
    lr: float = 3e-3
    """Peak learning rate (AdamW; warmup over 5% of the steps, cosine decay to lr/10)."""
    seed: int = 0
    """Parameters, training batches (seed, 0, step) and evaluation batches (seed, 1, i)."""
    eval_size: int = 512
    """Held-out examples to evaluate on (rounded up to whole batches)."""

    def resolved(self) -> RunConfig:
        def bad(flag, value, expected):
            raise ValueError(f"--{flag}={value!r}, expected {expected}")

        if self.task not in TASKS:
            bad("task", self.task, f"one of {list(TASKS)}")
        if self.model not in MODELS:
            bad("model", self.model, f"one of {list(MODELS)}")
        for flag in ("steps", "batch_size", "features", "layers", "heads", "eval_size"):
            if getattr(self, flag) < 1:
                bad(flag.replace("_", "-"), getattr(self, flag), "a positive int")
        if not self.lr > 0:
            bad("lr", self.lr, "a positive float")
        if self.seed < 0:
            bad("seed", self.seed, "a non-negative int")
        data_tasks.task_spec(self.task, self.length)  # a bad length names the generator's argument
        return self


def _loss_terms(outputs: Array, targets: Array, mask: Array, kind: str) -> tuple[Array, Array]:
    """Per-position loss (B, L) in float32 and the float mask (B, L)."""
    w = mask.astype(jnp.float32)
    if kind == "regression":
        err = jnp.square(outputs[..., 0] - targets)  # (B, L)
    else:
        err = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), targets)  # (B, L)
    return err, w


def run_task(cfg: RunConfig, say=None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.task`` at ``cfg.length`` with ``cfg``'s budget; evaluate on held-out batches.

    Returns a dict: the task and model, widths and ``params``, the ``metric``
    (``accuracy`` or ``mse``) and its ``value``, ``baseline``, the per-token
    and per-example accuracy or the MSE, ``eval_loss``, ``train_loss``
    (mean over the last tenth of the steps), a subsampled ``loss_curve`` and
    ``seconds`` (wall time of the whole run, compilation included).
    """
    cfg = cfg.resolved()
    start = time.perf_counter()
    spec = data_tasks.task_spec(cfg.task, cfg.length)
    mcfg = model_config(cfg.model, spec, cfg.features, cfg.layers, cfg.heads)
    model = SequenceModel(mcfg)

    def batch(stream: int, i: int):
        b = data_tasks.make_batch(cfg.task, cfg.batch_size, cfg.length, (cfg.seed, stream, i))
        return jnp.asarray(b.inputs), jnp.asarray(b.targets), jnp.asarray(b.mask)

    def loss_fn(p, batch):
        inputs, targets, mask = batch
        err, w = _loss_terms(model.apply({"params": p}, inputs), targets, mask, spec.kind)
        return (err * w).sum() / w.sum()

    @jax.jit
    def eval_step(p, inputs, targets, mask):
        out = model.apply({"params": p}, inputs)  # (B, L, C)
        err, w = _loss_terms(out, targets, mask, spec.kind)
        if spec.kind == "regression":
            hit = jnp.zeros_like(w)
        else:
            hit = (jnp.argmax(out, axis=-1) == targets).astype(jnp.float32) * w  # (B, L)
        whole = (hit.sum(axis=1) == w.sum(axis=1)).astype(jnp.float32)  # (B,)
        return (err * w).sum(), hit.sum(), whole.sum(), w.sum()

    params = initial_params(mcfg, cfg.seed)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    budget = TrainConfig(batch_size=cfg.batch_size, max_steps=cfg.steps, learning_rate=cfg.lr,
                         min_learning_rate=cfg.lr / 10, warmup_steps=int(cfg.steps * WARMUP_FRACTION),
                         weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, beta2=0.99, seed=cfg.seed)
    before = time.perf_counter() - start
    params, losses, first_step_s = fit(loss_fn, params, lambda i: batch(0, i), budget)
    train_s = time.perf_counter() - start

    n_eval = -(-cfg.eval_size // cfg.batch_size)
    sums = np.zeros(4)
    for i in range(n_eval):
        sums += np.asarray(jax.device_get(eval_step(params, *batch(1, i))), np.float64)
    err_sum, hits, wholes, scored = sums
    examples = n_eval * cfg.batch_size
    result: dict[str, Any] = dict(
        task=cfg.task, model=cfg.model, label=LABELS[cfg.model], length=cfg.length, seq_len=spec.seq_len,
        params=n_params, features=mcfg.features, layers=mcfg.num_layers,
        heads=mcfg.num_heads if cfg.model == "gpt" else None,
        metric=spec.metric, baseline=spec.baseline, baseline_note=spec.baseline_note,
        eval_loss=err_sum / scored, eval_examples=examples,
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
        train_loss=float(losses[-max(1, cfg.steps // 10):].mean()),
        loss_curve=[[int(s), float(losses[s])] for s in np.unique(np.linspace(0, cfg.steps - 1, 50).astype(int))],
        finite=bool(np.isfinite(losses).all()),
    )
    if spec.metric == "mse":
        result.update(value=err_sum / scored, mse=err_sum / scored)
    else:
        result.update(value=hits / scored, accuracy=hits / scored, example_accuracy=wholes / examples)
    result.update(seconds=time.perf_counter() - start, first_step_seconds=before + first_step_s, train_seconds=train_s)
    if say is not None:
        say(format_result(result))
    return result


def _features(r: dict[str, Any]) -> int:
    return r["features"] if "features" in r else r["width"]  # results of zoo 0.1 say width


def format_metric(metric: str, value: float) -> str:
    return f"{100 * value:.1f}%" if metric == "accuracy" else f"{value:.4f}"


def format_result(r: dict[str, Any]) -> str:
    """The one-line summary of a run."""
    shape = f"{r['layers']} x {_features(r)}" + (f" x {r['heads']} heads" if r.get("heads") else "")
    metric = f"{r['metric']} {format_metric(r['metric'], r['value'])}"
    if r["metric"] == "accuracy":
        metric += f" (whole examples {format_metric('accuracy', r['example_accuracy'])})"
    metric += f", baseline {format_metric(r['metric'], r['baseline'])}"
    return (f"{r['task']} T={r['length']} (L={r['seq_len']}) {r['label']} {shape}: {r['params']:,} params; "
            f"{metric}; train loss {r['train_loss']:.4f}; {r['steps']} steps x {r['batch_size']} "
            f"in {r['seconds']:.1f} s")


# ----------------------------------------------------------------------------
# the sweep

DEFAULT_LENGTHS = (16, 64, 128)
QUICK = dict(models=("lstm", "gpt"), lengths=(16,), steps=15, batch_size=8, features=16, heads=2, eval_size=16)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Run tasks x models x lengths on one budget; print a Markdown table; write OUT/tasks.{json,md,png}."""

    tasks: tuple[TaskName, ...] = TASKS
    """Tasks to run."""
    models: tuple[ModelName, ...] | None = None
    """Models to run (default all five; with --quick lstm gpt)."""
    lengths: tuple[int, ...] | None = None
    """Distances T (default 16 64 128; with --quick 16)."""
    steps: int | None = None
    """Optimizer steps of every run (default 400; with --quick 15)."""
    batch_size: int | None = None
    """Examples per step (default 32; with --quick 8)."""
    features: int | None = None
    """The GPT's width (was --width); recurrent widths match its parameter count (default 32; with --quick 16)."""
    layers: int = 2
    """Layers of every backbone."""
    heads: int | None = None
    """Attention heads of the GPT (default 4; with --quick 2)."""
    lr: float = 3e-3
    """Peak learning rate of every run."""
    seed: int = 0
    """Seed of every run."""
    eval_size: int | None = None
    """Held-out examples per run (default 512; with --quick 16)."""
    out: Path = Path("runs/tasks")
    """Directory for tasks.json, tasks.md and tasks.png."""
    quick: bool = False
    """A smoke run (~35 s): LSTM and GPT only, tiny, one short length, 15 steps (explicit flags win)."""

    def resolved(self) -> SweepConfig:
        """The config with every None replaced by its default (the --quick one with --quick), checked."""
        if not self.tasks:
            raise ValueError("--tasks: name at least one task")
        base = RunConfig("adding")
        defaults = dict(models=MODELS, lengths=DEFAULT_LENGTHS, steps=base.steps, batch_size=base.batch_size,
                        features=base.features, heads=base.heads, eval_size=base.eval_size)
        if self.quick:
            defaults.update(QUICK)
        c = dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        if not c.models:
            raise ValueError("--models: name at least one model")
        if not c.lengths or any(t < 1 for t in c.lengths):
            raise ValueError(f"--lengths={c.lengths!r}, expected one or more positive ints")
        for run in c.runs():
            run.resolved()
        return c

    def runs(self) -> list[RunConfig]:
        """The runs of the sweep (of the resolved config)."""
        return [RunConfig(task, model=model, length=length, steps=self.steps, batch_size=self.batch_size,
                          features=self.features, layers=self.layers, heads=self.heads, lr=self.lr, seed=self.seed,
                          eval_size=self.eval_size)
                for task in self.tasks for model in self.models for length in self.lengths]


def run_sweep(cfg: SweepConfig, command: str | None = None) -> dict[str, Any]:
    """Run every (task, model, length) of ``cfg``; return the results.

    ``command``: the command line to record with the results (``zoo tasks sweep ...``).
    """
    c = cfg.resolved()
    runs = c.runs()
    start = time.perf_counter()
    rows = []
    for i, run in enumerate(runs):
        results.say(f"[{i + 1}/{len(runs)}] {run.task} T={run.length} {run.model}")
        rows.append(run_task(run, say=lambda line: results.say("   " + line)))
    return {
        "config": results.config_json(c),
        "budget": {"steps": c.steps, "batch_size": c.batch_size, "lr": c.lr, "min_lr": c.lr / 10,
                   "warmup_steps": int(c.steps * WARMUP_FRACTION), "weight_decay": WEIGHT_DECAY,
                   "grad_clip": GRAD_CLIP, "eval_examples": rows[0]["eval_examples"], "seed": c.seed},
        "date": results.utc_now(),
        "environment": results.environment(),
        "seconds": time.perf_counter() - start,
        "rows": rows,
        "command": command,
    }


def _grid(result: dict[str, Any]):
    """(tasks, models, lengths) in the order run, and (task, model, length) -> row."""
    rows = result["rows"]
    order = lambda key: list(dict.fromkeys(r[key] for r in rows))  # noqa: E731
    return order("task"), order("model"), sorted(set(r["length"] for r in rows)), {
        (r["task"], r["model"], r["length"]): r for r in rows}


def render(result: dict[str, Any], images: str | None = "") -> str:
    """The sweep as Markdown: a header, then rows task + model, columns the lengths T."""
    tasks, models, lengths, cell = _grid(result)
    b = result["budget"]
    lines = results.header(
        "**Long-range tasks: held-out accuracy (MSE for adding) against the distance T**", result["environment"],
        f"- budget, the same for every run: {b['steps']} AdamW steps x {b['batch_size']} fresh examples, "
        f"lr {b['lr']:g} (warmup {b['warmup_steps']} steps, cosine to {b['min_lr']:g}), clip {b['grad_clip']:g}, "
        f"weight decay {b['weight_decay']:g}, seed {b['seed']}; evaluation on {b['eval_examples']} held-out examples",
        "- models: the GPT's width is the reference; recurrent widths are matched to its parameter count "
        "(input and head layers included)",
        date=f"{result['date']}; the whole sweep took {result['seconds']:.0f} s", command=result.get("command"),
        versions=False)
    lines += [""] + results.image("metric against length", images, "tasks.png")
    table = []
    for task in tasks:
        any_row = next(r for (t, _, _), r in cell.items() if t == task)
        better = "higher" if any_row["metric"] == "accuracy" else "lower"
        name = f"{task} ({any_row['metric']}, {better} is better)"
        table.append([name, "baseline", "—", *[format_metric(any_row["metric"], any_row["baseline"])] * len(lengths),
                      "—"])
        for model in models:
            got = [cell.get((task, model, t)) for t in lengths]
            r = next(x for x in got if x is not None)
            shape = f"{r['layers']} x {_features(r)}" + (f" x {r['heads']}h" if r.get("heads") else "")
            table.append([name, f"{r['label']} ({shape})", f"{r['params']:,}",
                          *["—" if x is None else format_metric(x["metric"], x["value"]) for x in got],
                          f"{sum(x['seconds'] for x in got if x is not None):.0f}"])
    lines.append(results.markdown_table(["task", "model", "params", *[f"T={t}" for t in lengths], "seconds"], table,
                                        align="lll" + "r" * (len(lengths) + 1)))
    lines += ["", "With a fixed small budget some models stay at the baseline at the longer lengths; "
              "that is what the sweep measures. One seed per cell."]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any]) -> dict[str, Any]:
    """Metric against length: one panel per task, one line per model, the baseline dashed."""
    from zoo.plots import subplots

    tasks, models, lengths, cell = _grid(result)
    fig, axes = subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        any_row = next(r for (t, _, _), r in cell.items() if t == task)
        for model in models:
            pts = [(t, cell[(task, model, t)]["value"]) for t in lengths if (task, model, t) in cell]
            if pts:
                ax.plot(*zip(*pts), "o-", label=LABELS[model])
        ax.axhline(any_row["baseline"], color="gray", ls="--", lw=1, label="baseline")
        if len(lengths) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.set_xlabel("distance T")
        if any_row["metric"] == "accuracy":
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("held-out accuracy (higher is better)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_ylabel("held-out MSE (lower is better)")
        ax.set_title(task)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return {"": fig}


# zoo 0.1 called the width ``width``; the old keyword warns for one release (the models say ``features``)
for _cls in (SequenceModelConfig, RunConfig, SweepConfig):
    _cls.__init__ = renamed_arguments(width="features")(_cls.__init__)

# ----------------------------------------------------------------------------
# commands


RUN_HELP = (
    "``zoo tasks run TASK --model M --length T [...]``: train and evaluate one model; print the result line.\n\n"
    "Every model is sized to the GPT's parameter count at --features and trained on the same budget; "
    "see 'zoo tasks sweep --help' and zoo/data/long_range.py for the tasks, baselines and the recipe."
)
RENAMED = {"--width": "--features"}  # zoo 0.1's name, for one release
RUN = Experiment(RunConfig, lambda cfg, command: run_task(cfg), lambda result, images=None: format_result(result) + "\n",
                 description=RUN_HELP, renamed=RENAMED)
SWEEP = Experiment(SweepConfig, run_sweep, render, stem="tasks", plots=plots, description=__doc__, print_images=True,
                   renamed=RENAMED)


def run_main(argv: Sequence[str], prog: str = "zoo tasks run") -> int:
    """``zoo tasks run TASK --model M --length T [...]``: train and evaluate one model; print the result line."""
    return harness_main(RUN, argv, prog)


def sweep_main(argv: Sequence[str], prog: str = "zoo tasks sweep") -> int:
    """``zoo tasks sweep [...]``: run the sweep, print the Markdown table, write OUT/tasks.{json,md,png}."""
    return harness_main(SWEEP, argv, prog)
