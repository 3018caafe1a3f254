"""Hugging Face interop: zoo.load_pretrained against transformers' own outputs, zoo.export_pretrained back.

Always (no torch needed): the fixtures in tests/fixtures/hf (made by
make_fixtures.py with transformers and torch, versions in manifest.json)
give logits and last hidden states within 1e-4, the same 20-token greedy
continuations through the KV cache, and the same token ids as transformers'
fast tokenizers; zoo -> HF -> zoo is bit-identical; bad directories fail
with errors that say what is wrong. With torch and transformers installed,
fresh models are built and compared live, and zoo's exports are loaded back
into transformers.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo.data import make_tokenizer
from zoo.interop.tokenizer import SAMPLE_TEXT
from zoo.run import Run
from zoo.train.config import TrainConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
ALL = list(MANIFEST["fixtures"])
GPT = [n for n in ALL if MANIFEST["fixtures"][n]["architecture"].startswith("GPT2")]
ATOL = 1e-4  # float32 logits, absolute
_RUNS: dict[str, Run] = {}


def fixture_run(name: str) -> Run:
    if name not in _RUNS:
        _RUNS[name] = zoo.load_pretrained(FIXTURES / name)
    return _RUNS[name]


def gpt_outputs(run: Run, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits (B, T, V), last hidden state (B, T, D): the decoder's output, after the final LayerNorm)."""
    logits, state = jax.jit(lambda p, x: run.model.apply(
        {"params": p}, x, capture_intermediates=lambda m, _: isinstance(m, zoo.Decoder)))(run.params, ids)
    return np.asarray(logits), np.asarray(state["intermediates"]["decoder"]["__call__"][0])


def bert_outputs(run: Run, ref) -> tuple[np.ndarray, np.ndarray]:
    kw = {"segment_ids": ref["segments"].astype(np.int32), "seq_lengths": ref["lengths"].astype(np.int32)}
    ids = ref["ids"].astype(np.int32)
    logits = jax.jit(run.model.apply)({"params": run.params}, ids, **kw)
    hidden = jax.jit(zoo.BERT(run.config).apply)({"params": run.params["bert"]}, ids, **kw)
    return np.asarray(logits), np.asarray(hidden)


