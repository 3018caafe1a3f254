"""A/B of zoo's CPU-only choices: each against the plain version, in the training steps they were made for.

    python benchmarks/cpu_tricks.py                    # 3 interleaved rounds; prints the tables, writes results
    python benchmarks/cpu_tricks.py --update-docs      # ... and puts them into docs/cpu.md

Every measurement is a fresh process (the choices are fixed when zoo is
imported, the PRNG implementation is a global JAX setting): the trainer's
compiled step, timed over ``--steps`` steps after a warm-up, median ms per
step. The variants take turns within every round, so a change in the
machine's load hits all of them alike.

* ``linear`` and ``gelu`` (``zoo.layers.platform``): the ``linear`` custom
  backward and the GELU's materialised backward, against plain ``x @ w`` and
  plain GELU (``ZOO_CPU_PLAIN``), in the quick-start GPT (4 x 128, batch
  16 x 128) and BERT-mini (batch 32 x 128);
* dropout masks: zoo's counter hash (``zoo.layers.dropout.hash_bernoulli``)
  against ``jax.random.bernoulli`` with threefry and philox4x32 keys, in
  BERT-mini (dropout 0.1), on one device and data parallel over two (a
  sharded step draws its masks per shard).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

WORKER = r"""
import sys, time, statistics
family, preset, masks, devices, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import jax, jax.numpy as jnp
import numpy as np
import zoo.layers.dropout as dropout
def masks_from(impl):
    # The dropout key re-typed to `impl` (its 2 words of key data): only the masks change PRNG. Setting
    # jax_default_prng_impl=philox4x32 globally instead fails to compile the sharded init (jax 0.10.2:
    # "Unable to convert MHLO to StableHLO").
    def bernoulli(key, p, shape):
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        return jax.random.bernoulli(jax.random.wrap_key_data(data, impl=impl), p, shape)
    return bernoulli
if masks != "hash":
    dropout.hash_bernoulli = masks_from({"threefry": "threefry2x32", "philox": "philox4x32"}[masks])
from zoo import presets, registry
from zoo.data.masking import mlm_batch
from zoo.data.pipeline import get_batch
from zoo.train.step import init_train_state, make_mesh, make_train_step, shard_batch
p = presets.get(family, preset)
vocab = 8192 if family == "bert" else p.model.vocab_size
cfg, tc = p.model.replace(vocab_size=vocab), p.train
fam = registry.FAMILIES[family]
model = fam.module(cfg)
mesh = make_mesh(jax.devices()[:devices])
state = init_train_state(model, tc, model_config=cfg, mesh=mesh, objective=fam.objective)
step = make_train_step(model, tc, mesh, fam.objective)
tokens = np.random.default_rng(0).integers(5, vocab, 200_000).astype(np.int32)
def batch(i):
    if family == "bert":
        return mlm_batch(tokens, tc.batch_size, cfg.block_size, seed=0, step=i, cls_id=2, sep_id=3, mask_id=4,
                         special_ids=range(5), vocab_size=vocab)
    x, y = get_batch(tokens, tc.batch_size, cfg.block_size, seed=0, step=i)
    return {"inputs": x, "targets": y}
batches = [shard_batch(batch(i), 1, mesh) for i in range(3)]
for i in range(3):
    state, m = step(state, batches[i % 3]); jax.block_until_ready(m)
times = []
for i in range(steps):
    t = time.perf_counter(); state, m = step(state, batches[i % 3]); jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
print(statistics.median(times) * 1e3)
"""

# name: (family, preset, ZOO_CPU_PLAIN, dropout masks, devices)
VARIANTS = {
    "gpt zoo": ("gpt", "quickstart", "", "hash", 1),
    "gpt plain linear": ("gpt", "quickstart", "linear", "hash", 1),
    "gpt plain gelu": ("gpt", "quickstart", "gelu", "hash", 1),
    "gpt plain": ("gpt", "quickstart", "linear,gelu", "hash", 1),
    "bert zoo": ("bert", "bert-mini", "", "hash", 1),
    "bert plain linear": ("bert", "bert-mini", "linear", "hash", 1),
    "bert plain gelu": ("bert", "bert-mini", "gelu", "hash", 1),
    "bert threefry": ("bert", "bert-mini", "", "threefry", 1),
    "bert philox": ("bert", "bert-mini", "", "philox", 1),
    "bert zoo x2": ("bert", "bert-mini", "", "hash", 2),
    "bert threefry x2": ("bert", "bert-mini", "", "threefry", 2),
    "bert philox x2": ("bert", "bert-mini", "", "philox", 2),
}
MARKERS = ("<!-- bench:cpu_tricks:start -->", "<!-- bench:cpu_tricks:end -->")
DOC = _publish.ROOT / "docs" / "cpu.md"


def measure(name: str, steps: int) -> float | str:
    """Median ms per step, or the worker's error (its last line) when the variant cannot run."""
    family, preset, plain, masks, devices = VARIANTS[name]
    env = {**os.environ, "PYTHONPATH": str(_publish.ROOT), "JAX_PLATFORMS": "cpu", "ZOO_CPU_PLAIN": plain,
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, "-c", WORKER, family, preset, masks, str(devices), str(steps)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if "Error" in line] or proc.stderr.splitlines() or ["?"]
        return lines[-1].strip()
    return float(proc.stdout.strip().splitlines()[-1])


