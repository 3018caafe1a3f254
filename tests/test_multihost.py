"""Several processes, one mesh (zoo.train.distributed, zoo launch): real processes on 127.0.0.1, gloo collectives.

One launch of two processes with two CPU devices each (starting processes and compiling is what costs:
everything is done in it), tests/multihost_worker.py, and the rest in this process:

* the sharding issue's bad inputs and a run directory this process holds: refused by every process;
* ``zoo pretrain gpt --distributed --mesh fsdp=2,tensor=2``: a second ``zoo pretrain`` is refused while it
  runs; Ctrl-C to the launcher stops both processes at step 1 with a checkpoint; resumed here on one
  process under fsdp=4, the losses of one device;
* GPT nano under data=4, fsdp=4 and fsdp=2,tensor=2, BERT under data=4: the losses of one device;
* a run whose process 1 is killed (SIGKILL) after step 4: the launcher names it, stops process 0, exits
  non-zero; resumed here on one process under fsdp=4, the losses of one device.

The references are the same runs on one device of this process (``zoo.train.train`` with the same data,
configs and samplers).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.train.lock import RunLock
from zoo.train.objectives import MASKED_LM
from zoo.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
import multihost_worker as worker  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo on 127.0.0.1: Linux")

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-4  # the sharding issue's tolerance on losses (tensor parallelism reorders float32 sums)


def losses(run_dir: Path) -> dict[int, float]:
    records = zoo.train.read_metrics(run_dir)
    steps = [r["step"] for r in records if "train_loss" in r]
    assert len(steps) == len(set(steps)), f"{run_dir}: a step logged twice (only process 0 writes): {steps}"
    return {r["step"]: r["train_loss"] for r in records if "train_loss" in r}


def launch(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo", "launch", "--nproc", "2", "--local-devices", "2", "--",
                             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and a dog ran to the big red hat".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(words, 200)) for _ in range(30)))
    return path


@pytest.fixture(scope="module")
def setups(corpus):
    return worker.setup(str(corpus))


@pytest.fixture(scope="module")
def reference(setups, tmp_path_factory) -> dict[str, dict[int, float]]:
    """The per-step losses of GPT and BERT on one device of this process."""
    (model, config, cfg, train_tokens, val_tokens), (bert, bert_config, bert_cfg, stream, bert_batch) = setups
    root = tmp_path_factory.mktemp("reference")
    one = jax.devices()[:1]
    train(model, config, cfg, train_tokens, val_tokens, root / "gpt", progress=False, devices=one)
    train(bert, bert_config, bert_cfg, stream, stream, root / "bert", objective=MASKED_LM, get_batch=bert_batch,
          progress=False, devices=one)
    return {"gpt": losses(root / "gpt"), "bert": losses(root / "bert")}


@pytest.fixture(scope="module")
def worker_run(corpus, tmp_path_factory):
    """tests/multihost_worker.py in 2 processes: (completed launch, its output folder, when it ended, the
    one-line errors of a zoo pretrain refused while the worker's CLI run was in progress)."""
    out = tmp_path_factory.mktemp("worker")
    with RunLock(out / "held"):  # in use by this process: every worker process must refuse it
        proc = launch("python", "tests/multihost_worker.py", str(out), str(corpus))
        try:
            deadline = time.monotonic() + 600
            while not (out / "cli" / "metrics.jsonl").exists():  # the first evaluation of the CLI run
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(worker.cli_args(str(corpus), out / "cli", out / "tokens"))  # in use: refused
            refused = (code, err.getvalue())
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the launcher forwards it to both processes
            stdout, stderr = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out, time.time(), refused


def test_meshes_across_processes_equal_one_device(worker_run, reference):
    """2 processes x 2 devices: GPT under data=4, fsdp=4, fsdp=2,tensor=2 and BERT under data=4 give the
    losses of one device, step by step."""
    out = worker_run[1]
    for mesh in worker.MESHES:
        got = losses(out / f"gpt-{mesh}")
        assert sorted(got) == list(range(1, worker.STEPS + 1)), mesh
        np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["gpt"][s] for s in sorted(got)],
                                   rtol=RTOL, err_msg=mesh)
    got = losses(out / "bert")
    np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["bert"][s] for s in sorted(got)], rtol=RTOL)
    assert reference["gpt"][worker.STEPS] < reference["gpt"][1] - 0.5  # it learns


def test_bad_inputs_are_refused_by_every_process(worker_run):
    out = worker_run[1]
    errors = [json.loads((out / f"errors-{i}.json").read_text()) for i in range(2)]
    assert errors[0] == errors[1]
    assert errors[0].pop("devices") == [2, 4]  # two local devices each, four in the mesh
    needles = {"mesh product": "expected the device count 4", "unknown axis": "unknown mesh axis 'pipeline'",
               "heads": "2 attention heads", "batch split": "expected a multiple of data x fsdp = 1 x 4 = 4",
               "in use": f"is in use by process {os.getpid()}"}
    for case, needle in needles.items():
        assert needle in errors[0][case], (case, errors[0][case])


def test_a_killed_process_stops_the_run_and_it_resumes_on_one_process(worker_run, setups, reference):
    """Process 1 dies (SIGKILL) after the checkpoint of step 4: the launcher names it, stops process 0 and
    exits non-zero within the minute; the run resumes in one process under another mesh (fsdp=4) with the
    losses of the uninterrupted run."""
    proc, out, ended, _ = worker_run
    run = out / "killed"
    assert proc.returncode != 0
    assert "zoo launch: error: process 1 (pid " in proc.stderr and "was killed by SIGKILL; stopping process 0" \
        in proc.stderr, proc.stderr[-3000:]
    saved = run / "checkpoints" / str(worker.KILL_AT)
    assert saved.is_dir() and ended - saved.stat().st_mtime < 60
    model, config, cfg, train_tokens, val_tokens = setups[0]
    train(model, config, cfg, train_tokens, val_tokens, run, progress=False, mesh="fsdp=4")
    got = losses(run)
    assert sorted(got) == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["gpt"][s] for s in sorted(got)], rtol=RTOL)


def test_ctrl_c_stops_every_process_and_the_run_resumes_on_one(worker_run, corpus, reference):
    """``zoo pretrain gpt --distributed --mesh fsdp=2,tensor=2`` in the two processes: a second pretrain on its
    run is refused while it runs; Ctrl-C (to the launcher) stops both processes at the next step with a
    checkpoint (each exits its zoo command with 130); the run resumes here, one process under fsdp=4, with
    the losses of one device."""
    proc, out, _, (code, err) = worker_run
    run = out / "cli"
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "is in use by process" in lines[0], err
    assert [json.loads((out / f"cli-exit-{i}.json").read_text()) for i in range(2)] == [130, 130]
    assert proc.stdout.count("2 processes, 4 cpu device(s), mesh data=1,fsdp=2,tensor=2") == 1  # process 0 prints
    assert proc.stderr.count("zoo pretrain: interrupted at step 1; checkpoint saved in") == 1, proc.stderr[-3000:]
    assert (run / "checkpoints" / "1").is_dir()
    assert main([*worker.cli_args(str(corpus), run, out / "tokens"), "--mesh", "fsdp=4"]) == 0  # 1 process, 4 devices
    got = losses(run)
    assert sorted(got) == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["gpt"][s] for s in sorted(got)], rtol=RTOL)
