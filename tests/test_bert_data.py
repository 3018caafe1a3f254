"""Data for BERT (zoo.data): WordPiece, masked-LM masking and batches, labeled classification data.

Everything is made here or in tmp_path; nothing is downloaded.
"""

import math
import time

import numpy as np
import pytest

from zoo import data
from zoo.data import (
    Corpus,
    Example,
    WordPieceTokenizer,
    longest_first,
    mask_tokens,
    max_predictions,
    mlm_batch,
)

TRAIN_TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    "A quick brown fox jumps over the lazy dog, again and again!",
    "one two three four five six seven eight nine ten",
    "the cat and the dog were friends; the fox was not.",
] * 5
SPECIALS = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK]


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory, monkeypatch):
    """Keep the Arrow cache of ``datasets.load_dataset`` in a temporary folder, not ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture(scope="module")
def wp():
    return WordPieceTokenizer.train(TRAIN_TEXTS, vocab_size=200)


# ---------------------------------------------------------------------------
# WordPiece


def test_wordpiece_specials_and_round_trip(wp):
    assert wp.kind == "wordpiece" and wp.vocab_size <= 200
    assert (wp.pad_id, wp.unk_id, wp.cls_id, wp.sep_id, wp.mask_id) == SPECIALS
    assert wp.special_ids == SPECIALS and wp.eot_id == wp.sep_id
    for text in ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog", "the fox was not."]:
        ids = wp.encode(text)
        assert ids.dtype == np.int32 and ids.min() >= 5 and ids.max() < wp.vocab_size
        assert wp.decode(ids) == text
    assert wp.decode(wp.encode("The CAT Sat")) == "the cat sat"  # uncased
    assert wp.encode("").shape == (0,)
    assert wp.decode([wp.cls_id, *wp.encode("the dog"), wp.sep_id]) == "[CLS] the dog [SEP]"


def test_wordpiece_mask_literal_and_unknown_characters(wp):
    ids = wp.encode("the cat [MASK] on the mat")
    assert ids.tolist() == [*wp.encode("the cat"), wp.mask_id, *wp.encode("on the mat")]
    # Characters never seen in training become [UNK] (one per word); nothing crashes.
    for text in ["the 日本 cat", "zebra ☃ \x00 \ufeff", "the " + "x" * 300, "lone \ud800 surrogate"]:
        ids = wp.encode(text)
        [batch_ids] = wp.encode_batch([text])
        np.testing.assert_array_equal(batch_ids, ids)
        # A lone surrogate becomes U+FFFD, which BERT's normalizer drops (as it drops \x00).
        assert (wp.unk_id in ids.tolist()) == ("surrogate" not in text) and ids.max() < wp.vocab_size


def test_wordpiece_save_load_and_make_tokenizer(wp, tmp_path):
    wp.save(tmp_path / "tok")
    loaded = data.load_tokenizer(tmp_path / "tok")
    assert type(loaded) is WordPieceTokenizer and loaded.fingerprint() == wp.fingerprint()
    assert (loaded.vocab_size, loaded.special_ids) == (wp.vocab_size, wp.special_ids)
    for text in TRAIN_TEXTS[:4] + ["the cat [MASK] on the mat", "日本"]:
        np.testing.assert_array_equal(loaded.encode(text), wp.encode(text))
    made = data.make_tokenizer("wordpiece", TRAIN_TEXTS)  # default vocabulary 8192; a tiny corpus gives fewer
    assert made.kind == "wordpiece" and made.special_ids == SPECIALS and made.vocab_size < 8192
    assert data.make_tokenizer("wordpiece", TRAIN_TEXTS, vocab_size=100).vocab_size <= 100
    with pytest.raises(ValueError, match="vocab_size=3 is too small"):
        data.make_tokenizer("wordpiece", TRAIN_TEXTS, vocab_size=3)


def test_wordpiece_loads_a_bert_style_vocabulary(tmp_path):
    """Specials are found by name, as in bert-base-uncased ([PAD]=0, [UNK]=100, [CLS]=101, ...)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {"[PAD]": 0, "the": 1, "cat": 2, "##s": 3, "[UNK]": 4, "[CLS]": 5, "[SEP]": 6, "[MASK]": 7}
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece()
    hf.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    (tmp_path / "tokenizer.json").write_text(hf.to_str())
    tok = data.load_tokenizer(tmp_path)
    assert tok.kind == "wordpiece" and tok.special_ids == (0, 4, 5, 6, 7)
    assert tok.encode("The cats [MASK] dog").tolist() == [1, 2, 3, 7, 4]
    assert tok.decode([1, 2, 3]) == "the cats"


