"""Run metrics: a JSON-lines log, the loss plot, and the matmul peak used for MFU.

``RUN_DIR/metrics.jsonl`` holds one JSON object per line, each with ``step``
(optimizer steps done) and some of:

    train_loss       mean training loss over the steps since the previous line
    lr               learning rate of the last of those steps
    grad_norm        global gradient norm (before clipping) of that step
    tokens_per_s     tokens trained on per second of wall time since the previous line
    mfu              model FLOPs utilisation: flops_per_token * tokens_per_s / peak FLOP/s
    elapsed_s        wall time since train() started
    nonfinite_steps  steps skipped so far for a NaN/inf loss or gradient
    val_loss, val_ppl, eval_train_loss, eval_train_ppl   evaluation lines

Non-finite values are written as ``null`` (strict JSON).

MFU needs the hardware's peak: :func:`peak_flops` times large float32
matmuls on the default device once and caches the result (FLOP/s) in
``$ZOO_CACHE_DIR`` (else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``),
keyed by device kind and jax version. It is a measured peak, not the
datasheet's: MFU is relative to what this JAX build reaches on a matmul.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LOSS_PLOT",
    "METRICS_FILE",
    "append_metrics",
    "cache_dir",
    "measure_matmul_flops",
    "measure_memory_bandwidth",
    "peak_flops",
    "plot_losses",
    "read_metrics",
    "records_with",
    "truncate_metrics",
]

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"


# -- the JSON-lines log ------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic, jax.Array)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` (must have 'step') as one line of ``run_dir/metrics.jsonl``.

    Examples:
      >>> zoo.train.append_metrics("run", {"step": 10, "train_loss": 2.5})
      >>> zoo.train.append_metrics("run", {"step": 20, "train_loss": 2.1, "val_loss": 2.3})
      >>> zoo.train.read_metrics("run")[-1]
      {'step': 20, 'train_loss': 2.1, 'val_loss': 2.3}
    """
    if "step" not in record:
        raise ValueError(f"append_metrics: record must have a 'step', got keys {sorted(record)}")
    path = Path(run_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({k: _jsonable(v) for k, v in record.items()}, allow_nan=False)
    with path.open("a") as f:
        f.write(line + "\n")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of ``run_dir/metrics.jsonl`` (empty if there is none); skips a torn last line.

    Examples:
      >>> zoo.train.read_metrics("no-run-yet")
      []
      >>> zoo.train.append_metrics("run", {"step": 1, "train_loss": 5.5})
      >>> zoo.train.read_metrics("run")
      [{'step': 1, 'train_loss': 5.5}]
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # a run killed while writing its last line
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e})") from e
    return records


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> None:
    """Drop the records after ``step`` (a run resumed from an older checkpoint logs them again)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)


def plot_losses(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/loss.png``: train and validation loss against the step. Returns its path.

    Examples:
      >>> for step, loss in ((10, 3.0), (20, 2.5), (30, 2.2)):
      ...     zoo.train.append_metrics("run", {"step": step, "train_loss": loss, "val_loss": loss + 0.1})
      ...
      >>> zoo.train.plot_losses("run").name
      'loss.png'
    """
    from zoo.plots import subplots

    records = read_metrics(run_dir)

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    for key, label, style in (
        ("train_loss", "train (running)", {"lw": 1, "alpha": 0.6}),
        ("eval_train_loss", "train (eval)", {"marker": "o", "ms": 3, "lw": 1.5}),
        ("val_loss", "validation", {"marker": "o", "ms": 3, "lw": 1.5}),
    ):
        steps, values = series(key)
        if steps:
            ax.plot(steps, values, label=label, **style)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no losses logged yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out = Path(run_dir) / LOSS_PLOT
    fig.savefig(out)
    return out


# -- peak FLOP/s for MFU ----------------------------------------------------------


def cache_dir() -> Path:
    """zoo's cache folder: $ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo."""
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo"


def measure_matmul_flops(
    device: jax.Device | None = None, *, n: int | None = None, budget_s: float = 0.5, dtype: Any = jnp.float32
) -> float:
    """FLOP/s of the best of a few (n, n) @ (n, n) matmuls in ``dtype`` on ``device`` (default: the first).

    n defaults to 1024 on CPU and 4096 on accelerators. Runs for about
    ``budget_s`` seconds after compilation.
    """
    device = device or jax.devices()[0]
    n = n or (1024 if device.platform == "cpu" else 4096)
    a = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype), device)
    matmul = jax.jit(lambda x, y: x @ y)
    best = _best_time(matmul, (a, a), budget_s)
    return 2 * n**3 / best


def measure_memory_bandwidth(
    device: jax.Device | None = None, *, nbytes: int | None = None, budget_s: float = 0.5
) -> float:
    """Bytes/s of the best of a few fused elementwise passes ``x * 2 + 1`` over float32 ``x`` on ``device``.

    Each pass reads ``nbytes`` and writes ``nbytes`` (counted: 2 * nbytes);
    nbytes defaults to 256 MiB on CPU and 1 GiB on accelerators, far beyond
    the caches. The roofline's slope, beside :func:`measure_matmul_flops`'s roof.
    """
    device = device or jax.devices()[0]
    nbytes = nbytes or (2**28 if device.platform == "cpu" else 2**30)
    x = jax.device_put(jnp.ones((nbytes // 4,), jnp.float32), device)
    best = _best_time(jax.jit(lambda v: v * 2.0 + 1.0), (x,), budget_s)
    return 2 * (nbytes // 4) * 4 / best


def _best_time(fn, args, budget_s: float) -> float:
    """The fastest of at least 3 (at most 50, about ``budget_s`` seconds of) calls, after a warm-up call."""
    fn(*args).block_until_ready()  # compile and warm up
    best, start, runs = math.inf, time.perf_counter(), 0
    while runs < 3 or (time.perf_counter() - start < budget_s and runs < 50):
        t0 = time.perf_counter()
        fn(*args).block_until_ready()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def peak_flops(device: jax.Device | None = None, *, refresh: bool = False) -> float:
    """Measured matmul FLOP/s of one ``device`` (default: the first), cached on disk.

    The cache key is the platform, device kind and jax version; ``refresh``
    measures again. An unreadable cache is ignored (and rewritten).

    Examples:
      >>> flops = zoo.train.peak_flops()                    # measured once, then read from zoo's cache folder
      >>> flops > 1e8, flops == zoo.train.peak_flops()
      (True, True)
    """
    device = device or jax.devices()[0]
    key = f"{device.platform}|{device.device_kind}|jax {jax.__version__}"
    path = cache_dir() / "peak_flops.json"
    cache: dict[str, float] = {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not refresh and isinstance(cache.get(key), (int, float)) and cache[key] > 0:
        return float(cache[key])
    value = measure_matmul_flops(device)
    cache[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: measure again next time
    return value


def records_with(records: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The records that have a non-null ``key``."""
    return [r for r in records if r.get(key) is not None]
