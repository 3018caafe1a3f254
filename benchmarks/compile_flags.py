"""Compile time of the nano train steps under the XLA flags the test suite sets (tests/zoo_server.py).

    python benchmarks/compile_flags.py [--rounds 3]

Each variant compiles the train steps of gpt/bert/seq2seq/lstm/mingru at their test presets in a fresh
process (so no cache helps), rounds interleaved (the machine is noisy). Prints a Markdown table:
seconds of ``lowered.compile()`` summed over the five steps (median, min-max), and of lowering (tracing
included), which the flags do not touch. The flags are for the tests only; zoo's defaults keep XLA's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

LEVEL0 = "--xla_backend_optimization_level=0"
VARIANTS = {
    "level 0": LEVEL0,
    "level 0, fusion emitters off": f"{LEVEL0} --xla_cpu_use_fusion_emitters=false",
    "level 0, fusion emitters off, 1 codegen part":
        f"{LEVEL0} --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1",
}
FAMILIES = {"gpt": "nano", "bert": "tiny", "seq2seq": "tiny", "lstm": "nano", "mingru": "nano"}


def worker() -> None:
    """In a fresh process: lower and compile each family's train step; print {family: [lower s, compile s]}."""
    import jax
    import numpy as np

    from zoo import presets, registry
    from zoo.train.step import abstract_train_state, make_mesh, make_train_step

    out = {}
    for family, preset in FAMILIES.items():
        fam, p = registry.family(family), presets.get(family, preset)
        model, mesh = fam.module(p.model), make_mesh(jax.devices()[:1])
        state = abstract_train_state(model, p.train, model_config=p.model, mesh=mesh, objective=fam.objective)
        example = fam.objective.example_batch(p.model)
        batch = {k: jax.ShapeDtypeStruct((1, 2) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in example.items()}
        step = make_train_step(model, p.train, mesh, fam.objective)
        t0 = time.perf_counter()
        lowered = step.lower(state, batch)
        t1 = time.perf_counter()
        lowered.compile()
        out[family] = [t1 - t0, time.perf_counter() - t1]
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return 0
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, flags in VARIANTS.items():
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
            proc = subprocess.run([sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True,
                                  check=True)
            runs[name].append(json.loads(proc.stdout.splitlines()[-1]))
            print(f"round {r + 1}: {name}: compile {sum(v[1] for v in runs[name][-1].values()):.2f} s",
                  file=sys.stderr)
    print(f"| flags (with {LEVEL0.removeprefix('--')} in all) | compile s, median (min-max) | lowering s, median | "
          + " | ".join(f"{f} compile s" for f in FAMILIES) + " |")
    print("|---|---:|---:|" + "---:|" * len(FAMILIES))
    for name, rs in runs.items():
        compile_s = [sum(v[1] for v in r.values()) for r in rs]
        lower_s = [sum(v[0] for v in r.values()) for r in rs]
        per = [statistics.median(r[f][1] for r in rs) for f in FAMILIES]
        print(f"| {name} | {statistics.median(compile_s):.2f} ({min(compile_s):.2f}-{max(compile_s):.2f}) | "
              f"{statistics.median(lower_s):.2f} | " + " | ".join(f"{x:.2f}" for x in per) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