@pytest.mark.parametrize("name", ALL)
def test_fixture_logits_and_hidden_states_match_transformers(name):
    run, ref = fixture_run(name), np.load(FIXTURES / name / "reference.npz")
    real = np.arange(ref["ids"].shape[1])[None] < ref["lengths"][:, None]  # (B, T): padding outputs are junk
    logits, hidden = gpt_outputs(run, ref["ids"]) if run.family == "gpt" else bert_outputs(run, ref)
    want = ref["logits"]
    if logits.ndim == 3:  # per position: compare the real ones
        logits, want = logits[real], want[real]
    np.testing.assert_allclose(logits, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(hidden[real], ref["hidden"][real], rtol=0, atol=ATOL)
    if "nsp" in ref:  # BertForPreTraining: its NSP head is kept in params
        kw = {"segment_ids": ref["segments"].astype(np.int32), "seq_lengths": ref["lengths"].astype(np.int32)}
        _, nsp = jax.jit(zoo.BERTForPreTraining(run.config).apply)({"params": run.params},
                                                                    ref["ids"].astype(np.int32), **kw)
        np.testing.assert_allclose(nsp, ref["nsp"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", GPT)
def test_fixture_greedy_continuation_is_identical(name):
    run, ref = fixture_run(name), np.load(FIXTURES / name / "reference.npz")
    out = zoo.generate(run.model, run.params, ref["ids"][:1], MANIFEST["new_tokens"], temperature=0)  # KV cache
    assert np.asarray(out[0]).tolist() == ref["greedy"].tolist()


@pytest.mark.parametrize("name", ALL)
def test_fixture_token_ids_match_transformers_fast_tokenizer(name):
    spec, tok = MANIFEST["fixtures"][name], fixture_run(name).tokenizer
    for text, want in spec["texts"].items():
        ids = tok.encode(text).tolist()
        if tok.kind == "wordpiece":  # transformers adds [CLS] ... [SEP]; zoo's data code does
            ids = [tok.cls_id, *ids, tok.sep_id]
        assert ids == want, text
    if spec["eos_token_id"] is not None:
        assert tok.eot_id == spec["eos_token_id"]


def test_fixture_layouts_and_run_fields():
    shapes = {name: MANIFEST["fixtures"][name] for name in ALL}
    assert shapes["gpt2-tied"].get("shards") and (FIXTURES / "gpt2-tied" / "model.safetensors.index.json").is_file()
    for name in ALL:
        run = fixture_run(name)
        assert run.info["source"] == "huggingface" and run.step == 0 and isinstance(run.train_config, TrainConfig)
        assert {x.dtype for x in jax.tree.leaves(run.params)} == {jnp.dtype("float32")}, name  # fp16/bf16 widened
    assert fixture_run("gpt2-untied-relu").config.activation == "relu"
    assert not fixture_run("gpt2-untied-relu").config.tie_embeddings
    assert fixture_run("gpt2-model-bf16").info["architecture"] == "GPT2Model"
    assert fixture_run("bert-classifier-fp16").info["labels"] == ["neg", "neu", "pos"]
    assert set(fixture_run("bert-pretraining-legacy").params) == {"bert", "mlm_head", "pooler", "nsp"}
    assert zoo.load_run(FIXTURES / "bert-mlm").family == "bert"  # load_run delegates


# -- zoo -> HF -> zoo ---------------------------------------------------------------------

TEXTS = [f"the king and queen of a far land spoke to all {i} of their people by night and day" for i in range(60)]


def tiny_run(family: str, tokenizer: str = "byte", run_dir: Path = Path("tiny"), init: bool = True,
             **changes) -> Run:
    """A run in memory with random parameters (no training): what export_pretrained needs (``init=False``:
    no parameters, for what is refused before they are read)."""
    tok = make_tokenizer(tokenizer, None if tokenizer == "byte" else TEXTS,
                         vocab_size={"bpe": 300, "wordpiece": 120}.get(tokenizer))
    if family == "gpt":
        config = zoo.GPTConfig(vocab_size=tok.vocab_size, block_size=16, num_layers=2, num_heads=2, features=16,
                               **changes)
        model = zoo.GPT(config)
    else:
        config = zoo.BERTConfig(vocab_size=tok.vocab_size, max_positions=16, block_size=16, num_layers=2,
                                num_heads=2, features=16, num_labels=3, **changes)
        model = (zoo.BERTForSequenceClassification if family == "bert-classifier" else zoo.BERTForMaskedLM)(config)
    if not init:
        return Run(run_dir, family, config, TrainConfig(), model, {}, tok, 7, {})
    # the shapes only (compiling the initialisers took ~1 s a case); NumPy values: JAX's eager random ops would
    # compile once per shape
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(1), jnp.zeros((1, 4), jnp.int32))["params"])
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda x: np.float32(0.1) * rng.standard_normal(x.shape, np.float32) + np.float32(
        1.0 if len(x.shape) == 1 else 0.0), shapes)  # every parameter random, LayerNorm scales about 1
    info = {"labels": ["a", "b", "c"]} if family == "bert-classifier" else {}
    return Run(run_dir, family, config, TrainConfig(), model, params, tok, 7, info)


ROUND_TRIPS = {
    "gpt-byte": ("gpt", "byte", {}),
    "gpt-char-untied-relu": ("gpt", "char", {"tie_embeddings": False, "activation": "relu", "mlp_dim": 24}),
    "gpt-bpe-unscanned": ("gpt", "bpe", {"scan_layers": False, "activation": "gelu"}),
    "bert-wordpiece": ("bert", "wordpiece", {}),
    "bert-classifier": ("bert-classifier", "wordpiece", {"mlp_dim": 40, "activation": "gelu_tanh"}),
}


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_round_trip_is_bit_identical(case, tmp_path):
    family, tokenizer, changes = ROUND_TRIPS[case]
    run = tiny_run(family, tokenizer, **changes)
    out = zoo.export_pretrained(run, tmp_path / "hf")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                              "tokenizer_config.json"}
    back = zoo.load_pretrained(out, scan_layers=run.config.scan_layers)
    assert back.family == family
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), run.params, back.params)
    assert jax.tree.structure(run.params) == jax.tree.structure(back.params) and all(jax.tree.leaves(same))
    mismatched = {f.name for f in dataclasses.fields(run.config)
                  if getattr(run.config, f.name) != getattr(back.config, f.name)}
    assert mismatched <= {"block_size"}, mismatched  # BERT's training length is zoo's, not in config.json
    text = SAMPLE_TEXT if tokenizer == "wordpiece" else SAMPLE_TEXT.replace("[MASK]", "mask")
    assert back.tokenizer.encode(text).tolist() == run.tokenizer.encode(text).tolist()
    assert back.tokenizer.eot_id == run.tokenizer.eot_id


