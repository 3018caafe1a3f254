"""The encoder-decoder Transformer: cached decoding, greedy and beam search, the translation objective, toy data."""

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.data.tokenizers import ByteTokenizer
from zoo.data.translation import (
    TASKS,
    dates,
    exact_match,
    is_val_source,
    load_parallel_corpus,
    number_to_words,
    toy_pairs,
)
from zoo.models.beam import beam_search, greedy_decode, init_cache, score_sequences
from zoo.data.translation import make_translation_batch
from zoo.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from zoo.train.objectives import TRANSLATION, translation_loss

# vocabulary of 10: BOS 0, EOS 1 (not the default, so the defaults' fallback is not what is tested)
TINY = Seq2SeqConfig(
    vocab_size=10, max_source_len=7, max_target_len=8, num_encoder_layers=1, num_decoder_layers=2,
    num_heads=2, features=32, dropout_rate=0.0, bos_id=0, eos_id=1,
)
RNG = np.random.default_rng(0)


@functools.cache
def _initializer(cfg):
    model = Seq2SeqTransformer(cfg)
    return model, jax.jit(lambda key: nn.unbox(TRANSLATION.init_params(model, cfg, key)))


def _init(cfg, seed=0):
    """The model and its (plain) parameters; initialisation compiled once per config."""
    model, init = _initializer(cfg)
    return model, init(jax.random.key(seed))


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, src, tgt, src_lengths=None, tgt_lengths=None):
    return model.apply({"params": params}, src, tgt, src_lengths=src_lengths, tgt_lengths=tgt_lengths)


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, params, src, src_lengths=None):
    return model.apply({"params": params}, src, src_lengths=src_lengths, method="encode")


def lively(cfg, seed):
    """A random untied model whose outputs vary with the source and sometimes end early.

    Default initialisation makes a random decoder repeat one token; larger
    embeddings and output weights give hypotheses of mixed lengths and scores.
    """
    cfg = cfg.replace(tie_embeddings=False)
    model, params = _init(cfg, seed)
    rng = np.random.default_rng(seed)
    params = dict(params)
    v, d = cfg.vocab_size, cfg.features
    for name in ("source_embed", "target_embed"):
        params[name] = {"embedding": jnp.asarray(rng.standard_normal((v, d)), jnp.float32)}
    params["lm_head"] = {"kernel": jnp.asarray(0.7 * rng.standard_normal((d, v)), jnp.float32)}
    return model, params


def random_source(cfg, b=6, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, cfg.vocab_size, (b, cfg.max_source_len)).astype(np.int32)
    lengths = rng.integers(1, cfg.max_source_len + 1, b).astype(np.int32)
    lengths[0] = cfg.max_source_len
    return src, lengths


# --------------------------------------------------------------------------
# config and parameters


def test_config_defaults_and_validation():
    base = Seq2SeqConfig()
    assert (base.features, base.num_heads, base.num_encoder_layers, base.num_decoder_layers) == (512, 8, 6, 6)
    assert base.bos == base.eos == base.vocab_size - 1 and base.block_size == 256
    tok = ByteTokenizer()
    cfg = Seq2SeqConfig.for_tokenizer(tok, max_source_len=5, max_target_len=9)
    assert (cfg.vocab_size, cfg.bos, cfg.eos, cfg.block_size) == (257, 256, 256, 9)
    assert TINY.replace(eos_id=None).eos == 0  # EOS defaults to the BOS id
    for changes, match in [
        ({"features": 30, "num_heads": 4}, r"features=30, expected a multiple of num_heads=4"),
        ({"max_target_len": 0}, r"max_target_len=0, expected a positive int"),
        ({"bos_id": 10}, r"bos_id=10, expected None or a token id in \[0, vocab_size=10\)"),
        ({"layer_norm": "sandwich"}, r"layer_norm='sandwich', expected 'post' or 'pre'"),
        ({"positions": "rope"}, r"positions='rope', expected 'sinusoidal' or 'learned'"),
        ({"label_smoothing": 1.0}, r"label_smoothing=1.0"),
        ({"dtype": "int8"}, r"dtype='int8'"),
    ]:
        with pytest.raises(ValueError, match=match):
            TINY.replace(**changes)


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False, "positions": "learned", "scan_layers": False}])
def test_every_parameter_has_logical_axis_names(changes):
    cfg = TINY.replace(**changes)
    model = Seq2SeqTransformer(cfg)
    boxed = jax.eval_shape(lambda: TRANSLATION.init_params(model, cfg, jax.random.key(0)))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    names = set(boxed)
    if changes:
        assert {"source_embed", "target_embed", "lm_head", "source_positions", "target_positions"} <= names
    else:
        assert names == {"embed", "encoder", "decoder"}


