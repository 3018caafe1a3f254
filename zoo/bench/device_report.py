"""One prepared report for a lent GPU or TPU: ``python3 -m zoo.bench.device_report --out DIR``.

    PYTHONPATH=. python3 -m zoo.bench.device_report --out report      # on the lent machine, ~6 minutes
    zoo bench device-report --out report                              # the same, installed
    python3 -m zoo.bench.device_report --out /tmp/r --dry-run         # tiny shapes, on this CPU, < 1 minute

A device may be lent for about 15 minutes in all, machine start included, so
everything here is fixed in advance (shapes, batch sizes, repetitions: no
search) and the parts run in order of what they can refute
(docs/device_report.md says what each figure tests):

1. ``correctness``: attention (dense, blockwise, cuDNN) against a float64
   NumPy reference, forward, and its gradients against the CPU's; the linear
   recurrence (every method) against a float64 Python loop and the fused
   LSTM/GRU kernels against a Python loop of their cells on the CPU; GPT and
   BERT logits on the device against the CPU's for the same parameters.
2. ``scan_vs_attention``: the suite's matched layers (``zoo bench``: causal
   self-attention of width 256 in heads of 64; minGRU of width 360, matched to
   its parameter count) in bfloat16, trained (gradient of the summed outputs
   with respect to the parameters and inputs), 16,384 tokens per call, at
   T = 512, 2k, 8k, 32k: minGRU with the sequential, associative and chunked
   scans; dense, blockwise and cuDNN attention. tokens/s and memory.
3. ``gpt2_train``: the measured bfloat16 matmul peak, then GPT-2 small
   (124M) training steps in bfloat16 (default attention, then cuDNN):
   tokens/s and MFU against that peak.
4. ``decode``: GPT-2 small, one token from a KV cache of each context length.

Each result is written as soon as it is measured: a line of
``DIR/results.jsonl``, and ``DIR/report.json`` and ``DIR/report.md``
rewritten, so a timeout or a crash still leaves everything measured before
it. Each part has a time budget, checked before each measurement; what is
left when it runs out is recorded as ``skipped``. An out-of-memory error is
recorded as ``oom``, any other exception as ``error`` (with its first line),
and the report goes on.

Memory figures: ``program_bytes`` is XLA's own account of the compiled
program (arguments, outputs and temporaries: its peak, per measurement);
``device_peak_bytes`` is the device allocator's peak since the process
started (cumulative; absent on the CPU).

This module imports only zoo's layers, models, training step and registry,
and neither tyro nor datasets (the lent machine's image has neither).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform as _platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers import scan
from zoo.layers.attention import dot_product_attention
from zoo.layers.cells import GRUCell, LSTMCell, MinGRUCell
from zoo.layers.multihead import MultiHeadAttention
from zoo.layers.recurrent import RNN
from zoo.models.bert import BERTConfig, BERTForMaskedLM
from zoo.models.generate import init_cache
from zoo.models.gpt import GPT, GPTConfig
from zoo.registry import flops_per_token
from zoo.train.config import TrainConfig
from zoo.train.metrics import measure_matmul_flops
from zoo.train.objectives import NEXT_TOKEN
from zoo.train.step import init_train_state, make_mesh, make_train_step, shard_batch

PROG = "python3 -m zoo.bench.device_report"
PARTS = ("correctness", "scan_vs_attention", "gpt2_train", "decode")
BF16 = jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every shape, size and budget of one report (fixed: nothing is searched on the device)."""

    budgets_s: dict[str, float]  # per part, checked before each measurement
    attention_shape: tuple[int, int, int, int, int]  # correctness: B, T, N query heads, K kv heads, H
    recurrence_shape: tuple[int, int, int]  # correctness: T, batch, hidden
    gpt: GPTConfig  # correctness: the GPT compared with the CPU
    bert: BERTConfig  # correctness: the BERT compared with the CPU
    seq_lens: tuple[int, ...]  # scan vs attention
    tokens_per_call: int  # batch = max(1, tokens_per_call // T), as the suite
    attention_width: int
    head_dim: int
    mingru_width: int
    gpt2: GPTConfig  # training and decoding
    gpt2_batch: int
    matmul_n: int  # the (n, n) @ (n, n) bfloat16 matmul of the peak
    decode_contexts: tuple[int, ...]
    min_reps: int = 3  # timed calls per measurement, after one warm-up call ...
    max_reps: int = 20
    target_s: float = 1.0  # ... more of them, up to max_reps, until this much time is spent


