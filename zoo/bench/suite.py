"""``zoo bench``: sequential scan against parallel attention, on whatever device JAX runs on.

The seed's claim, measured: a recurrent layer takes T dependent steps, an
associative scan about log2 T, attention one step of T^2 work. The suite
runs, on ``jax.devices()[0]`` (CPU, GPU or TPU, unchanged):

* **layers** at one parameter budget (that of a causal self-attention layer
  of ``--width``; each recurrent layer's width is matched to it and
  reported): SimpleRNN, LSTM, GRU by ``lax.scan``; minGRU and minLSTM by
  associative scan and sequentially; attention with dense logits
  (``implementation='xla'``), blockwise (FlashAttention's algorithm) and,
  on GPU, cuDNN's fused kernel;
* **language models**: ``gpt/<preset>`` against the LSTM LM of about the
  same parameter count (``lstm/<preset>``);
* **training** (forward and backward: the gradient of the summed outputs,
  or of the next-token loss, with respect to parameters and inputs) and
  **inference** (forward) tokens/s over sequence length T at a fixed
  number of tokens per call (batch = tokens / T), and over batch size at
  one T;
* **decoding**: the latency of one generated token against the context
  length: GPT with a KV cache sized to the context and with one large
  cache filled to each length; the LSTM LM with its fixed-size state;
* for every configuration: compile time, peak memory (process peak resident
  memory on CPU, the device's peak on GPU/TPU), sequential depth, FLOPs per
  token (analytic, :mod:`zoo.bench.analysis`, and XLA's cost analysis),
  achieved FLOP/s and its share of the matmul peak measured in the same
  run, and arithmetic intensity against the measured memory bandwidth (a
  roofline).

Method: each configuration runs in its own worker process
(:mod:`zoo.harness.worker`; ``--quick`` runs them all in one to finish in
seconds) under a memory limit, so an out-of-memory is a row, not a crash,
and is timed as :mod:`zoo.harness.timing` does (compilation ahead of time
and timed apart, warm-up, synchronised calls, rotated inputs, the median
with the spread). The compute dtype is float32 on CPU and
bfloat16 on GPU/TPU (``--dtype`` overrides), parameters float32.

Output: a Markdown report on stdout; with ``--out DIR``,
``suite-<device>.json`` (all raw timings), ``.md``, ``.csv`` (one row per
measurement) and plots (``-throughput.png``: tokens/s against T on log-log
axes with the crossovers marked; ``-decode.png``; ``-roofline.png``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

from tqdm import tqdm

from zoo import registry
from zoo.bench import analysis, suite_report
from zoo.harness import flags, results, worker
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.harness.timing import compile_jax, time_within_budget

WORKER = "zoo.bench.suite:measure"
LayerKind = Literal[
    "rnn", "lstm", "gru", "mingru", "mingru_seq", "minlstm", "minlstm_seq",
    "attention_dense", "attention_blockwise", "attention_cudnn",
]
ALL_LAYERS: tuple[LayerKind, ...] = get_args(LayerKind)
ATTENTION_IMPL = {"attention_dense": "xla", "attention_blockwise": "blockwise", "attention_cudnn": "cudnn"}
LM_FAMILIES = ("gpt", "lstm")
MODES = ("train", "infer")

# --quick: tiny shapes, every configuration in one worker process: seconds in all
QUICK = dict(
    width=32, head_dim=16, seq_lens=(16, 64), tokens_per_call=128, batch_seq_len=16, batch_sizes=(4,),
    layers=("lstm", "mingru", "attention_dense", "attention_blockwise"), lm_preset="nano", repeats=2,
    warmup=1, budget_s=5.0, isolate=False,
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Sequential scan vs parallel attention: tokens/s, decode latency, compile time, memory, FLOPs.

    Prints a Markdown report (stdout), progress on stderr; with --out, also
    writes suite-<device>.json/.md/.csv and the plots there.
    """

    width: int = 256
    """Width d of the attention layer; the recurrent layers' widths are matched to its parameter count."""
    head_dim: int = 64
    """Attention head size (heads = width / head_dim)."""
    seq_lens: tuple[int, ...] = (64, 256, 1024, 4096, 16384)
    """Sequence lengths T of the T sweep."""
    tokens_per_call: int = 16384
    """Tokens per call in the T sweep: batch = tokens_per_call / T (at least 1)."""
    batch_seq_len: int = 256
    """T of the batch-size sweep."""
    batch_sizes: tuple[int, ...] = (1, 8, 64)
    """Batch sizes of the batch-size sweep (layers only)."""
    layers: tuple[LayerKind, ...] = ALL_LAYERS
    """Layers to run (attention_cudnn only on GPU)."""
    models: bool = True
    """Run the language models (gpt/<lm-preset> vs lstm/<lm-preset>)."""
    lm_preset: str = "quickstart"
    """Preset of the two language models (zoo.presets: a GPT and the LSTM LM matched to its size)."""
    decode: bool = True
    """Run the decode-latency sweep (language models)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto = float32 on CPU, bfloat16 on GPU/TPU (parameters stay float32)."""
    repeats: int = 5
    """Timed calls per measurement (fewer when --budget-s says so, never below 3); the median is reported."""
    warmup: int = 1
    """Untimed calls after compilation (at least one is always made)."""
    budget_s: float = 10.0
    """Timed seconds per measurement, estimated from the first warm-up call."""
    num_inputs: int = 2
    """Pre-generated inputs that consecutive calls rotate through."""
    mem_limit_gb: float | None = None
    """Address-space limit of each worker, GiB (default: 75% of RAM on CPU, none on GPU; 0: none)."""
    timeout_s: float = 900.0
    """Seconds a worker may take before it is killed (a 'timeout' row)."""
    isolate: bool = True
    """One process per configuration (peak memory per configuration). --quick turns it off."""
    out: Path | None = None
    """Directory for suite-<device>.json, .md, .csv and the plots."""
    quick: bool = False
    """Smoke test (CI): width 32, T in (16, 64), LSTM, minGRU and attention layers, nano LMs, all in one worker."""
    progress: bool = True
    """Show a progress bar on stderr."""
    seed: int = 0
    """Seed of the parameters and inputs."""

    def resolved(self) -> Config:
        """This config with ``--quick`` applied, after checking the values."""
        cfg = flags.quick(self, QUICK)
        flags.at_least(cfg, 1, "width", "head_dim", "tokens_per_call", "batch_seq_len", "repeats", "num_inputs")
        flags.at_least(cfg, 0, "warmup")
        if cfg.width % cfg.head_dim:
            raise ValueError(f"--width {cfg.width} must be a multiple of --head-dim {cfg.head_dim}")
        if not cfg.seq_lens or min(cfg.seq_lens) < 2:
            raise ValueError(f"--seq-lens: give lengths >= 2, got {cfg.seq_lens}")
        if list(cfg.seq_lens) != sorted(set(cfg.seq_lens)):
            raise ValueError(f"--seq-lens must increase, got {cfg.seq_lens}")
        if any(b < 1 for b in cfg.batch_sizes):
            raise ValueError(f"--batch-sizes must be >= 1, got {cfg.batch_sizes}")
        if cfg.mem_limit_gb is not None and cfg.mem_limit_gb < 0:
            raise ValueError(f"--mem-limit-gb must be >= 0, got {cfg.mem_limit_gb}")
        if cfg.timeout_s <= 0 or cfg.budget_s <= 0:
            raise ValueError("--timeout-s and --budget-s must be > 0")
        if cfg.models or cfg.decode:
            from zoo import presets

            for family in LM_FAMILIES:
                presets.get(family, cfg.lm_preset)  # an unknown name lists the valid ones
        return cfg

    def batch_for(self, seq_len: int) -> int:
        return max(1, self.tokens_per_call // seq_len)


# ----------------------------------------------------------------------------
# the worker: the measurement of one configuration


def _compute_dtype(spec: dict[str, Any]):
    import jax.numpy as jnp

    return jnp.dtype(spec["dtype"])


def _xla_cost(compiled) -> tuple[float | None, float | None]:
    """(flops, bytes accessed) from XLA's cost analysis of one call, or Nones where it does not answer."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None, None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None, None
    flops, nbytes = cost.get("flops"), cost.get("bytes accessed")
    return (flops if flops and flops > 0 else None), (nbytes if nbytes and nbytes > 0 else None)


def _layer_apply(spec: dict[str, Any]):
    """(init(key, x), apply(params, x)) of a layer of ``spec["width"]`` units, (B, T, W) -> (B, T, W)."""
    import zoo

    kind, w, dtype = spec["kind"], spec["width"], _compute_dtype(spec)
    if kind in ATTENTION_IMPL:
        mha = zoo.MultiHeadAttention(num_heads=w // spec["head_dim"], implementation=ATTENTION_IMPL[kind],
                                     dtype=dtype)
        return (lambda key, x: mha.init(key, x, is_causal=True)), (lambda p, x: mha.apply(p, x, is_causal=True))
    rnn = zoo.RNN(analysis.make_cell(kind, w, dtype=dtype))
    return rnn.init, rnn.apply


def _lm(spec: dict[str, Any], seq_len: int):
    """(model, config) of ``spec["family"]``'s preset, its context at least ``seq_len``, in the run's dtype."""
    from zoo import presets
    from zoo.models.gpt import GPT
    from zoo.models.rnn_lm import RNNLM

    config = presets.get(spec["family"], spec["preset"]).model
    config = config.replace(block_size=max(seq_len, config.block_size), dtype=spec["dtype"])
    return (GPT if spec["family"] == "gpt" else RNNLM)(config), config


# parameters already initialised in this process, by what determines their shapes (--quick runs many jobs
# in one process: training and inference, and every T, share one initialisation)
_PARAMS: dict[tuple, Any] = {}


def _init_once(key: tuple, init, *args, keep_all: bool = False):
    """``init(*args)`` compiled as one program (eager init is slow), unboxed, cached under ``key``.

    One set is kept alive at a time, so memory stays the configuration's own; ``keep_all`` (--quick)
    keeps every set: the batch sweep and decoding then reuse the parameters of the T sweep (the same
    seed, so the same values) instead of compiling their initialisation again, half of the inits.
    """
    import jax
    from flax import linen as nn

    if key not in _PARAMS:
        if not keep_all:
            _PARAMS.clear()
        _PARAMS[key] = nn.meta.unbox(jax.jit(init)(*args))
    return _PARAMS[key]


def _measure_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """tokens/s of one layer or LM, training (fwd+bwd) or inference (fwd), at (batch, seq_len)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    device = jax.devices()[0]
    b, t = spec["batch"], spec["seq_len"]
    rng = np.random.default_rng(spec["seed"])
    key = jax.random.key(spec["seed"])
    if spec["group"] == "layer":
        init, apply = _layer_apply(spec)
        dtype = _compute_dtype(spec)
        inputs = [jax.device_put(rng.standard_normal((b, t, spec["width"]), np.float32).astype(dtype), device)
                  for _ in range(spec["num_inputs"])]
        params = _init_once(("layer", spec["kind"], spec["width"], spec["dtype"]), init, key, inputs[0],
                            keep_all=spec.get("keep_params", False))

        def train(p, x):
            return apply(p, x).astype(jnp.float32).sum()

        fn = jax.grad(train, argnums=(0, 1)) if spec["mode"] == "train" else apply
        args = [(params, x) for x in inputs]
    else:
        model, config = _lm(spec, t)
        vocab = config.vocab_size
        inputs = [jax.device_put(rng.integers(0, vocab, (b, t + 1), dtype=np.int32), device)
                  for _ in range(spec["num_inputs"])]
        params = _init_once(("lm", config), model.init, key, inputs[0][:, :t], keep_all=spec.get("keep_params", False))

        def loss(p, ids):
            logits = model.apply(p, ids[:, :-1])  # (B, T, V) float32
            return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), ids[:, 1:]).mean()

        fn = jax.grad(loss) if spec["mode"] == "train" else (lambda p, ids: model.apply(p, ids[:, :-1]))
        args = [(params, ids) for ids in inputs]
    baseline = worker.peak_rss_kib()
    compiled, compile_s = compile_jax(fn, *args[0])
    xla_flops, xla_bytes = _xla_cost(compiled)
    tm, first_s = time_within_budget(
        compiled, args, repeats=spec["repeats"], warmup=spec["warmup"], budget_s=spec["budget_s"],
        compile_s=compile_s,
    )
    return dict(timing=tm.to_json(b * t), first_call_s=first_s, baseline_rss_kib=baseline,
                xla_flops=xla_flops, xla_bytes=xla_bytes, device_peak_bytes=worker.device_peak_bytes(device))