# --------------------------------------------------------------------------
# the model and cached decoding


@pytest.mark.parametrize(
    "changes",
    [{}, {"layer_norm": "pre", "positions": "learned", "tie_embeddings": False, "scan_layers": False}],
)
def test_cached_decoding_equals_teacher_forced(changes):
    cfg = TINY.replace(**changes)
    model, params = _init(cfg)
    src, src_lengths = random_source(cfg, b=3)
    tgt = RNG.integers(0, cfg.vocab_size, (3, cfg.max_target_len)).astype(np.int32)
    full = _forward(model, params, src, tgt, src_lengths)  # (B, T, V)
    encoded = _encode(model, params, src, src_lengths)

    @jax.jit
    def step(cache, chunk, encoded):
        logits, mutated = model.apply(
            {"params": params, "cache": cache}, chunk, encoded,
            src_lengths=None if encoded is None else src_lengths, decode=True, mutable=["cache"], method="decode",
        )
        return logits, mutated["cache"]

    cache = init_cache(model, 3, cfg.max_source_len, cfg.max_target_len)
    out, cache = step(cache, tgt[:, :3], encoded)  # prefill: fills the cross-attention caches
    outs = [out]
    for t in range(3, cfg.max_target_len):  # then one token at a time, the encoder output from the cache
        out, cache = step(cache, tgt[:, t : t + 1], None)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, atol=2e-5)
    assert full.dtype == jnp.float32 and full.shape == (3, cfg.max_target_len, cfg.vocab_size)


def test_padding_does_not_change_the_real_positions():
    model, params = _init(TINY)
    apply = functools.partial(_forward, model, params)
    encode = functools.partial(_encode, model, params)
    src, _ = random_source(TINY, b=2)
    tgt = RNG.integers(0, 10, (2, TINY.max_target_len)).astype(np.int32)
    src_lengths, tgt_lengths = np.array([4, 2], np.int32), np.array([5, 3], np.int32)
    src2, tgt2 = src.copy(), tgt.copy()
    src2[0, 4:], src2[1, 2:], tgt2[0, 5:], tgt2[1, 3:] = 9, 3, 7, 2  # other padding values
    np.testing.assert_allclose(encode(src, src_lengths)[0, :4], encode(src2, src_lengths)[0, :4], atol=1e-5)
    a, b = apply(src, tgt, src_lengths, tgt_lengths), apply(src2, tgt2, src_lengths, tgt_lengths)
    np.testing.assert_allclose(a[0, :5], b[0, :5], atol=1e-5)
    np.testing.assert_allclose(a[1, :3], b[1, :3], atol=1e-5)
    # a row without padding gives the same encoding as the padded one
    alone = encode(src[1:, :2])
    np.testing.assert_allclose(encode(src, src_lengths)[1, :2], alone[0], atol=1e-5)
    # the encoder is bidirectional: a real token changes every real position
    src3 = src.copy()
    src3[0, 3] = (src3[0, 3] + 1) % 10
    assert not np.allclose(encode(src, src_lengths)[0, 0], encode(src3, src_lengths)[0, 0])


def test_bad_inputs_raise():
    model, params = _init(TINY)
    src, _ = random_source(TINY, b=2)
    tgt = np.zeros((2, 4), np.int32)
    with pytest.raises(ValueError, match=r"token ids must be .*got 10"):
        model.apply({"params": params}, np.where(src == 3, 10, src), tgt)
    with pytest.raises(ValueError, match="src has length 8, longer than max_source_len=7"):
        model.apply({"params": params}, np.zeros((2, 8), np.int32), tgt)
    with pytest.raises(ValueError, match="tgt_lengths must be lengths of the rows .*got 5"):
        model.apply({"params": params}, src, tgt, tgt_lengths=np.array([5, 1]))
    bad = src.copy()
    bad[1, 2] = 12
    with pytest.raises(ValueError, match=r"greedy_decode: src must be token ids .*got 12 at index \(1, 2\)"):
        greedy_decode(model, params, bad)
    with pytest.raises(ValueError, match=r"max_len must be an int in \[1, max_target_len=8\], got 9"):
        greedy_decode(model, params, src, max_len=9)
    with pytest.raises(ValueError, match=r"beam_size must be an int in \[1, vocab_size=10\], got 0"):
        beam_search(model, params, src, beam_size=0)
    with pytest.raises(ValueError, match=r"src_lengths must be lengths of the source rows .*got 8"):
        beam_search(model, params, src, np.array([8, 1]))
    with pytest.raises(ValueError, match="length_penalty must be a float >= 0"):
        beam_search(model, params, src, length_penalty=-1.0)


