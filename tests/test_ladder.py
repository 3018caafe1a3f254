"""The language-model ladder: scoring against hand-worked cases, matched sizes, and one end-to-end run."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from tests.cli_helpers import zoo_cmd
from zoo.experiments import ladder
from zoo.models.gpt import gpt_param_count
from zoo.models.rnn_lm import rnn_lm_param_count


def test_uniform_logits_score_log2_of_the_vocabulary():
    tokens = np.arange(1 + 3 * 8) % 5
    bits = ladder.score_windows(lambda p, x: jnp.zeros((*x.shape, 5)), None, tokens, block_size=8, batch_size=2)
    assert bits == pytest.approx(math.log2(5), rel=1e-6)


def test_scoring_equals_a_python_loop_over_windows():
    rng = np.random.default_rng(0)
    v, block = 4, 5
    table = np.log(rng.dirichlet(np.ones(v), size=v))  # log P(next | current): a bigram model
    tokens = rng.integers(0, v, 1 + 7 * block)

    def apply_fn(params, x):  # (B, T) -> (B, T, V)
        return jnp.asarray(params)[x]

    bits = ladder.score_windows(apply_fn, table, tokens, block, batch_size=3)  # 7 windows: a padded last batch
    expected = -np.mean([table[tokens[i], tokens[i + 1]] for i in range(len(tokens) - 1)]) / math.log(2)
    assert bits == pytest.approx(expected, rel=1e-5)


def test_recurrent_rungs_match_the_gpt_parameter_count():
    configs = ladder.model_configs("quickstart", vocab_size=70)
    target = gpt_param_count(configs["gpt"])
    for family in ("rnn", "lstm", "gru", "mingru"):
        count = rnn_lm_param_count(configs[family])
        assert abs(count - target) / target < 0.05, (family, count, target)
        assert configs[family].vocab_size == 70 and configs[family].block_size == configs["gpt"].block_size


def test_words_split_words_and_punctuation():
    assert ladder.words("It's 3 o'clock, Bob!") == ["it", "'", "s", "3", "o", "'", "clock", ",", "bob", "!"]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    subjects = ["the cat", "a dog", "my friend", "the old man", "her brother", "the teacher"]
    verbs = ["sees", "likes", "finds", "follows", "calls", "helps"]
    objects = ["the ball", "a bird", "the house", "his hat", "the river", "a small boat"]
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(1500)]
    path = tmp_path_factory.mktemp("ladder") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ladder_end_to_end(corpus_file, tmp_path):
    out = tmp_path / "ladder"
    proc = zoo_cmd("ladder", "--data", str(corpus_file), "--preset", "nano", "--models", "ngram", "lstm", "gpt",
                   "--ngram-order", "3", "--max-steps", "40", "--out", str(out), "--no-progress",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "ladder.json").read_text())
    rows = {r["rung"]: r for r in result["rows"]}
    assert list(rows) == ["ngram", "lstm", "gpt"]
    vocab = result["corpus"]["vocab_size"]
    # a trigram on this tiny grammar is far better than uniform; every rung is scored on the same tokens
    assert 0 < rows["ngram"]["bits"] < 0.5 * math.log2(vocab)
    for r in rows.values():
        assert 0 < r["bits"] < 1.2 * math.log2(vocab) and r["params"] > 0 and r["wall_s"] > 0
    assert rows["lstm"]["train_tokens"] == rows["gpt"]["train_tokens"] == 40 * 8 * 32  # same budget (nano)
    assert (out / "ladder.png").stat().st_size > 10_000 and (out / "ladder.md").is_file()
    assert "bits per character" in proc.stdout and "OOV" in proc.stdout
    w = result["words"]
    # a closed vocabulary: every validation word occurs in training (but a word cut by the split)
    assert w["oov_rate"] < 0.01 and w["unseen"]["1"] == w["oov_rate"]
    assert w["unseen"]["5"] > w["unseen"]["2"]
    # the neural rungs are ordinary runs: zoo eval works on them
    assert zoo_cmd("eval", str(out / "gpt"), cwd=tmp_path, timeout=120).returncode == 0


def test_ladder_bad_flags(tmp_path):
    proc = zoo_cmd("ladder", "--ngram-order", "0", "--out", str(tmp_path / "x"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "--ngram-order must be >= 1, got 0" in proc.stderr
