"""Recurrent-layer throughput: zoo's cells beside flax.linen and PyTorch.

What is measured, per implementation, on one layer of ``hidden`` units
reading ``(batch, seq_len, input_size)`` float32 inputs:

* **fwd**: the outputs ``(batch, seq_len, hidden)`` of the whole sequence.
  JAX: ``jax.jit(lambda params, x: module.apply(params, x))``. PyTorch:
  ``module(x)[0]`` under ``torch.no_grad()``.
* **fwd+bwd**: the gradient of ``outputs.sum()`` with respect to the
  parameters *and* the inputs. JAX: ``jax.jit(jax.grad(loss, argnums=(0, 1)))``.
  PyTorch: ``y.sum().backward()`` with ``x.requires_grad``.

Throughput is ``batch * seq_len`` tokens divided by the median wall time of
``repeats`` calls, timed as :mod:`zoo.harness.timing` does.

Implementations: zoo's cells (:data:`zoo.layers.CELLS`: ``rnn``, ``lstm``,
``gru`` with ``reset_after=True``, ``mingru`` and ``minlstm``, the last two
also step by step: ``mingru_seq``, ``minlstm_seq``) under
:class:`zoo.RNN`; flax.linen's ``SimpleCell``, ``LSTMCell`` and ``GRUCell``
under ``nn.RNN``; and, when torch is installed, ``torch.nn.RNN``, ``LSTM`` and
``GRU`` (``batch_first=True``) with ``torch.set_num_threads`` set to the
cores JAX uses. Everything JAX runs on ``jax.devices()[0]``.

Run it as ``zoo bench recurrent [flags]`` (``--help`` lists them) or through
``benchmarks/recurrent.py``, which writes the published results.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, get_args

import flax.linen as nn
import jax
import numpy as np
from tqdm import tqdm

import zoo
from zoo.bench.analysis import make_cell
from zoo.harness import flags, results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.harness.timing import Timing, compile_jax, time_calls, torch_sync

# --quick: tiny shapes, so a full run takes seconds (tests, CI)
QUICK = dict(batch=4, seq_len=16, input_size=32, hidden=32, repeats=2, warmup=1)

CellName = Literal["rnn", "lstm", "gru", "mingru", "mingru_seq", "minlstm", "minlstm_seq"]
ALL_CELLS: tuple[CellName, ...] = get_args(CellName)


@dataclasses.dataclass(frozen=True)
class Config:
    """Forward and forward+backward tokens/s of recurrent layers: zoo vs flax.linen vs PyTorch.

    Prints a Markdown table (stdout) with a header naming the device,
    versions, shapes and command; with --out, also writes recurrent.json (all
    raw timings) and recurrent.md there.
    """

    batch: int = 32
    """Batch size B: sequences per call."""
    seq_len: int = 256
    """Sequence length T: steps per sequence. Tokens per call = B * T."""
    input_size: int = 256
    """Input features per step."""
    hidden: int = 256
    """Hidden units of the layer (one layer, one direction)."""
    cells: tuple[CellName, ...] = ALL_CELLS
    """Cell types to run. flax and torch rows exist for rnn, lstm and gru."""
    repeats: int = 10
    """Timed calls per measurement; the median is reported, min/max/quartiles kept."""
    warmup: int = 2
    """Untimed calls after compilation, before the timed ones."""
    num_inputs: int = 3
    """Pre-generated input arrays that consecutive calls rotate through."""
    flax: bool = True
    """Include flax.linen's own cells under nn.RNN."""
    torch: bool = True
    """Include torch.nn.RNN/LSTM/GRU (skipped with a note if torch is not installed)."""
    out: Path | None = None
    """Directory to write recurrent.json and recurrent.md into."""
    quick: bool = False
    """Smoke test: B=4, T=16, input and hidden 32, 2 repeats, 1 warm-up (overrides those flags)."""
    progress: bool = True
    """Show a progress bar on stderr."""
    seed: int = 0
    """Seed of the parameters and inputs."""

    def resolved(self) -> Config:
        """This config with ``--quick`` applied, after checking the values."""
        cfg = flags.quick(self, QUICK)
        flags.at_least(cfg, 1, "batch", "seq_len", "input_size", "hidden", "repeats", "num_inputs")
        flags.at_least(cfg, 0, "warmup")
        if not cfg.cells:
            raise ValueError("--cells: name at least one cell")
        return cfg


# ----------------------------------------------------------------------------
# implementations

