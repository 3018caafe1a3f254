"""One machine, one or two processes: the wall time of nanoGPT's CPU recipe in zoo, per seed, from cold caches.

    python benchmarks/cpu_processes.py --data shakespeare.txt --seeds 0 1 2
    python benchmarks/cpu_processes.py --data shakespeare.txt --nanogpt-logs n0.log n1.log n2.log
    python benchmarks/cpu_processes.py --data shakespeare.txt --nanogpt-cmd "bash run_seed.sh {seed}"

For each seed, one after another on this machine:

* ``zoo pretrain gpt --preset shakespeare-char-cpu --train.seed S`` (one process, one CPU device);
* ``zoo launch --nproc 2 -- pretrain gpt --preset shakespeare-char-cpu --train.seed S --mesh data=2`` (two
  processes of one CPU device each, gloo all-reduce over the loopback);

each in a fresh process, with a fresh run directory, a fresh tokenization cache and no persistent
compilation cache (``JAX_COMPILATION_CACHE_DIR`` removed), so every run pays what a first run after an
install pays: reading and tokenizing the corpus, compiling. The wall time is from starting the command to
its exit. nanoGPT's figures come from logs of runs you made yourself just before, one per seed (see
``zoo/bench/pretrain.py`` for the command), or from a command you give (``--nanogpt-cmd``, ``{seed}`` replaced
by the seed; its output is parsed as such a log): it runs first for each seed, then the zoo variants, so a
drift in the machine hits all alike. zoo ships no nanoGPT code and never fetches it.

The machine must be otherwise idle: the CPU time other processes took during the runs is measured and
printed; above 5% the report says the figures are not to be published. It records what changes a CPU
run's speed and is easy to miss: ``XLA_FLAGS`` and the other ``JAX_*``/``XLA_*``/thread variables of the
environment, the CPU count and model, zoo's commit.

Writes ``benchmarks/results/cpu_processes-<device>.json`` and ``.md`` with ``--out``; with ``--update-docs``
also the table in docs/distributed.md (refused when other processes took more than 5% of the CPU).
``--from-json FILE`` renders a stored result instead of running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:  # the harness (zoo.harness.results) replaced zoo.bench.timing on main
    from zoo.harness import results as timing  # noqa: E402
except ImportError:
    from zoo.bench import timing  # noqa: E402
from zoo.bench.pretrain import parse_nanogpt_log  # noqa: E402

MAX_OTHER_LOAD = 0.05
_ENV_KEYS = re.compile(r"^(XLA_|JAX_|TF_CPP_|OMP_|MKL_|OPENBLAS_|ZOO_)")
_ABSOLUTE = re.compile(r"(?<![\w.])/(?:[^\s/'\"]+/)*")  # the directories of an absolute path, which name this machine
MARKERS = ("<!-- bench:cpu_processes:start -->", "<!-- bench:cpu_processes:end -->")
PAGE = ROOT / "docs" / "distributed.md"


def portable(text: str) -> str:
    """``text`` with every absolute path shortened to its file name, as the docs show commands."""
    return _ABSOLUTE.sub("", text)


def zoo_run(preset: str, data: str, seed: int, nproc: int, timeout_s: float) -> dict:
    """One cold run: wall seconds, final val loss, median ms per step (from its metrics.jsonl)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        pretrain = ["pretrain", "gpt", "--preset", preset, "--data", data, "--out", str(out), "--no-progress",
                    "--sample-tokens", "0", "--cache-dir", str(Path(tmp) / "tokens"), "--train.seed", str(seed)]
        argv = ([sys.executable, "-m", "zoo", *pretrain] if nproc == 1 else
                [sys.executable, "-m", "zoo", "launch", "--nproc", str(nproc), "--", *pretrain, "--mesh",
                 f"data={nproc}"])
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[2:])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    logs = [r for r in records if r.get("tokens_per_s")]
    tokens_per_step = None
    return {"nproc": nproc, "seed": seed, "wall_s": wall, "val_loss": evals[-1]["val_loss"], "step": evals[-1]["step"],
            "median_tokens_per_s": float(np.median([r["tokens_per_s"] for r in logs])) if logs else tokens_per_step,
            "command": portable(" ".join(["zoo", *argv[3:]]))}


