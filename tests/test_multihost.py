"""Several processes, one mesh (zoo.train.distributed, zoo launch): real processes on 127.0.0.1, gloo collectives.

Two launches of two processes with two CPU devices each (starting processes and compiling is what costs),
everything else in this process:

* tests/multihost_worker.py: the sharding issue's bad inputs and a run directory this process holds, refused
  by every process; GPT nano under data=4, fsdp=4 and fsdp=2,tensor=2, BERT under data=4; then a run whose
  process 1 is killed (SIGKILL) after step 4;
* ``zoo launch -- pretrain gpt ... --mesh fsdp=2,tensor=2``: Ctrl-C after the first evaluation, a second
  ``zoo pretrain`` refused while it runs, the run resumed here on one process under fsdp=4.

The references are the same runs on one device of this process (``zoo.train.train`` with the same data,
configs and samplers).
"""

from __future__ import annotations

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
    """(completed launch, its output folder, when it ended) of tests/multihost_worker.py."""
    out = tmp_path_factory.mktemp("worker")
    with RunLock(out / "held"):  # in use by this process: every worker process must refuse it
        proc = launch("python", "tests/multihost_worker.py", str(out), str(corpus))
        stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out, time.time()


def test_meshes_across_processes_equal_one_device(worker_run, reference):
    """2 processes x 2 devices: GPT under data=4, fsdp=4, fsdp=2,tensor=2 and BERT under data=4 give the
    losses of one device, step by step."""
    _, out, _ = worker_run
    for mesh in worker.MESHES:
        got = losses(out / f"gpt-{mesh}")
        assert sorted(got) == list(range(1, worker.STEPS + 1)), mesh
        np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["gpt"][s] for s in sorted(got)],
                                   rtol=RTOL, err_msg=mesh)
    got = losses(out / "bert")
    np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["bert"][s] for s in sorted(got)], rtol=RTOL)
    assert reference["gpt"][worker.STEPS] < reference["gpt"][1] - 0.5  # it learns


def test_bad_inputs_are_refused_by_every_process(worker_run):
    _, out, _ = worker_run
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
    proc, out, ended = worker_run
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


def cli_args(corpus: Path, run: Path) -> list[str]:
    """``zoo pretrain gpt`` with the worker's configuration (tests/multihost_worker.py ``setup``)."""
    steps = str(worker.STEPS)
    return ["pretrain", "gpt", "--preset", "nano", "--data", str(corpus), "--out", str(run), "--no-progress",
            "--sample-tokens", "0", "--train.max-steps", steps, "--train.decay-steps", steps,
            "--train.log-interval", "1", "--train.eval-interval", steps, "--train.eval-batches", "1",
            "--train.checkpoint-interval", "10"]


def test_ctrl_c_stops_every_process_and_the_run_resumes_on_one(corpus, reference, tmp_path, capsys):
    """``zoo launch -- pretrain gpt --mesh fsdp=2,tensor=2``: a second pretrain on its run is refused while it
    runs; Ctrl-C (to the launcher) stops both processes at the next step with a checkpoint (exit 130); the
    run resumes here, one process under fsdp=4, with the losses of one device."""
    run = tmp_path / "run"
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    proc = launch(*cli_args(corpus, run), "--mesh", "fsdp=2,tensor=2", env=env)
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.jsonl").exists():  # the first evaluation: both processes are in the loop
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        code = main(cli_args(corpus, run))  # the run is in use
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and "is in use by process" in err[0], err
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert stdout.count("2 processes, 4 cpu device(s), mesh data=1,fsdp=2,tensor=2") == 1  # process 0 prints
    assert stderr.count("interrupted at step 1") == 1, stderr[-3000:]
    assert (run / "checkpoints" / "1").is_dir()
    assert main([*cli_args(corpus, run), "--mesh", "fsdp=4"]) == 0  # one process, four devices
    got = losses(run)
    assert sorted(got) == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [reference["gpt"][s] for s in sorted(got)], rtol=RTOL)
