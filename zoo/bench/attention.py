"""Attention throughput and memory: zoo's kernels beside jax.nn and PyTorch.

What is measured, per implementation and sequence length T, on
self-attention over ``(batch, T, heads, head_dim)`` queries, keys and values
(causal by default, float32 by default):

* **fwd**: the attention output ``(batch, T, heads, head_dim)``.
  JAX: ``jax.jit(lambda q, k, v: attention(q, k, v))``. PyTorch: under
  ``torch.no_grad()``.
* **fwd+bwd**: the gradient of ``output.sum()`` with respect to q, k and v.
  JAX: ``jax.jit(jax.grad(loss, argnums=(0, 1, 2)))``. PyTorch:
  ``out.sum().backward()`` with q, k, v requiring gradients.
* **peak memory**: the high-water resident memory of the process that ran
  the measurement (``VmHWM``, :func:`zoo.harness.worker.peak_rss_kib`):
  Python, the runtime, the inputs, the compilation and the calls together. Each (implementation, T, mode) runs in
  a fresh worker process, so no figure carries over from a larger one; the
  JSON also keeps each worker's resident memory just before compilation
  (``baseline_rss_kib``). On a GPU, the device's own peak is reported too.

Throughput is ``batch * T`` tokens divided by the median wall time of the
timed calls; timed as :mod:`zoo.harness.timing` does, in worker processes
(:mod:`zoo.harness.worker`). When
the first warm-up call says ``--repeats`` calls would take longer than
``--budget-s``, fewer are timed (never fewer than 3).

Implementations: ``zoo.dot_product_attention`` with
``implementation='blockwise'`` (the FlashAttention kernel) and ``'xla'``
(dense logits); ``jax.nn.dot_product_attention(implementation=None)``; and,
when torch is installed, ``torch.nn.functional.scaled_dot_product_attention``
on ``(batch, heads, T, head_dim)`` with ``torch.set_num_threads`` set to the
cores JAX uses.

Memory safety: the dense implementations need ``batch * heads * T**2``
logits (34 GB at the default shapes and T=16384). Each worker runs under an
address-space limit (``RLIMIT_AS``, ``--mem-limit-gb``; default 75% of the
physical memory on CPU, none on GPU, where drivers reserve address space),
so an allocation beyond it fails inside the worker instead of exhausting
the machine; a dense configuration whose logits alone exceed the limit is
not started at all. Either way the table says ``OOM``; other failures say
``error`` or ``timeout`` (``--timeout-s``), with the message under the table.
XLA:CPU needs about 2 GB of address space to start its threads: a limit much
below that makes every worker fail (reported as OOM).

Run it as ``zoo bench attention [flags]`` (``--help`` lists them) or through
``benchmarks/attention.py``, which writes the published results.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import zoo
from zoo.harness import flags, results, worker
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.harness.timing import Timing, compile_jax, time_within_budget, torch_sync

# --quick: tiny shapes, so a full run takes seconds of work (plus a second or so per worker process)
QUICK = dict(batch=1, heads=2, head_dim=32, seq_lens=(64, 128), repeats=2, warmup=1)
WORKER = "zoo.bench.attention:measure"

ImplName = Literal["blockwise", "xla", "jax_nn", "torch"]
ALL_IMPLS: tuple[ImplName, ...] = ("blockwise", "xla", "jax_nn", "torch")
IMPL_LABELS = {"blockwise": "zoo blockwise", "xla": "zoo xla", "jax_nn": "jax.nn", "torch": "torch sdpa"}
# implementations that materialise the (batch, heads, T, T) logits
DENSE_IMPLS = ("xla", "jax_nn")
MODES = ("fwd", "fwd_bwd")
MODE_LABELS = {"fwd": "fwd", "fwd_bwd": "fwd+bwd"}

@dataclasses.dataclass(frozen=True)
class Config:
    """Forward and forward+backward tokens/s and peak memory of attention: zoo vs jax.nn vs PyTorch.

    Every (implementation, T, mode) runs in its own worker process, under a
    memory limit. Prints a Markdown table (stdout) with a header naming the
    device, versions, shapes and command; with --out, also writes
    attention-<device>.json (all raw timings) and attention-<device>.md there.
    """

    batch: int = 4
    """Batch size B. Tokens per call = B * T."""
    heads: int = 8
    """Attention heads N (queries, keys and values alike)."""
    head_dim: int = 64
    """Size H of each head."""
    seq_lens: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384)
    """Sequence lengths T to run (self-attention: T queries, T keys)."""
    causal: bool = True
    """Causal masking (is_causal=True everywhere)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of q, k, v (zoo's softmax runs in float32 regardless)."""
    implementations: tuple[ImplName, ...] = ALL_IMPLS
    """blockwise, xla: zoo.dot_product_attention; jax_nn: jax.nn.dot_product_attention; torch: sdpa."""
    repeats: int = 5
    """Timed calls per measurement (fewer if --budget-s says so); the median is reported."""
    warmup: int = 1
    """Untimed calls after compilation, before the timed ones (at least one is always made)."""
    budget_s: float = 300.0
    """Timed seconds per measurement, estimated from the first warm-up call; over it, fewer repeats (>= 3)."""
    num_inputs: int = 2
    """Pre-generated (q, k, v) triples that consecutive calls rotate through (all in the peak memory)."""
    mem_limit_gb: float | None = None
    """Address-space limit (RLIMIT_AS) of each worker, GiB. Default: 75% of physical memory on CPU,
    none on GPU. 0: no limit."""
    timeout_s: float = 1800.0
    """Seconds a worker may take (imports, compilation, every call) before it is killed."""
    out: Path | None = None
    """Directory to write attention-<device>.json and attention-<device>.md into."""
    quick: bool = False
    """Smoke test: B=1, 2 heads of 32, T in (64, 128), 2 repeats, 1 warm-up (overrides those flags)."""
    progress: bool = True
    """Show a progress bar on stderr."""
    seed: int = 0
    """Seed of the inputs."""

    def resolved(self) -> Config:
        """This config with ``--quick`` applied, after checking the values."""
        cfg = flags.quick(self, QUICK)
        flags.at_least(cfg, 1, "batch", "heads", "head_dim", "repeats", "num_inputs")
        flags.at_least(cfg, 0, "warmup")
        if not cfg.seq_lens or min(cfg.seq_lens) < 1:
            raise ValueError(f"--seq-lens: give lengths >= 1, got {cfg.seq_lens}")
        if not cfg.implementations:
            raise ValueError("--implementations: name at least one")
        if cfg.mem_limit_gb is not None and cfg.mem_limit_gb < 0:
            raise ValueError(f"--mem-limit-gb must be >= 0, got {cfg.mem_limit_gb}")
        if cfg.timeout_s <= 0 or cfg.budget_s <= 0:
            raise ValueError("--timeout-s and --budget-s must be > 0")
        return cfg

    def dense_bytes(self, seq_len: int) -> int:
        """Bytes of one (B, N, T, T) logits array: a lower bound on a dense implementation's needs."""
        return self.batch * self.heads * seq_len * seq_len * np.dtype(jnp.dtype(self.dtype)).itemsize


# ----------------------------------------------------------------------------
# the worker: one (implementation, T, mode) in a fresh process

def _attention_fn(impl: str, causal: bool):
    if impl == "jax_nn":
        return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=None)
    return lambda q, k, v: zoo.dot_product_attention(q, k, v, is_causal=causal, implementation=impl)


