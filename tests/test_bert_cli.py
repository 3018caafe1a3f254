"""BERT end to end through the ``zoo`` command, in subprocesses: pretrain, fill-mask, finetune, load_run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import zoo
from cli_helpers import zoo_cmd
from zoo.data.labeled import load_labeled

FOX = "the quick brown fox jumps over the lazy dog ."


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> Path:
    """A tiny BERT pretrained on a corpus that repeats one sentence between the sentiment task's texts."""
    root = tmp_path_factory.mktemp("bert")
    texts = [ex.text for ex in load_labeled("synthetic:sentiment").train[:400]]
    lines = [line for text in texts for line in (text, FOX)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    proc = zoo_cmd("pretrain", "bert", "--preset", "tiny", "--data", "corpus.txt", "--out", "run", "--no-progress",
                   "--train.max-steps", "250", "--train.eval-interval", "125", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: step 250, val MLM loss" in proc.stdout
    return root


def test_pretrain_writes_a_run(bert_run):
    info = json.loads((bert_run / "run" / "run.json").read_text())
    assert info["family"] == "bert" and info["mask_prob"] == 0.15
    records = [json.loads(line) for line in (bert_run / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 125, 250]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0  # masked LM learned something
    assert {"train_accuracy", "train_loss"} <= set(records[1]) and "val_accuracy" in evals[-1]
    run = zoo.load_run(bert_run / "run")
    assert isinstance(run.model, zoo.BERTForMaskedLM) and run.tokenizer.kind == "wordpiece"
    assert run.step == 250


def test_fill_mask_returns_the_memorized_word(bert_run):
    proc = zoo_cmd("fill-mask", "run", "the quick brown [MASK] jumps over the lazy dog .", "--top-k", "3",
                   cwd=bert_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "[MASK] 1:" and len(lines) == 5
    probs = [float(line.split()[0]) for line in lines[1:4]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert lines[1].split()[1] == "fox", proc.stdout
    assert lines[-1] == "top-1: the quick brown fox jumps over the lazy dog."


def test_fill_mask_errors(bert_run):
    proc = zoo_cmd("fill-mask", "run", "no mask in this text", cwd=bert_run)
    assert proc.returncode == 2 and "has no [MASK] token" in proc.stderr
    proc = zoo_cmd("fill-mask", "missing-run", "a [MASK]", cwd=bert_run)
    assert proc.returncode == 2 and "not a zoo run directory" in proc.stderr


def test_finetune_learns_the_synthetic_task(bert_run):
    proc = zoo_cmd("finetune", "run", "--data", "synthetic:sentiment", "--out", "sentiment", "--no-progress",
                   "--train.max-steps", "150", "--train.learning-rate", "3e-3", "--train.eval-interval", "150",
                   cwd=bert_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("validation accuracy"))
    accuracy = float(line.split()[2])
    assert accuracy >= 0.85, proc.stdout  # majority class: 0.5
    run = zoo.load_run(bert_run / "sentiment")
    assert run.family == "bert-classifier" and run.info["labels"] == ["negative", "positive"]
    assert isinstance(run.model, zoo.BERTForSequenceClassification)
    pretrained = zoo.load_run(bert_run / "run")
    # the encoder started from the pretrained one and moved away from it
    before = pretrained.params["bert"]["word_embeddings"]["embedding"]
    after = run.params["bert"]["word_embeddings"]["embedding"]
    assert before.shape == after.shape and not np.allclose(before, after)


def test_finetune_errors(bert_run):
    (bert_run / "bad.csv").write_text("sentence,label\nit was good,1\nit was bad,0\n")
    proc = zoo_cmd("finetune", "run", "--data", "bad.csv", "--out", "bad", cwd=bert_run)
    assert proc.returncode == 2 and "'text'" in proc.stderr and "sentence" in proc.stderr, proc.stderr
    assert not (bert_run / "bad").exists()
    proc = zoo_cmd("finetune", "run", "--data", "synthetic:nope", "--out", "bad", cwd=bert_run)
    assert proc.returncode == 2 and "synthetic task 'nope' is unknown" in proc.stderr
