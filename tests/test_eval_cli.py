"""``zoo eval`` on a run of every family, end to end in subprocesses: what it prints, that it agrees
with what training reported, and its errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from cli_helpers import zoo_cmd
from zoo.data.labeled import load_labeled

FOX = "the quick brown fox jumps over the lazy dog ."
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "sea", "tree"]


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def one_line_error(proc) -> str:
    """The error of a run that failed as a user error: exit 2, one line on stderr, no traceback, no figures."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo eval: error: "), proc.stderr
    return lines[0]


def done_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("done:"))


def number(pattern: str, text: str) -> str:
    """The figure that follows ``pattern`` in ``text``, as printed."""
    match = re.search(pattern + r" ([0-9.]+)", text)
    assert match, (pattern, text)
    return match.group(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One directory for every run of this module (and one tokenized-corpus cache)."""
    root = tmp_path_factory.mktemp("eval")
    sentiment = load_labeled("synthetic:sentiment", seed=5).train
    texts = [ex.text for ex in sentiment[:400]]
    (root / "corpus.txt").write_text("\n".join(line for text in texts for line in (text, FOX)) + "\n")
    plain = [ex for ex in sentiment if " not " not in ex.text and " never " not in ex.text]  # no negation
    for name, rows in (("reviews.csv", plain[:300]), ("test.csv", plain[300:340])):
        with open(root / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["review", "sentiment"])
            writer.writerows([ex.text, ex.label] for ex in rows)
    (root / "odd.csv").write_text("review,sentiment\nthe film was good,positive\nthe film was fine,neutral\n")
    # "yes" when the first word is one of the first four: learnable in a few dozen steps
    rows = ["src,tgt"] + [f"{a} {b},{'yes' if a in WORDS[:4] else 'no'}" for a in WORDS for b in WORDS]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def bert_run(root) -> tuple[Path, str]:
    proc = zoo_cmd("pretrain", "bert", "--preset", "tiny", "--data", "corpus.txt", "--out", "bert", "--no-progress",
                   "--train.max-steps", "20", "--train.eval-interval", "20", cwd=root)
    return root / "bert", done_line(ok(proc))


@pytest.fixture(scope="module")
def classifier_run(root, bert_run) -> tuple[Path, str]:
    proc = zoo_cmd("finetune", "bert", "--data", "reviews.csv", "--text-column", "review", "--label-column",
                   "sentiment", "--out", "classifier", "--no-progress", "--train.max-steps", "30",
                   "--train.eval-interval", "30", "--train.warmup-steps", "3", "--train.learning-rate", "3e-3",
                   cwd=root)
    line = next(x for x in ok(proc).splitlines() if x.startswith("validation accuracy"))
    return root / "classifier", line


@pytest.fixture(scope="module")
def seq2seq_run(root) -> tuple[Path, str]:
    proc = zoo_cmd("pretrain", "seq2seq", "--preset", "tiny", "--data", "pairs.csv", "--source-column", "src",
                   "--target-column", "tgt", "--out", "seq2seq", "--no-progress", "--train.max-steps", "40",
                   "--eval-examples", "6", "--beam-size", "2", cwd=root)
    return root / "seq2seq", ok(proc)


def test_language_model(root):
    """A recurrent LM (GPT's eval is exercised in test_pretrain_cli.py): as before, plus the seed."""
    out = ok(zoo_cmd("pretrain", "lstm", "--preset", "nano", "--data", "corpus.txt", "--out", "lstm",
                     "--no-progress", "--train.max-steps", "4", "--sample-tokens", "0", cwd=root))
    assert "done: step 4" in out
    out = ok(zoo_cmd("eval", "lstm", "--batches", "3", cwd=root))
    assert out.startswith("lstm (step 4) on corpus.txt: val loss ") and "(3 x 8 windows of 32, seed 1234)" in out
    loss, ppl = float(number("val loss", out)), float(number("perplexity", out))
    bits = float(re.search(r"([0-9.]+) bits per token", out).group(1))
    assert 0 < loss < 8 and ppl == pytest.approx(2.718281828 ** loss, rel=1e-3) and "bits per character" in out
    assert bits == pytest.approx(loss / 0.693147, rel=1e-3)
    error = one_line_error(zoo_cmd("eval", "lstm", "--data", "missing.txt", cwd=root))
    assert "'missing.txt': no such file or directory" in error


def test_bert_masked_lm(bert_run, root):
    run, done = bert_run
    first = ok(zoo_cmd("eval", "bert", cwd=root))
    second = ok(zoo_cmd("eval", "bert", cwd=root))
    assert first == second  # the same masks, from a fixed seed
    assert first.startswith("bert (step 20) on corpus.txt: masked-LM loss ") and "perplexity" not in first
    assert "mask_prob 0.15, 80/10/10" in first and "in 2 x 16 windows of 32" in first
    # by default the batches the trainer evaluated on: the figures of the run's last evaluation
    assert number("masked-LM loss", first) == number("val MLM loss", done)
    assert f"{float(number('accuracy', first)):.3f}" == number("val MLM accuracy", done)
    error = one_line_error(zoo_cmd("eval", "bert", "--beam-size", "2", cwd=root))
    assert error.endswith("--beam-size applies to seq2seq runs only; bert is a bert run")


def test_classifier(classifier_run, root):
    run, reported = classifier_run  # "validation accuracy 0.6667 on 30 held-out examples (majority class: ...)"
    out = ok(zoo_cmd("eval", "classifier", cwd=root))
    assert out.startswith("classifier (step 30) on reviews.csv: accuracy ")
    assert number("accuracy", out) == number("validation accuracy", reported)  # the same held-out examples
    assert "on 30 held-out examples" in out and number("majority class:", out) == number("majority class:", reported)
    assert 0 < float(number("loss", out)) < 5
    out = ok(zoo_cmd("eval", "classifier", "--data", "test.csv", cwd=root))
    assert "on test.csv: accuracy" in out and "on 40 examples (every row)" in out
    error = one_line_error(zoo_cmd("eval", "classifier", "--data", "odd.csv", cwd=root))
    assert error.endswith("--data odd.csv: labels ['neutral'] are not in the run's label set ['negative', 'positive']")


def test_seq2seq(seq2seq_run, root):
    run, report = seq2seq_run
    done = done_line(report)
    out = ok(zoo_cmd("eval", "seq2seq", cwd=root))
    first = out.splitlines()[0]
    assert first.startswith("seq2seq (step 40) on pairs.csv: val loss ") and "on 6 held-out pairs (beam 2)" in first
    assert number("val loss", first) == number("val loss", done)  # the trainer's batches and eval step
    assert number("exact match", first) == number("exact match", done) and "on 6 pairs (beam 2)" in done
    # the same decoder: the same mistakes, in the same order
    assert [x for x in out.splitlines() if "wrong:" in x] == [x for x in report.splitlines() if "wrong:" in x]
    greedy = ok(zoo_cmd("eval", "seq2seq", "--beam-size", "1", "--examples", "4", cwd=root))
    assert "exact match" in greedy and "on 4 held-out pairs (greedy)" in greedy
    # run.json's relative data path read from elsewhere, where pairs.csv has more rows: not the same held-out pairs
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "pairs.csv").write_text((root / "pairs.csv").read_text() + "sun sun,no\n" * 20)
    error = one_line_error(zoo_cmd("eval", "../seq2seq", cwd=root / "elsewhere"))
    assert "data pairs.csv: 8 held-out pairs now, 6 when the run was trained" in error


def test_seq2seq_toy_task_is_regenerated(tmp_path):
    proc = zoo_cmd("pretrain", "seq2seq", "--preset", "tiny", "--data", "toy:dates", "--out", "dates",
                   "--no-progress", "--train.max-steps", "4", "--train-examples", "500", "--eval-examples", "5",
                   cwd=tmp_path)
    done = done_line(ok(proc))
    assert json.loads((tmp_path / "dates" / "run.json").read_text())["evaluation"] == {"examples": 5, "beam_size": 4}
    out = ok(zoo_cmd("eval", "dates", cwd=tmp_path))
    assert "on toy:dates: val loss" in out and "on 5 held-out pairs (beam 4)" in out
    assert number("val loss", out) == number("val loss", done)
    assert number("exact match", out) == number("exact match", done)


def test_errors(tmp_path):
    error = one_line_error(zoo_cmd("eval", "nowhere", cwd=tmp_path))
    assert error == "zoo eval: error: nowhere: not a zoo run directory (no run.json); create one with `zoo pretrain`"
    (tmp_path / "ngram").mkdir()
    (tmp_path / "ngram" / "run.json").write_text(json.dumps({"family": "ngram", "model": {}, "train": {}}))
    error = one_line_error(zoo_cmd("eval", "ngram", cwd=tmp_path))
    assert "'ngram' run, which zoo eval has no meaningful evaluation for" in error and "bert-classifier" in error