def test_tokenize_corpus_joins_documents_with_sep(wp):
    tokens = data.tokenize_corpus(Corpus(["the cat", "the dog"], ["the fox"]), wp)
    assert tokens.train.tolist() == [*wp.encode("the cat"), wp.sep_id, *wp.encode("the dog")]


# ---------------------------------------------------------------------------
# Masking


def test_max_predictions():
    assert [max_predictions(t) for t in (1, 10, 128, 512)] == [1, 2, 20, 77]
    assert max_predictions(100, mask_prob=0.2) == 20


def _rows(rng, n, T, vocab):
    """n rows: [CLS] text [SEP] [PAD]..., with random lengths and a few [UNK]/[SEP] inside."""
    ids = rng.integers(5, vocab, size=(n, T)).astype(np.int32)
    lengths = rng.integers(3, T + 1, size=n)
    ids[rng.random((n, T)) < 0.03] = 1  # [UNK]s are special too: never predicted
    ids[:, 0] = 2
    ids[np.arange(n), lengths - 1] = 3
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def test_mask_tokens_statistics():
    rng = np.random.default_rng(0)
    n, T, V = 20_000, 64, 1000
    ids, lengths = _rows(rng, n, T, V)
    original = ids.copy()
    out = mask_tokens(ids, rng=rng, vocab_size=V, mask_id=4, special_ids=SPECIALS, seq_lengths=lengths)
    P = max_predictions(T)
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "ids": ((n, T), np.int32), "mlm_positions": ((n, P), np.int32),
        "mlm_labels": ((n, P), np.int32), "mlm_weights": ((n, P), np.float32)}
    np.testing.assert_array_equal(ids, original)  # the input is not modified

    # The count per row is BERT's exactly; overall 15% of the candidates.
    candidate = (np.arange(T)[None] < lengths[:, None]) & (original > 4)
    n_cand = candidate.sum(1)
    expected = np.where(n_cand > 0, np.minimum(P, np.maximum(1, np.array([round(0.15 * c) for c in n_cand]))), 0)
    weights = out["mlm_weights"].astype(bool)
    np.testing.assert_array_equal(weights.sum(1), expected)
    assert abs(weights.sum() / n_cand.sum() - 0.15) < 0.005
    assert (weights[:, :-1] >= weights[:, 1:]).all()  # real predictions first, then padding

    rows = np.broadcast_to(np.arange(n)[:, None], weights.shape)
    pos = out["mlm_positions"]
    assert candidate[rows[weights], pos[weights]].all()  # never a special token or padding
    assert (np.diff(np.where(weights, pos, T + np.arange(P)), axis=1) > 0).all()  # ascending, distinct
    assert (pos[~weights] == 0).all() and (out["mlm_labels"][~weights] == 0).all()
    np.testing.assert_array_equal(out["mlm_labels"][weights], original[rows[weights], pos[weights]])

    # Unchosen tokens are untouched; the chosen are 80% [MASK], 10% random, 10% kept.
    chosen = np.zeros_like(candidate)
    chosen[rows[weights], pos[weights]] = True
    np.testing.assert_array_equal(out["ids"][~chosen], original[~chosen])
    new = out["ids"][rows[weights], pos[weights]]
    labels = out["mlm_labels"][weights]
    m = len(new)
    p_same = 0.1 + 0.1 / (V - 5)  # kept, or a random token that happens to be the original
    for fraction, p in [((new == 4).mean(), 0.8), (((new != 4) & (new != labels)).mean(), 0.1 - 0.1 / (V - 5)),
                        ((new == labels).mean(), p_same)]:
        assert abs(fraction - p) < 4 * math.sqrt(p * (1 - p) / m), (fraction, p)
    random_tokens = new[(new != 4) & (new != labels)]
    assert random_tokens.min() >= 5 and random_tokens.max() < V  # never special
    assert len(np.unique(random_tokens)) > 0.9 * (V - 5)  # drawn from the whole ordinary vocabulary


