"""Write docs/sharding.md's generated tables: GPT-2 small's memory and communication per device under each mesh.

    python benchmarks/sharding_plan.py             # rewrite the plan tables in docs/sharding.md
    python benchmarks/sharding_plan.py --check     # exit 1 if docs/sharding.md differs from what this writes
    python benchmarks/sharding_plan.py --hlo       # also compile nano's train step on 4 CPU devices under
                                                   # each mesh and write the predicted-vs-compiled table

Computed, not measured: the plan comes from :mod:`zoo.train.costs` (the
parameters' shapes and logical axis names, the rules table, the mesh, the
batch), whose predictions ``tests/test_sharding.py`` checks against the
collectives of the compiled program for every mesh. ``--hlo`` shows that
check as a table (it compiles, about a minute on two CPU cores); the test
suite runs ``--check`` on the plan, which only traces shapes.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "sharding.md"
sys.path.insert(0, str(ROOT))

# The plan: GPT-2 small (12 x 12 x 768, block 1024, vocabulary 50257, biases, tied embeddings) in float32, the
# precision whose collectives tests/test_sharding.py checks against compiled programs. (With bfloat16 matmuls
# the weights could be gathered, and activations all-reduced, in bfloat16 on GPU and TPU: half those bytes.
# XLA:CPU runs bfloat16 collectives in float32, so this machine cannot check that.)
DEVICES = 8
MESHES = ("data=8", "fsdp=8", "data=2,fsdp=4", "fsdp=4,tensor=2", "data=2,tensor=4")
GLOBAL_BATCH = 64  # rows of 1024 tokens per step, whatever the mesh
BANDWIDTHS_GBS = (25, 50, 100, 200, 450)  # GB/s each device sends: 200 and 400 Gb/s NICs ... NVLink 4 (H100)
ACHIEVED_TFLOPS = (100, 400)  # FLOP/s a device sustains: ~40% of an A100's / an H100's dense bfloat16 peak
FSDP_SIZES = (8, 64)  # a GPU node; a TPU slice or eight nodes
HLO_MESHES = ("data=4", "fsdp=4", "tensor=2,data=2", "fsdp=2,tensor=2")
MIB = 2**20


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- sharding:{name}:start -->", f"<!-- sharding:{name}:end -->"


def _replace(text: str, name: str, body: str) -> str:
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{DOC.name}: markers {start} ... {end} not found (in that order)")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def gpt2_small():
    from zoo.models.gpt import GPTConfig

    return GPTConfig()


def _mib(x: float) -> str:
    return f"{x / MIB:,.0f}" if x >= 10 * MIB or x == 0 else f"{x / MIB:,.1f}"


def memory_table(config) -> str:
    from zoo.train.costs import state_memory

    rows = ["| mesh | parameters | gradients | AdamW moments | state, total | of which replicated over fsdp "
            "| gathered at once (FSDP) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mesh in MESHES:
        m = state_memory(config, mesh)
        rows.append(f"| `{mesh}` | {_mib(m['params'])} | {_mib(m['grads'])} | {_mib(m['adam'])} | "
                    f"**{_mib(m['total'])}** | {_mib(m['replicated'])} | {_mib(m['gathered_peak'])} |")
    return "\n".join(rows)


def communication_rows(config) -> str:
    from zoo.train.costs import communication_table, step_collectives

    rows = ["| mesh | rows per data x fsdp shard | collectives: MiB each device sends per step | total MiB "
            "| at 100 GB/s |", "| --- | ---: | --- | ---: | ---: |"]
    for mesh in MESHES:
        sizes = dict(kv.split("=") for kv in mesh.split(","))
        shard = GLOBAL_BATCH // (int(sizes.get("data", 1)) * int(sizes.get("fsdp", 1)))
        table = communication_table(step_collectives(config, mesh, GLOBAL_BATCH, reduce_scatter=True))
        parts = ", ".join(f"{kind} over {axes} {_mib(b)}" for (axes, kind), b in sorted(table.items()) if b >= MIB / 2)
        total = sum(table.values())
        rows.append(f"| `{mesh}` | {shard} | {parts} | **{_mib(total)}** | {total / 100e9 * 1e3:,.0f} ms |")
    return "\n".join(rows)


def fsdp_bytes(config, fsdp: int) -> float:
    """Bytes each device sends per step under ``fsdp=N`` alone (all of it is per step, whatever the batch)."""
    from zoo.train.costs import step_collectives

    return sum(c.bytes_per_device for c in step_collectives(config, {"fsdp": fsdp}, fsdp, reduce_scatter=True))


def break_even_rows(config, fsdp: int, tflops: float, bandwidth_gbs: float) -> int:
    """The smallest rows per device at which one step's compute takes at least its FSDP communication."""
    from zoo.models.gpt import gpt_flops_per_token

    seconds = fsdp_bytes(config, fsdp) / (bandwidth_gbs * 1e9)
    flops_per_row = gpt_flops_per_token(config) * config.block_size
    return max(1, math.ceil(seconds * tflops * 1e12 / flops_per_row))