# On the lent machine: at most 6 minutes with the start-up, so the budgets sum to 5.
FULL = Settings(
    budgets_s={"correctness": 45.0, "scan_vs_attention": 130.0, "gpt2_train": 70.0, "decode": 55.0},
    attention_shape=(2, 256, 8, 2, 64),
    recurrence_shape=(300, 4, 64),
    gpt=GPTConfig(vocab_size=512, block_size=128, num_layers=2, num_heads=4, features=128),
    bert=BERTConfig(vocab_size=512, max_positions=128, block_size=128, num_layers=2, num_heads=4, features=128,
                    dropout_rate=0.0, attention_dropout_rate=0.0),
    seq_lens=(512, 32768, 2048, 8192),  # the ends first: if the budget runs out, the middle is what is lost
    tokens_per_call=16384,
    attention_width=256,
    head_dim=64,
    mingru_width=360,  # the suite's: zoo.bench.suite.layer_widths at its default width 256
    gpt2=GPTConfig(),  # 12 x 12 x 768, block 1024, vocabulary 50257: 124M
    gpt2_batch=16,
    matmul_n=8192,
    decode_contexts=(128, 16384, 512, 1024, 4096),  # the ends first (and 128 in the 16384 cache after them)
)
# --dry-run: the same code at tiny shapes, on whatever device there is (the test suite: the CPU).
DRY = Settings(
    budgets_s={"correctness": 30.0, "scan_vs_attention": 30.0, "gpt2_train": 20.0, "decode": 15.0},
    attention_shape=(2, 24, 4, 2, 16),
    recurrence_shape=(21, 2, 8),
    gpt=GPTConfig(vocab_size=64, block_size=16, num_layers=1, num_heads=2, features=32),
    bert=BERTConfig(vocab_size=64, max_positions=16, block_size=16, num_layers=1, num_heads=2, features=32,
                    dropout_rate=0.0, attention_dropout_rate=0.0),
    seq_lens=(16,),
    tokens_per_call=64,
    attention_width=32,
    head_dim=16,
    mingru_width=40,
    gpt2=GPTConfig(vocab_size=64, block_size=16, num_layers=1, num_heads=2, features=32),
    gpt2_batch=2,
    matmul_n=128,
    decode_contexts=(8,),
    min_reps=2,
    max_reps=2,
    target_s=0.0,
)


# -- the report: every result written as soon as it is measured ---------------------------------


class Report:
    """Results as a list of dicts ``{part, name, status, ...}``; the files are rewritten after each one."""

    def __init__(self, out: Path, meta: dict[str, Any]):
        self.out, self.meta, self.results = out, meta, []
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.jsonl").write_text("")
        self._write()

    def add(self, part: str, name: str, status: str = "ok", **fields) -> dict[str, Any]:
        result = {"part": part, "name": name, "status": status, **fields}
        self.results.append(result)
        with open(self.out / "results.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        self._write()
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if k not in ("error", "reason"))
        why = fields.get("error") or fields.get("reason") or ""
        print(f"{PROG}: [{part}] {name}: {status}" + (f" ({shown})" if shown else "") + (f": {why}" if why else ""),
              file=sys.stderr, flush=True)
        return result

    def _write(self) -> None:
        data = {"meta": self.meta, "results": self.results}
        _replace(self.out / "report.json", json.dumps(data, indent=1) + "\n")
        _replace(self.out / "report.md", render_markdown(data))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader (or a kill) never sees half a file


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "nan"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,d}"
    return str(v)