def test_mask_tokens_edges_and_speed():
    rng = np.random.default_rng(1)
    ids = np.array([[2, 3, 0, 0], [2, 7, 3, 0]])  # no candidates; one candidate
    out = mask_tokens(ids, rng=rng, vocab_size=10, mask_id=4, special_ids=SPECIALS, seq_lengths=[2, 3])
    assert out["mlm_weights"].tolist() == [[0.0], [1.0]]
    assert out["mlm_positions"].tolist() == [[0], [1]] and out["mlm_labels"].tolist() == [[0], [7]]
    np.testing.assert_array_equal(out["ids"][0], ids[0])
    capped = mask_tokens(np.full((2, 100), 9), rng=rng, vocab_size=10, mask_id=4, special_ids=SPECIALS,
                         max_predictions=3)
    assert capped["mlm_weights"].sum(1).tolist() == [3, 3]
    wide = mask_tokens(np.full((1, 4), 9), rng=rng, vocab_size=10, mask_id=4, special_ids=SPECIALS,
                       max_predictions=6)  # more slots than positions: padded
    assert wide["mlm_weights"].tolist() == [[1, 0, 0, 0, 0, 0]]

    ids, lengths = _rows(rng, 32, 128, 8192)
    best = math.inf
    for _ in range(20):
        start = time.perf_counter()
        mask_tokens(ids, rng=rng, vocab_size=8192, mask_id=4, special_ids=SPECIALS, seq_lengths=lengths)
        best = min(best, time.perf_counter() - start)
    assert best < 0.005, f"mask_tokens took {best * 1e3:.2f} ms for (32, 128)"


def test_mlm_batch_deterministic_and_made_of_windows():
    rng = np.random.default_rng(2)
    stream = rng.integers(5, 500, size=300).astype(np.int32)
    stream[::37] = 3  # document boundaries
    kw = {"cls_id": 2, "sep_id": 3, "mask_id": 4, "special_ids": SPECIALS, "vocab_size": 500}
    a = mlm_batch(stream, 8, 16, seed=0, step=5, **kw)
    b = mlm_batch(stream, 8, 16, seed=0, step=5, **kw)
    c = mlm_batch(stream, 8, 16, seed=0, step=6, **kw)
    assert set(a) == {"ids", "segment_ids", "seq_lengths", "mlm_positions", "mlm_labels", "mlm_weights"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["ids"], c["ids"])
    assert a["ids"].shape == (8, 16) and a["mlm_positions"].shape == (8, max_predictions(16))
    assert (a["segment_ids"] == 0).all() and (a["seq_lengths"] == 16).all()
    assert (a["ids"][:, 0] == 2).all() and (a["ids"][:, -1] == 3).all()
    # Putting the labels back gives [CLS] + a window of the stream + [SEP].
    windows = np.lib.stride_tricks.sliding_window_view(stream, 14)
    for row, pos, lab, w in zip(a["ids"], a["mlm_positions"], a["mlm_labels"], a["mlm_weights"]):
        row = row.copy()
        row[pos[w > 0]] = lab[w > 0]
        assert (windows == row[1:-1]).all(1).any()
    with pytest.raises(ValueError, match=r"has 10 tokens, too short for block_size=16: .* block_size - 2 = 14"):
        mlm_batch(stream[:10], 8, 16, seed=0, step=0, **kw)


# ---------------------------------------------------------------------------
# Encoding and truncation


def _one_at_a_time(la, lb, budget):
    while la + lb > budget:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return la, lb


def test_longest_first_matches_the_one_token_at_a_time_rule():
    assert longest_first(10, 3, 8) == (5, 3) and longest_first(3, 10, 8) == (3, 5)
    assert longest_first(5, 5, 7) == (4, 3) and longest_first(2, 3, 9) == (2, 3)
    for la in range(12):
        for lb in range(12):
            for budget in range(1, 25):
                assert longest_first(la, lb, budget) == _one_at_a_time(la, lb, budget), (la, lb, budget)