# cell type -> row name of zoo's cell; flax's and torch's (row name, module) where they exist
ZOO_NAMES = {"rnn": "zoo SimpleRNNCell", "lstm": "zoo LSTMCell", "gru": "zoo GRUCell",
             "mingru": "zoo MinGRUCell (associative)", "mingru_seq": "zoo MinGRUCell (sequential)",
             "minlstm": "zoo MinLSTMCell (associative)", "minlstm_seq": "zoo MinLSTMCell (sequential)"}
FLAX_CELLS: dict[str, tuple[str, Callable[[int], nn.Module]]] = {
    "rnn": ("flax.linen SimpleCell", lambda h: nn.SimpleCell(features=h)),
    "lstm": ("flax.linen LSTMCell", lambda h: nn.LSTMCell(features=h)),
    "gru": ("flax.linen GRUCell", lambda h: nn.GRUCell(features=h)),
}
TORCH_CELLS = {"rnn": ("torch nn.RNN", "RNN"), "lstm": ("torch nn.LSTM", "LSTM"), "gru": ("torch nn.GRU", "GRU")}


def measure_jax(module: nn.Module, cfg: Config, xs: Sequence[jax.Array]) -> tuple[Timing, Timing]:
    """Forward and forward+backward timings of ``module.apply(params, x)`` (x: (B, T, in))."""
    params = jax.jit(module.init)(jax.random.key(cfg.seed), xs[0])  # eager, init compiles every op: 0.5 s a cell

    def forward(params, x):
        return module.apply(params, x)

    def loss(params, x):
        return module.apply(params, x).sum()

    fwd, fwd_compile = compile_jax(forward, params, xs[0])
    fwd_bwd, bwd_compile = compile_jax(jax.grad(loss, argnums=(0, 1)), params, xs[0])
    inputs = [(params, x) for x in xs]
    kw = dict(repeats=cfg.repeats, warmup=cfg.warmup)
    return (time_calls(fwd, inputs, compile_s=fwd_compile, **kw), time_calls(fwd_bwd, inputs, compile_s=bwd_compile,
                                                                             **kw))


def measure_torch(kind: str, cfg: Config, xs: Sequence[np.ndarray], device: str) -> tuple[Timing, Timing]:
    """Forward (no_grad) and forward+backward timings of ``torch.nn.<kind>(batch_first=True)``."""
    import torch  # optional dependency: imported only when torch rows run

    torch.manual_seed(cfg.seed)
    module = getattr(torch.nn, kind)(cfg.input_size, cfg.hidden, batch_first=True).to(device)
    inputs = [(torch.from_numpy(x).to(device),) for x in xs]

    def forward(x):
        with torch.no_grad():
            return module(x)[0]

    def forward_backward(x):
        module.zero_grad(set_to_none=True)
        x = x.detach().requires_grad_(True)
        y, _ = module(x)
        y.sum().backward()
        return x.grad

    kw = dict(repeats=cfg.repeats, warmup=cfg.warmup, sync=torch_sync(device))
    return time_calls(forward, inputs, **kw), time_calls(forward_backward, inputs, **kw)


# ----------------------------------------------------------------------------
# running and reporting


