"""BERT masked-LM training throughput: zoo's compiled train step beside Hugging Face's BertForMaskedLM.

What is measured, per implementation, is one optimizer step of masked-LM
training on a batch of ``batch`` rows of ``seq_len`` tokens (bert-mini by
default: 4 layers, width 256, 4 heads, MLP 1024, vocabulary 8192; dropout 0.1
on hidden states and attention weights, as BERT):

* **zoo**: the train step zoo's trainer runs,
  ``make_train_step(BERTForMaskedLM(cfg), TrainConfig, make_mesh([device]), MASKED_LM)``,
  compiled ahead of time: forward, loss at the masked positions only (the
  encoder output is gathered at ``mlm_positions``, P = ``max_predictions(T)``
  = 20 of 128, before the V-wide decoder), backward, global-norm clipping
  and AdamW (weight decay 0.01 on matrices), the state donated. Batches are
  zoo's masked-LM format (:func:`zoo.data.mlm_batch`: 15% of the tokens
  chosen, 80/10/10 [MASK]/random/kept), already on the device.
* **HF**: ``transformers.BertForMaskedLM`` with the same config, in
  training mode, called as a Hugging Face user (and ``Trainer``) does:
  ``model(input_ids, attention_mask, token_type_ids, labels)`` with
  ``labels`` -100 except at the masked positions, so the logits are computed
  at every position (its standard usage), then ``loss.backward()``,
  ``clip_grad_norm_`` (Trainer's ``max_grad_norm``, the same value as zoo's
  ``grad_clip``), ``torch.optim.AdamW`` (``fused=True``, Trainer's default
  ``adamw_torch_fused``; weight decay 0.01 except on biases and LayerNorm
  weights, as Trainer groups them), a linear learning-rate scheduler step
  and ``zero_grad``. Eager PyTorch: ``torch.compile`` is not used (Hugging
  Face does not by default). The attention implementation is HF's default
  (``sdpa``) unless ``--hf-attention`` names others (``eager``), one row each.
  ``torch.set_num_threads`` is set to the cores JAX uses.

Throughput is ``batch * seq_len`` tokens divided by the median wall time of
``repeats`` timed steps, each synchronised (``jax.block_until_ready`` on the
new state and metrics; ``torch.cuda.synchronize`` on a GPU, PyTorch on a CPU
being synchronous). Each implementation runs in its own worker process
(:mod:`zoo.harness.worker`: XLA's and PyTorch's thread pools never compete), set up once (model, data,
compilation, timed separately, then ``warmup`` untimed steps); the parent
then has the workers take turns, ``rounds`` times, each turn one untimed
step and its share of the timed ones, so a change in the machine's load
affects every row alike. Batches rotate among ``num_inputs`` pre-generated
ones.

Run it as ``zoo bench bert [flags]`` (``--help`` lists them) or through
``benchmarks/bert.py``, which writes the published results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from zoo.harness import flags, results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.harness.timing import Timing, time_calls, torch_sync
from zoo.harness.worker import Worker

# --quick: tiny shapes, so a full run takes seconds of work (plus a few seconds per worker process)
QUICK = {"preset": "tiny", "batch": 4, "seq_len": 32, "vocab": 512, "repeats": 2, "warmup": 1, "rounds": 2}
# The target: zoo's tokens/s at least this multiple of HF's, for these shapes on a CPU.
TARGET_RATIO = 1.5
TARGET_SHAPES = {"preset": "bert-mini", "batch": 32, "seq_len": 128, "vocab": 8192}

HFAttention = Literal["default", "sdpa", "eager"]
WORKER = "zoo.bench.bert:work"

# WordPiece's special ids in zoo (zoo.data.tokenizers): [PAD] [UNK] [CLS] [SEP] [MASK]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)


@dataclasses.dataclass(frozen=True)
class Config:
    """Masked-LM training tokens/s of zoo's train step vs Hugging Face's BertForMaskedLM (PyTorch).

    Prints a Markdown table (stdout) with a header naming the device,
    versions, shapes and command; with --out, also writes bert-<device>.json
    (all raw timings) and bert-<device>.md there.
    """

    preset: str = "bert-mini"
    """zoo's bert preset giving the model shape (layers, width, heads, MLP) and the training config."""
    batch: int = 32
    """Batch size B: sequences per optimizer step."""
    seq_len: int = 128
    """Sequence length T. Tokens per step = B * T; P = ceil(0.15 T) masked positions per row."""
    vocab: int = 8192
    """Vocabulary size V (the tied decoder is V x D)."""
    dropout: float = 0.1
    """Dropout on hidden states and on attention weights, in both models (BERT: 0.1; 0 turns it off)."""
    grad_clip: float | None = None
    """Global-norm gradient clipping in both (HF: clip_grad_norm_); None: the preset's (1.0); 0: off."""
    repeats: int = 20
    """Timed steps per implementation, split over the rounds; the median is reported."""
    warmup: int = 3
    """Untimed steps after compilation, before the first round."""
    rounds: int = 4
    """Turns each worker takes (interleaved); each starts with one untimed step."""
    num_inputs: int = 3
    """Pre-generated batches that consecutive steps rotate through."""
    torch: bool = True
    """Include Hugging Face's BertForMaskedLM (skipped with a note if torch or transformers is missing)."""
    hf_attention: tuple[HFAttention, ...] = ("default",)
    """HF attention implementations, a row each: default (HF's choice, sdpa), sdpa, eager.
    Ratios are against the first."""
    timeout_s: float = 1800.0
    """Seconds a worker may take for its setup or for one turn before it is killed."""
    out: Path | None = None
    """Directory to write bert-<device>.json and bert-<device>.md into."""
    quick: bool = False
    """Smoke test: the tiny preset, B=4, T=32, V=512, 2 repeats in 2 rounds, 1 warm-up (overrides those)."""
    progress: bool = True
    """Show a progress bar on stderr."""
    seed: int = 0
    """Seed of the parameters, the data and the dropout."""

    def resolved(self) -> Config:
        """This config with ``--quick`` applied, after checking the values."""
        cfg = flags.quick(self, QUICK)
        flags.at_least(cfg, 1, "batch", "seq_len", "vocab", "repeats", "rounds", "num_inputs")
        flags.at_least(cfg, 0, "warmup")
        if cfg.rounds > cfg.repeats:
            raise ValueError(f"--rounds ({cfg.rounds}) must be at most --repeats ({cfg.repeats})")
        if cfg.seq_len < 3:
            raise ValueError(f"--seq-len must be >= 3 ([CLS], a token, [SEP]), got {cfg.seq_len}")
        if cfg.vocab < 6:
            raise ValueError(f"--vocab must be >= 6 (5 special ids and a word), got {cfg.vocab}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.grad_clip is not None and cfg.grad_clip < 0:
            raise ValueError(f"--grad-clip must be >= 0, got {cfg.grad_clip}")
        if cfg.timeout_s <= 0:
            raise ValueError(f"--timeout-s must be > 0, got {cfg.timeout_s}")
        if not cfg.hf_attention:
            raise ValueError("--hf-attention: name at least one (default, sdpa, eager)")
        model, _ = _configs(cfg.preset, cfg.vocab, cfg.seq_len, cfg.dropout, cfg.grad_clip, cfg.batch)
        if cfg.seq_len > model.max_positions:
            raise ValueError(
                f"--seq-len {cfg.seq_len} exceeds the preset's max_positions {model.max_positions}"
            )
        return cfg

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    def round_sizes(self) -> list[int]:
        """Timed steps in each round: ``repeats`` split as evenly as possible."""
        return round_sizes(self.repeats, self.rounds)


def round_sizes(repeats: int, rounds: int) -> list[int]:
    """``repeats`` timed steps split over ``rounds`` as evenly as possible."""
    q, r = divmod(repeats, rounds)
    return [q + (i < r) for i in range(rounds)]


def _configs(preset: str, vocab: int, seq_len: int, dropout: float, grad_clip: float | None, batch: int):
    """(BERTConfig, TrainConfig) of the run: the preset's, with the benchmark's shapes and dropout."""
    from zoo import presets  # imports JAX: only in the workers and in resolved()

    p = presets.get("bert", preset)
    model = p.model.replace(
        vocab_size=vocab, block_size=min(seq_len, p.model.max_positions),
        dropout_rate=dropout, attention_dropout_rate=dropout,
    )
    train = p.train.replace(batch_size=batch, grad_accum_steps=1)
    if grad_clip is not None:
        train = train.replace(grad_clip=grad_clip)
    return model, train


# ----------------------------------------------------------------------------
# the workers: one implementation each, set up once, then timed steps on request


def host_batches(spec: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """``num_inputs`` masked-LM batches in zoo's format, from random non-special token ids."""
    from zoo.data.masking import mlm_batch

    rng = np.random.default_rng(spec["seed"])
    vocab, t = spec["vocab"], spec["seq_len"]
    stream = rng.integers(MASK_ID + 1, vocab, size=spec["batch"] * t + t, dtype=np.int32)
    special = {"cls_id": CLS_ID, "sep_id": SEP_ID, "mask_id": MASK_ID, "vocab_size": vocab,
               "special_ids": (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID)}
    return [mlm_batch(stream, spec["batch"], t, seed=spec["seed"], step=i, **special)
            for i in range(spec["num_inputs"])]


def hf_labels(batch: dict[str, np.ndarray]) -> np.ndarray:
    """HF's ``labels`` (B, T) int64: -100 everywhere except the original ids at the masked positions."""
    b, t = batch["ids"].shape
    labels = np.full((b, t), -100, np.int64)
    rows, cols = np.nonzero(batch["mlm_weights"] > 0)
    labels[rows, batch["mlm_positions"][rows, cols]] = batch["mlm_labels"][rows, cols]
    return labels


class _ZooSession:
    """zoo's compiled train step on device-resident batches; the state threads through the calls."""

    def __init__(self, spec: dict[str, Any]):
        import jax

        from zoo.models.bert import BERTForMaskedLM
        from zoo.train.objectives import MASKED_LM
        from zoo.train.step import init_train_state, make_mesh, make_train_step, shard_batch

        model_cfg, train_cfg = _configs(spec["preset"], spec["vocab"], spec["seq_len"], spec["dropout"],
                                        spec["grad_clip"], spec["batch"])
        model = BERTForMaskedLM(model_cfg)
        mesh = make_mesh(jax.devices()[:1])
        self.state = init_train_state(
            model, train_cfg, model_config=model_cfg, mesh=mesh, objective=MASKED_LM
        )
        step = make_train_step(model, train_cfg, mesh, MASKED_LM)
        self.batches = [shard_batch(b, 1, mesh) for b in host_batches(spec)]
        jax.block_until_ready((self.state, self.batches))
        start = time.perf_counter()
        self.step = step.lower(self.state, self.batches[0]).compile()
        self.compile_s = time.perf_counter() - start
        self.calls = 0
        self.sync = jax.block_until_ready
        self.info = {
            "environment": results.environment(),
            "compile_s": self.compile_s,
            "grad_clip": train_cfg.grad_clip,
            "weight_decay": train_cfg.weight_decay,
            "param_count": int(sum(np.size(x) for x in jax.tree.leaves(self.state.params))),
            "masked_positions": int(self.batches[0]["mlm_positions"].shape[-1]),
        }

    def __call__(self):
        batch = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        self.state, metrics = self.step(self.state, batch)
        return self.state, metrics


class _HFSession:
    """Hugging Face's BertForMaskedLM training step, as Trainer runs it (without torch.compile).

    The one training step here that is not zoo.train's: it is the PyTorch reference being measured
    (zoo's side, :class:`_ZooSession`, is the trainer's own compiled ``make_train_step``).
    """

    def __init__(self, spec: dict[str, Any]):
        import torch
        import transformers

        torch.set_num_threads(spec["threads"])
        torch.manual_seed(spec["seed"])
        device = results.torch_device(spec["jax_platform"])
        model_cfg, train_cfg = _configs(spec["preset"], spec["vocab"], spec["seq_len"], spec["dropout"],
                                        spec["grad_clip"], spec["batch"])
        kwargs = {} if spec["attention"] == "default" else {"attn_implementation": spec["attention"]}
        config = transformers.BertConfig(
            vocab_size=model_cfg.vocab_size, hidden_size=model_cfg.features,
            num_hidden_layers=model_cfg.num_layers, num_attention_heads=model_cfg.num_heads,
            intermediate_size=model_cfg.mlp_dim or 4 * model_cfg.features,
            max_position_embeddings=model_cfg.max_positions, type_vocab_size=model_cfg.type_vocab_size,
            hidden_act="gelu", layer_norm_eps=model_cfg.layer_norm_epsilon,
            hidden_dropout_prob=model_cfg.dropout_rate,
            attention_probs_dropout_prob=model_cfg.attention_dropout_rate,
            initializer_range=model_cfg.init_std, pad_token_id=PAD_ID, **kwargs,
        )
        self.model = model = transformers.BertForMaskedLM(config).to(device).train()
        # Trainer's grouping: no weight decay on biases and LayerNorm weights
        no_decay = [n for n, _ in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        groups = [
            {"params": [p for n, p in model.named_parameters() if n not in no_decay],
             "weight_decay": train_cfg.weight_decay},
            {"params": [p for n, p in model.named_parameters() if n in no_decay], "weight_decay": 0.0},
        ]
        adam = {"lr": train_cfg.learning_rate, "betas": (train_cfg.beta1, train_cfg.beta2), "eps": 1e-8}
        try:
            self.optimizer, fused = torch.optim.AdamW(groups, fused=True, **adam), True
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device / version
            self.optimizer, fused = torch.optim.AdamW(groups, **adam), False
        self.scheduler = transformers.get_scheduler(
            "linear", self.optimizer, num_warmup_steps=train_cfg.warmup_steps,
            num_training_steps=max(train_cfg.max_steps, train_cfg.warmup_steps + 1),
        )
        self.clip = train_cfg.grad_clip
        self.batches = []
        for b in host_batches(spec):
            ids = torch.from_numpy(b["ids"].astype(np.int64)).to(device)
            self.batches.append({
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "token_type_ids": torch.from_numpy(b["segment_ids"].astype(np.int64)).to(device),
                "labels": torch.from_numpy(hf_labels(b)).to(device),
            })
        self.calls = 0
        self.torch = torch
        self.sync = torch_sync(device)
        self.compile_s = None
        self.info = {
            "torch_device": device,
            "torch_threads": torch.get_num_threads(),
            "attn_implementation": model.config._attn_implementation,
            "fused_adamw": fused,
            "grad_clip": self.clip,
            "weight_decay": train_cfg.weight_decay,
            "param_count": int(sum(p.numel() for p in model.parameters())),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def __call__(self):
        batch = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        loss = self.model(**batch).loss
        loss.backward()
        if self.clip > 0:
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()



# this worker's implementation, set up by its first request
_SESSION: list[_ZooSession | _HFSession] = []


def work(request: dict[str, Any]) -> dict[str, Any]:
    """The worker: the first request sets one implementation up, ``{"steps": N}`` then times N steps.

    Setting up builds the model, the data and the compiled step, then runs
    ``warmup`` untimed steps; its answer describes the implementation. Each
    ``{"steps": N}`` answers ``times_s``: one untimed step, then N timed ones.
    """
    if "steps" not in request:
        session = (_ZooSession if request["impl"] == "zoo" else _HFSession)(request)
        for _ in range(request["warmup"]):
            session.sync(session())
        _SESSION[:] = [session]
        return session.info
    session = _SESSION[0]
    timed = time_calls(session, [()], repeats=request["steps"], warmup=1, sync=session.sync)
    return {"times_s": list(timed.times_s)}


# ----------------------------------------------------------------------------
# the parent: start the workers, let them take turns, report


@dataclasses.dataclass
class Row:
    """One implementation's result: all its timed steps (or the error that stopped it)."""

    name: str
    family: str  # "zoo" | "hf"
    attention: str | None = None  # HF: the attention implementation that ran
    timing: Timing | None = None
    error: str | None = None
    vs_hf: float | None = None  # tokens/s over the baseline HF row's (>1: faster)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.timing is not None

    def to_json(self, tokens: int) -> dict[str, Any]:
        return {
            "name": self.name, "family": self.family, "attention": self.attention,
            "status": "ok" if self.ok else "error",
            "error": self.error, "vs_hf": self.vs_hf,
            "timing": self.timing.to_json(tokens) if self.timing else None, **self.info,
        }


def add_ratios(rows: Sequence[Row]) -> Row | None:
    """Set each row's ``vs_hf``: its throughput over that of the first HF row that ran (the baseline).

    Returns the baseline row, or None (then no row has a ratio). The baseline's own ratio is 1.
    """
    baseline = next((r for r in rows if r.family == "hf" and r.ok), None)
    for r in rows:
        r.vs_hf = baseline.timing.median_s / r.timing.median_s if baseline and r.ok else None
    return baseline


def hf_plan(cfg: Config) -> tuple[list[str], list[str]]:
    """(HF attention implementations to run, notes): none, with a note, under --no-torch or without
    torch or transformers installed (neither is imported here)."""
    if not cfg.torch:
        return [], ["Hugging Face rows skipped (--no-torch): no ratio."]
    missing = [m for m in ("torch", "transformers") if results.package_version(m) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return [], [(f"{' and '.join(missing)} {verb} not installed: the Hugging Face rows are skipped, "
                    "and there is no ratio.")]
    return list(dict.fromkeys(cfg.hf_attention)), []


def summary_notes(rows: Sequence[Row], baseline: Row | None, target: bool = True) -> list[str]:
    """Notes on failed rows, differing parameter counts, and zoo's ratio (and the target, if ``target``)."""
    notes = []
    failures = [f"{r.name}: {r.error}" for r in rows if r.error]
    if failures:
        notes.append("Failures: " + "; ".join(failures) + ".")
    counts = {r.name: r.info["param_count"] for r in rows if "param_count" in r.info}
    if len(set(counts.values())) > 1:
        notes.append("The models' parameter counts differ: "
                     + ", ".join(f"{name} {n:,}" for name, n in counts.items()) + ".")
    zoo = next((r for r in rows if r.family == "zoo"), None)
    if zoo is not None and zoo.vs_hf is not None and baseline is not None:
        line = f"zoo / HF = {zoo.vs_hf:.2f}× against {baseline.name}"
        if target:
            verdict = "met" if zoo.vs_hf >= TARGET_RATIO else "not met"
            line += f"; the target is ≥ {TARGET_RATIO:g}× ({verdict})"
        notes.append(line + ".")
    return notes


def zoo_row_name(cfg: Config) -> str:
    return f"zoo BERTForMaskedLM, train step (jit, {cfg.preset})"


def hf_row_name(attention: str, requested: str) -> str:
    default = ", HF's default" if requested == "default" else ""
    return f"HF BertForMaskedLM (PyTorch, {attention} attention{default})"


def _measure(cfg: Config, base: dict[str, Any], hf_impls: Sequence[str], bar: tqdm) -> tuple[dict, list[Row]]:
    """Start the workers (zoo first), let them take turns, close them: (environment, rows with timings)."""

    def info(answer):  # what an implementation's setup says about it
        return {k: v for k, v in answer.items() if k not in ("status", "wall_s", "process_wall_s")}

    with contextlib.ExitStack() as stack:  # every worker ends with the block; an exception kills them
        workers: dict[int, Worker] = {}  # row index -> its live worker
        for i, impl in enumerate(["zoo", *hf_impls]):
            bar.set_postfix_str("zoo setup + compile" if i == 0 else f"HF {impl} setup")
            workers[i] = stack.enter_context(Worker(WORKER))
            if i == 0:  # zoo's worker describes the environment (the parent never starts a JAX backend)
                rows = [Row(zoo_row_name(cfg), "zoo")]
                answer = workers[0].request(dict(base, impl="zoo"), cfg.timeout_s)
                if answer["status"] != "ok":
                    raise RuntimeError(f"zoo's worker failed: {answer['error']}")
                rows[0].info = info(answer)
                env = rows[0].info.pop("environment")
            else:
                row = Row(hf_row_name(impl, impl), "hf", attention=impl)
                spec = dict(base, impl="hf", attention=impl, jax_platform=env["jax_platform"])
                answer = workers[i].request(spec, cfg.timeout_s)
                if answer["status"] == "ok":
                    row.info = info(answer)
                    row.attention = row.info["attn_implementation"]
                    row.name = hf_row_name(row.attention, impl)
                else:
                    row.error = answer["error"]
                    workers.pop(i).kill()
                rows.append(row)
            bar.update()

        times: dict[int, list[float]] = {i: [] for i in range(len(rows))}
        for steps in cfg.round_sizes():
            for i in list(workers):
                bar.set_postfix_str(f"{'zoo' if i == 0 else rows[i].attention}: {steps} step(s)")
                answer = workers[i].request({"steps": steps}, cfg.timeout_s)
                if answer["status"] == "ok":
                    times[i] += answer["times_s"]
                    rows[i].info["peak_rss_kib"] = answer["peak_rss_kib"]
                else:
                    rows[i].error = answer["error"]
                    workers.pop(i).kill()
                bar.update()
    for i, row in enumerate(rows):
        if row.error is None and times[i]:
            row.timing = Timing(tuple(times[i]), row.info.get("compile_s"))
    return env, rows


def run(cfg: Config, command: str) -> dict[str, Any]:
    """Run the benchmark; return the JSON-ready results with all raw timings."""
    cfg = cfg.resolved()
    other_load = results.OtherLoad()
    hf_impls, notes = hf_plan(cfg)

    base = {
        "preset": cfg.preset, "batch": cfg.batch, "seq_len": cfg.seq_len, "vocab": cfg.vocab,
        "dropout": cfg.dropout, "grad_clip": cfg.grad_clip, "warmup": cfg.warmup,
        "num_inputs": cfg.num_inputs, "seed": cfg.seed, "threads": results.num_threads(),
    }
    total = 1 + len(hf_impls) + cfg.rounds * (1 + len(hf_impls))
    with tqdm(total=total, desc="bench bert", unit="task", file=sys.stderr, disable=not cfg.progress) as bar:
        env, rows = _measure(cfg, base, hf_impls, bar)

    baseline = add_ratios(rows)
    hf_info = next((r.info for r in rows if r.family == "hf" and "torch_device" in r.info), None)
    if hf_info:
        env["torch_device"], env["torch_threads"] = hf_info["torch_device"], hf_info["torch_threads"]
        env["versions"]["transformers"] = hf_info["transformers"]
    env["other_processes_cpu_share"] = other = other_load.fraction()
    notes += results.other_load_notes(other) + results.device_mix_notes(env)
    target = env["jax_platform"] == "cpu" and all(getattr(cfg, k) == v for k, v in TARGET_SHAPES.items())
    notes += summary_notes(rows, baseline, target)
    return {
        "benchmark": "bert",
        "command": command,
        "date": results.utc_now(),
        "environment": env,
        "config": results.config_json(cfg),
        "tokens_per_call": cfg.tokens,
        "parent_pid": os.getpid(),
        "target_ratio": TARGET_RATIO,
        "target_applies": target,  # the target shapes on a CPU
        "notes": notes,
        "rows": [r.to_json(cfg.tokens) for r in rows],
    }


# ----------------------------------------------------------------------------
# the report


def render(data: dict[str, Any], images: str | None = "") -> str:
    """The header (device, versions, threads, shapes, date, command), the table, then method and notes."""
    c, tokens, zoo_info = data["config"], data["tokens_per_call"], data["rows"][0]
    head = results.header(
        "**BERT masked-LM training: tokens/s** (forward + backward + AdamW update; higher is better)",
        data["environment"],
        (f"- shapes: {c['preset']} ({_shape_text(c['preset'])}), vocabulary {c['vocab']}, batch {c['batch']} × "
         f"seq {c['seq_len']}, {zoo_info.get('masked_positions', '?')} masked positions per row, float32, "
         f"dropout {c['dropout']:g}, AdamW (weight decay {zoo_info.get('weight_decay', '?')}), "
         f"grad clip {zoo_info.get('grad_clip', '?')}"),
        date=data["date"], command=data["command"])
    headers = ["implementation", "tokens/s", "ms/step (min–max)", "vs HF", "compile s"]
    body = []
    for r in data["rows"]:
        t = Timing.from_json(r["timing"]) if r["status"] == "ok" else None
        compiled = "—" if t is None or t.compile_s is None else f"{t.compile_s:.1f}"
        body.append([r["name"], results.format_rate(t and t.rate(tokens)), results.format_ms(t) if t else "error",
                     results.format_ratio(r["vs_hf"]), compiled])
    sizes = round_sizes(c["repeats"], c["rounds"])
    method = (
        f"Method: tokens/s = {c['batch']}×{c['seq_len']} tokens / median of {c['repeats']} timed optimizer "
        f"steps, each synchronised. Each implementation runs in its own process, set up once (compilation "
        f"timed separately, then {c['warmup']} warm-up step(s)); the processes take turns, {c['rounds']} "
        f"round(s) of {'/'.join(map(str, sizes))} timed step(s) each after one untimed step; batches rotate "
        f"among {c['num_inputs']} pre-generated ones (zoo's masked-LM format, 15% of the tokens masked). "
        "zoo: the compiled `make_train_step` of zoo's trainer (state donated): the MLM head and its "
        "vocabulary-wide decoder run only at the masked positions. HF: `BertForMaskedLM` in training mode "
        "with `labels` (-100 except at the masked positions), so it computes logits at every position, "
        "its standard usage; then `backward`, `clip_grad_norm_`, `torch.optim.AdamW` (fused, Trainer's "
        "default; no decay on biases and LayerNorm), a linear scheduler step and `zero_grad`, as Trainer's "
        "step. Eager PyTorch: `torch.compile` is not used (HF does not by default). "
        "vs HF: tokens/s over that of the first HF row."
    )
    return results.sections(head, results.markdown_table(headers, body), method, notes=data["notes"])


def _shape_text(preset: str) -> str:
    from zoo import presets

    m = presets.get("bert", preset).model
    return f"{m.num_layers} layers × {m.features}, {m.num_heads} heads, MLP {m.mlp_dim or 4 * m.features}"


EXPERIMENT = Experiment(Config, run, render, stem="bert-{device}")


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench bert") -> int:
    """``zoo bench bert``: run, print the Markdown report, write files with --out."""
    return harness_main(EXPERIMENT, argv, prog)
