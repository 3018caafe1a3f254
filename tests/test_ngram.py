"""Kneser-Ney n-gram LM: proper distributions, hand-worked probabilities, and sparsity statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.models.ngram import KneserNeyLM, unseen_rates

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat. " * 3


def char_ids(text: str, alphabet: str) -> list[int]:
    return [alphabet.index(c) for c in text]


@pytest.fixture(scope="module")
def alphabet() -> str:
    return "".join(sorted(set(TEXT))) + "xyz"  # three characters never seen in training


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_probabilities_sum_to_one_over_the_vocabulary(order, alphabet):
    ids = char_ids(TEXT, alphabet)
    lm = KneserNeyLM(order, len(alphabet)).fit(ids)
    rng = np.random.default_rng(0)
    contexts = [ids[i - 4:i] for i in rng.integers(4, len(ids), 20)]  # seen contexts
    contexts += [rng.integers(0, len(alphabet), 4).tolist() for _ in range(10)]  # mostly unseen ones
    contexts += [[], [len(alphabet) - 1]]  # empty, and a never-seen token
    for ctx in contexts:
        dist = lm.distribution(ctx)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert (dist > 0).all()  # unseen tokens keep some mass
        # the vectorised distribution and the scalar path agree
        for w in (0, ids[5], len(alphabet) - 1):
            assert lm.prob(ctx, w) == pytest.approx(dist[w], rel=1e-12)


def test_bigram_probability_by_hand():
    # corpus "abab a" over vocabulary {a, b, c}: ids a=0 b=1 c=2
    ids = [0, 1, 0, 1, 0]
    lm = KneserNeyLM(2, 3, discount=0.5).fit(ids)
    # bigrams: ab x2, ba x2. Unigram continuation counts: a follows b (1 type), b follows a (1 type)
    # P1(a) = (1 - .5)/2 + .5 * 2/2 * 1/3 = 0.25 + 1/6 ; P1(b) the same ; P1(c) = .5 * 1 * 1/3 = 1/6
    p1 = {0: 0.25 + 1 / 6, 1: 0.25 + 1 / 6, 2: 1 / 6}
    # context a: c(a,b) = 2, C(a) = 2, T(a) = 1 -> P(b|a) = (2 - .5)/2 + .5 * 1/2 * P1(b)
    assert lm.prob([0], 1) == pytest.approx(1.5 / 2 + 0.25 * p1[1])
    assert lm.prob([0], 0) == pytest.approx(0.25 * p1[0])
    assert lm.prob([0], 2) == pytest.approx(0.25 * p1[2])
    # an unseen context falls back to the unigram level
    assert lm.prob([2], 2) == pytest.approx(p1[2])


def test_training_text_is_easier_than_held_out_text(alphabet):
    rng = np.random.default_rng(1)
    train = char_ids(TEXT, alphabet)
    held_out = char_ids("a dog and the cat met the log on a mat. " * 2, alphabet)
    lm = KneserNeyLM(4, len(alphabet)).fit(train)
    assert lm.perplexity(train) < lm.perplexity(held_out)
    # and both beat the uniform model, which would give log2 |V| bits
    assert lm.bits_per_token(held_out) < math.log2(len(alphabet))
    # while random characters do not
    noise = rng.integers(0, len(alphabet), 200).tolist()
    assert lm.bits_per_token(noise) > lm.bits_per_token(held_out)


def test_higher_order_fits_training_text_better(alphabet):
    ids = char_ids(TEXT, alphabet)
    bits = [KneserNeyLM(n, len(alphabet)).fit(ids).bits_per_token(ids) for n in (1, 2, 3, 5)]
    assert bits == sorted(bits, reverse=True)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="order must be an integer >= 1, got 0"):
        KneserNeyLM(0, 5)
    with pytest.raises(ValueError, match=r"ids: token id 7 is out of range \[0, vocab_size=5\)"):
        KneserNeyLM(2, 5).fit([0, 1, 7])
    lm = KneserNeyLM(2, 5)
    with pytest.raises(ValueError, match="call fit"):
        lm.prob([0], 1)
    lm.fit([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"token: token id -1 is out of range"):
        lm.prob([0], -1)
    with pytest.raises(ValueError, match="discount must be in"):
        KneserNeyLM(2, 5, discount=1.5)


def test_unseen_rates_by_hand():
    train = "a b c a b d".split()
    val = "a b e a b c".split()
    stats = unseen_rates(train, val, max_order=3)
    assert stats.vocab_size == 4
    assert stats.oov_rate == pytest.approx(1 / 6)  # "e"
    assert stats.unseen[1] == pytest.approx(1 / 6)
    # bigrams of val: ab be ea ab bc -> be, ea unseen
    assert stats.unseen[2] == pytest.approx(2 / 5)
    # trigrams: abe bea eab abc -> abe bea eab unseen
    assert stats.unseen[3] == pytest.approx(3 / 4)
