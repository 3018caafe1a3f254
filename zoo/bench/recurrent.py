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
``repeats`` calls; the method (ahead-of-time compilation excluded and
reported separately, warm-up calls, ``jax.block_until_ready`` around every
timed call, inputs rotated among pre-generated arrays) is that of
:mod:`zoo.bench.timing`.

Implementations: zoo's ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``
(``reset_after=True``), ``MinGRUCell`` and ``MinLSTMCell`` under
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
from typing import Any, Callable, Literal, Sequence

import flax.linen as nn
import jax
import numpy as np
import tyro
from tqdm import tqdm

import zoo
from zoo.bench import timing
from zoo.bench.timing import Timing
from zoo.commands.common import parse_flags

# --quick: tiny shapes, so a full run takes seconds (tests, CI)
QUICK = dict(batch=4, seq_len=16, input_size=32, hidden=32, repeats=2, warmup=1)

# Above this share of the CPU time used by other processes, the report says its timings are unreliable.
MAX_OTHER_LOAD = 0.05

CellName = Literal["simple_rnn", "lstm", "gru", "min_gru", "min_gru_seq", "min_lstm", "min_lstm_seq"]
ALL_CELLS: tuple[CellName, ...] = (
    "simple_rnn", "lstm", "gru", "min_gru", "min_gru_seq", "min_lstm", "min_lstm_seq",
)


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
    """Cell types to run. flax and torch rows exist for simple_rnn, lstm and gru."""
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
        cfg = self
        if self.quick:
            cfg = dataclasses.replace(self, **QUICK)
        for name in ("batch", "seq_len", "input_size", "hidden", "repeats", "num_inputs"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
        if cfg.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {cfg.warmup}")
        if not cfg.cells:
            raise ValueError("--cells: name at least one cell")
        return cfg

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len


# ----------------------------------------------------------------------------
# implementations

# cell type -> (row name, module factory(hidden)); flax/torch only where they exist
ZOO_CELLS: dict[str, tuple[str, Callable[[int], nn.Module]]] = {
    "simple_rnn": ("zoo SimpleRNNCell", lambda h: zoo.SimpleRNNCell(features=h)),
    "lstm": ("zoo LSTMCell", lambda h: zoo.LSTMCell(features=h)),
    "gru": ("zoo GRUCell", lambda h: zoo.GRUCell(features=h, reset_after=True)),
    "min_gru": ("zoo MinGRUCell (associative)", lambda h: zoo.MinGRUCell(features=h, method="associative")),
    "min_gru_seq": ("zoo MinGRUCell (sequential)", lambda h: zoo.MinGRUCell(features=h, method="sequential")),
    "min_lstm": ("zoo MinLSTMCell (associative)", lambda h: zoo.MinLSTMCell(features=h, method="associative")),
    "min_lstm_seq": ("zoo MinLSTMCell (sequential)", lambda h: zoo.MinLSTMCell(features=h, method="sequential")),
}
FLAX_CELLS: dict[str, tuple[str, Callable[[int], nn.Module]]] = {
    "simple_rnn": ("flax.linen SimpleCell", lambda h: nn.SimpleCell(features=h)),
    "lstm": ("flax.linen LSTMCell", lambda h: nn.LSTMCell(features=h)),
    "gru": ("flax.linen GRUCell", lambda h: nn.GRUCell(features=h)),
}
TORCH_CELLS: dict[str, tuple[str, str]] = {
    "simple_rnn": ("torch nn.RNN", "RNN"),
    "lstm": ("torch nn.LSTM", "LSTM"),
    "gru": ("torch nn.GRU", "GRU"),
}


@dataclasses.dataclass
class Row:
    """One implementation's measurements."""

    name: str
    family: str  # "zoo" | "flax" | "torch"
    cell: str
    device: str
    fwd: Timing
    fwd_bwd: Timing
    fwd_bwd_vs_torch: float | None = None
    fwd_bwd_vs_flax: float | None = None


def measure_jax(module: nn.Module, cfg: Config, xs: Sequence[jax.Array]) -> tuple[Timing, Timing]:
    """Forward and forward+backward timings of ``module.apply(params, x)`` (x: (B, T, in))."""
    params = module.init(jax.random.key(cfg.seed), xs[0])

    def forward(params, x):
        return module.apply(params, x)

    def loss(params, x):
        return module.apply(params, x).sum()

    fwd, fwd_compile = timing.compile_jax(forward, params, xs[0])
    fwd_bwd, bwd_compile = timing.compile_jax(jax.grad(loss, argnums=(0, 1)), params, xs[0])
    inputs = [(params, x) for x in xs]
    kw = dict(repeats=cfg.repeats, warmup=cfg.warmup)
    return (
        timing.time_calls(fwd, inputs, compile_s=fwd_compile, **kw),
        timing.time_calls(fwd_bwd, inputs, compile_s=bwd_compile, **kw),
    )


def measure_torch(kind: str, cfg: Config, xs: Sequence[np.ndarray], device: str) -> tuple[Timing, Timing]:
    """Forward (no_grad) and forward+backward timings of ``torch.nn.<kind>(batch_first=True)``."""
    import torch  # optional dependency: imported only when torch rows run

    torch.manual_seed(cfg.seed)
    module = getattr(torch.nn, kind)(cfg.input_size, cfg.hidden, batch_first=True).to(device)
    inputs = [(torch.from_numpy(x).to(device),) for x in xs]

    def sync(_):
        if device != "cpu":
            torch.cuda.synchronize()

    def forward(x):
        with torch.no_grad():
            return module(x)[0]

    def forward_backward(x):
        module.zero_grad(set_to_none=True)
        x = x.detach().requires_grad_(True)
        y, _ = module(x)
        y.sum().backward()
        return x.grad

    kw = dict(repeats=cfg.repeats, warmup=cfg.warmup, sync=sync)
    return timing.time_calls(forward, inputs, **kw), timing.time_calls(forward_backward, inputs, **kw)


def _torch_device(jax_platform: str) -> str:
    import torch

    return "cuda" if jax_platform == "gpu" and torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------
# running and reporting


def run(cfg: Config, command: str) -> tuple[dict[str, Any], str]:
    """Run the benchmark; return (JSON-ready results with all raw timings, Markdown report)."""
    cfg = cfg.resolved()
    env = timing.environment()
    notes: list[str] = []
    threads = env["threads"]
    other_load = timing.OtherLoad()

    torch_device = None
    if cfg.torch and not timing.torch_available():
        notes.append("torch is not installed: its rows are skipped.")
    elif cfg.torch:
        import torch

        torch.set_num_threads(threads)
        torch_device = _torch_device(env["jax_platform"])
        env["torch_device"] = torch_device
        env["torch_threads"] = torch.get_num_threads()
    else:
        notes.append("torch rows skipped (--no-torch).")

    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.batch, cfg.seq_len, cfg.input_size)
    host_xs = [rng.standard_normal(shape, np.float32) for _ in range(cfg.num_inputs)]
    device = jax.devices()[0]
    xs = [jax.device_put(x, device) for x in host_xs]

    # (row name, family, cell type, measure() -> (fwd, fwd_bwd)), grouped by cell type
    plan: list[tuple[str, str, str, Callable[[], tuple[Timing, Timing]]]] = []
    for cell in cfg.cells:
        name, make = ZOO_CELLS[cell]
        plan.append((name, "zoo", cell, lambda m=make: measure_jax(zoo.RNN(m(cfg.hidden)), cfg, xs)))
        if cfg.flax and cell in FLAX_CELLS:
            name, make = FLAX_CELLS[cell]
            plan.append((name, "flax", cell, lambda m=make: measure_jax(nn.RNN(m(cfg.hidden)), cfg, xs)))
        if torch_device and cell in TORCH_CELLS:
            name, kind = TORCH_CELLS[cell]
            plan.append((name, "torch", cell, lambda k=kind: measure_torch(k, cfg, host_xs, torch_device)))

    rows: list[Row] = []
    bar = tqdm(plan, desc="bench recurrent", unit="impl", file=sys.stderr, disable=not cfg.progress)
    for name, family, cell, measure in bar:
        bar.set_postfix_str(name)
        fwd, fwd_bwd = measure()
        where = torch_device if family == "torch" else str(device.platform)
        rows.append(Row(name, family, cell, where, fwd, fwd_bwd))
    bar.close()

    _add_ratios(rows)
    env["other_processes_cpu_share"] = other = other_load.fraction()
    notes += timing.other_load_notes(other, MAX_OTHER_LOAD)
    if torch_device and (torch_device == "cpu") != (env["jax_platform"] == "cpu"):
        notes.append(
            f"torch ran on {torch_device}, JAX on {env['jax_platform']}: ratios vs torch mix devices."
        )
    if any(c.startswith("min_") for c in cfg.cells):
        notes.append("minGRU and minLSTM have no flax.linen or torch counterpart.")
    data = {
        "benchmark": "recurrent",
        "command": command,
        "date": timing.utc_now(),
        "environment": env,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
        "tokens_per_call": cfg.tokens,
        "notes": notes,
        "rows": [_row_json(r, cfg.tokens) for r in rows],
    }
    return data, render_markdown(data, rows, cfg)


