"""The ``zoo`` command under bad input and faults, in subprocesses: one-line errors, exit codes 2 (input) and 1
(runtime), nothing written before a run can start, a run directory that holds one run, a lock, Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import zoo_cmd
from zoo_server import QUICK_XLA_FLAGS, seed_cache

NANO = ("pretrain", "gpt", "--preset", "nano", "--no-progress", "--sample-tokens", "0")


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Assert that ``proc`` failed with ``code`` and one stderr line (notes aside) holding every needle."""
    lines = [line for line in proc.stderr.splitlines() if ": note: " not in line]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("zoo ") and ": error: " in lines[0], lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_corpus(path: Path, seed: int = 0, words: int = 6000, extra: str = "") -> Path:
    rng = np.random.default_rng(seed)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "sea", "by", "night"]
    path.write_text(" ".join(rng.choice(vocab, words)) + extra + "\n")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hardening")
    write_corpus(root / "a.txt")
    write_corpus(root / "b.txt", seed=1)
    return root


@pytest.fixture(scope="module")
def short_run(work) -> subprocess.CompletedProcess:
    """A trial run shorter than the preset's warm-up (nano: 3 steps): the warm-up is scaled, with a note."""
    return zoo_cmd(*NANO, "--data", "a.txt", "--out", "trial", "--train.max-steps", "2", cwd=work)


def test_a_run_shorter_than_its_warmup_runs_with_a_note(work, short_run):
    assert short_run.returncode == 0, short_run.stderr[-3000:]
    note = "the preset's warm-up of 3 steps does not fit --train.max-steps 2: warm-up scaled to 0 steps"
    assert note in short_run.stderr and "Traceback" not in short_run.stderr
    saved = json.loads((work / "trial" / "run.json").read_text())
    assert saved["train"]["warmup_steps"] == 0 and saved["train"]["max_steps"] == 2
    # A warm-up set explicitly that does not fit is an error, before anything is written.
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "explicit", "--train.warmup-steps", "40", cwd=work)
    one_line_error(proc, 2, "--train.warmup-steps 40: expected fewer than --train.max-steps 30")
    assert not (work / "explicit").exists()


def test_the_full_command_after_a_trial_run_names_every_difference(work, short_run):
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "trial", cwd=work)
    one_line_error(proc, 2, "holds a run (step 2) with other settings", "--train.max-steps: 2 -> 30",
                   "--train.warmup-steps: 0 -> 3", "--overwrite")
    # Another corpus, another tokenizer: refused field by field, like a model change.
    proc = zoo_cmd(*NANO, "--data", "b.txt", "--out", "trial", "--train.max-steps", "2", "--tokenizer", "char",
                   cwd=work)
    one_line_error(proc, 2, "--data: 'a.txt' -> 'b.txt'", "--tokenizer: 'byte' -> 'char'",
                   "the corpus (fingerprint)")
    # Same settings: it resumes (nothing to do at max_steps).
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "trial", "--train.max-steps", "2", cwd=work)
    assert proc.returncode == 0 and "nothing to do" not in proc.stderr, proc.stderr[-2000:]