def test_export_refuses_what_the_architecture_cannot_express(tmp_path):
    with pytest.raises(ValueError, match=r"positions='rope'.*cannot be exported as GPT-2"):
        zoo.export_pretrained(tiny_run("gpt", positions="rope", init=False), tmp_path / "a")
    with pytest.raises(ValueError, match=r"use_bias=False"):
        zoo.export_pretrained(tiny_run("gpt", use_bias=False, init=False), tmp_path / "b")
    with pytest.raises(ValueError, match=r"use_bias=False"):
        zoo.export_pretrained(tiny_run("bert", "wordpiece", use_bias=False, init=False), tmp_path / "c")
    lstm = dataclasses.replace(tiny_run("gpt", init=False), family="lstm")
    with pytest.raises(ValueError, match="lstm run, which has no Hugging Face counterpart"):
        zoo.export_pretrained(lstm, tmp_path / "d")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        zoo.export_pretrained(tiny_run("gpt", init=False), tmp_path / "full")
    assert not any(p.name.startswith(("a", "b", "c", "d")) for p in tmp_path.iterdir())  # nothing written


# -- bad input ------------------------------------------------------------------------------


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_bad_directories_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        zoo.load_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        zoo.load_pretrained(tmp_path / "empty")
    d = copy_fixture("bert-mlm", tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights; expected model.safetensors"):
        zoo.load_pretrained(d)
    d = copy_fixture("gpt2-untied-relu", tmp_path)
    for f in ("vocab.json", "merges.txt"):
        (d / f).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer; expected tokenizer.json, or vocab.json and merges.txt"):
        zoo.load_pretrained(d)


def test_unsupported_architectures_and_settings_are_refused_by_name(tmp_path):
    d = copy_fixture("gpt2-untied-relu", tmp_path)
    edit_config(d, architectures=["LlamaForCausalLM"])
    with pytest.raises(ValueError, match="'LlamaForCausalLM' is not supported; zoo loads GPT2LMHeadModel, GPT2Model, "
                                         "BertModel, BertForMaskedLM"):
        zoo.load_pretrained(d)
    for changes, field in (({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
                           ({"scale_attn_weights": False}, "scale_attn_weights=False"),
                           ({"add_cross_attention": True}, "add_cross_attention=True"),
                           ({"activation_function": "quick_gelu"}, "activation_function='quick_gelu'")):
        edit_config(d, architectures=["GPT2LMHeadModel"], scale_attn_by_inverse_layer_idx=False,
                    scale_attn_weights=True, add_cross_attention=False, activation_function="relu")
        edit_config(d, **changes)
        with pytest.raises(ValueError, match=f"{field} is not implemented by zoo.GPT"):
            zoo.load_pretrained(d)
    b = copy_fixture("bert-mlm", tmp_path)
    edit_config(b, is_decoder=True)
    with pytest.raises(ValueError, match="is_decoder=True is not implemented by zoo's BERT"):
        zoo.load_pretrained(b)
    edit_config(b, is_decoder=False, position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        zoo.load_pretrained(b)


def test_shapes_that_disagree_with_the_config_name_the_tensor(tmp_path):
    d = copy_fixture("gpt2-untied-relu", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    edit_config(d, n_inner=44)
    with pytest.raises(ValueError, match=rf"tensor h\.0\.mlp\.c_fc\.weight has shape \(24, 40\), but the config "
                                         rf"implies \(24, 44\)"):
        zoo.load_pretrained(d)
    edit_config(d, n_inner=cfg["n_inner"], vocab_size=cfg["vocab_size"] + 1)
    v = cfg["vocab_size"]
    with pytest.raises(ValueError, match=rf"wte\.weight has shape \({v}, 24\), but the config implies \({v + 1}, 24\)"):
        zoo.load_pretrained(d)


def test_truncated_or_corrupt_safetensors_are_refused(tmp_path):
    d = copy_fixture("bert-mlm", tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file.*truncated or corrupt"):
        zoo.load_pretrained(d)
    (d / "model.safetensors").write_bytes(b"\x00" * 4 + b"not a safetensors file at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        zoo.load_pretrained(d)
    s = copy_fixture("gpt2-tied", tmp_path)
    shard = sorted(s.glob("model-0000*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"names the shard {shard.name}"):
        zoo.load_pretrained(s)


def test_a_torch_pickle_without_torch_is_refused_unread(tmp_path, monkeypatch):
    d = copy_fixture("bert-mlm", tmp_path)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 anything: it must not be unpickled")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ValueError, match=r"only with torch installed \(pip install torch.*or convert it to safetensors"):
        zoo.load_pretrained(d)


# -- live, with torch and transformers ----------------------------------------------------------------------


def _live():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return torch, transformers


LIVE_GPT = {
    "tied-gelu_new": {"n_positions": 20, "n_embd": 24, "n_layer": 2, "n_head": 3},
    "untied-relu-inner": {"n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 4, "n_inner": 8,
                          "activation_function": "relu", "tie_word_embeddings": False},
}


@pytest.mark.parametrize("case", list(LIVE_GPT))
def test_live_transformers_gpt2_matches(case, tmp_path):
    torch, transformers = _live()
    cfg = transformers.GPT2Config(vocab_size=257, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **LIVE_GPT[case])
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    tiny_run("gpt").tokenizer.save(tmp_path)  # zoo's byte tokenizer.json would not load: export's does
    zoo.export_pretrained(tiny_run("gpt"), tmp_path / "tok")
    shutil.copy(tmp_path / "tok" / "tokenizer.json", tmp_path / "tokenizer.json")
    run = zoo.load_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, 257, (2, 9))
    with torch.no_grad():
        want = model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(run.model.apply({"params": run.params}, ids), want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_live_exports_load_in_transformers_with_the_same_logits_and_ids(case, tmp_path):
    torch, transformers = _live()
    family, tokenizer, changes = ROUND_TRIPS[case]
    run = tiny_run(family, tokenizer, **changes)
    out = zoo.export_pretrained(run, tmp_path / "hf")
    auto = {"gpt": transformers.AutoModelForCausalLM, "bert": transformers.AutoModelForMaskedLM,
            "bert-classifier": transformers.AutoModelForSequenceClassification}[family]
    model, loading = auto.from_pretrained(out, output_loading_info=True)
    assert not any(loading[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), loading
    ids = np.random.default_rng(1).integers(5, run.config.vocab_size, (2, 11)).astype(np.int32)
    with torch.no_grad():
        want = model.eval()(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(run.model.apply({"params": run.params}, ids)), want, rtol=0, atol=ATOL)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = SAMPLE_TEXT if tokenizer == "wordpiece" else SAMPLE_TEXT.replace("[MASK]", "mask")
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == run.tokenizer.encode(text).tolist()


def test_live_torch_bin_loads_with_weights_only(tmp_path):
    torch, transformers = _live()
    d = copy_fixture("bert-mlm", tmp_path)
    from safetensors.torch import load_file  # noqa: PLC0415

    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    run, ref = zoo.load_pretrained(d), np.load(d / "reference.npz")
    logits, _ = bert_outputs(run, ref)
    real = np.arange(ref["ids"].shape[1])[None] < ref["lengths"][:, None]
    np.testing.assert_allclose(logits[real], ref["logits"][real], rtol=0, atol=ATOL)
    torch.save({"x": datetime.date(2020, 1, 1)}, d / "pytorch_model.bin")  # an object weights_only does not allow
    with pytest.raises(ValueError, match="weights_only=True"):
        zoo.load_pretrained(d)


def test_docs_show_the_name_tables():
    """docs/huggingface.md shows every row of the tables in zoo/interop (the code is the reference)."""
    from zoo.interop import bert, gpt2  # noqa: PLC0415

    doc = (Path(__file__).resolve().parent.parent / "docs" / "huggingface.md").read_text()
    rows = [*gpt2.TABLE, *gpt2.LAYER_TABLE, *gpt2.HEAD_TABLE, *bert.TABLE, *bert.LAYER_TABLE,
            *(e for entries in bert.HEADS.values() for e in entries)]
    for e in rows:
        keys = ", ".join(f"`{k}`" for k in e.keys)
        assert f"| `{e.path}` | {e.zoo_shape} | {keys} | {e.hf_shape} | {e.how} |" in doc, e