def _host_inputs(spec: dict[str, Any]) -> Iterator[tuple[np.ndarray, ...]]:
    """``num_inputs`` (q, k, v) triples, (B, T, N, H) float32, from the seed, one at a time.

    A generator, so that each triple's host copy can be freed once converted:
    the peak memory should count the inputs once, not twice.
    """
    rng = np.random.default_rng(spec["seed"])
    shape = (spec["batch"], spec["seq_len"], spec["heads"], spec["head_dim"])
    for _ in range(spec["num_inputs"]):
        yield tuple(rng.standard_normal(shape, np.float32) for _ in "qkv")


def _measure_jax(spec: dict[str, Any]) -> dict[str, Any]:
    device = jax.devices()[0]
    dtype = jnp.dtype(spec["dtype"])
    inputs = [
        tuple(jax.device_put(x.astype(dtype, copy=False), device) for x in triple)
        for triple in _host_inputs(spec)
    ]
    attention = _attention_fn(spec["impl"], spec["causal"])
    if spec["mode"] == "fwd":
        fn = attention
    else:
        fn = jax.grad(lambda q, k, v: attention(q, k, v).astype(jnp.float32).sum(), argnums=(0, 1, 2))
    baseline = worker.peak_rss_kib()
    compiled, compile_s = compile_jax(fn, *inputs[0])
    t, first_s = time_within_budget(compiled, inputs, repeats=spec["repeats"], warmup=spec["warmup"],
                                   budget_s=spec["budget_s"], compile_s=compile_s)
    return dict(timing=t, first_call_s=first_s, baseline_rss_kib=baseline,
                device_peak_bytes=worker.device_peak_bytes(device))