def _measure_decode(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds per generated token (B=1) at each context length, from a cache/state of that length."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from zoo.models.generate import init_cache

    device = jax.devices()[0]
    rng = np.random.default_rng(spec["seed"])
    cache_len = spec["cache_len"]
    model, config = _lm(spec, cache_len)
    tokens = [(jnp.asarray(rng.integers(0, config.vocab_size, (1, 1), dtype=np.int32)),)
              for _ in range(spec["num_inputs"])]
    params = _init_once(("lm", config), model.init, jax.random.key(spec["seed"]), tokens[0][0],
                        keep_all=spec.get("keep_params", False))
    baseline = worker.peak_rss_kib()
    points = []
    if spec["family"] == "gpt":
        def step(p, cache, ids):
            logits, mutated = model.apply({"params": p["params"], "cache": cache}, ids, decode=True,
                                          mutable=["cache"])
            return logits, mutated["cache"]

        empty = init_cache(model, 1, cache_len)
        compiled, compile_s = compile_jax(step, params, empty, tokens[0][0])
        from zoo.bench.device_report import filled_cache  # noqa: PLC0415  (one copy; imports no tyro)

        states = {length: filled_cache(empty, length, rng) for length in spec["contexts"]}
    else:
        def step(p, carry, ids):
            return model.apply(p, ids, initial_carry=carry, return_carry=True)

        carry0 = model.initial_carry(1)
        compiled, compile_s = compile_jax(step, params, carry0, tokens[0][0])
        prefill = jax.jit(lambda p, ids: model.apply(p, ids, initial_carry=model.initial_carry(1),
                                                     return_carry=True)[0])
        states = {}
        for length in spec["contexts"]:  # the real state after reading `length` tokens
            ids = jnp.asarray(rng.integers(0, config.vocab_size, (1, length), dtype=np.int32))
            states[length] = jax.block_until_ready(prefill(params, ids))
    for length in spec["contexts"]:
        args = [(params, states[length], ids) for (ids,) in tokens]
        tm, _ = time_within_budget(compiled, args, repeats=spec["repeats"], warmup=spec["warmup"],
                                   budget_s=spec["budget_s"], compile_s=compile_s)
        points.append({"context": length, "timing": tm.to_json(1)})
    return dict(points=points, compile_s=compile_s, baseline_rss_kib=baseline,
                device_peak_bytes=worker.device_peak_bytes(device))


def _measure_environment(spec: dict[str, Any]) -> dict[str, Any]:
    """The environment, the matmul peak (in the run's dtype) and the memory bandwidth, measured now."""
    import jax
    import jax.numpy as jnp

    from zoo.train.metrics import measure_matmul_flops, measure_memory_bandwidth

    env = results.environment()
    platform = env["jax_platform"]
    dtype = spec["dtype"] if spec["dtype"] != "auto" else ("float32" if platform == "cpu" else "bfloat16")
    env["dtype"] = dtype
    device = jax.devices()[0]
    budget = min(1.0, spec["budget_s"] / 10)
    env["matmul_peak_flops"] = measure_matmul_flops(device, dtype=jnp.dtype(dtype), budget_s=budget)
    env["memory_bandwidth_bytes_per_s"] = measure_memory_bandwidth(device, budget_s=budget)
    env["matmul_peak_n"] = 1024 if platform == "cpu" else 4096
    return {"environment": env}


MEASURES = {"env": _measure_environment, "layer": _measure_throughput, "lm": _measure_throughput,
            "decode": _measure_decode}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker: one job (``spec["group"]``: the environment, a layer, a language model or decoding)."""
    return MEASURES[spec["group"]](spec)


# ----------------------------------------------------------------------------
# the parent: plan, spawn, collect


def layer_widths(cfg: Config) -> dict[str, int]:
    """Each layer's width: attention at --width, the others matched to its parameter count."""
    target = analysis.layer_params("attention", cfg.width)
    widths = {kind: registry.matched_width(lambda w, k=kind: analysis.layer_params(k, w), target) for kind in cfg.layers}
    return {kind: cfg.width if kind in ATTENTION_IMPL else w for kind, w in widths.items()}


def plan(cfg: Config, platform: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs to run (in order) and notes on what was left out."""
    notes = []
    layers = list(cfg.layers)
    if "attention_cudnn" in layers and platform != "gpu":
        layers.remove("attention_cudnn")
        notes.append("attention (cuDNN) runs on GPU only: left out here.")
    widths = layer_widths(cfg)
    jobs: list[dict[str, Any]] = []
    for sweep, points in (("seq", [(cfg.batch_for(t), t) for t in cfg.seq_lens]),
                          ("batch", [(b, cfg.batch_seq_len) for b in cfg.batch_sizes])):
        for kind in layers:
            for b, t in points:
                for mode in MODES:
                    jobs.append(dict(group="layer", sweep=sweep, kind=kind, width=widths[kind], batch=b,
                                     seq_len=t, mode=mode))
    if cfg.models:
        for family in LM_FAMILIES:
            for t in cfg.seq_lens:
                for mode in MODES:
                    jobs.append(dict(group="lm", sweep="seq", family=family, preset=cfg.lm_preset,
                                     batch=cfg.batch_for(t), seq_len=t, mode=mode))
    if cfg.decode:
        largest = cfg.seq_lens[-1]
        for t in cfg.seq_lens:  # cache sized to the context: one program per length
            jobs.append(dict(group="decode", family="gpt", preset=cfg.lm_preset, series="gpt_sized",
                             cache_len=t, contexts=[t - 1]))
        contexts = sorted({t - 1 for t in cfg.seq_lens} | {1})
        jobs.append(dict(group="decode", family="gpt", preset=cfg.lm_preset, series="gpt_fixed",
                         cache_len=largest, contexts=contexts))
        jobs.append(dict(group="decode", family="lstm", preset=cfg.lm_preset, series="lstm",
                         cache_len=largest, contexts=contexts))
    return jobs, notes


def dense_logit_bytes(cfg: Config, job: dict[str, Any]) -> int:
    """Bytes of one float32 (B, heads, T, T) logits array: what dense attention cannot do without."""
    return job["batch"] * (cfg.width // cfg.head_dim) * job["seq_len"] ** 2 * 4


def run(cfg: Config, command: str) -> dict[str, Any]:
    """Run the suite; return the JSON-ready results with all raw timings and the figures derived from them."""
    cfg = cfg.resolved()
    other_load = results.OtherLoad()
    common = dict(dtype=cfg.dtype, head_dim=cfg.head_dim, repeats=cfg.repeats, warmup=cfg.warmup,
                  budget_s=cfg.budget_s, num_inputs=cfg.num_inputs, seed=cfg.seed, keep_params=cfg.quick)
    # one process per job, or with --no-isolate (--quick) one for them all; with --quick that one describes
    # the environment too (a process start less; the bandwidth test's 512 MiB then count in its peak memory)
    with (contextlib.nullcontext() if cfg.isolate else worker.Worker(WORKER)) as shared:
        env = worker.environment(WORKER, {**common, "group": "env"}, cfg.timeout_s, shared if cfg.quick else None)
        common["dtype"] = env["dtype"]
        env["mem_limit_bytes"] = common["mem_limit_bytes"] = limit = worker.default_memory_limit(
            cfg.mem_limit_gb, env["jax_platform"])
        jobs, notes = plan(cfg, env["jax_platform"])
        _run_jobs(cfg, jobs, common, limit, shared)

    env["other_processes_cpu_share"] = other = other_load.fraction()
    notes += results.other_load_notes(other)
    if not cfg.isolate:
        notes.append("All configurations ran in one process (--quick or --no-isolate): each peak memory "
                     "figure is that process's high-water mark so far, not the configuration's own.")
    measurements = [suite_report.derive(job, env) for job in jobs]
    return {"benchmark": "suite", "command": command, "date": results.utc_now(), "environment": env,
            "config": results.config_json(cfg), "layer_widths": layer_widths(cfg), "notes": notes,
            "measurements": measurements, "crossovers": suite_report.find_crossovers(measurements, cfg.seq_lens)}


def _run_jobs(cfg: Config, jobs: list[dict[str, Any]], common: dict[str, Any], limit: int | None,
              shared: worker.Worker | None) -> None:
    """Measure each job (its ``result``): in a fresh worker each, or in ``shared``; estimated OOMs are not run."""
    with tqdm(jobs, desc="zoo bench", unit="config", file=sys.stderr, disable=not cfg.progress) as bar:
        for job in bar:
            bar.set_postfix_str(_job_label(job))
            need = dense_logit_bytes(cfg, job) * (3 if job["mode"] == "train" else 1) \
                if job.get("kind") == "attention_dense" else 0
            if limit and need > limit:
                job["result"] = {"status": "oom", "estimated": True,
                                 "error": f"OOM (estimated {need / 2**30:.3g} GiB > limit)"}
            elif shared is None:
                job["result"] = worker.spawn(WORKER, {**common, **job}, cfg.timeout_s)
            else:
                job["result"] = shared.request({**common, **job}, cfg.timeout_s)


def rerender(data: dict[str, Any], command: str) -> dict[str, Any]:
    """The results with every derived figure (FLOPs, shares, crossovers) recomputed from the raw ones.

    For a change in the analysis or the report, not in what is measured: the
    timings, memory and XLA counts are the stored ones; the report names the
    original command and date and this re-rendering.
    """
    ms = [suite_report.derive({**m, "result": m}, data["environment"]) for m in data["measurements"]]
    return {**data, "measurements": ms, "crossovers": suite_report.find_crossovers(ms, data["config"]["seq_lens"]),
            "rerendered": {"command": command, "date": results.utc_now()}}


def _job_label(job: dict[str, Any]) -> str:
    if job["group"] == "layer":
        return f"{job['kind']} B={job['batch']} T={job['seq_len']} {job['mode']}"
    if job["group"] == "lm":
        return f"{job['family']} LM B={job['batch']} T={job['seq_len']} {job['mode']}"
    return f"decode {job['series']} cache {job['cache_len']}"


render, stem = suite_report.render, suite_report.stem
EXPERIMENT = Experiment(Config, run, render, stem=stem, plots=suite_report.plots, csv=suite_report.csv_text)


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench") -> int:
    """``zoo bench [flags]``: run the suite, print the report, write files with --out."""
    return harness_main(EXPERIMENT, argv, prog)