def render_markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: the environment, then one table per part (columns in order of appearance)."""
    meta = data["meta"]
    lines = ["# Device report", ""]
    lines += [f"- {k}: {v if not isinstance(v, dict) else json.dumps(v)}" for k, v in meta.items()]
    for part in PARTS:
        rows = [r for r in data["results"] if r["part"] == part]
        if not rows:
            continue
        cols = []
        for r in rows:
            cols += [k for k in r if k != "part" and k not in cols]
        lines += ["", f"## {part}", "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        for r in rows:
            cells = [_fmt(r.get(c, "")).replace("|", "/").replace("\n", " ") for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return "resource_exhausted" in text or "out of memory" in text or isinstance(e, MemoryError)


def run_part(report: Report, part: str, budget_s: float, items: Sequence[tuple[str, Callable[[], dict]]]) -> None:
    """Run ``items`` (name, measure) in order while the part's budget lasts; ``measure`` returns the result's
    fields (``status`` among them when not ``'ok'``); exceptions become ``oom`` or ``error`` results."""
    deadline = time.monotonic() + budget_s
    for name, measure in items:
        if time.monotonic() > deadline and not getattr(measure, "derived", False):  # derived rows cost nothing
            report.add(part, name, "skipped", reason=f"the part's budget of {budget_s:.0f} s ran out")
            continue
        start = time.monotonic()
        try:
            fields = measure()
        except Exception as e:  # noqa: BLE001 - every failure is a result, and the report goes on
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            report.add(part, name, "oom" if is_oom(e) else "error", error=f"{type(e).__name__}: {first}",
                       item_s=round(time.monotonic() - start, 2))
        else:
            status = fields.pop("status", "ok")
            report.add(part, name, status, **fields, **({} if status == "skipped" else
                                                        {"item_s": round(time.monotonic() - start, 2)}))
        gc.collect()


# -- measuring -----------------------------------------------------------------------------------


def compile_fn(fn: Callable, *args, **jit_kw) -> tuple[Any, float, int | None]:
    """(the compiled ``jit(fn)`` for ``args``, seconds to lower and compile, XLA's program bytes)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn, **jit_kw).lower(*args).compile()
    seconds = time.perf_counter() - t0
    try:
        m = compiled.memory_analysis()
        nbytes = int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                     - getattr(m, "alias_size_in_bytes", 0))
    except Exception:  # noqa: BLE001 - not every backend reports it
        nbytes = None
    return compiled, seconds, nbytes


