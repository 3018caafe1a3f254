"""The word-level ladder (zoo ladder --level word): the seen/unseen context split on a hand-made corpus, the
windowed scoring against a full forward, and the whole ladder end to end on a tiny corpus."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.experiments.word_ladder import context_seen, window_log2_probs
from zoo.models.nplm import NPLM, NPLMConfig


def test_context_seen_on_a_hand_made_corpus():
    #        0  1  2  3  4  5
    train = [1, 2, 3, 1, 2, 4]  # contexts followed by a word: (1,) (2,) (3,) ... and pairs (1,2) (2,3) (3,1) (1,2)
    val = [1, 2, 4, 2, 3, 1]
    # prediction i predicts val[i + 1] from val[i + 1 - k : i + 1]
    np.testing.assert_array_equal(context_seen(train, val, 1), [True, True, False, True, True])  # 4 is last in train
    # pairs: (1,2) seen; (2,4) never followed by a word; (4,2) unseen; (2,3) seen; first prediction has 1 word
    np.testing.assert_array_equal(context_seen(train, val, 2), [False, True, False, False, True])
    np.testing.assert_array_equal(context_seen(train, val, 3), [False, False, False, False, False])
    assert context_seen(train, [5], 1).shape == (0,)


def test_windowed_scoring_equals_one_forward_for_an_nplm():
    """An NPLM's prediction depends on its n - 1 words only, so the overlapping windows must give exactly the
    log-probabilities of one forward pass over the whole stream."""
    config = NPLMConfig(vocab_size=11, order=3, features=4, hidden=5, block_size=8)
    model = NPLM(config)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    tokens = np.random.default_rng(0).integers(0, 11, 37)
    got = window_log2_probs(lambda p, x: model.apply({"params": p}, x), params, tokens, window=8, batch_size=4)
    logp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(tokens[None, :-1])), axis=-1)[0]
    want = np.asarray(jnp.take_along_axis(logp, jnp.asarray(tokens[1:, None]), axis=-1)[:, 0]) / np.log(2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _corpus(path, n: int = 500):
    rng = np.random.default_rng(0)
    nouns, verbs, adjs = ["cat", "dog", "mouse", "horse", "bird"], ["sees", "likes", "chases"], ["big", "small", "old"]
    lines = [f"the {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}"
             for _ in range(n)]
    path.write_text("\n\n".join(lines))
    return path


def test_word_ladder_end_to_end(tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    _corpus(tmp_path / "tiny.txt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["ladder", "--level", "word", "--data", "tiny.txt", "--preset", "tiny", "--max-steps", "2",
            "--word2vec-epochs", "1", "--out", "wl", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "wl" / "word_ladder.json").read_text())
    assert [r["rung"] for r in result["rows"]] == ["kn3", "kn5", "nplm", "nplm-w2v", "lstm", "gpt"]
    assert {p.name for p in (tmp_path / "wl").iterdir()} >= {"word_ladder.md", "word_ladder.png", "word2vec", "nplm",
                                                             "nplm-w2v", "lstm", "gpt"}
    vocab = result["corpus"]["vocab_size"]
    for row in result["rows"]:
        assert 1 <= row["ppl"] <= vocab, row  # no worse than uniform over the vocabulary
        assert set(row["split"]) == {"3", "5"}
    neural = [r for r in result["rows"] if not r["rung"].startswith("kn")]
    assert len({r["train_tokens"] for r in neural}) == 1  # the same token budget
    nplm = neural[0]["params"]
    assert all(abs(r["params"] - nplm) / nplm < 1 for r in neural)  # matched (roughly: GPT's smallest width is 8)
    assert "| Kneser-Ney 3-gram |" in out and "unseen 4-word context" in out and "command: `zoo ladder --level word" in out
    assert json.loads((tmp_path / "wl" / "nplm" / "run.json").read_text())["family"] == "nplm"  # ordinary runs


def test_level_word_flags_are_checked(tmp_path):
    from zoo.cli import describe_error
    from zoo.experiments.ladder import main

    with pytest.raises(ValueError) as info:
        main(["--level", "word", "--preset", "nano", "--out", str(tmp_path / "x")])
    message, code = describe_error(info.value)
    assert code == 2 and "unknown preset 'nano' for nplm" in message