def tables(results: dict[str, list], rounds: int, machine: str, load: str) -> str:
    failed = {name: next(r for r in runs if isinstance(r, str)) for name, runs in results.items()
              if any(isinstance(r, str) for r in runs)}
    med = {name: statistics.median(ms) for name, ms in results.items() if name not in failed}

    def row(label: str, base: str, other: str) -> str:
        if base in failed or other in failed:
            return f"| {label} | {failed.get(base, '')} | {failed.get(other, '')} | fails | |"
        return (f"| {label} | {med[base]:.1f} | {med[other]:.1f} | {med[other] / med[base]:.3f} | "
                f"{min(results[other]) / max(results[base]):.3f}–{max(results[other]) / min(results[base]):.3f} |")

    lines = [f"Median ms per training step over {rounds} interleaved rounds; {machine}; load {load}; "
             "`python benchmarks/cpu_tricks.py`.", "",
             "| A/B | zoo (ms) | plain (ms) | plain / zoo | range over rounds |", "| --- | ---: | ---: | ---: | ---: |"]
    for family in ("gpt", "bert"):
        for trick in ("linear", "gelu"):
            if f"{family} plain {trick}" in results:
                lines.append(row(f"{family}: plain {trick} instead of zoo's", f"{family} zoo", f"{family} plain {trick}"))
        if f"{family} plain" in results:
            lines.append(row(f"{family}: both plain", f"{family} zoo", f"{family} plain"))
    for masks in ("threefry", "philox"):
        for suffix, where in (("", "one device"), (" x2", "2 devices, data parallel")):
            if f"bert {masks}{suffix}" in results:
                lines.append(row(f"bert: {masks} dropout masks instead of the hash, {where}",
                                 f"bert zoo{suffix}", f"bert {masks}{suffix}"))
    return "\n".join(lines)


def render(data: dict) -> str:
    """The published table, from a stored result (``benchmarks/results/cpu_tricks-cpu.json``)."""
    return tables(data["ms_per_step"], data["rounds"], data["machine"], data["load"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cpu_tricks.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="a subset of the variants")
    parser.add_argument("--update-docs", action="store_true", help="put the table into docs/cpu.md")
    args = parser.parse_args(argv)
    names = args.only or list(VARIANTS)
    results: dict[str, list[float]] = {}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for name in names:
            if any(isinstance(x, str) for x in results.get(name, [])):
                continue  # failed once: it will again
            results.setdefault(name, []).append(measure(name, args.steps))
            got = results[name][-1]
            print(f"round {r + 1}: {name}: " + (f"{got:.1f} ms/step" if isinstance(got, float) else f"failed: {got}"),
                  flush=True)
    sys.path.insert(0, str(_publish.ROOT))
    from zoo.harness.results import cpu_model, num_threads  # noqa: PLC0415

    machine = f"{cpu_model()}, {num_threads()} CPU threads"
    load = f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1-minute load average)"
    table = tables(results, args.rounds, machine, load)
    print(table)
    out = _publish.RESULTS / "cpu_tricks-cpu.json"
    out.write_text(json.dumps({"machine": machine, "load": load, "rounds": args.rounds, "steps": args.steps,
                               "date": time.strftime("%Y-%m-%d"), "ms_per_step": results, "table": table},
                              indent=2) + "\n")
    print(f"wrote {out.relative_to(_publish.ROOT)}")
    if args.update_docs:
        DOC.write_text(_publish.replace_between_markers(DOC.read_text(), table, *MARKERS))
        print(f"updated {DOC.relative_to(_publish.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
