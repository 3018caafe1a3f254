"""The pretraining data pipeline (zoo.data): tokenizers, corpora, token caches and batches.

Everything runs on tiny data made in tmp_path, plus the standard library of
the running interpreter (the built-in corpus); nothing is downloaded.
"""

import random
import re

import numpy as np
import pytest

from zoo import data
from zoo.data import BPETokenizer, ByteTokenizer, CharTokenizer, Corpus

# Hard cases for round trips: empty, ASCII controls, accents (precomposed and
# combining), CJK, emoji with ZWJ and flags, the largest code point, the
# byte-order mark, and the special token's name as plain text.
SAMPLES = [
    "",
    "hello world",
    "tab\tnew\nline\r\nend",
    "\x00\x01\x7f\x80\xff",
    "héllo wörld — «ça va?»",
    "e\u0301 a\u0308 o\u0302\u0323 Z\u0335\u0336",
    "日本語のテキスト、中文字符，한국어",
    "👩‍👩‍👧‍👦 family 🇫🇷 flag 🙂 \U0001f600",
    "\ufeff\uffff\U0010ffff\u200b",
    "def f(x):\n    return x ** 2  # <|endoftext|>\n",
]


def random_text(seed, n=300):
    """Random Unicode scalar values from all planes (no surrogates), biased to the BMP."""
    rng = random.Random(seed)
    chars = []
    for _ in range(n):
        hi = rng.choice([0x7F, 0x7FF, 0xFFFF, 0x10FFFF])
        cp = rng.randint(0, hi)
        if 0xD800 <= cp <= 0xDFFF:
            cp -= 0x800
        chars.append(chr(cp))
    return "".join(chars)