def _measure_torch(spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # optional dependency: imported only in torch workers

    torch.set_num_threads(spec["threads"])
    device = results.torch_device(spec["jax_platform"])
    dtype = getattr(torch, spec["dtype"])
    # (B, T, N, H) -> torch's (B, N, T, H), contiguous
    inputs = [
        tuple(torch.from_numpy(x).to(device=device, dtype=dtype).transpose(1, 2).contiguous() for x in triple)
        for triple in _host_inputs(spec)
    ]
    sdpa, causal = torch.nn.functional.scaled_dot_product_attention, spec["causal"]

    def forward(q, k, v):
        with torch.no_grad():
            return sdpa(q, k, v, is_causal=causal)

    def forward_backward(q, k, v):
        q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
        sdpa(q, k, v, is_causal=causal).float().sum().backward()
        return q.grad, k.grad, v.grad

    baseline = worker.peak_rss_kib()
    fn = forward if spec["mode"] == "fwd" else forward_backward
    t, first_s = time_within_budget(fn, inputs, repeats=spec["repeats"], warmup=spec["warmup"],
                                   budget_s=spec["budget_s"], sync=torch_sync(device))
    peak = torch.cuda.max_memory_allocated() if device != "cpu" else None
    return dict(timing=t, first_call_s=first_s, baseline_rss_kib=baseline, device_peak_bytes=peak,
                torch_device=device)


def _environment(spec: dict[str, Any]) -> dict[str, Any]:
    """results.environment(), plus torch's device and threads when torch rows will run."""
    env = results.environment()
    if spec.get("torch"):
        import torch

        torch.set_num_threads(env["threads"])
        env["torch_device"] = results.torch_device(env["jax_platform"])
        env["torch_threads"] = torch.get_num_threads()
    return env


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker: one measurement (``spec["mode"]`` "fwd" or "fwd_bwd"), or the environment ("env")."""
    if spec["mode"] == "env":
        return {"environment": _environment(spec)}
    measured = (_measure_torch if spec["impl"] == "torch" else _measure_jax)(spec)
    measured["timing"] = measured.pop("timing").to_json(spec["batch"] * spec["seq_len"])
    return measured


# ----------------------------------------------------------------------------
# the parent: spawn the workers, collect, report

RESULT_FIELDS = ("pid", "peak_rss_kib", "baseline_rss_kib", "device_peak_bytes", "first_call_s")


def _measurement(impl: str, seq_len: int, mode: str, result: dict[str, Any], tokens: int,
                 estimated: bool = False) -> dict[str, Any]:
    """One worker's result, an implementation at one T, forward or forward+backward (or its estimated OOM)."""
    return dict(impl=impl, seq_len=seq_len, mode=mode, status=result["status"], timing=result.get("timing"),
                error=result.get("error"), estimated=estimated, **{k: result.get(k) for k in RESULT_FIELDS},
                wall_s=result.get("process_wall_s"), impl_label=IMPL_LABELS[impl], tokens_per_call=tokens)


def _gb(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def run(cfg: Config, command: str) -> dict[str, Any]:
    """Run the benchmark; return the JSON-ready results with all raw timings."""
    cfg = cfg.resolved()
    other_load = results.OtherLoad()
    notes: list[str] = []
    impls = list(dict.fromkeys(cfg.implementations))
    if "torch" in impls and not results.torch_available():
        impls.remove("torch")
        notes.append("torch is not installed: its columns are skipped.")

    env = worker.environment(WORKER, {"mode": "env", "torch": "torch" in impls}, cfg.timeout_s)
    env["mem_limit_bytes"] = limit = worker.default_memory_limit(cfg.mem_limit_gb, env["jax_platform"])

    base = dict(
        batch=cfg.batch, heads=cfg.heads, head_dim=cfg.head_dim, causal=cfg.causal, dtype=cfg.dtype,
        repeats=cfg.repeats, warmup=cfg.warmup, budget_s=cfg.budget_s, num_inputs=cfg.num_inputs,
        seed=cfg.seed, threads=env["threads"], jax_platform=env["jax_platform"], mem_limit_bytes=limit,
    )
    plan = [(t, impl, mode) for t in cfg.seq_lens for impl in impls for mode in MODES]
    measurements: list[dict[str, Any]] = []
    bar = tqdm(plan, desc="bench attention", unit="worker", file=sys.stderr, disable=not cfg.progress)
    for seq_len, impl, mode in bar:
        bar.set_postfix_str(f"T={seq_len} {IMPL_LABELS[impl]} {MODE_LABELS[mode]}")
        need = cfg.dense_bytes(seq_len)
        if impl in DENSE_IMPLS and limit and need > limit:
            result, estimated = {"status": "oom", "error": f"OOM (estimated {_gb(need)} > limit)"}, True
        else:
            spec = dict(base, impl=impl, seq_len=seq_len, mode=mode)
            result, estimated = worker.spawn(WORKER, spec, cfg.timeout_s), False
        measurements.append(_measurement(impl, seq_len, mode, result, cfg.batch * seq_len, estimated))
    bar.close()

    env["other_processes_cpu_share"] = other = other_load.fraction()
    notes += results.other_load_notes(other) + results.device_mix_notes(env)
    return {"benchmark": "attention", "command": command, "date": results.utc_now(), "environment": env,
            "config": results.config_json(cfg), "parent_pid": os.getpid(), "notes": notes,
            "measurements": measurements}


# ----------------------------------------------------------------------------
# the report


def _status_cell(m: dict[str, Any] | None) -> str | None:
    """The table cell of a measurement that has no numbers (None if it has them)."""
    if m is None:
        return "—"
    if m["status"] == "ok":
        return None
    if m["estimated"]:
        return m["error"]
    return {"oom": "OOM", "timeout": "timeout"}.get(m["status"], "error")


def _rate(m: dict[str, Any] | None) -> float | None:
    ok = m is not None and m["status"] == "ok" and m["timing"]
    return Timing.from_json(m["timing"]).rate(m["tokens_per_call"]) if ok else None


def _peak_mb(m: dict[str, Any], on_device: bool) -> float | None:
    if on_device and m["device_peak_bytes"] is not None:
        return m["device_peak_bytes"] / 2**20
    return None if m["peak_rss_kib"] is None else m["peak_rss_kib"] / 1024


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """Throughput of ``a`` over that of ``b`` (>1: a is faster)."""
    ra, rb = _rate(a), _rate(b)
    return results.format_ratio(ra / rb if ra and rb else None)


def render(data: dict[str, Any], images: str | None = "") -> str:
    """The header, the summary table (a row per T), the detail table, then method and notes."""
    env, c, ms = data["environment"], data["config"], data["measurements"]
    impls = [i for i in dict.fromkeys(c["implementations"]) if any(m["impl"] == i for m in ms)]
    on_device = env["jax_platform"] != "cpu"
    get = {(m["impl"], m["seq_len"], m["mode"]): m for m in ms}.get
    limit = env.get("mem_limit_bytes")
    head = results.header(
        f"**{'Causal self-attention' if c['causal'] else 'Self-attention'}: tokens/s and peak memory** "
        "(tokens/s: higher is better)", env,
        f"- shapes: batch {c['batch']} × T × {c['heads']} heads × {c['head_dim']}, {c['dtype']}, "
        f"{'causal' if c['causal'] else 'not causal'}; T in {', '.join(map(str, c['seq_lens']))}",
        f"- memory limit per worker (RLIMIT_AS): {_gb(limit) if limit else 'none'}",
        date=data["date"], command=data["command"])
    peak = "device peak MB" if on_device else "peak MB"
    headers = ["T"]
    for impl in impls:
        label = IMPL_LABELS[impl]
        headers += [f"{label} fwd tok/s", f"{label} fwd+bwd tok/s", f"{label} {peak} fwd+bwd"]
    ratios = [("blockwise", "jax_nn", "fwd_bwd"), ("blockwise", "torch", "fwd")]
    ratios = [r for r in ratios if r[0] in impls and r[1] in impls]
    headers += [f"blockwise vs {IMPL_LABELS[b]} {MODE_LABELS[mode]}" for _, b, mode in ratios]

    summary, details = [], []
    for t in c["seq_lens"]:
        row = [f"{t:,}"]
        for impl in impls:
            fwd, bwd = get((impl, t, "fwd")), get((impl, t, "fwd_bwd"))
            row += [_status_cell(m) or results.format_rate(_rate(m)) for m in (fwd, bwd)]
            row.append("—" if _status_cell(bwd) else results.format_rate(_peak_mb(bwd, on_device)))
            details.append([f"{t:,}", IMPL_LABELS[impl], *_detail_cells(fwd, bwd, on_device)])
        row += [_ratio(get((a, t, mode)), get((b, t, mode))) for a, b, mode in ratios]
        summary.append(row)

    detail_headers = ["T", "implementation", "fwd ms (min–max)", "fwd+bwd ms (min–max)",
                      "compile s (fwd / fwd+bwd)", f"{peak} (fwd / fwd+bwd)"]
    cut = ""
    if c["repeats"] > 3:
        cut = f" (fewer, but at least 3, where they would take over {c['budget_s']:g} s)"
    method = (
        f"Method: tokens/s = {c['batch']}×T tokens / median of {c['repeats']} timed calls{cut}, after "
        f"ahead-of-time compilation (timed separately) and {max(c['warmup'], 1)} warm-up call(s); "
        f"synchronised calls; inputs rotate among {c['num_inputs']} pre-generated (q, k, v). fwd returns "
        "the output; fwd+bwd is the gradient of `out.sum()` w.r.t. q, k and v (torch: "
        "`out.sum().backward()`, forward under `no_grad`). Each implementation, T and mode runs in its own "
        f"process; peak MB is that process's peak resident memory (`{env.get('peak_rss', 'ru_maxrss')}`: runtime, "
        "inputs and compilation included)"
        + (", device peak MB the accelerator's peak allocation" if on_device else "")
        + ". OOM: the worker ran out of memory under the limit, or (estimated) a dense implementation's "
        "logits alone would exceed it. Ratios: throughput of zoo blockwise over the other's (>1: faster)."
    )
    failures = [
        f"T={m['seq_len']} {IMPL_LABELS[m['impl']]} {MODE_LABELS[m['mode']]}: {m['status']}: "
        + (m["error"] or "").rstrip(".")
        for m in ms if m["status"] != "ok" and not m["estimated"]
    ]
    return results.sections(head, results.markdown_table(headers, summary),
                            results.markdown_table(detail_headers, details, align="rl" + "r" * 4), method,
                            notes=list(data["notes"]) + ([f"Failures: {'; '.join(failures)}."] if failures else []))


def _detail_cells(fwd: dict[str, Any] | None, bwd: dict[str, Any] | None, on_device: bool) -> list[str]:
    timings = [Timing.from_json(m["timing"]) if m and m["timing"] else None for m in (fwd, bwd)]
    ms = [_status_cell(m) or results.format_ms(t) for m, t in zip((fwd, bwd), timings)]
    compiles = [t.compile_s if t else None for t in timings]
    compile_cell = "—" if None in compiles else f"{compiles[0]:.2f} / {compiles[1]:.2f}"
    peaks = [
        results.format_rate(_peak_mb(m, on_device)) if m and m["status"] == "ok" else "—" for m in (fwd, bwd)
    ]
    return [*ms, compile_cell, f"{peaks[0]} / {peaks[1]}"]


EXPERIMENT = Experiment(Config, run, render, stem="attention-{device}")


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench attention") -> int:
    """``zoo bench attention``: run, print the Markdown report, write files with --out."""
    return harness_main(EXPERIMENT, argv, prog)