# --------------------------------------------------------------------------
# greedy and beam search


def _python_greedy(model, params, src, src_lengths, max_len):
    """Reference: a full teacher-forced forward per step, argmax at the last position, until EOS."""
    cfg = model.config
    forward = functools.partial(_forward, model, params, src, src_lengths=src_lengths)
    b = src.shape[0]
    tgt = np.full((b, max_len), cfg.eos, np.int32)  # causal: what sits after position t does not matter
    tgt[:, 0] = cfg.bos
    out = np.full((b, max_len), cfg.eos, np.int32)
    lengths = np.full(b, max_len)
    for t in range(max_len):
        token = np.asarray(jnp.argmax(forward(tgt)[:, t], axis=-1))
        for i in range(b):
            if lengths[i] == max_len:  # still going
                out[i, t] = token[i]
                if token[i] == cfg.eos:
                    lengths[i] = t
        if t + 1 < max_len:
            tgt[:, t + 1] = out[:, t]
    return out, lengths


@pytest.mark.parametrize("seed", [0, 3])
def test_greedy_equals_argmax_over_full_forwards(seed):
    model, params = lively(TINY, seed)
    src, src_lengths = random_source(TINY, seed=seed)
    out = greedy_decode(model, params, src, src_lengths, max_len=6)
    ids, lengths = _python_greedy(model, params, src, src_lengths, 6)
    np.testing.assert_array_equal(out.ids, ids)
    np.testing.assert_array_equal(out.lengths, lengths)
    np.testing.assert_allclose(out.scores, score_sequences(model, params, src, out.ids, src_lengths), atol=1e-5)


def test_beam_size_one_is_greedy_and_wider_beams_score_at_least_greedy():
    widths_seen = set()
    for seed in range(3):
        model, params = lively(TINY, seed)
        src, src_lengths = random_source(TINY, seed=seed)
        greedy = greedy_decode(model, params, src, src_lengths, max_len=6)
        one = beam_search(model, params, src, src_lengths, beam_size=1, max_len=6)
        np.testing.assert_array_equal(one.ids, greedy.ids)
        np.testing.assert_array_equal(one.lengths, greedy.lengths)
        np.testing.assert_allclose(one.scores, greedy.scores, atol=1e-5)
        beams = beam_search(model, params, src, src_lengths, beam_size=3, max_len=6, return_all=True)
        assert beams.ids.shape == (6, 3, 6) and beams.scores.shape == (6, 3)
        # an empirical property of beam search (not a guarantee), on these seeds
        assert np.all(beams.scores[:, 0] >= greedy.scores - 1e-5)
        assert np.all(np.diff(np.asarray(beams.scores), axis=1) <= 1e-6)  # best first
        # every beam's score is its teacher-forced score: the caches followed the right parents
        for k in range(3):
            np.testing.assert_allclose(
                beams.scores[:, k], score_sequences(model, params, src, beams.ids[:, k], src_lengths), atol=1e-4
            )
        # format: EOS at index `length` and after it (when the beam finished)
        for row, n in zip(np.asarray(beams.ids).reshape(-1, 6), np.asarray(beams.lengths).reshape(-1)):
            assert np.all(row[n:] == TINY.eos) and np.all(row[:n] != TINY.eos)
        widths_seen |= set(np.asarray(beams.lengths).reshape(-1).tolist())
    assert len(widths_seen) >= 3  # finished and unfinished hypotheses of several lengths were exercised
    best = beam_search(model, params, src, src_lengths, beam_size=3, max_len=6)
    np.testing.assert_array_equal(best.ids, beams.ids[:, 0])


# --------------------------------------------------------------------------
# the objective and batches


