"""A/B: zoo's counter-hash dropout masks against jax.random's (threefry, philox4x32) in a BERT-mini training step.

    python benchmarks/dropout.py                 # 3 interleaved rounds, one device and 2-way data parallel
    python benchmarks/dropout.py --rounds 5 --steps 10

Each measurement is a fresh process (the PRNG implementation is a global JAX
setting): the trainer's compiled step for bert-mini (batch 32 x 128, dropout
0.1, the model zoo pretrains), timed over ``--steps`` steps after a warm-up,
median ms per step. ``hash`` is zoo's ``zoo.layers.dropout.hash_bernoulli``;
``threefry`` and ``philox`` replace it by ``jax.random.bernoulli`` with keys of
that implementation. ``devices=2`` runs the step data parallel over two CPU
devices (a sharded step: the masks are drawn per shard). The variants take
turns in every round; the result is written to
``benchmarks/results/dropout-<device>.json`` and printed as a table for
docs/cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("hash", "threefry", "philox")

WORKER = r"""
import os, sys, time, statistics, functools
variant, devices, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import jax
if variant == "philox":
    jax.config.update("jax_default_prng_impl", "philox4x32")
import numpy as np
import zoo.layers.dropout as dropout
if variant != "hash":
    dropout.hash_bernoulli = lambda key, p, shape: jax.random.bernoulli(key, p, shape)
from zoo import presets
from zoo.data.masking import mlm_batch
from zoo.models.bert import BERTForMaskedLM
from zoo.train.objectives import MASKED_LM
from zoo.train.step import init_train_state, make_mesh, make_train_step, shard_batch
p = presets.get("bert", "bert-mini")
cfg, tc = p.model.replace(vocab_size=8192), p.train
model = BERTForMaskedLM(cfg)
mesh = make_mesh(jax.devices()[:devices])
state = init_train_state(model, tc, model_config=cfg, mesh=mesh, objective=MASKED_LM)
step = make_train_step(model, tc, mesh, MASKED_LM)
tokens = np.random.default_rng(0).integers(5, 8192, 200_000).astype(np.int32)
batches = [shard_batch(mlm_batch(tokens, tc.batch_size, cfg.block_size, seed=0, step=i, cls_id=2, sep_id=3,
                                 mask_id=4, special_ids=range(5), vocab_size=8192), 1, mesh) for i in range(3)]
for i in range(3):
    state, m = step(state, batches[i % 3]); jax.block_until_ready(m)
times = []
for i in range(steps):
    t = time.perf_counter(); state, m = step(state, batches[i % 3]); jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
print(statistics.median(times) * 1e3)
"""


def measure(variant: str, devices: int, steps: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run([sys.executable, "-c", WORKER, variant, str(devices), str(steps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/dropout.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for devices in args.devices:
            for variant in VARIANTS:
                ms = measure(variant, devices, args.steps)
                results.setdefault(f"{variant} devices={devices}", []).append(ms)
                print(f"round {r + 1}: {variant} devices={devices}: {ms:.1f} ms/step", flush=True)
    sys.path.insert(0, str(ROOT))
    from zoo.bench.timing import cpu_model, num_threads  # noqa: PLC0415

    machine = f"{cpu_model()}, {num_threads()} CPU threads"
    lines = [f"BERT-mini training step (batch 32 x 128, dropout 0.1), median ms per step over {args.rounds} "
             f"interleaved rounds; {machine}; `python benchmarks/dropout.py`", "",
             "| devices | hash (zoo) | threefry | philox4x32 | threefry / hash | philox / hash |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for devices in args.devices:
        med = {v: statistics.median(results[f"{v} devices={devices}"]) for v in VARIANTS}
        lines.append(f"| {devices} | {med['hash']:.1f} | {med['threefry']:.1f} | {med['philox']:.1f} | "
                     f"{med['threefry'] / med['hash']:.3f} | {med['philox'] / med['hash']:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results" / "dropout-cpu.json"
    out.write_text(json.dumps({"machine": machine, "rounds": args.rounds, "steps": args.steps,
                               "ms_per_step": results, "table": table}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
