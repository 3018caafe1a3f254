"""The encoder-decoder Transformer through the ``zoo`` command, in subprocesses: train, translate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from cli_helpers import zoo_cmd


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> Path:
    """A tiny model trained to copy words from a local CSV parallel corpus (reversed word order)."""
    root = tmp_path_factory.mktemp("seq2seq")
    words = ["red", "blue", "green", "cat", "dog", "sun", "sea", "tree"]
    rows = ["src,tgt"] + [f"{a} {b},{b} {a}" for a in words for b in words]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    proc = zoo_cmd("pretrain", "seq2seq", "--preset", "tiny", "--data", "pairs.csv", "--source-column", "src",
                   "--target-column", "tgt", "--out", "run", "--no-progress", "--train.max-steps", "40",
                   "--eval-examples", "6", "--beam-size", "2", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_train_on_a_local_corpus(corpus_run):
    info = json.loads((corpus_run / "run" / "run.json").read_text())
    assert info["family"] == "seq2seq" and info["pairs"] == {
        "source": "corpus", "pairs": 64, "train": 58, "val": 6, "dropped_too_long": 0}
    run = zoo.load_run(corpus_run / "run")
    assert isinstance(run.model, zoo.Seq2SeqTransformer)
    assert run.config.bos == run.config.eos == run.tokenizer.eot_id
    records = [json.loads(line) for line in (corpus_run / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] and "val_accuracy" in evals[-1]


def test_translate(corpus_run):
    proc = zoo_cmd("translate", "run", "red cat", "blue sea", "--beam-size", "3", cwd=corpus_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) == 2  # one line per input (40 steps: not necessarily right yet)
    proc = zoo_cmd("translate", "run", "x" * 40, cwd=corpus_run)
    assert proc.returncode == 2 and "max_source_len=16" in proc.stderr, proc.stderr
    proc = zoo_cmd("translate", "run", "red cat", "--beam-size", "0", cwd=corpus_run)
    assert proc.returncode == 2 and "--beam-size 0" in proc.stderr


def test_toy_task_run_reports_exact_match(tmp_path):
    proc = zoo_cmd("pretrain", "seq2seq", "--preset", "tiny", "--data", "toy:dates", "--out", "dates",
                   "--no-progress", "--train.max-steps", "10", "--train-examples", "2000", "--eval-examples", "8",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = next(line for line in proc.stdout.splitlines() if line.startswith("done:"))
    assert "held-out exact match" in done and "on 8 pairs (beam 4)" in done


def test_errors(tmp_path):
    proc = zoo_cmd("pretrain", "seq2seq", "--data", "toy:nope", "--out", "x", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown toy task 'nope'" in proc.stderr and "toy:dates" in proc.stderr
    (tmp_path / "p.csv").write_text("a,b\nx,y\n" * 20)
    proc = zoo_cmd("pretrain", "seq2seq", "--data", "p.csv", "--out", "x", cwd=tmp_path)
    assert proc.returncode == 2 and "'source'" in proc.stderr, proc.stderr
    proc = zoo_cmd("pretrain", "seq2seq", "--preset", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and "tiny, toy, transformer-base" in proc.stderr, proc.stderr