def nanogpt_run(command: str, seed: int, timeout_s: float) -> dict:
    """One nanoGPT run from the user's ``command``: its log's figures (wall time as the log states it)."""
    proc = subprocess.run(command.format(seed=seed), shell=True, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{command.format(seed=seed)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return _with_tokens_per_s({"seed": seed, **parse_nanogpt_log(proc.stdout + "\n" + proc.stderr),
                               "command": portable(command.format(seed=seed))})


def _with_tokens_per_s(run: dict) -> dict:
    """nanoGPT logs milliseconds per iteration; its recipe trains 12 x 64 tokens per iteration."""
    ms = run.get("median_ms_per_step")
    return {**run, "median_tokens_per_s": 12 * 64 / (ms / 1000) if ms else None}


def summary(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _env_line(env_vars: dict) -> str:
    shown = {k: v for k, v in env_vars.items() if _ENV_KEYS.match(k)}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "no XLA_/JAX_/thread variables set"


def render(data: dict) -> str:
    env = data["environment"]
    lines = ["**nanoGPT's CPU recipe: one process, two processes, nanoGPT** (wall s from start to exit, cold "
             "caches; mean (min-max) over seeds)", "", timing.device_line(env), timing.versions_line(env),
             f"- zoo commit: {data['commit']}", f"- seeds: {data['seeds']}", f"- command: `{data['command']}`",
             f"- environment: {_env_line(data['env_vars'])}",
             f"- other processes' CPU share during the runs: {100 * env['other_processes_cpu_share']:.1f}%", ""]
    rows = []
    for label, runs in data["runs"].items():
        rows.append([label, summary([r["wall_s"] for r in runs]), " / ".join(f"{r['val_loss']:.4f}" for r in runs),
                     summary([r["median_tokens_per_s"] for r in runs if r.get("median_tokens_per_s")] or [0])])
    lines.append(timing.markdown_table(["run", "wall s", "final val loss per seed", "tokens/s (median)"], rows,
                                       "lrlr"))
    nano = data["runs"].get("nanoGPT")
    if nano:
        base = np.mean([r["wall_s"] for r in nano])
        lines += [""] + [f"- {label}: {np.mean([r['wall_s'] for r in runs]) / base:.2f}x nanoGPT's wall time"
                         for label, runs in data["runs"].items() if label != "nanoGPT"]
    if env["other_processes_cpu_share"] > MAX_OTHER_LOAD:
        lines += ["", f"NOT FOR PUBLICATION: other processes took {100 * env['other_processes_cpu_share']:.0f}% "
                      f"of the CPU time (more than {100 * MAX_OTHER_LOAD:.0f}%)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cpu_processes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="nanoGPT's shakespeare_char input.txt")
    parser.add_argument("--preset", default="shakespeare-char-cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts to time")
    parser.add_argument("--nanogpt-logs", type=Path, nargs="*", default=[], help="one log per seed")
    parser.add_argument("--nanogpt-cmd", default=None,
                        help="a shell command running nanoGPT for seed {seed} under /usr/bin/time -f '%%e s wall'")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON and Markdown results")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--from-json", type=Path, default=None, help="render a stored result instead of running")
    parser.add_argument("--update-docs", action="store_true", help=f"write the table into {PAGE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        return _publish(data, args)
    load = timing.OtherLoad()
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:  # seed by seed, the variants one after another: drifts in the machine hit all alike
        if args.nanogpt_cmd:
            result = nanogpt_run(args.nanogpt_cmd, seed, args.timeout_s)
            runs.setdefault("nanoGPT", []).append(result)
            print(f"seed {seed}, nanoGPT: {result['wall_s']:.1f} s, val loss {result['val_loss']:.4f}", file=sys.stderr,
                  flush=True)
        for nproc in args.nproc:
            label = "zoo, 1 process" if nproc == 1 else f"zoo launch, {nproc} processes"
            result = zoo_run(args.preset, args.data, seed, nproc, args.timeout_s)
            runs.setdefault(label, []).append(result)
            print(f"seed {seed}, {label}: {result['wall_s']:.1f} s, val loss {result['val_loss']:.4f}",
                  file=sys.stderr, flush=True)
    if args.nanogpt_logs:
        runs["nanoGPT"] = [_with_tokens_per_s(parse_nanogpt_log(p.read_text())) for p in args.nanogpt_logs]
    env = timing.environment()
    env["other_processes_cpu_share"] = load.fraction()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    data = {"environment": env, "commit": commit, "seeds": args.seeds, "runs": runs, "date": timing.utc_now(),
            "env_vars": {k: v for k, v in sorted(os.environ.items()) if _ENV_KEYS.match(k)},
            "cpu_count": os.cpu_count(),
            "command": portable(shlex.join(["python", "benchmarks/cpu_processes.py", *(argv or sys.argv[1:])]))}
    return _publish(data, args)


def _publish(data: dict, args: argparse.Namespace) -> int:
    markdown = render(data)
    print(markdown, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"cpu_processes-{timing.device_slug(data['environment'])}"
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        stem.with_suffix(".md").write_text(markdown)
        print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    if args.update_docs:
        if data["environment"]["other_processes_cpu_share"] > MAX_OTHER_LOAD:
            print(f"{PAGE.name} not updated: other processes used the CPU during the runs", file=sys.stderr)
            return 1
        text = PAGE.read_text()
        start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
        PAGE.write_text(text[:start] + "\n" + markdown + text[end:])
        print(f"updated {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