def _add_ratios(rows: list[Row]) -> None:
    """fwd+bwd throughput relative to torch and flax rows of the same cell type (>1: faster)."""
    by_key = {(r.family, r.cell): r for r in rows}
    for r in rows:
        for family, attr in (("torch", "fwd_bwd_vs_torch"), ("flax", "fwd_bwd_vs_flax")):
            ref = by_key.get((family, r.cell))
            if ref is not None and r.family != family and not (family == "flax" and r.family == "torch"):
                setattr(r, attr, ref.fwd_bwd.median_s / r.fwd_bwd.median_s)


def _row_json(r: Row, tokens: int) -> dict[str, Any]:
    return {
        "name": r.name,
        "family": r.family,
        "cell": r.cell,
        "device": r.device,
        "fwd": r.fwd.to_json(tokens),
        "fwd_bwd": r.fwd_bwd.to_json(tokens),
        "fwd_bwd_vs_torch": r.fwd_bwd_vs_torch,
        "fwd_bwd_vs_flax": r.fwd_bwd_vs_flax,
    }


def _compile(r: Row) -> str:
    if r.fwd.compile_s is None:
        return "—"
    return f"{r.fwd.compile_s:.2f} / {r.fwd_bwd.compile_s:.2f}"


def render_markdown(data: dict[str, Any], rows: Sequence[Row], cfg: Config) -> str:
    """The header (device, versions, threads, shapes, date, command), the table, then method and notes."""
    env = data["environment"]
    header = [
        "**Recurrent layers: tokens/s** (higher is better)",
        "",
        timing.device_line(env),
        timing.versions_line(env),
        f"- shapes: batch {cfg.batch} × seq {cfg.seq_len}, input {cfg.input_size} → hidden {cfg.hidden}, "
        "float32, one layer, one direction",
        f"- date: {data['date']}",
        f"- command: `{data['command']}`",
    ]
    headers = [
        "implementation", "fwd tokens/s", "fwd+bwd tokens/s", "fwd+bwd vs torch", "fwd+bwd vs flax",
        "fwd ms (min–max)", "fwd+bwd ms (min–max)", "compile s (fwd / fwd+bwd)",
    ]
    body = [
        [
            r.name,
            timing.format_rate(r.fwd.rate(cfg.tokens)),
            timing.format_rate(r.fwd_bwd.rate(cfg.tokens)),
            timing.format_ratio(r.fwd_bwd_vs_torch), timing.format_ratio(r.fwd_bwd_vs_flax),
            timing.format_ms(r.fwd), timing.format_ms(r.fwd_bwd), _compile(r),
        ]
        for r in rows
    ]
    method = (
        f"Method: tokens/s = {cfg.batch}×{cfg.seq_len} tokens / median of {cfg.repeats} timed calls, after "
        f"ahead-of-time compilation (timed separately) and {cfg.warmup} warm-up call(s); "
        "`jax.block_until_ready` around every call; inputs rotate among "
        f"{cfg.num_inputs} pre-generated arrays. fwd returns the outputs; fwd+bwd is the gradient of "
        "`outputs.sum()` w.r.t. parameters and inputs (torch: `y.sum().backward()`, forward under "
        "`no_grad`). Ratios: fwd+bwd throughput over that of torch / flax for the same cell type."
    )
    parts = ["\n".join(header), timing.markdown_table(headers, body), method]
    if data["notes"]:
        parts.append("Notes: " + " ".join(data["notes"]))
    return "\n\n".join(parts) + "\n"


def parse_config(argv: Sequence[str], prog: str = "zoo bench recurrent") -> Config:
    """Parse flags into a :class:`Config` with tyro (every flag has --help text)."""
    return parse_flags(Config, args=list(argv), prog=prog)


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench recurrent") -> int:
    """``zoo bench recurrent``: run, print the Markdown report, write files with --out."""
    return timing.bench_main(argv, prog, parse_config, run, "recurrent")
