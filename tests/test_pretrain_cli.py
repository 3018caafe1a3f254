"""`zoo pretrain`, `zoo sample`, `zoo eval` end to end in a subprocess, and `zoo.load_run`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zoo_server

import zoo
from zoo import presets


def run_zoo(*args, tmp_path, timeout=300, fresh=False):
    """``zoo ARGS`` in its own process: forked from the tests' fork server, or with ``fresh`` a new
    interpreter running ``python -m zoo`` (the entry point itself, imports and all)."""
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache"), "XLA_FLAGS": zoo_server.QUICK_XLA_FLAGS,
           "HF_HOME": str(tmp_path / "hf")}
    if fresh:
        return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, timeout=timeout,
                              env=env)
    zoo_server.seed_cache(env["ZOO_CACHE_DIR"])  # the fresh run measures the peak FLOP/s itself
    return zoo_server.zoo_cmd(list(args), cwd=Path.cwd(), env=env, timeout=timeout)


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory):
    """A nano GPT pretrained for a few steps on the built-in corpus (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "gpt"
    proc = run_zoo("pretrain", "gpt", "--preset", "nano", "--out", str(out), "--no-progress",
                   "--train.max-steps", "12", "--train.eval-interval", "6", "--sample-tokens", "16",
                   tmp_path=tmp, fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, out, proc


def test_pretrain_writes_a_run_that_loads_and_samples(nano_run):
    tmp, out, proc = nano_run
    assert "--- sample ---" in proc.stdout and "val loss" in proc.stdout
    info = json.loads((out / "run.json").read_text())
    assert info["family"] == "gpt" and info["model"]["vocab_size"] == 257  # from the byte tokenizer
    assert info["tokens"]["corpus"]["train_characters"] > 1_000_000  # the stdlib corpus size is recorded
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < losses[0]
    assert any("val_loss" in r for r in records) and (out / "loss.png").stat().st_size > 0

    run = zoo.load_run(out)
    assert run.step == 12 and run.family == "gpt"
    ids = run.tokenizer.encode("def f(x):")
    new = zoo.generate(run.model, run.params, ids, 5, temperature=0)
    assert new.shape == (1, 5) and int(new.max()) < 257

    sample = run_zoo("sample", str(out), "--prompt", "import os", "--max-new-tokens", "8", tmp_path=tmp)
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert sample.stdout.startswith("import os")
    ev = run_zoo("eval", str(out), "--batches", "2", tmp_path=tmp)
    assert ev.returncode == 0 and "val loss" in ev.stdout and "bits per character" in ev.stdout, ev.stderr[-2000:]


def test_pretrain_resumes_and_refuses_changed_configs(nano_run):
    tmp, out, _ = nano_run
    more = run_zoo("pretrain", "gpt", "--preset", "nano", "--out", str(out), "--no-progress",
                   "--train.max-steps", "12", "--train.eval-interval", "6", "--sample-tokens", "0",
                   "--model.num-layers", "3", tmp_path=tmp)
    assert more.returncode == 2 and "with other settings (--model.num-layers: 2 -> 3)" in more.stderr


def test_pretrain_bad_input_fails_clearly(tmp_path):
    proc = run_zoo("pretrain", "gpt", "--preset", "tiny", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown preset 'tiny' for gpt; choose one of: nano" in proc.stderr
    proc = run_zoo("pretrain", "transformer", tmp_path=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'transformer'" in proc.stderr
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be\n" * 3)
    proc = run_zoo("pretrain", "lstm", "--preset", "nano", "--data", str(short), "--out", str(tmp_path / "r"),
                   tmp_path=tmp_path)
    assert proc.returncode == 2 and "fewer than a block of 32 + 1" in proc.stderr
    proc = run_zoo("pretrain", "gpt", "--model.vocab-size", "99", tmp_path=tmp_path)
    assert proc.returncode == 2 and "vocabulary size comes from the tokenizer" in proc.stderr
    proc = run_zoo("sample", str(tmp_path / "nowhere"), tmp_path=tmp_path)
    assert proc.returncode == 2 and "not a zoo run directory" in proc.stderr


def test_presets():
    cpu = presets.get("gpt", "shakespeare-char-cpu")
    assert (cpu.model.num_layers, cpu.model.num_heads, cpu.model.features, cpu.model.block_size) == (4, 4, 128, 64)
    assert (cpu.train.batch_size, cpu.train.max_steps, cpu.train.warmup_steps, cpu.train.beta2) == (12, 2000, 100, 0.99)
    assert cpu.tokenizer == "char" and not cpu.model.use_bias and cpu.model.dropout_rate == 0
    assert zoo.gpt_param_count(presets.get("gpt", "gpt2-small").model, non_embedding=False) == 124_439_808
    lstm = presets.get("lstm", "shakespeare-char-cpu")
    n_gpt = zoo.gpt_param_count(cpu.model, non_embedding=False)
    assert abs(zoo.rnn_lm_param_count(lstm.model) - n_gpt) / n_gpt < 0.05
    with pytest.raises(ValueError, match="unknown model family 'cnn'; choose one of: gpt, rnn, lstm"):
        presets.get("cnn", "nano")