def break_even_table(config) -> str:
    from zoo.models.gpt import gpt_flops_per_token

    head = " | ".join(f"`fsdp={n}`, {t} TFLOP/s" for n in FSDP_SIZES for t in ACHIEVED_TFLOPS)
    rows = [f"| bandwidth per device | {head} |", "| ---: |" + " ---: |" * (len(FSDP_SIZES) * len(ACHIEVED_TFLOPS))]
    for bw in BANDWIDTHS_GBS:
        cells = " | ".join(str(break_even_rows(config, n, t, bw)) for n in FSDP_SIZES for t in ACHIEVED_TFLOPS)
        rows.append(f"| {bw} GB/s | {cells} |")
    per = ", ".join(f"`fsdp={n}` {_mib(fsdp_bytes(config, n))} MiB" for n in FSDP_SIZES)
    rows.append("")
    rows.append(f"FSDP's traffic per device and step, whatever the batch: {per}; "
                f"compute per row of {config.block_size} tokens: "
                f"{gpt_flops_per_token(config) * config.block_size / 1e12:.2f} TFLOP "
                f"(`zoo.gpt_flops_per_token`, 6N + attention).")
    return "\n".join(rows)


def plan_section() -> str:
    config = gpt2_small()
    return "\n".join([
        f"GPT-2 small (`GPTConfig()`, 124M parameters, float32) on {DEVICES} devices, MiB per device. "
        "Activations are not counted (they depend on the batch, `remat` and the attention kernel).", "",
        memory_table(config), "",
        f"Communication per training step of {GLOBAL_BATCH} rows of {config.block_size} tokens (bytes each "
        "device sends with ring algorithms; gradients split over fsdp are reduce-scattered, as XLA's GPU and "
        "TPU pipelines lower them):", "",
        communication_rows(config), "",
        "The smallest batch per device (rows of 1024 tokens) at which FSDP keeps up: one step's compute "
        "takes at least as long as its all-gathers and reduce-scatters, so that they can hide behind it:", "",
        break_even_table(config),
    ])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hlo_section() -> str:
    """Nano's train step compiled under each mesh on 4 CPU devices: predicted and compiled collectives."""
    import collections

    import jax
    import numpy as np

    import zoo
    from zoo import presets
    from zoo.train import sharding
    from zoo.train.costs import step_collectives
    from zoo.train.hlo import hlo_collectives
    from zoo.train.step import abstract_train_state, make_mesh, make_train_step, shard_batch

    if jax.device_count() != 4:
        raise RuntimeError(f"--hlo needs 4 devices, found {jax.device_count()}")
    preset = presets.get("gpt", "nano")
    config, cfg = preset.model, preset.train
    model = zoo.GPT(config)
    x = np.zeros((cfg.batch_size, config.block_size), np.int32)
    rows = ["| mesh | collective | over | predicted: count x MiB | compiled: count x MiB |",
            "| --- | --- | --- | --- | --- |"]
    for spec in HLO_MESHES:
        mesh = make_mesh(None, spec)
        state = abstract_train_state(model, cfg, model_config=config, mesh=mesh)
        batch = shard_batch({"inputs": x, "targets": x}, cfg.grad_accum_steps, mesh)
        hlo = make_train_step(model, cfg, mesh, model_config=config).lower(state, batch).compile().as_text()
        predicted, compiled = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
        for c in step_collectives(config, mesh, cfg.batch_size):
            entry = predicted[(c.kind, "+".join(c.axes))]
            entry[0] += c.count
            entry[1] += c.count * c.array_bytes
        for c in hlo_collectives(hlo, sharding.mesh_shape(mesh)):
            arrays = [b for dims, b in zip(c.shapes, c.array_bytes) if dims]  # scalars (loss, norm) left out
            if arrays:
                entry = compiled[(c.kind, "+".join(c.axes))]
                entry[0] += len(arrays) * c.count
                entry[1] += c.count * sum(arrays)
        for key in sorted(set(predicted) | set(compiled)):
            (p_n, p_b), (c_n, c_b) = predicted.get(key, (0, 0)), compiled.get(key, (0, 0))
            rows.append(f"| `{spec}` | {key[0]} | {key[1]} | {p_n} x, {p_b / MIB:.3f} | {c_n} x, {c_b / MIB:.3f} |")
    machine = f"{_cpu_name()}, jax {jax.__version__}"
    return "\n".join([
        f"`gpt` `nano` (2 layers x 2 heads x 32, block 32, batch {cfg.batch_size}), float32, one training step "
        f"compiled on 4 CPU devices ({machine}); arrays counted one by one (XLA's combiners merge some into "
        "tuples), scalars left out. Command: `python benchmarks/sharding_plan.py --hlo`.", "", *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/sharding_plan.py", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/sharding.md differs")
    parser.add_argument("--hlo", action="store_true", help="also compile nano on 4 CPU devices (about a minute)")
    args = parser.parse_args(argv)
    if args.hlo:  # before JAX starts
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
                                   " --xla_backend_optimization_level=0").strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    text = DOC.read_text()
    new = _replace(text, "plan", plan_section())
    if args.hlo:
        new = _replace(new, "hlo", hlo_section())
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python benchmarks/sharding_plan.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(new[new.find(_markers("plan")[0]):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