ALL_TEXTS = SAMPLES + [random_text(s) for s in range(5)]
TRAIN_TEXTS = [
    "the quick brown fox jumps over the lazy dog. " * 20,
    "def main():\n    print('hello, world')\n" * 10,
    "to be or not to be, that is the question\n" * 10,
]


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory, monkeypatch):
    """Keep the Arrow cache of ``datasets.load_dataset("text")`` in a temporary folder, not ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TRAIN_TEXTS, vocab_size=300)


# ---------------------------------------------------------------------------
# tokenizers


def test_byte_tokenizer_round_trips_any_unicode():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eot_id, tok.kind) == (257, 256, "byte")
    for text in ALL_TEXTS:
        ids = tok.encode(text)
        assert ids.dtype == np.int32 and ids.ndim == 1
        assert len(ids) == len(text.encode("utf-8"))
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < 256)  # text never yields eot
        assert tok.decode(ids) == text
        assert tok.decode(ids.tolist()) == text


def test_byte_tokenizer_decode_specials_and_invalid_bytes():
    tok = ByteTokenizer()
    assert tok.decode([104, 256, 105]) == "h<|endoftext|>i"
    assert tok.decode([0xFF, 0x41, 0xE2, 0x82]) == "\ufffdA\ufffd"  # invalid / truncated UTF-8
    assert tok.decode([]) == ""
    with pytest.raises(ValueError, match=r"token id 257 .*\[0, 257\)"):
        tok.decode([65, 257])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode(np.array([-1]))


def test_char_tokenizer_vocabulary_and_unknown():
    tok = CharTokenizer.train(["hello", "world"])
    assert tok.chars == sorted(set("helloworld"))  # d e h l o r w
    assert tok.vocab_size == len(tok.chars) + 2
    assert (tok.unk_id, tok.eot_id) == (len(tok.chars), len(tok.chars) + 1)
    ids = tok.encode("hex😀")
    assert ids.dtype == np.int32
    assert ids.tolist() == [tok.chars.index("h"), tok.chars.index("e"), tok.unk_id, tok.unk_id]
    assert tok.decode(tok.encode("world")) == "world"
    assert tok.decode([tok.unk_id, tok.eot_id]) == "<unk><|endoftext|>"
    assert tok.encode("").shape == (0,)


@pytest.mark.parametrize("kind", data.KINDS)
def test_save_load_round_trip(kind, tmp_path):
    tok = data.make_tokenizer(kind, TRAIN_TEXTS + SAMPLES, vocab_size=300 if kind == "bpe" else None)
    path = tok.save(tmp_path / "tok")
    assert path.name == "tokenizer.json" and path.exists()
    assert not list(path.parent.glob("*.tmp"))
    loaded = data.load_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tok) and loaded.kind == kind
    assert (loaded.vocab_size, loaded.eot_id) == (tok.vocab_size, tok.eot_id)
    assert loaded.fingerprint() == tok.fingerprint()
    for text in ALL_TEXTS:
        np.testing.assert_array_equal(loaded.encode(text), tok.encode(text))
        assert loaded.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_bpe_trains_and_round_trips_any_unicode(bpe):
    assert bpe.kind == "bpe"
    assert 257 < bpe.vocab_size <= 300
    assert bpe.decode([bpe.eot_id]) == "<|endoftext|>"
    for text in ALL_TEXTS:
        ids = bpe.encode(text)
        assert ids.dtype == np.int32
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < bpe.vocab_size)
        assert bpe.eot_id not in ids.tolist()  # the special token's name in text is just text
        assert bpe.decode(ids) == text
    # Merges learned from the training text compress it.
    assert len(bpe.encode("the quick brown fox")) < len("the quick brown fox") // 2
    batch = bpe.encode_batch(SAMPLES)
    for text, ids in zip(SAMPLES, batch):
        np.testing.assert_array_equal(ids, bpe.encode(text))


def test_make_tokenizer_errors():
    with pytest.raises(ValueError, match=r"'sentencepiece' is unknown; expected one of byte, char, bpe, wordpiece"):
        data.make_tokenizer("sentencepiece", TRAIN_TEXTS)
    with pytest.raises(ValueError, match="vocab_size=1000 applies only to kind='bpe'"):
        data.make_tokenizer("byte", vocab_size=1000)
    with pytest.raises(ValueError, match="needs train_texts"):
        data.make_tokenizer("char")
    with pytest.raises(ValueError, match=r"vocab_size=100 is too small; expected an int >= 257"):
        data.make_tokenizer("bpe", TRAIN_TEXTS, vocab_size=100)
    assert isinstance(data.make_tokenizer(), ByteTokenizer)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(ValueError, match="kind='sentencepiece'; expected one of byte, char, bpe"):
        data.load_tokenizer(tmp_path)


# ---------------------------------------------------------------------------
# corpora: the standard library


def test_stdlib_file_selection_rules(tmp_path):
    keep = ["a.py", "pkg/__init__.py", "pkg/testing.py", "unittest/case.py", "zz/m.py"]
    drop = [
        "test/test_x.py",
        "idlelib/idle_test/t.py",
        "lib2to3/tests/data/u.py",
        "unittest/test/testmock/v.py",
        "site-packages/numpy/w.py",
        "dist-packages/x.py",
        "pkg/notes.txt",
    ]
    for rel in keep + drop:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    files = data.stdlib_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == sorted(keep)


def test_stdlib_files_and_split():
    root = data.corpora.stdlib_root()
    files = data.stdlib_files()
    assert len(files) > 100
    assert files == data.stdlib_files()  # deterministic
    rel = [p.relative_to(root) for p in files]
    assert [r.as_posix() for r in rel] == sorted(r.as_posix() for r in rel)
    for r in rel:
        assert r.suffix == ".py"
        dirs = set(r.parts[:-1])
        assert not dirs & {"test", "tests", "site-packages", "dist-packages"}, r
        assert not any(d.endswith("_test") for d in dirs), r
    train, val = data.stdlib_split(0.1)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(files)
    assert abs(len(val) - round(0.1 * len(files))) <= 1
    assert val == [files[i] for i in data.val_indices(len(files), 0.1)]
    # Spread over the library, not the last 10% of the alphabet.
    assert files.index(val[0]) < len(files) // 5 and files.index(val[-1]) > len(files) * 4 // 5


def test_stdlib_corpus():
    corpus = data.load_corpus("stdlib")
    info = corpus.info
    assert info["name"] == "stdlib" and info["spec"] == "stdlib"
    assert len(corpus.train) == info["train_documents"] > 100
    assert len(corpus.val) == info["val_documents"] > 10
    assert info["train_characters"] > 1_000_000 and info["val_characters"] > 50_000
    assert info["train_files"] + info["val_files"] == len(data.stdlib_files())
    assert all(corpus.train) and all(corpus.val)  # no empty documents
    assert any("def " in doc for doc in corpus.val)
    assert data.load_corpus("stdlib").fingerprint() == corpus.fingerprint()


# ---------------------------------------------------------------------------
# corpora: local files and Hugging Face datasets


def test_single_file_is_split_by_characters(tmp_path):
    text = "".join(f"line {i}: ünïcödé\n" for i in range(100))
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    corpus = data.load_corpus(str(tmp_path / "input.txt"))
    cut = int(len(text) * 0.9)
    assert corpus.train == [text[:cut]] and corpus.val == [text[cut:]]
    assert corpus.info["split"] == "characters"
    assert corpus.info["train_characters"] + corpus.info["val_characters"] == len(text)


def test_glob_and_directory_are_split_by_file(tmp_path):
    docs = {f"doc{i}.txt": f"document number {i}\n" * (i + 1) for i in range(10)}
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "notes.md").write_text("markdown")
    (tmp_path / ".hidden").write_text("hidden")
    (tmp_path / "bad.txt").write_bytes(b"\xffbroken\xfe")  # sorted first, bytes replaced

    corpus = data.load_corpus(str(tmp_path / "doc*.txt"))
    assert corpus.info["files"] == 10 and corpus.info["split"] == "files"
    assert corpus.val == [docs["doc9.txt"]]  # every 10th file
    assert corpus.train == [docs[f"doc{i}.txt"] for i in range(9)]

    corpus = data.load_corpus(str(tmp_path), val_fraction=0.25)
    assert corpus.info["files"] == 12  # no hidden file
    everything = corpus.train + corpus.val
    assert "\ufffdbroken\ufffd" in everything and "markdown" in everything
    assert len(corpus.val) == 3 and set(corpus.train).isdisjoint(corpus.val)


def test_corpus_errors(tmp_path):
    missing = r"corpus spec '.*missing\.txt': no such file or directory; expected"
    with pytest.raises(ValueError, match=missing):
        data.load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"the glob matched 0 paths and no files"):
        data.load_corpus(str(tmp_path / "*.nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="the directory has no"):
        data.load_corpus(str(tmp_path / "empty"))
    (tmp_path / "empty" / "a.txt").write_text("")
    (tmp_path / "empty" / "b.txt").write_text("")
    with pytest.raises(ValueError, match="has no non-empty training documents"):
        data.load_corpus(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"val_fraction=1.5; expected a number in \[0, 1\)"):
        data.load_corpus("stdlib", val_fraction=1.5)
    with pytest.raises(ValueError, match="names no dataset"):
        data.load_corpus("hf:")


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    docs = [f"train doc {i}" for i in range(20)]
    train = datasets.Dataset.from_dict({"content": docs, "id": list(range(20))})
    test = datasets.Dataset.from_dict({"content": ["test doc a", "test doc b"], "id": [0, 1]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "dd")
    corpus = data.load_corpus(f"hf:{tmp_path / 'dd'}", text_column="content")
    assert corpus.train == [f"train doc {i}" for i in range(20)]
    assert corpus.val == ["test doc a", "test doc b"]
    assert corpus.info["val_split"] == "test" and corpus.info["source"] == "load_from_disk"
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns are \['content', 'id'\]"):
        data.load_corpus(f"hf:{tmp_path / 'dd'}")
    with pytest.raises(ValueError, match=r"column 'id' holds .*int64.*expected strings"):
        data.load_corpus(f"hf:{tmp_path / 'dd'}", text_column="id")

    train.save_to_disk(tmp_path / "single")  # one split: validation is every 10th document
    corpus = data.load_corpus(f"hf:{tmp_path / 'single'}", text_column="content")
    assert corpus.val == ["train doc 9", "train doc 19"] and len(corpus.train) == 18


def test_val_indices():
    assert data.val_indices(100, 0.1) == list(range(9, 100, 10))
    assert data.val_indices(2, 0.1) == [1]  # at least one validation document
    assert data.val_indices(1, 0.1) == [] and data.val_indices(10, 0.0) == []
    assert len(data.val_indices(3, 0.9)) == 2  # always one left for training


# ---------------------------------------------------------------------------
# pipeline


def test_tokenize_corpus_joins_documents_with_eot():
    corpus = Corpus(["ab", "c"], ["d"], {"name": "tiny"})
    tokens = data.tokenize_corpus(corpus, ByteTokenizer())
    assert tokens.train.dtype == np.int32 and tokens.val.dtype == np.int32
    assert tokens.train.tolist() == [97, 98, 256, 99]
    assert tokens.val.tolist() == [100]
    assert tokens.info["cache"] == "off" and tokens.info["corpus"]["name"] == "tiny"
    assert (tokens.info["train_tokens"], tokens.info["val_tokens"]) == (4, 1)


def test_tokenize_cache_hit_skips_encoding(tmp_path, monkeypatch):
    calls = []
    encode = ByteTokenizer.encode
    monkeypatch.setattr(ByteTokenizer, "encode", lambda self, text: calls.append(text) or encode(self, text))
    corpus = Corpus(["first document ✓", "second"], ["validation"], {"name": "tiny"})

    first = data.tokenize_corpus(corpus, ByteTokenizer(), cache_dir=tmp_path)
    assert first.info["cache"] == "miss" and len(calls) == 3
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and not any(name.endswith(".tmp") for name in files)
    on_disk = np.load(next(tmp_path.glob("*-train.npy")))
    assert on_disk.dtype == np.uint16  # compact on disk

    second = data.tokenize_corpus(corpus, ByteTokenizer(), cache_dir=tmp_path)
    assert second.info["cache"] == "hit" and len(calls) == 3  # encode not called again
    assert second.train.dtype == np.int32  # int32 in memory
    np.testing.assert_array_equal(second.train, first.train)
    np.testing.assert_array_equal(second.val, first.val)

    # Another document or another vocabulary is another key.
    changed = Corpus(["first document ✓", "second!"], ["validation"])
    assert data.tokenize_corpus(changed, ByteTokenizer(), cache_dir=tmp_path).info["cache"] == "miss"
    char = CharTokenizer.train(corpus.train)
    assert data.cache_key(corpus, char) != data.cache_key(corpus, ByteTokenizer())
    assert data.tokenize_corpus(corpus, char, cache_dir=tmp_path).info["cache"] == "miss"


def test_get_batch_is_a_pure_function_of_seed_and_step():
    tokens = np.arange(1000, dtype=np.uint16)  # token i has id i
    x, y = data.get_batch(tokens, 4, 8, seed=0, step=3)
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(y, x + 1)  # targets: the next token
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x2, y2 = data.get_batch(tokens, 4, 8, seed=0, step=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, data.get_batch(tokens, 4, 8, seed=0, step=4)[0])
    assert not np.array_equal(x, data.get_batch(tokens, 4, 8, seed=1, step=3)[0])
    # Windows reach the last token and never beyond.
    short = np.arange(20)
    starts = np.concatenate([data.get_batch(short, 64, 8, seed=0, step=s)[0][:, 0] for s in range(20)])
    assert sorted(set(starts.tolist())) == list(range(20 - 8))  # every start 0..11, none past 11


def test_get_batch_errors():
    x, y = data.get_batch(np.arange(9), 2, 8, seed=0, step=0)  # exactly one window
    assert x.tolist() == [list(range(8))] * 2 and y.tolist() == [list(range(1, 9))] * 2
    msg = "the val split has 8 tokens, too short for block_size=8: a window needs block_size + 1 = 9"
    with pytest.raises(ValueError, match=re.escape(msg)):
        data.get_batch(np.arange(8), 2, 8, seed=0, step=0, split="val")
    with pytest.raises(ValueError, match="has 0 tokens, too short for block_size=4"):
        data.get_batch(np.zeros((0,), np.int32), 2, 4, seed=0, step=0)
    with pytest.raises(ValueError, match=r"batch_size=0; expected an int >= 1"):
        data.get_batch(np.arange(100), 0, 8, seed=0, step=0)
    with pytest.raises(ValueError, match=r"seed=-1; expected an int >= 0"):
        data.get_batch(np.arange(100), 2, 8, seed=-1, step=0)
    with pytest.raises(ValueError, match=r"tokens must be 1-D"):
        data.get_batch(np.zeros((2, 50)), 2, 8, seed=0, step=0)