def time_calls(fn: Callable, args_list: Sequence[tuple], s: Settings) -> tuple[float, int]:
    """(median seconds per call, calls timed): one warm-up call, then ``s.min_reps`` to ``s.max_reps`` calls
    (until ``s.target_s`` is spent), inputs rotating through ``args_list``, each call waited for."""
    jax.block_until_ready(fn(*args_list[0]))
    times: list[float] = []
    while len(times) < s.min_reps or (sum(times) < s.target_s and len(times) < s.max_reps):
        args = args_list[len(times) % len(args_list)]
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def compare(got, want, tol: float) -> dict[str, Any]:
    """Max absolute error, and the status: ``ok`` when it is within ``tol`` times max(1, max |want|)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    bound = tol * max(1.0, float(np.max(np.abs(want))) if want.size else 0.0)
    return {"status": "ok" if err <= bound and np.all(np.isfinite(got)) else "fail", "max_abs_err": err,
            "tolerance": bound}


def random_params(init: Callable, *args, seed: int = 0) -> Any:
    """Parameters of the shapes ``init(key, *args)`` gives, drawn with NumPy (no init program to compile:
    an initialiser's random-number program is the slowest compile of a small model on a CPU): matrices
    N(0, 0.02) as GPT-2's, vectors 0 but LayerNorm scales 1. Any values serve a comparison or a timing."""
    from flax import linen as nn
    from flax import traverse_util

    shapes = nn.meta.unbox(jax.eval_shape(lambda: init(jax.random.key(0), *args)))
    rng = np.random.default_rng(seed)
    flat = traverse_util.flatten_dict(shapes)
    out = {}
    for path, leaf in flat.items():
        if len(leaf.shape) >= 2:
            value = rng.normal(0.0, 0.02, leaf.shape)
        else:
            value = np.full(leaf.shape, 1.0 if path[-1] == "scale" else 0.0)
        out[path] = jnp.asarray(value, leaf.dtype)
    return traverse_util.unflatten_dict(out)


def _cpu():
    return jax.devices("cpu")[0]


def _on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def _needs_gpu() -> dict[str, Any]:
    return {"status": "skipped", "reason": f"cuDNN needs a GPU; this device is {jax.devices()[0].platform}"}


# -- 1. correctness ------------------------------------------------------------------------------


def attention_reference(q, k, v, kv_lengths) -> np.ndarray:
    """Causal grouped-query attention in float64 NumPy: q (B, T, N, H), k, v (B, S, K, H) -> (B, T, N, H)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, t, n, h = q.shape
    s = k.shape[1]
    g = n // k.shape[2]
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)  # (B, S, N, H)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(h)  # (B, N, T, S)
    visible = (np.arange(s)[None, :] <= np.arange(t)[:, None])[None, None] \
        & (np.arange(s)[None, None, None, :] < np.asarray(kv_lengths)[:, None, None, None])
    logits = np.where(visible, logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return np.einsum("bnts,bsnh->btnh", w, v)


def correctness_items(s: Settings) -> list[tuple[str, Callable[[], dict]]]:
    rng = np.random.default_rng(0)
    b, t, n, kv, h = s.attention_shape
    q = rng.standard_normal((b, t, n, h)).astype(np.float32)
    k, v = (rng.standard_normal((b, t, kv, h)).astype(np.float32) for _ in range(2))
    w = rng.standard_normal((b, t, n, h)).astype(np.float32)  # weights of the loss differentiated
    lengths = np.array([t] + [t // 2 + 3] * (b - 1), np.int32)
    ref = attention_reference(q, k, v, lengths)

    def out_and_grads(impl):
        """(output, gradients of sum(output * w) wrt q, k, v): one program."""
        def f(q, k, v):
            out, vjp = jax.vjp(lambda q, k, v: dot_product_attention(
                q, k, v, is_causal=True, key_value_seq_lengths=jnp.asarray(lengths), implementation=impl), q, k, v)
            return out, vjp(jnp.asarray(w, out.dtype))
        return f

    cpu_grads = None
    programs = {impl: jax.jit(out_and_grads(impl)) for impl in ("xla", "blockwise", "cudnn")}

    def attention(impl, dtype, tol):
        def measure():
            nonlocal cpu_grads
            if impl == "cudnn" and not _on_gpu():
                return _needs_gpu()
            if cpu_grads is None:  # the gradients' reference: dense float32 on the CPU
                with jax.default_device(_cpu()):
                    cpu_grads = programs["xla"](q, k, v)[1]
            out, grads = programs[impl](*[jnp.asarray(x, dtype) for x in (q, k, v)])
            fwd = compare(out, ref, tol)
            bwd = [compare(g, c, 2 * tol) for g, c in zip(grads, cpu_grads)]
            bad = [r for r in [fwd, *bwd] if r["status"] != "ok"]
            return {"status": "fail" if bad else "ok", "max_abs_err": fwd["max_abs_err"],
                    "grad_max_abs_err": max(r["max_abs_err"] for r in bwd), "tolerance": fwd["tolerance"]}
        return measure

    items = []
    for impl, dtype, tol in (("xla", jnp.float32, 5e-3), ("blockwise", jnp.float32, 5e-3),
                             ("xla", BF16, 5e-2), ("blockwise", BF16, 5e-2), ("cudnn", BF16, 5e-2)):
        items.append((f"attention {impl} {jnp.dtype(dtype).name}", attention(impl, dtype, tol)))

    # the linear recurrence h_t = a_t h_{t-1} + b_t against a float64 Python loop
    steps, batch, hidden = s.recurrence_shape
    log_a = -np.logaddexp(0.0, 2.0 * rng.standard_normal((steps, batch, hidden)))  # minGRU's log decays
    bb = rng.standard_normal((steps, batch, hidden))
    h0 = rng.standard_normal((batch, hidden))
    mask = np.arange(steps)[:, None] < np.array([steps] + [steps // 2] * (batch - 1))[None, :]  # (T, B)
    want, hstate = np.zeros((steps, batch, hidden)), h0.copy()
    for i in range(steps):
        new = np.exp(log_a[i]) * hstate + bb[i]
        hstate = np.where(mask[i][:, None], new, hstate)
        want[i] = np.where(mask[i][:, None], hstate, 0.0)

    def recurrence():
        f32 = [jnp.asarray(x, jnp.float32) for x in (log_a, bb, h0)]
        run = jax.jit(lambda la, b, h: [scan.linear_recurrence(la, b, h, jnp.asarray(mask), method=m)[1]
                                        for m in scan.METHODS])  # one program, every method
        out = {}
        for method, hs in zip(scan.METHODS, run(*f32)):
            r = compare(hs, want, 1e-4)
            out[f"{method}_max_abs_err"] = r["max_abs_err"]
            out["status"] = "fail" if r["status"] != "ok" or out.get("status") == "fail" else "ok"
        out["tolerance"] = r["tolerance"]
        return out

    items.append(("linear_recurrence " + ", ".join(scan.METHODS), recurrence))

    # the fused LSTM and GRU kernels (forward and backward) against a Python loop of the cell on the CPU
    x = rng.standard_normal((batch, min(steps, 32), hidden)).astype(np.float32)

    def fused(cell_cls):
        def measure():
            rnn = RNN(cell_cls(features=hidden))
            with jax.default_device(_cpu()):
                params = random_params(rnn.init, x)
                cell = cell_cls(features=hidden)
                cell_params = {"params": params["params"]["cell"]}
                carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
                one_step = jax.jit(cell.apply)  # the cell's own step, (carry, x_t) -> (carry, y_t)
                outs = []
                for i in range(x.shape[1]):  # the Python loop over time
                    carry, y = one_step(cell_params, carry, x[:, i])
                    outs.append(np.asarray(y))
            want_y = np.stack(outs, axis=1)

            def out_and_grads(p, x):  # backward: the device's gradients against the CPU's (both fused)
                y, vjp = jax.vjp(rnn.apply, p, x)
                return y, vjp(jnp.ones_like(y) * x[..., :1])

            step = jax.jit(out_and_grads)  # one program per device (on a CPU-only machine, one in all)
            with jax.default_device(_cpu()):
                want_g = step(params, x)[1]
            got, got_g = step(jax.device_put(params, jax.devices()[0]), x)
            fwd = compare(got, want_y, 1e-3)
            bwd = [compare(a, c, 1e-3) for a, c in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g))]
            bad = [r for r in [fwd, *bwd] if r["status"] != "ok"]
            return {"status": "fail" if bad else "ok", "max_abs_err": fwd["max_abs_err"],
                    "grad_max_abs_err": max(r["max_abs_err"] for r in bwd), "tolerance": fwd["tolerance"]}
        return measure

    items += [(f"fused {c.__name__}", fused(c)) for c in (LSTMCell, GRUCell)]

    # GPT and BERT logits on the device against the CPU's, for the same parameters
    def model(name):
        def measure():
            cfg = s.gpt if name == "gpt" else s.bert
            ids = rng.integers(0, cfg.vocab_size, (2, cfg.block_size), dtype=np.int32)
            build = (lambda c: GPT(c)) if name == "gpt" else (lambda c: BERTForMaskedLM(c))
            applies = {dtype: jax.jit(build(cfg.replace(dtype=dtype)).apply) for dtype in ("float32", "bfloat16")}
            with jax.default_device(_cpu()):
                params = random_params(build(cfg).init, ids)
                want = np.asarray(applies["float32"](params, ids))
            dev = jax.device_put(params, jax.devices()[0])
            out = {}
            for label, dtype, tol in (("float32", "float32", 2e-2), ("bfloat16", "bfloat16", 1e-1)):
                got = np.asarray(applies[dtype](dev, ids), np.float32)
                r = compare(got, want, tol)
                out[f"{label}_max_abs_err"] = r["max_abs_err"]
                out[f"{label}_top1_agreement"] = float(np.mean(got.argmax(-1) == want.argmax(-1)))
                out["status"] = "fail" if r["status"] != "ok" or out.get("status") == "fail" else "ok"
            out["logit_scale"] = float(np.max(np.abs(want)))
            return out
        return measure

    items += [("gpt logits vs cpu", model("gpt")), ("bert logits vs cpu", model("bert"))]
    return items


# -- 2. scan against attention -------------------------------------------------------------------


def layer(kind: str, s: Settings):
    """(the module, its width) of one of the suite's matched layers, bfloat16 compute, float32 parameters."""
    if kind.startswith("attention/"):
        impl = kind.split("/")[1]
        return MultiHeadAttention(num_heads=s.attention_width // s.head_dim, implementation=impl, dtype=BF16), \
            s.attention_width
    method = kind.split("/")[1]
    return RNN(MinGRUCell(features=s.mingru_width, method=method, dtype=BF16)), s.mingru_width


LAYER_KINDS = ("scan/sequential", "scan/associative", "scan/chunked", "attention/xla", "attention/blockwise",
               "attention/cudnn")


def scan_vs_attention_items(s: Settings) -> list[tuple[str, Callable[[], dict]]]:
    items = []
    best: dict[int, dict[str, float]] = {}
    params: dict[str, Any] = {}  # per family: the parameters do not depend on T or on the method
    for t in s.seq_lens:
        batch = max(1, s.tokens_per_call // t)
        for kind in LAYER_KINDS:
            items.append((f"{kind} T={t}", _layer_measure(kind, t, batch, s, best, params)))
        items.append((f"fastest scan / fastest attention T={t}", _crossover(t, best)))
    return items


def _crossover(t, best):
    """The derived row after each T: the fastest scan's tokens/s over the fastest attention's, of those measured."""
    def measure():
        scans = {k: v for k, v in best.get(t, {}).items() if k.startswith("scan/")}
        attns = {k: v for k, v in best.get(t, {}).items() if k.startswith("attention/")}
        if not scans or not attns:
            return {"status": "skipped", "reason": "a scan and an attention measurement are both needed"}
        scan_kind, attn_kind = max(scans, key=scans.get), max(attns, key=attns.get)
        return {"T": t, "fastest_scan": scan_kind, "fastest_attention": attn_kind,
                "scan_over_attention": scans[scan_kind] / attns[attn_kind]}
    measure.derived = True
    return measure


def _layer_measure(kind, t, batch, s, best, params_by_family):
    def measure():
        if kind == "attention/cudnn" and not _on_gpu():
            return _needs_gpu()
        module, width = layer(kind, s)
        family = kind.split("/")[0]
        causal = {"is_causal": True} if family == "attention" else {}
        rng = np.random.default_rng(t)
        xs = [jnp.asarray(rng.standard_normal((batch, t, width)), BF16) for _ in range(2)]
        if family not in params_by_family:
            params_by_family[family] = random_params(lambda key, x: module.init(key, x, **causal), xs[0][:1, :8])
        params = params_by_family[family]
        grad = jax.grad(lambda p, x: module.apply(p, x, **causal).astype(jnp.float32).sum(), argnums=(0, 1))
        compiled, compile_s, program_bytes = compile_fn(grad, params, xs[0])
        seconds, reps = time_calls(compiled, [(params, x) for x in xs], s)
        tokens_per_s = batch * t / seconds
        best.setdefault(t, {})[kind] = tokens_per_s
        fields = {"T": t, "batch": batch, "tokens_per_s": tokens_per_s, "ms_per_call": 1e3 * seconds,
                  "calls": reps, "compile_s": compile_s, "program_bytes": program_bytes,
                  "device_peak_bytes": device_peak_bytes()}
        if kind == "scan/chunked":
            fields["chunk_size"] = scan.ACCELERATOR_CHUNK_SIZE if jax.default_backend() != "cpu" else scan.CPU_CHUNK_SIZE
        return fields
    return measure


# -- 3. GPT-2 small training step ----------------------------------------------------------------


def gpt2_train_items(s: Settings) -> list[tuple[str, Callable[[], dict]]]:
    peak: dict[str, float] = {}

    def matmul_peak():
        flops = measure_matmul_flops(jax.devices()[0], n=s.matmul_n, budget_s=1.0 if s is FULL else 0.05, dtype=BF16)
        peak["flops"] = flops
        return {"n": s.matmul_n, "tflops": flops / 1e12}

    def train(impl):
        def measure():
            if impl == "cudnn" and not _on_gpu():
                return _needs_gpu()
            cfg = s.gpt2.replace(dtype="bfloat16", attention_implementation=impl)
            model = GPT(cfg)
            tcfg = TrainConfig(batch_size=s.gpt2_batch, warmup_steps=10, max_steps=1000)
            mesh = make_mesh(jax.devices()[:1])
            params = random_params(model.init, jnp.zeros((1, cfg.block_size), jnp.int32))["params"]
            state = init_train_state(model, tcfg, model_config=cfg, mesh=mesh, objective=NEXT_TOKEN, params=params)
            step = make_train_step(model, tcfg, mesh, NEXT_TOKEN)
            rng = np.random.default_rng(0)
            batches = []
            for _ in range(2):
                ids = rng.integers(0, cfg.vocab_size, (s.gpt2_batch, cfg.block_size + 1), dtype=np.int32)
                batches.append(shard_batch({"inputs": ids[:, :-1], "targets": ids[:, 1:]}, 1, mesh))
            t0 = time.perf_counter()
            state, metrics = step(state, batches[0])  # compiles
            jax.block_until_ready(metrics)
            first_s = time.perf_counter() - t0
            times = []
            while len(times) < s.min_reps or (sum(times) < s.target_s and len(times) < s.max_reps):
                t0 = time.perf_counter()
                state, metrics = step(state, batches[len(times) % 2])
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times)
            tokens = s.gpt2_batch * cfg.block_size
            per_token = flops_per_token("gpt", cfg)
            out = {"batch": s.gpt2_batch, "T": cfg.block_size, "tokens_per_s": tokens / seconds,
                   "ms_per_step": 1e3 * seconds, "steps": len(times), "first_step_s": first_s,
                   "loss": float(metrics["loss"]), "device_peak_bytes": device_peak_bytes()}
            if per_token and peak.get("flops"):
                out["mfu"] = tokens / seconds * per_token / peak["flops"]
            if not np.isfinite(out["loss"]):
                out["status"] = "fail"
            return out
        return measure

    return [("matmul peak bfloat16", matmul_peak), ("gpt2-small train default attention", train(None)),
            ("gpt2-small train cudnn attention", train("cudnn"))]


# -- 4. decode latency against context length ----------------------------------------------------


def filled_cache(cache, length: int, rng):
    """The KV cache with random keys and values and every row's index at ``length`` (as if filled)."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(cache)
    out = {}
    for path, leaf in flat.items():
        if path[-1] == "cache_index":
            out[path] = jnp.full(leaf.shape, length, leaf.dtype)
        else:
            out[path] = jnp.asarray(rng.standard_normal(leaf.shape, dtype="float32"), leaf.dtype)
    return traverse_util.unflatten_dict(out)


def decode_items(s: Settings) -> list[tuple[str, Callable[[], dict]]]:
    params_cache: dict[str, Any] = {}

    small, large = min(s.decode_contexts), max(s.decode_contexts)

    def decode(context, cache_len=None):
        cache_len = cache_len or context  # zoo.generate sizes the cache to prompt + new tokens

        def measure():
            # the position table must hold the longest cache (one table for all: the weights are random,
            # and a decode step reads one row of it)
            cfg = s.gpt2.replace(dtype="bfloat16", block_size=max(s.gpt2.block_size, large))
            model = GPT(cfg)
            ids = [jnp.full((1, 1), i, jnp.int32) for i in range(2)]
            if params_cache.get("block") != cfg.block_size:
                params_cache.clear()
                params_cache.update(block=cfg.block_size,
                                    params=random_params(model.init, ids[0])["params"])
            params = params_cache["params"]

            def step(params, cache, ids):
                logits, mutated = model.apply({"params": params, "cache": cache}, ids, decode=True, mutable=["cache"])
                return logits, mutated["cache"]

            cache = filled_cache(init_cache(model, 1, cache_len), context - 1, np.random.default_rng(context))
            compiled, compile_s, program_bytes = compile_fn(step, params, cache, ids[0])
            seconds, reps = time_calls(compiled, [(params, cache, i) for i in ids], s)
            return {"context": context, "cache_len": cache_len, "ms_per_token": 1e3 * seconds, "calls": reps,
                    "compile_s": compile_s, "program_bytes": program_bytes}
        return measure

    # each context in a cache of its size; the shortest in the longest cache right after the two ends:
    # docs/benchmarks.md found on the CPU that the latency follows the cache's size, not how much is filled
    items = [(f"gpt2-small decode context={c}", decode(c)) for c in s.decode_contexts]
    if small < large:
        ends = sum(c in (small, large) for c in s.decode_contexts[:2])
        items.insert(ends, (f"gpt2-small decode context={small} cache={large}", decode(small, large)))
    return items


# -- the command ---------------------------------------------------------------------------------


ITEMS = {"correctness": correctness_items, "scan_vs_attention": scan_vs_attention_items,
         "gpt2_train": gpt2_train_items, "decode": decode_items}


def environment(s: Settings, argv: Sequence[str], dry_run: bool) -> dict[str, Any]:
    import flax

    dev = jax.devices()[0]
    return {
        "command": " ".join([PROG, *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": f"{dev.platform} {dev.device_kind} (x{jax.device_count()})",
        "versions": f"python {_platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}",
        "host_cpus": os.cpu_count(),
        "dry_run": dry_run,
        "budgets_s": s.budgets_s,
    }


def parse(argv: Sequence[str], prog: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog="docs/device_report.md: what each figure tests and what would refute it")
    p.add_argument("--out", required=True, help="directory for results.jsonl, report.json and report.md")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes and budgets (the test suite runs this on CPU)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                   help=f"which parts, in this order (default: all of {', '.join(PARTS)})")
    p.add_argument("--budget-scale", type=float, default=1.0, metavar="X",
                   help="multiply every part's time budget (default 1)")
    args = p.parse_args(list(argv))
    if not (args.budget_scale > 0 and math.isfinite(args.budget_scale)):
        p.error(f"--budget-scale must be a finite number > 0, got {args.budget_scale}")
    return args


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv, prog)
    s = DRY if args.dry_run else FULL
    start = time.monotonic()
    report = Report(Path(args.out), environment(s, argv, args.dry_run))
    print(f"{prog}: {report.meta['device']}; writing {args.out}/report.md", file=sys.stderr, flush=True)
    for part in args.parts:
        budget = s.budgets_s[part] * args.budget_scale
        print(f"{prog}: part {part} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
        run_part(report, part, budget, ITEMS[part](s))
    report.meta["wall_s"] = round(time.monotonic() - start, 1)
    report._write()
    counts = {st: sum(r["status"] == st for r in report.results) for st in ("ok", "fail", "oom", "error", "skipped")}
    print(f"{prog}: done in {report.meta['wall_s']} s: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