def run(cfg: Config, command: str) -> dict[str, Any]:
    """Run the benchmark; return the JSON-ready results with all raw timings."""
    cfg = cfg.resolved()
    env = results.environment()
    notes: list[str] = []
    other_load = results.OtherLoad()

    torch_device = None
    if cfg.torch and not results.torch_available():
        notes.append("torch is not installed: its rows are skipped.")
    elif cfg.torch:
        import torch

        torch.set_num_threads(env["threads"])
        env["torch_device"] = torch_device = results.torch_device(env["jax_platform"])
        env["torch_threads"] = torch.get_num_threads()
    else:
        notes.append("torch rows skipped (--no-torch).")

    rng = np.random.default_rng(cfg.seed)
    host_xs = [rng.standard_normal((cfg.batch, cfg.seq_len, cfg.input_size), np.float32)
               for _ in range(cfg.num_inputs)]
    device = jax.devices()[0]
    xs = [jax.device_put(x, device) for x in host_xs]

    # (row name, family, cell type, measure() -> (fwd, fwd_bwd)), grouped by cell type
    plan: list[tuple[str, str, str, Callable[[], tuple[Timing, Timing]]]] = []
    for cell in cfg.cells:
        plan.append((ZOO_NAMES[cell], "zoo", cell,
                     lambda c=cell: measure_jax(zoo.RNN(make_cell(c, cfg.hidden)), cfg, xs)))
        if cfg.flax and cell in FLAX_CELLS:
            name, make = FLAX_CELLS[cell]
            plan.append((name, "flax", cell, lambda m=make: measure_jax(nn.RNN(m(cfg.hidden)), cfg, xs)))
        if torch_device and cell in TORCH_CELLS:
            name, kind = TORCH_CELLS[cell]
            plan.append((name, "torch", cell, lambda k=kind: measure_torch(k, cfg, host_xs, torch_device)))

    tokens = cfg.batch * cfg.seq_len
    rows: list[dict[str, Any]] = []
    bar = tqdm(plan, desc="bench recurrent", unit="impl", file=sys.stderr, disable=not cfg.progress)
    for name, family, cell, measure in bar:
        bar.set_postfix_str(name)
        fwd, fwd_bwd = measure()
        rows.append(dict(name=name, family=family, cell=cell,
                         device=torch_device if family == "torch" else str(device.platform),
                         fwd=fwd.to_json(tokens), fwd_bwd=fwd_bwd.to_json(tokens)))
    bar.close()

    # fwd+bwd throughput relative to the torch and flax rows of the same cell type (>1: faster)
    by_key = {(r["family"], r["cell"]): r for r in rows}
    for r in rows:
        for family in ("torch", "flax"):
            ref = by_key.get((family, r["cell"]))
            mine = ref is not None and r["family"] != family and not (family == "flax" and r["family"] == "torch")
            r[f"fwd_bwd_vs_{family}"] = ref["fwd_bwd"]["median_s"] / r["fwd_bwd"]["median_s"] if mine else None
    env["other_processes_cpu_share"] = other = other_load.fraction()
    notes += results.other_load_notes(other) + results.device_mix_notes(env, "ratios vs torch")
    if any(c.startswith("min") for c in cfg.cells):
        notes.append("minGRU and minLSTM have no flax.linen or torch counterpart.")
    return {"benchmark": "recurrent", "command": command, "date": results.utc_now(), "environment": env,
            "config": results.config_json(cfg), "tokens_per_call": tokens, "notes": notes, "rows": rows}


def render(data: dict[str, Any], images: str | None = "") -> str:
    """The header (device, versions, threads, shapes, date, command), the table, then method and notes."""
    c, tokens = data["config"], data["tokens_per_call"]
    head = results.header(
        "**Recurrent layers: tokens/s** (higher is better)", data["environment"],
        f"- shapes: batch {c['batch']} × seq {c['seq_len']}, input {c['input_size']} → hidden {c['hidden']}, "
        "float32, one layer, one direction", date=data["date"], command=data["command"])
    headers = ["implementation", "fwd tokens/s", "fwd+bwd tokens/s", "fwd+bwd vs torch", "fwd+bwd vs flax",
               "fwd ms (min–max)", "fwd+bwd ms (min–max)", "compile s (fwd / fwd+bwd)"]
    body = []
    for r in data["rows"]:
        fwd, bwd = Timing.from_json(r["fwd"]), Timing.from_json(r["fwd_bwd"])
        compiled = "—" if fwd.compile_s is None else f"{fwd.compile_s:.2f} / {bwd.compile_s:.2f}"
        body.append([r["name"], results.format_rate(fwd.rate(tokens)), results.format_rate(bwd.rate(tokens)),
                     results.format_ratio(r["fwd_bwd_vs_torch"]), results.format_ratio(r["fwd_bwd_vs_flax"]),
                     results.format_ms(fwd), results.format_ms(bwd), compiled])
    method = (
        f"Method: tokens/s = {c['batch']}×{c['seq_len']} tokens / median of {c['repeats']} timed calls, after "
        f"ahead-of-time compilation (timed separately) and {c['warmup']} warm-up call(s); "
        "`jax.block_until_ready` around every call; inputs rotate among "
        f"{c['num_inputs']} pre-generated arrays. fwd returns the outputs; fwd+bwd is the gradient of "
        "`outputs.sum()` w.r.t. parameters and inputs (torch: `y.sum().backward()`, forward under "
        "`no_grad`). Ratios: fwd+bwd throughput over that of torch / flax for the same cell type."
    )
    return results.sections(head, results.markdown_table(headers, body), method, notes=data["notes"])


EXPERIMENT = Experiment(Config, run, render, stem="recurrent")


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench recurrent") -> int:
    """``zoo bench recurrent``: run, print the Markdown report, write files with --out."""
    return harness_main(EXPERIMENT, argv, prog)