def test_overwrite_starts_afresh(work, short_run):
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "trial", "--train.max-steps", "3", "--train.eval-interval",
                   "3", "--overwrite", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--overwrite: removed the run at step 2" in proc.stderr
    records = [json.loads(x) for x in (work / "trial" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [0, 3]  # nothing of the old run is mixed in
    assert sorted(p.name for p in (work / "trial" / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]


def test_nothing_is_left_by_a_run_that_cannot_start(work):
    short = work / "short.txt"
    short.write_text("to be or not to be\n" * 3)
    proc = zoo_cmd(*NANO, "--data", "short.txt", "--out", "nothing", cwd=work)
    one_line_error(proc, 2, "fewer than a block of 32 + 1")
    assert not (work / "nothing").exists()
    # A directory left by a run that failed before its first checkpoint does not block the next one.
    stale = work / "stale"
    (stale / "tokenizer").mkdir(parents=True)
    (stale / "run.json").write_text(json.dumps({"family": "gpt", "model": {"num_layers": 9}, "train": {}}))
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "stale", "--train.max-steps", "1", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((stale / "run.json").read_text())["model"]["num_layers"] == 2


def test_bad_paths_and_flags_are_one_line(work):
    (work / "afile").write_text("x")
    one_line_error(zoo_cmd(*NANO, "--out", "afile", cwd=work), 2, "--out afile is a file")
    one_line_error(zoo_cmd(*NANO, "--train.learning-rate", "nan", "--out", "x", cwd=work), 2,
                   "--train.learning-rate nan: expected a finite number > 0")
    one_line_error(zoo_cmd(*NANO, "--model.num-heads", "3", "--out", "x", cwd=work), 2,
                   "--model.features 32: expected a multiple of --model.num-heads 3")
    one_line_error(zoo_cmd("sample", "nowhere", cwd=work), 2, "not a zoo run directory")
    # Flags tyro cannot parse: one line too (not tyro's box), with its suggestion and where the help is.
    one_line_error(zoo_cmd(*NANO, "--train.checkpoint-every", "3", "--out", "x", cwd=work), 2,
                   "unrecognized options: --train.checkpoint-every", "perhaps you meant --train.checkpoint-interval",
                   "see zoo pretrain gpt --help")
    one_line_error(zoo_cmd(*NANO, "--train.max-steps", "abc", "--out", "x", cwd=work), 2,
                   "cannot parse --train.max-steps", "'abc'")
    assert not (work / "x").exists()
    # --debug shows the traceback instead.
    proc = zoo_cmd(*NANO, "--out", "afile", "--debug", cwd=work)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "is a file" in proc.stderr
    helptext = zoo_cmd("pretrain", "gpt", "--help", cwd=work)
    assert helptext.returncode == 0 and "quickstart" in helptext.stdout and "shakespeare-char-cpu" in helptext.stdout


def test_data_checked_at_the_door(work):
    (work / "blob.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    one_line_error(zoo_cmd(*NANO, "--data", "blob.bin", "--out", "bin", cwd=work), 2,
                   "--data blob.bin", "look binary", "--allow-binary")
    assert not (work / "bin").exists()
    # Characters the char vocabulary (from the training split) lacks are counted, not silently mapped.
    write_corpus(work / "accents.txt", extra=" é" * 400)  # the end, hence the validation split
    proc = zoo_cmd(*NANO, "--data", "accents.txt", "--tokenizer", "char", "--out", "chars", "--train.max-steps", "1",
                   cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    note = next(line for line in proc.stderr.splitlines() if "the val split has" in line)
    assert "tokens the char vocabulary cannot encode (most frequent: 'é' x400" in note  # and the final newline
    # A Hugging Face dataset that is neither cached nor reachable fails fast, in one line.
    start = time.perf_counter()
    proc = zoo_cmd(*NANO, "--data", "hf:zoo-does-not-exist", "--out", "hf", cwd=work)
    one_line_error(proc, 2, "not in the local Hugging Face cache")
    assert time.perf_counter() - start < 30 and not (work / "hf").exists()


def test_sampling_flags_are_checked(work, short_run):
    for flags, needle in ((("--top-k", "0"), "--top-k 0: expected at least 1"),
                          (("--temperature", "nan"), "--temperature nan"),
                          (("--top-p", "1.5"), "--top-p 1.5")):
        one_line_error(zoo_cmd("sample", "trial", *flags, cwd=work), 2, needle)


def test_a_run_directory_in_use_is_refused(work):
    from zoo.train.lock import RunLock

    with RunLock(work / "busy"):
        proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "busy", cwd=work)
    one_line_error(proc, 1, f"is in use by process {os.getpid()}", "choose another --out")


def test_ctrl_c_saves_and_says_how_to_resume(work):
    args = [*NANO, "--data", "a.txt", "--out", "interrupted", "--train.max-steps", "100000",
            "--train.log-interval", "1", "--train.eval-interval", "100000"]
    env = {**os.environ, "ZOO_CACHE_DIR": str(work / "cache"), "XLA_FLAGS": QUICK_XLA_FLAGS}
    seed_cache(env["ZOO_CACHE_DIR"])
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = work / "interrupted" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and '"train_loss"' in metrics.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "checkpoint saved in" in err and "Resume with: zoo pretrain gpt --preset nano" in err
    step = int(err.split("interrupted at step ")[1].split(";")[0])
    assert (work / "interrupted" / "checkpoints" / str(step)).is_dir() and step >= 1


def test_runtime_errors_are_worded_for_the_command_line():
    """Faults that are hard to cause on demand, worded by zoo.cli.describe_error (exit 1, flags not Python)."""
    from zoo.cli import describe_error
    from zoo.errors import NonFiniteError

    message, code = describe_error(NonFiniteError(7, float("nan"), float("inf"), Path("runs/x/checkpoints"), [5]))
    assert code == 1 and "step 7" in message and "--train.on-nonfinite skip" in message and "TrainConfig" not in message
    try:  # a full disk deep inside a save: the OS error is found in the chain of causes
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/30/state")
        except OSError as e:
            raise RuntimeError("saving checkpoint step 30 in runs/x/checkpoints failed") from e
    except RuntimeError as e:
        message, code = describe_error(e)
    assert code == 1 and message.startswith("no space left on device while writing runs/x/checkpoints/30/state")


def test_a_corrupt_checkpoint_falls_back_in_one_line(work):
    proc = zoo_cmd(*NANO, "--data", "a.txt", "--out", "ck", "--train.max-steps", "4", "--train.checkpoint-interval",
                   "2", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in (work / "ck" / "checkpoints" / "4" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:  # array data, not orbax's small metadata files
            f.write_bytes(b"\0" * f.stat().st_size)
    proc = zoo_cmd("sample", "ck", "--max-new-tokens", "4", cwd=work)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    warning, = proc.stderr.splitlines()
    assert warning.startswith("zoo sample: warning: checkpoint step 4 in ") and "using step 2" in warning
    for f in (work / "ck" / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(b"\0" * f.stat().st_size)
    one_line_error(zoo_cmd("sample", "ck", cwd=work), 2, "no usable checkpoint", "step 4", "step 2")


def test_the_resume_hint_repeats_the_launch(monkeypatch):
    """Ctrl-C's hint is the command to run again: under `zoo launch` (ZOO_LAUNCHED_BY, set by the launcher
    for a zoo command) the whole launch, else the zoo command, either way without --overwrite."""
    from zoo.cli import interrupted_message
    from zoo.commands.launch import ENV_LAUNCHED_BY, child_env
    from zoo.errors import TrainingInterrupted

    launch = dict(coordinator="127.0.0.1:1234", nproc=2, index=1, local_devices=2)
    assert child_env({}, **launch, command=["pretrain", "gpt"])[ENV_LAUNCHED_BY] == \
        "zoo launch --nproc 2 --local-devices 2 --"
    assert ENV_LAUNCHED_BY not in child_env({ENV_LAUNCHED_BY: "x"}, **launch, command=["python", "script.py"])

    argv = ["pretrain", "gpt", "--preset", "nano", "--out", "runs/a b", "--overwrite", "--distributed"]
    stop = TrainingInterrupted(3, "runs/a b/checkpoints/3")
    monkeypatch.delenv(ENV_LAUNCHED_BY, raising=False)
    assert interrupted_message(stop, argv).endswith(
        "Resume with: zoo pretrain gpt --preset nano --out 'runs/a b' --distributed")
    monkeypatch.setenv(ENV_LAUNCHED_BY, "zoo launch --nproc 2 --")
    assert interrupted_message(stop, argv).endswith(
        "Resume with: zoo launch --nproc 2 -- pretrain gpt --preset nano --out 'runs/a b' --distributed")
