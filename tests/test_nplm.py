"""NPLM (Bengio et al. 2003): the forward pass against the paper's equations, counts against init, the sliding
window of generation against full forwards, and zoo pretrain/sample/eval nplm end to end (with --init-embeddings
from a word2vec run)."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from cli_helpers import zoo_cmd
from zoo.models.nplm import NPLM, NPLMConfig, nplm_flops_per_token, nplm_param_count, with_word_vectors

CONFIGS = {
    "hidden+direct": NPLMConfig(vocab_size=13, order=4, features=3, hidden=5, direct=True, block_size=7),
    "hidden": NPLMConfig(vocab_size=13, order=3, features=4, hidden=6, block_size=7),
    "direct only": NPLMConfig(vocab_size=13, order=2, features=4, hidden=0, direct=True, block_size=7),
}


def _init(config, seed=0):
    init = jax.jit(NPLM(config).init)  # compiled: eager init runs op by op, seconds on a loaded CPU
    params = nn.unbox(init(jax.random.key(seed), jnp.zeros((1, config.block_size), jnp.int32))["params"])
    # non-zero biases and direct weights, so every term of the equations shows in the logits
    keys = iter(jax.random.split(jax.random.key(seed + 1), 8))
    return jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), params)


def reference_logits(params, config, ids):
    """The paper's equations, one position at a time in float64: x = (C(w_{t-1}), ..., C(w_{t-n+1})),
    y = b + W x + U tanh(d + H x); context slots before the start of the row hold the start vector."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    C, start = p["embed"]["embedding"], p["start"]
    out = np.zeros((*ids.shape, config.vocab_size))
    for row in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            # predicting word t + 1 from words t, t - 1, ..., t - n + 2 (the newest first)
            x = np.concatenate([C[ids[row, t - k]] if t - k >= 0 else start for k in range(config.order - 1)])
            y = np.zeros(config.vocab_size)
            if config.hidden:
                hidden = np.tanh(p["hidden"]["bias"] + x @ p["hidden"]["kernel"])  # d + H x
                y += p["output"]["bias"] + hidden @ p["output"]["kernel"]  # b + U tanh(...)
            if config.direct:
                y += x @ p["direct"]["kernel"] + (p["direct"]["bias"] if not config.hidden else 0.0)  # W x
            out[row, t] = y
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_the_papers_equations(name):
    config = CONFIGS[name]
    params = _init(config)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (2, config.block_size))
    apply = jax.jit(NPLM(config).apply)
    got = np.asarray(apply({"params": params}, jnp.asarray(ids)))
    np.testing.assert_allclose(got, reference_logits(params, config, ids), rtol=1e-5, atol=1e-5)
    at = np.array([0, config.block_size - 1])
    one = np.asarray(apply({"params": params}, jnp.asarray(ids), logits_at=jnp.asarray(at)))
    np.testing.assert_allclose(one[:, 0], got[np.arange(2), at], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_counts_match_init(name):
    config = CONFIGS[name]
    params = _init(config)
    sizes = {"/".join(k.key for k in path): leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    assert sum(sizes.values()) == nplm_param_count(config) == zoo.registry.param_count("nplm", config)
    table = sizes["embed/embedding"] + sizes["start"]
    assert nplm_param_count(config, non_embedding=True) == sum(sizes.values()) - table
    assert nplm_flops_per_token(config) == 6 * (sum(sizes.values()) - table)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="NPLMConfig: order=1"):
        NPLMConfig(order=1)
    with pytest.raises(ValueError, match="NPLMConfig: hidden=0"):
        NPLMConfig(hidden=0, direct=False)


def test_generation_slides_a_window_of_n_minus_1_words():
    """Greedy tokens from zoo.generate equal those of repeated full forwards over the whole growing rows."""
    config = CONFIGS["hidden+direct"]
    params, model = _init(config), NPLM(config)
    prompts = np.array([[3, 4, 5, 6, 7], [8, 9, 0, 0, 0]])  # row 1 is shorter than the window of 3
    lengths = np.array([5, 2])
    new = 9
    got = np.asarray(zoo.generate(model, params, prompts, new, temperature=0, prompt_lengths=lengths))
    apply = jax.jit(model.apply)
    for row in range(2):
        seq = list(prompts[row, : lengths[row]])
        for _ in range(new):
            # the full row so far, right-padded to one width (one compile): the model is causal, so the
            # logits at its last token are those of the row alone
            padded = np.zeros((1, prompts.shape[1] + new), np.int32)
            padded[0, : len(seq)] = seq
            logits = apply({"params": params}, jnp.asarray(padded))  # (1, P + new, V)
            seq.append(int(np.argmax(logits[0, len(seq) - 1])))
        assert got[row].tolist() == seq[lengths[row]:]


def test_with_word_vectors_sets_the_rows_of_the_words_it_has():
    from zoo.embeddings import KeyedVectors

    config = NPLMConfig(vocab_size=6, order=2, features=3, hidden=2, block_size=4)
    params = _init(config)
    vectors = KeyedVectors(["b", "z", "a"], np.arange(9, dtype=np.float32).reshape(3, 3))
    out, covered = with_word_vectors(params, ["a", "b", "c", "d"], vectors)  # ids 2..5
    table, before = np.asarray(out["embed"]["embedding"]), np.asarray(params["embed"]["embedding"])
    assert covered == 2
    np.testing.assert_array_equal(table[2], [6, 7, 8])  # a
    np.testing.assert_array_equal(table[3], [0, 1, 2])  # b
    np.testing.assert_array_equal(table[[0, 1, 4, 5]], before[[0, 1, 4, 5]])  # <unk>, <|endoftext|>, c, d


# -- the CLI, end to end ---------------------------------------------------------------------------

FAST = ("--preset", "tiny", "--no-progress", "--train.max-steps", "6", "--train.eval-interval", "6",
        "--train.checkpoint-interval", "6")


def _corpus(path, n: int = 600):
    rng = np.random.default_rng(0)
    nouns, verbs = ["cat", "dog", "mouse", "horse"], ["sees", "likes", "chases"]
    lines = [f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}" for _ in range(n)]
    path.write_text("\n\n".join(lines))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nplm")
    _corpus(tmp / "tiny.txt")
    return tmp


def test_pretrain_sample_eval(workdir, capsys, monkeypatch):
    proc = zoo_cmd("pretrain", "nplm", *FAST, "--data", "tiny.txt", "--out", "nplm", "--sample-tokens", "5",
                   "--sample-prompt", "the cat", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "word tokenizer, vocabulary 10" in proc.stdout and "done: step 6" in proc.stdout
    info = json.loads((workdir / "nplm" / "run.json").read_text())
    assert info["family"] == "nplm" and info["model"]["vocab_size"] == 10 and info["settings"]["min_count"] == 2
    run = zoo.load_run(workdir / "nplm")
    assert isinstance(run.model, NPLM) and run.tokenizer.kind == "word"

    # sample and eval in this process (the subprocess above is the end-to-end run; JAX starts once here)
    from zoo.cli import main

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(workdir / "cache"))
    capsys.readouterr()
    assert main(["sample", "nplm", "--prompt", "the dog", "--max-new-tokens", "4", "--temperature", "0"]) == 0
    words = capsys.readouterr().out.split()
    assert words[:2] == ["the", "dog"] and len(words) == 6
    assert set(words) <= set(run.tokenizer.words) | {"<unk>", "<|endoftext|>"}
    assert main(["eval", "nplm", "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "bits per token" in out


def test_init_embeddings_from_a_word2vec_run(workdir, monkeypatch):
    from zoo.cli import describe_error
    from zoo.commands.lm import pretrain_main

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(workdir / "cache"))
    from zoo.cli import main

    assert main(["pretrain", "word2vec", "--preset", "tiny", "--no-progress", "--model.min-count", "2",
                 "--data", "tiny.txt", "--out", "w2v"]) == 0
    proc = zoo_cmd("pretrain", "nplm", *FAST, "--data", "tiny.txt", "--out", "nplm-w2v", "--sample-tokens", "0",
                   "--init-embeddings", "w2v", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--init-embeddings w2v: 8 of the 8 words start from its vectors" in proc.stderr
    assert json.loads((workdir / "nplm-w2v" / "run.json").read_text())["settings"]["init_embeddings"] == "w2v"

    with pytest.raises(ValueError) as info:  # zoo.cli prints it as one line, exit 2 (checked before any data)
        pretrain_main(["nplm", *FAST, "--data", "tiny.txt", "--out", "bad", "--init-embeddings", "w2v",
                       "--model.features", "8"])
    message, code = describe_error(info.value)
    assert code == 2 and "--init-embeddings w2v has vectors of 16 dimensions, --model.features is 8" in message
    assert not (workdir / "bad").exists()
