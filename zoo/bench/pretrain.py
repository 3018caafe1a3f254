"""Pretraining wall time: ``zoo pretrain`` on nanoGPT's CPU recipe, beside nanoGPT's own run.

    zoo bench pretrain --data shakespeare.txt --nanogpt-log nanogpt.log

Runs ``zoo pretrain gpt --preset shakespeare-char-cpu --data DATA`` in a
fresh process (and a fresh run directory) and reports the wall time from
process start to the end (final evaluation, checkpoint and plot included;
tokenizing and compilation too), the final validation loss and the median
ms per step from its ``metrics.jsonl``.

nanoGPT is never run by zoo. Its figures come from the log of a run you made
yourself on the same machine, in the same session, with its README's CPU
command under GNU time::

    /usr/bin/time -f "%e s wall" python train.py config/train_shakespeare_char.py --device=cpu \\
        --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 \\
        --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 \\
        > nanogpt.log 2>&1

From that log: the last ``step N: ... val loss X`` line, the ``S s wall``
line, and the median of the ``iter i: ... time T ms`` lines.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.harness import results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main

TARGET_RATIO = 0.5  # issue 4: at most half of nanoGPT's wall time
TARGET_VAL_LOSS = 1.89


@dataclasses.dataclass(frozen=True)
class Config:
    """Time ``zoo pretrain`` on nanoGPT's shakespeare-char CPU recipe."""

    data: str = "stdlib"  # the text (nanoGPT's shakespeare_char input.txt for the comparison)
    preset: str = "shakespeare-char-cpu"
    nanogpt_log: Path | None = None  # nanoGPT's log (see the module docstring); None: zoo only
    out: Path | None = None  # where to write pretrain-<device>.json/.md
    quick: bool = False  # smoke test: the nano preset on the built-in corpus, a few steps
    timeout_s: float = 3600.0

    def resolved(self) -> Config:
        if not self.quick and self.data == "stdlib":
            raise ValueError("zoo bench pretrain: pass --data (nanoGPT's shakespeare text) or --quick")
        return self


def parse_nanogpt_log(text: str) -> dict[str, Any]:
    """Final val loss, step, wall seconds and median ms/iteration from a nanoGPT log."""
    evals = re.findall(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", text, re.M)
    walls = re.findall(r"^([\d.]+) s wall", text, re.M)
    iters = [float(t) for t in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", text, re.M)]
    if not evals or not walls:
        raise ValueError("nanoGPT log: expected 'step N: train loss X, val loss Y' lines and a 'S s wall' line "
                         "(run it under /usr/bin/time -f \"%e s wall\")")
    step, _, val = evals[-1]
    return {"step": int(step), "val_loss": float(val), "wall_s": float(walls[-1]),
            "median_ms_per_step": float(np.median(iters)) if iters else None}


def run_zoo(cfg: Config) -> dict[str, Any]:
    """One ``zoo pretrain`` in a fresh process and run directory: wall time, val loss, ms/step."""
    preset = "nano" if cfg.quick else cfg.preset
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [sys.executable, "-m", "zoo", "pretrain", "gpt", "--preset", preset, "--data", cfg.data,
                "--out", str(out), "--no-progress", "--sample-tokens", "0", "--cache-dir", str(Path(tmp) / "cache")]
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=cfg.timeout_s)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"zoo pretrain failed ({proc.returncode}): {proc.stderr[-2000:]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    rates = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    return {
        "preset": preset,
        "step": evals[-1]["step"],
        "val_loss": evals[-1]["val_loss"],
        "wall_s": wall,
        "median_tokens_per_s": float(np.median(rates)) if rates else None,
        "argv": argv[1:],
        "stdout_tail": proc.stdout[-1000:],
    }


def render(data: dict[str, Any], images: str | None = "") -> str:
    env, zoo_run, nano = data["environment"], data["zoo"], data.get("nanogpt")
    lines = results.header(
        "**Pretraining wall time: zoo vs nanoGPT** (nanoGPT's CPU recipe: 4 x 4 x 128, block 64, batch 12, "
        "2000 steps, char-level)", env, f"- data: {data['config']['data']}", date=data["date"],
        command=data["command"]) + [""]
    rows = [["zoo", f"`zoo pretrain gpt --preset {zoo_run['preset']}`", f"{zoo_run['wall_s']:.1f}",
             f"{zoo_run['val_loss']:.4f}"]]
    if nano:
        rows.append(["nanoGPT", "README's CPU command (log given with --nanogpt-log)", f"{nano['wall_s']:.1f}",
                     f"{nano['val_loss']:.4f}"])
    lines.append(results.markdown_table(["run", "command", "wall s (process start to end)", "final val loss"],
                                        rows, "llrr"))
    if nano:
        ratio = zoo_run["wall_s"] / nano["wall_s"]
        met = ratio <= TARGET_RATIO and zoo_run["val_loss"] <= TARGET_VAL_LOSS
        lines += ["", f"zoo's wall time is {ratio:.2f}x nanoGPT's (target: <= {TARGET_RATIO}x with val loss "
                      f"<= {TARGET_VAL_LOSS}; {'met' if met else 'not met'})."]
    notes = results.other_load_notes(env.get("other_processes_cpu_share"))
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def run(cfg: Config, command: str) -> dict[str, Any]:
    cfg = cfg.resolved()
    nano = parse_nanogpt_log(cfg.nanogpt_log.read_text()) if cfg.nanogpt_log else None
    load = results.OtherLoad()
    zoo_run = run_zoo(cfg)
    env = results.environment()
    env["other_processes_cpu_share"] = load.fraction()
    data = {"config": dataclasses.asdict(cfg) | {"nanogpt_log": str(cfg.nanogpt_log)}, "environment": env,
            "date": results.utc_now(), "command": command, "zoo": zoo_run, "nanogpt": nano}
    if nano:
        data["ratio_wall"] = zoo_run["wall_s"] / nano["wall_s"]
    return data


EXPERIMENT = Experiment(Config, run, render, stem="pretrain-{device}", description=__doc__.split("\n\n")[0])


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench pretrain") -> int:
    return harness_main(EXPERIMENT, argv, prog)
