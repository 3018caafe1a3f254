"""word2vec and fastText: the objective against NumPy, sampling statistics, n-grams and hashes by hand, planted
structure learned, the keyed vectors, word2vec files (read back by gensim when installed), bad input."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.data.words import WordTokenizer, split_sentences, split_words
from zoo.embeddings import KeyedVectors, UnknownWordError, load_word2vec_format
from zoo.errors import ConfigError
from zoo.models.fasttext import FastText, FastTextConfig, char_ngrams, fnv1a_32, ft_hash, ngram_buckets
from zoo.models.word2vec import (
    Word2Vec, Word2VecConfig, keep_probabilities, make_train_step, noise_table, plan_epoch, sample_noise,
    sentence_stream, sgns_grads, sgns_loss,
)
from zoo.train.embeddings import EmbeddingTrainConfig, train_embeddings

HAVE_GENSIM = importlib.util.find_spec("gensim") is not None


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- the objective --------------------------------------------------------------------


def test_sgns_loss_and_gradients_match_numpy_and_autodiff():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 4)).astype(np.float32)  # 3 predictions, D = 4
    rows = rng.normal(size=(3, 3, 4)).astype(np.float32)  # target + 2 noise words
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0]], np.float32)
    # NumPy reference: -log s(h.u_t) - sum log s(-h.u_k); dL/dh = -sum e_k u_k; dL/du_k = -e_k h.
    s = np.einsum("nd,nkd->nk", h, rows)
    y = np.array([1.0, 0.0, 0.0])
    ref_loss = -np.sum(mask * np.log(_sigmoid(np.where(y == 1, s, -s))))
    e = mask * (y - _sigmoid(s))
    ref_dh, ref_drows = -np.einsum("nk,nkd->nd", e, rows), -e[..., None] * h[:, None, :]
    # jitted: eager, every operation (and its derivative) compiles on its own
    loss, dh, drows = jax.jit(sgns_grads)(jnp.asarray(h), jnp.asarray(rows), jnp.asarray(mask))
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(float(jax.jit(sgns_loss)(h, rows, mask)), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(dh, ref_dh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(drows, ref_drows, rtol=1e-5, atol=1e-6)
    auto_dh, auto_drows = jax.jit(jax.grad(sgns_loss, argnums=(0, 1)))(jnp.asarray(h), jnp.asarray(rows),
                                                                        jnp.asarray(mask))
    np.testing.assert_allclose(auto_dh, dh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto_drows, drows, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sg", [False, True])
def test_one_batched_step_is_the_sum_of_word2vec_updates(sg):
    """One step on a tiny stream equals word2vec.c's update of every center word, computed from the same tables
    and summed (NumPy, pair by pair)."""
    v, d, w, k, n = 7, 4, 2, 2, 5
    config = Word2VecConfig(vocab_size=v, vector_size=d, window=w, negative=k, sample=0.0, sg=sg)
    counts = np.array([0, 0, 5, 4, 3, 2, 1])
    rng = np.random.default_rng(1)
    tables = {"input": rng.normal(size=(v, d)).astype(np.float32),
              "output": rng.normal(size=(v, d)).astype(np.float32) * 0.5}
    ids, sentence = sentence_stream([np.array([2, 3, 4, 5]), np.array([6, 2, 3])])
    plan = plan_epoch(ids, sentence, keep_probabilities(counts, 0.0), window=w, chunk=n, seed=0, epoch=0)
    table = jnp.asarray(noise_table(counts), jnp.int32)
    key, alpha = jax.random.key(3), 0.1
    step = make_train_step(config, n, 1)
    new, stats = step({kk: jnp.asarray(x) for kk, x in tables.items()}, {},
                      {"ids": jnp.asarray(plan.ids), "sentence": jnp.asarray(plan.sentence),
                       "span": jnp.asarray(plan.span)}, table, jnp.int32(0), key, jnp.float32(alpha), jnp.float32(0))
    shape = (n, 2 * w, k) if sg else (n, k)
    noise = np.asarray(sample_noise(jax.random.fold_in(key, 0), table, shape))

    syn0, syn1 = tables["input"], tables["output"]
    d0, d1, loss = np.zeros_like(syn0), np.zeros_like(syn1), 0.0
    offsets = [o for o in range(-w, w + 1) if o]

    def predict(hvec, target, negs):
        nonlocal loss
        work = np.zeros(d, np.float32)
        for j, word in enumerate([target, *negs]):
            if j and word == target:
                continue
            label = 1.0 if j == 0 else 0.0
            f = _sigmoid(hvec @ syn1[word])
            loss -= np.log(f if label else 1 - f)
            g = (label - f) * alpha
            work += g * syn1[word]
            d1[word] += g * hvec
        return work

    for i in range(min(plan.words, n)):  # the first batch: n centers (their windows reach past it)
        p = w + i
        center, span = plan.ids[p], plan.span[p]
        ctx = [(j, plan.ids[p + o]) for j, o in enumerate(offsets)
               if abs(o) <= span and plan.sentence[p + o] == plan.sentence[p]]
        if sg:
            for j, c in ctx:
                d0[c] += predict(syn0[c], center, noise[i, j])
        elif ctx:
            hvec = np.mean([syn0[c] for _, c in ctx], axis=0)
            work = predict(hvec, center, noise[i])
            for _, c in ctx:
                d0[c] += work  # word2vec's CBOW rule: the whole error to every context word
    np.testing.assert_allclose(new["input"], syn0 + d0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["output"], syn1 + d1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(stats["loss"]), loss, rtol=1e-4)


# -- sampling statistics ------------------------------------------------------------------


def test_subsampling_keeps_words_with_word2vecs_probability():
    counts = np.array([0, 0, 50_000, 5_000, 500, 50])
    keep = keep_probabilities(counts, 1e-3)
    t = 1e-3 * counts.sum()
    assert keep[2] == pytest.approx((np.sqrt(50_000 / t) + 1) * t / 50_000)
    assert keep[0] == keep[1] == 0 and keep[5] == 1.0 and keep[3] < 1
    ids = np.repeat(np.arange(6), counts).astype(np.int32)
    ids, sentence = sentence_stream([ids])
    kept = plan_epoch(ids, sentence, keep, window=2, chunk=64, seed=0, epoch=0)
    observed = np.bincount(kept.ids[kept.ids >= 0], minlength=6)
    for word in (2, 3, 4):  # binomial: within 4 standard deviations
        mean, sd = counts[word] * keep[word], np.sqrt(counts[word] * keep[word] * (1 - keep[word])) + 1e-9
        assert abs(observed[word] - mean) <= 4 * sd + 1, (word, observed[word], mean)
    assert (kept.span[2 : 2 + kept.words] >= 1).all() and (kept.span <= 2).all()  # the dynamic window
    assert set(np.unique(kept.span[2 : 2 + kept.words])) == {1, 2}


def test_noise_words_follow_the_unigram_distribution_to_the_three_quarters():
    counts = np.array([0, 0, 1000, 100, 10, 1])
    table = jnp.asarray(noise_table(counts), jnp.int32)
    draws = np.asarray(sample_noise(jax.random.key(0), table, (200_000,)))
    freq = np.bincount(draws, minlength=6) / len(draws)
    expected = np.where(counts > 0, counts**0.75, 0) / np.sum(counts[counts > 0] ** 0.75)
    assert freq[0] == freq[1] == 0  # the specials are never noise
    np.testing.assert_allclose(freq, expected, atol=0.005)


# -- fastText's n-grams and hash ----------------------------------------------------------


def test_char_ngrams_by_hand():
    assert char_ngrams("cat", 3, 4) == [b"<ca", b"<cat", b"cat", b"cat>", b"at>"]
    assert char_ngrams("cat", 3, 6) == [b"<ca", b"<cat", b"<cat>", b"cat", b"cat>", b"at>"]
    # Non-ASCII: n-grams count characters, not bytes (é is 2 bytes in UTF-8).
    assert char_ngrams("été", 3, 3) == ["<ét".encode(), "été".encode(), "té>".encode()]
    assert len(char_ngrams("a", 3, 6)) == 1  # "<a>": every string has an n-gram


def test_fasttext_hash_by_hand_ascii_and_non_ascii():
    basis, prime, mask = 2166136261, 16777619, 0xFFFFFFFF
    assert ft_hash(b"a") == ((basis ^ 0x61) * prime) & mask == 3826002220
    # 0xC3 (first byte of é) is XORed in as int8 -1 sign-extended: 0xFFFFFFC3, not 0xC3.
    assert ft_hash(b"\xc3") == ((basis ^ 0xFFFFFFC3) * prime) & mask == 3321057138
    assert fnv1a_32(b"\xc3") == ((basis ^ 0xC3) * prime) & mask == 1175138418
    assert ft_hash("<été>".encode()) == 2778999949 != fnv1a_32("<été>".encode())
    assert ft_hash(b"<cat>") == fnv1a_32(b"<cat>")  # the same on ASCII
    assert ngram_buckets("cat", 3, 3, 1000) == [ft_hash(g) % 1000 for g in (b"<ca", b"cat", b"at>")]


@pytest.mark.skipif(not HAVE_GENSIM, reason="gensim not installed")
def test_ngrams_and_hashes_equal_gensims():
    from gensim.models.fasttext import compute_ngrams_bytes, ft_ngram_hashes

    for word in ("cat", "kingdoms", "été", "naïveté", "東京", "x"):
        assert char_ngrams(word, 3, 6) == compute_ngrams_bytes(word, 3, 6)
        assert ngram_buckets(word, 3, 6, 2_000_000) == list(ft_ngram_hashes(word, 3, 6, 2_000_000))


# -- learning planted structure ------------------------------------------------------------

GROUPS = [["cat", "dog", "mouse"], ["red", "green", "blue"], ["run", "walk", "jump"]]
CONTEXTS = [["the", "pet"], ["is", "very"], ["they", "we"]]


def planted_text(n: int = 1500, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = int(rng.integers(3))
        out.append(" ".join([rng.choice(CONTEXTS[g]), rng.choice(GROUPS[g]), rng.choice(CONTEXTS[g]),
                             rng.choice(["and", "of"])]))
    return "\n\n".join(out)


def _train(family: str, text: str, **model):
    tok = WordTokenizer.train([text], min_count=1)
    sentences = [tok.encode_words(s) for s in split_sentences([text])]
    fields = dict(vocab_size=tok.vocab_size, vector_size=16, window=2, negative=3, sample=0.0, min_count=1, **model)
    net = FastText(FastTextConfig(bucket=500, **fields), tok.words) if family == "fasttext" else \
        Word2Vec(Word2VecConfig(**fields))
    result = train_embeddings(net, sentences, np.concatenate([[0, 0], tok.counts]),
                              EmbeddingTrainConfig(epochs=3, batch_size=16, steps_per_call=8), progress=False)
    from zoo.embeddings import keyed_vectors

    return keyed_vectors(net, result["tables"], tok, family), result


@pytest.mark.parametrize("family,sg", [("word2vec", False), ("word2vec", True), ("fasttext", False)])
def test_words_that_share_contexts_come_out_nearest(family, sg):
    vectors, result = _train(family, planted_text(), sg=sg)
    assert np.isfinite(result["loss"]) and result["words_per_s"] > 0
    for group in GROUPS:
        for word in group:
            near = {w for w, _ in vectors.most_similar(word, topn=2)}
            assert near == set(group) - {word}, (word, vectors.most_similar(word, topn=4))


def test_fasttext_answers_unseen_words_and_word2vec_refuses():
    text = planted_text()
    ft, _ = _train("fasttext", text)
    w2v, _ = _train("word2vec", text)
    assert ft.has_vector("dogz") and ft["dogz"].shape == (16,)
    assert ft.most_similar("dogz", topn=1)[0][0] == "dog"  # n-grams "<do", "dog" are shared
    with pytest.raises(UnknownWordError, match="'dogz' is not in the vocabulary") as info:
        w2v.most_similar("dogz")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert w2v.analogy("cat", "dog", "red", topn=3)  # in-vocabulary analogies answer


# -- the word tokenizer --------------------------------------------------------------------


def test_word_tokenizer_rules_and_vocabulary(tmp_path):
    assert split_words("Don't stop-me, 1913! ÉTÉ rock’n’roll _x_") == ["don't", "stop", "me", "1913", "été",
                                                                       "rock'n'roll", "x"]
    assert split_sentences(["a b\n c\n\n  \n d"]) == [["a", "b", "c"], ["d"]]
    tok = WordTokenizer.train(["b b a a a c"], min_count=2)
    assert tok.words == ["a", "b"] and tok.counts.tolist() == [3, 2] and tok.vocab_size == 4
    assert tok.encode("A c b").tolist() == [2, 0, 3] and tok.decode([2, 0, 1]) == "a <unk> <|endoftext|>"
    assert WordTokenizer.train(["b b a a a c"], min_count=1, max_size=1).words == ["a"]
    from zoo.data import load_tokenizer, make_tokenizer

    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.kind == "word" and again.words == tok.words and again.counts.tolist() == [3, 2]
    assert make_tokenizer("word", ["x y x y x y x y x y"]).words == ["x", "y"]


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no words"):
        WordTokenizer.train(["  ,,, !!"])
    with pytest.raises(ValueError, match="min_count=9 leaves no word.*occurs 2 time"):
        WordTokenizer.train(["a a b"], min_count=9)
    for field in ("window", "negative"):
        with pytest.raises(ConfigError, match=f"{field}=0"):
            Word2VecConfig(**{field: 0})
    with pytest.raises(ConfigError, match="max_n"):
        FastTextConfig(min_n=4, max_n=3)
    tok = WordTokenizer.train(["lonely"], min_count=1)
    with pytest.raises(ValueError, match="1 word"):
        train_embeddings(Word2Vec(Word2VecConfig(vocab_size=tok.vocab_size, vector_size=4, min_count=1)),
                         [tok.encode("lonely")], np.array([0, 0, 1]), EmbeddingTrainConfig(), progress=False)


def test_word2vec_files_round_trip_and_corrupt_files_are_refused(tmp_path):
    vectors = KeyedVectors(["a", "b", "été"], np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    for binary in (False, True):
        path = vectors.save_word2vec_format(tmp_path / f"v{int(binary)}", binary=binary)
        back = load_word2vec_format(path, binary=binary)
        assert back.index_to_key == vectors.index_to_key
        np.testing.assert_allclose(back.vectors, vectors.vectors, rtol=1e-5)
        if HAVE_GENSIM:
            from gensim.models import KeyedVectors as GensimKeyedVectors

            g = GensimKeyedVectors.load_word2vec_format(str(path), binary=binary)
            assert list(g.index_to_key) == vectors.index_to_key
            np.testing.assert_allclose(g.vectors, vectors.vectors, rtol=1e-5)
        data = path.read_bytes()
        (tmp_path / "cut").write_bytes(data[: len(data) - 9])
        with pytest.raises(ValueError, match="truncated|line 4"):
            load_word2vec_format(tmp_path / "cut", binary=binary)
    (tmp_path / "junk").write_bytes(b"hello world\n")
    with pytest.raises(ValueError, match="header"):
        load_word2vec_format(tmp_path / "junk")