def test_make_translation_batch_layout_and_errors():
    cfg = TINY.replace(max_source_len=4, max_target_len=4)
    batch = make_translation_batch([([5, 6], [7, 8, 9]), (np.array([2, 3, 4, 5]), [])], cfg)
    np.testing.assert_array_equal(batch["src"], [[5, 6, 1, 1], [2, 3, 4, 5]])
    np.testing.assert_array_equal(batch["tgt_in"], [[0, 7, 8, 9], [0, 1, 1, 1]])
    np.testing.assert_array_equal(batch["tgt_out"], [[7, 8, 9, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(batch["src_lengths"], [2, 4])
    np.testing.assert_array_equal(batch["tgt_lengths"], [4, 1])
    assert all(v.dtype == np.int32 for v in batch.values())
    with pytest.raises(ValueError, match=r"pair 1: target has 4 tokens, more than max_target_len - 1 = 3"):
        make_translation_batch([([1], [2]), ([1], [2, 3, 4, 5])], cfg)
    with pytest.raises(ValueError, match=r"pair 0: source has 5 tokens, more than max_source_len=4"):
        make_translation_batch([([1, 2, 3, 4, 5], [2])], cfg)
    with pytest.raises(ValueError, match=r"pair 0: target ids must be integers in \[0, vocab_size=10\)"):
        make_translation_batch([([1], [10])], cfg)
    example = TRANSLATION.example_batch(TINY)
    assert example["src"].shape == (1, 7) and example["tgt_in"].shape == (1, 8)
    assert TRANSLATION.tokens_key == "tgt_in"


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_counts_only_real_target_positions(smoothing):
    cfg = TINY.replace(label_smoothing=smoothing)
    model = Seq2SeqTransformer(cfg)
    params = _init(TINY)[1]
    pairs = [(RNG.integers(2, 10, 5), RNG.integers(2, 10, 6)), (RNG.integers(2, 10, 2), RNG.integers(2, 10, 1))]
    batch = {k: jnp.asarray(v) for k, v in make_translation_batch(pairs, cfg).items()}
    loss_fn = jax.jit(lambda b: translation_loss(model, params, b, dropout_key=None))
    loss, metrics = loss_fn(batch)
    logits = _forward(model, params, batch["src"], batch["tgt_in"], batch["src_lengths"], batch["tgt_lengths"])
    logp = np.asarray(jax.nn.log_softmax(logits))
    rows = [(0, t) for t in range(7)] + [(1, t) for t in range(2)]  # len(target) + 1 positions per row
    nll = np.mean([-logp[b, t, batch["tgt_out"][b, t]] for b, t in rows])
    expected = np.mean([-(1 - smoothing) * logp[b, t, batch["tgt_out"][b, t]] - smoothing * logp[b, t].mean()
                        for b, t in rows])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    accuracy = np.mean([logp[b, t].argmax() == batch["tgt_out"][b, t] for b, t in rows])
    np.testing.assert_allclose(metrics["accuracy"], accuracy, rtol=1e-6)
    if smoothing:
        np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
    # whatever the padding holds, the loss is the same
    padded = dict(batch, tgt_out=batch["tgt_out"].at[1, 2:].set(5), tgt_in=batch["tgt_in"].at[1, 2:].set(4))
    np.testing.assert_allclose(loss_fn(padded)[0], loss, rtol=1e-6)


# --------------------------------------------------------------------------
# toy data and corpora


def test_number_words_and_dates():
    cases = {0: "zero", 7: "seven", 15: "fifteen", 40: "forty", 4071: "four thousand seventy one",
             100: "one hundred", 999_999: "nine hundred ninety nine thousand nine hundred ninety nine",
             1_000_010: "one million ten"}
    for n, words in cases.items():
        assert number_to_words(n) == words
    src, tgt = TASKS["number_words"](np.random.default_rng(0), max_number=50)
    assert int(src) <= 50 and tgt == number_to_words(int(src))
    src, tgt = dates(np.random.default_rng(1))
    year, month, day = (int(x) for x in src.split("-"))
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"]
    assert tgt == f"{day} {months[month - 1]} {year}" and 1900 <= year <= 2099
    assert dates(np.random.default_rng(1), style="mdy")[1] == f"{months[month - 1]} {day}, {year}"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_toy_pairs_are_deterministic_and_splits_disjoint(task):
    train = toy_pairs(task, 300, seed=3)
    assert train == toy_pairs(task, 300, seed=3) and train != toy_pairs(task, 300, seed=4)
    val = toy_pairs(task, 50, seed=3, split="val")
    assert not {s for s, _ in train} & {s for s, _ in val}
    assert all(is_val_source(s) for s, _ in val)
    assert len({s for s, _ in train}) > 200  # varied
    if task == "number_words":  # 0..99 (their own words) stay in train; val holds out compositions
        assert all(int(s) >= 100 for s, _ in val) and {"1", "10", "99"} <= {s for s, _ in toy_pairs(task, 3000)}
    with pytest.raises(ValueError, match=r"unknown task 'nope'; expected one of \['dates', 'number_words'\]"):
        toy_pairs("nope", 1)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        toy_pairs(task, 1, split="test")


def test_toy_pairs_too_small_a_space_raises():
    with pytest.raises(ValueError, match="too few distinct sources"):
        toy_pairs("number_words", 5, split="val", max_number=1, val_percent=0.01)


def test_load_parallel_corpus(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # not ~/.cache
    (tmp_path / "a.csv").write_text("de,en,id\nvier,four,0071\nhallo,hello,NA\n", encoding="utf-8")
    assert load_parallel_corpus(tmp_path / "a.csv", "en", "id") == [("four", "0071"), ("hello", "NA")]
    rows = [{"translation": {"de": "eins", "en": "one"}}, {"translation": {"de": "zwei", "en": "two"}}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert load_parallel_corpus(tmp_path / "b.jsonl", "translation.en", "translation.de") == [
        ("one", "eins"), ("two", "zwei")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"src": ["x", "y"], "tgt": ["X", "Y"]}), tmp_path / "c.parquet")
    assert load_parallel_corpus(str(tmp_path / "c.parquet"), "src", "tgt") == [("x", "X"), ("y", "Y")]
    with pytest.raises(ValueError, match=r"has no column 'fr'; its columns are \['de', 'en', 'id'\]"):
        load_parallel_corpus(tmp_path / "a.csv", "fr", "en")
    (tmp_path / "empty.csv").write_text("de,en\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no rows"):
        load_parallel_corpus(tmp_path / "empty.csv", "de", "en")
    with pytest.raises(ValueError, match="cannot read '.txt' files"):
        (tmp_path / "d.txt").write_text("x")
        load_parallel_corpus(tmp_path / "d.txt", "a", "b")


def test_exact_match():
    assert exact_match(["a b", "c ", "d"], ["a b", "c", "e"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        exact_match(["a", "b"], ["a"])


# --------------------------------------------------------------------------
# training


def test_training_learns_number_words_on_held_out_numbers():
    """Three-digit numbers to words (word-level targets): 200 Adam steps reach exact match >= 0.9 on unseen ones."""
    opts = {"max_number": 999, "min_number": 100}
    train = toy_pairs("number_words", 2000, seed=0, **opts)
    val = toy_pairs("number_words", 100, seed=0, split="val", **opts)
    vocab = list("0123456789") + sorted({w for _, t in train for w in t.split()}) + ["<eos>"]
    index = {w: i for i, w in enumerate(vocab)}
    encode = lambda pairs: [([index[c] for c in s], [index[w] for w in t.split()]) for s, t in pairs]
    cfg = Seq2SeqConfig(vocab_size=len(vocab), max_source_len=3, max_target_len=5, num_encoder_layers=1,
                        num_decoder_layers=1, num_heads=2, features=32, dropout_rate=0.0)
    model, params = _init(cfg)
    data, val_batch = make_translation_batch(encode(train), cfg), make_translation_batch(encode(val), cfg)
    steps = 200
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 5e-3, 20, steps, 5e-4))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        grads, _ = jax.grad(lambda p: translation_loss(model, p, batch, dropout_key=None), has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def held_out_exact_match(params):
        out = greedy_decode(model, params, val_batch["src"], val_batch["src_lengths"])
        rows = zip(np.asarray(out.ids), np.asarray(out.lengths))
        preds = [" ".join(vocab[i] for i in row[:n]) for row, n in rows]
        return exact_match(preds, [t for _, t in val])

    assert held_out_exact_match(params) < 0.1  # the metric can fail: untrained, it does
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(train), 64)
        params, opt_state = step(params, opt_state, {k: v[idx] for k, v in data.items()})
    assert held_out_exact_match(params) >= 0.9