def test_encode_examples_pairs_singles_and_truncation(wp):
    examples = [Example("one two three four five six", "seven eight", "b"), Example("the cat", None, "a"),
                Example("one two three four five six seven eight nine ten", None, "a")]
    enc = data.encode_examples(examples, wp, 8, {"a": 0, "b": 1})
    assert {k: (v.shape, v.dtype.name) for k, v in enc.items()} == {
        "ids": ((3, 8), "int32"), "segment_ids": ((3, 8), "int32"), "seq_lengths": ((3,), "int32"),
        "labels": ((3,), "int32")}
    assert enc["labels"].tolist() == [1, 0, 0] and enc["seq_lengths"].tolist() == [8, 4, 8]
    # The pair has 5 + 3 = 8 slots for 6 + 2 tokens: the longer loses its end.
    assert wp.decode(enc["ids"][0]) == "[CLS] one two three [SEP] seven eight [SEP]"
    assert enc["segment_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert wp.decode(enc["ids"][1]) == "[CLS] the cat [SEP] [PAD] [PAD] [PAD] [PAD]"
    assert (enc["segment_ids"][1:] == 0).all()
    assert wp.decode(enc["ids"][2]) == "[CLS] one two three four five six [SEP]"
    with pytest.raises(ValueError, match=r"label 'c', which is not in the label set \['a', 'b'\]"):
        data.encode_examples([Example("x", None, "c")], wp, 8, {"a": 0, "b": 1})


def test_classification_batch_epochs_and_eval_batches():
    enc = {"ids": np.arange(10)[:, None] * np.ones((1, 3), int), "labels": np.arange(10)}
    epoch = np.concatenate([data.classification_batch(enc, 5, seed=1, step=s)["labels"] for s in (0, 1)])
    assert sorted(epoch.tolist()) == list(range(10))  # every example once per epoch
    again = data.classification_batch(enc, 5, seed=1, step=1)
    np.testing.assert_array_equal(again["labels"], epoch[5:])
    np.testing.assert_array_equal(again["ids"][:, 0], again["labels"])  # rows stay together
    straddle = data.classification_batch(enc, 4, seed=1, step=2)["labels"]  # rows 8, 9 | 0, 1 of epoch 1
    assert straddle[:2].tolist() == epoch[8:].tolist()
    assert not np.array_equal(data.classification_batch(enc, 10, seed=1, step=1)["labels"], epoch)
    batches = list(data.eval_batches(enc, 4))
    assert [b["labels"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]
    assert batches[-1]["weights"].tolist() == [1, 1, 0, 0]


# ---------------------------------------------------------------------------
# Loading labeled data


def _frame(n=20, pairs=False):
    import pandas as pd

    df = pd.DataFrame({"sentence": [f"text number {i}" for i in range(n)], "label": [i % 2 for i in range(n)]})
    if pairs:
        df["other"] = [f"pair {i}" for i in range(n)]
    return df


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_load_labeled_files(tmp_path, suffix):
    df = _frame(pairs=True)
    path = tmp_path / f"data{suffix}"
    {".csv": lambda: df.to_csv(path, index=False), ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(path)}[suffix]()
    task = data.load_labeled(str(path), text_column="sentence", label_column="label", text_pair_column="other")
    assert task.labels == [0, 1] and task.label_to_id == {0: 0, 1: 1} and task.num_labels == 2
    assert (len(task.train), len(task.validation)) == (18, 2)
    everything = sorted(task.train + task.validation, key=lambda ex: int(ex.text.split()[-1]))
    assert everything == [Example(f"text number {i}", f"pair {i}", i % 2) for i in range(20)]
    again = data.load_labeled(str(path), text_column="sentence", text_pair_column="other")
    assert again.validation == task.validation  # deterministic
    other = data.load_labeled(str(path), text_column="sentence", text_pair_column="other", seed=1)
    assert other.validation != task.validation


def test_load_labeled_errors(tmp_path):
    _frame().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['sentence', 'label'\]"):
        data.load_labeled(str(tmp_path / "d.csv"))
    with pytest.raises(ValueError, match=r"no column 'stars'"):
        data.load_labeled(str(tmp_path / "d.csv"), text_column="sentence", label_column="stars")
    _frame(0).to_csv(tmp_path / "empty.csv", index=False)
    (tmp_path / "empty.jsonl").write_text("")
    for name in ("empty.csv", "empty.jsonl"):
        with pytest.raises(ValueError, match="is empty"):
            data.load_labeled(str(tmp_path / name), text_column="sentence")
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        data.load_labeled(str(tmp_path / "d.txt"))
    with pytest.raises(ValueError, match="no such file"):
        data.load_labeled(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="synthetic task 'nope' is unknown; expected one of sentiment, pair"):
        data.load_labeled("synthetic:nope")
    # A folder with train and validation files ("hf:DIR"): a validation label training lacks.
    folder = tmp_path / "task"
    folder.mkdir()
    _frame().to_csv(folder / "train.csv", index=False)
    val = _frame(4)
    val.loc[3, "label"] = 7
    val.to_csv(folder / "validation.csv", index=False)
    with pytest.raises(ValueError, match=r"validation has labels \[7\] that training lacks \(training labels: \[0, 1\]"):
        data.load_labeled(f"hf:{folder}", text_column="sentence")
    val.loc[3, "label"] = 1
    val.to_csv(folder / "validation.csv", index=False)
    task = data.load_labeled(f"hf:{folder}", text_column="sentence")
    assert (len(task.train), len(task.validation)) == (20, 4) and task.info["validation"] == "validation"


def test_load_labeled_hub_offline_is_a_clear_error(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"'hf:zoo-no-such-dataset': not in the local Hugging Face cache, and "
                                         r"offline mode is on"):
        data.load_labeled("hf:zoo-no-such-dataset")


# ---------------------------------------------------------------------------
# Synthetic tasks


@pytest.mark.parametrize("name, labels", [("sentiment", ["negative", "positive"]), ("pair", ["agree", "disagree"])])
def test_synthetic_tasks_deterministic_balanced_disjoint(name, labels):
    task = data.load_labeled(f"synthetic:{name}")
    assert task.labels == labels and (len(task.train), len(task.validation)) == (2000, 500)
    assert data.load_labeled(f"synthetic:{name}").train == task.train
    assert data.load_labeled(f"synthetic:{name}", seed=1).train != task.train
    for split in (task.train, task.validation):
        counts = [sum(ex.label == label for ex in split) for label in labels]
        assert counts == [len(split) // 2] * 2
    assert not {ex[:2] for ex in task.train} & {ex[:2] for ex in task.validation}
    assert all((ex.text_pair is not None) == (name == "pair") for ex in task.train)


def test_synthetic_sentiment_needs_the_negation():
    task = data.load_labeled("synthetic:sentiment")
    positive = set(data.labeled.POSITIVE)
    for split in (task.train, task.validation):
        negated = [(" not " in ex.text or " never " in ex.text) for ex in split]
        assert np.mean(negated) == pytest.approx(0.3)
        for ex, neg in zip(split, negated):  # the label is the word's polarity, flipped by a negation
            assert (ex.label == "positive") == (bool(positive & set(ex.text.split())) != neg)


def test_synthetic_pair_compares_the_two_opinions():
    task = data.load_labeled("synthetic:pair")
    positive, negative = set(data.labeled.POSITIVE), set(data.labeled.NEGATIVE)

    def polarity(text):
        words = set(text.split())
        assert len(words & positive) + len(words & negative) == 1  # one opinion word, no negation
        return bool(words & positive)

    for split in (task.train, task.validation):
        cued = [ex.text_pair.startswith(("yes ,", "but ")) for ex in split]
        assert np.mean(cued) == pytest.approx(0.4)
        for ex, cue in zip(split, cued):
            assert (ex.label == "agree") == (polarity(ex.text) == polarity(ex.text_pair))
            if cue:
                assert ex.text_pair.startswith("yes ,") == (ex.label == "agree")
