"""The commands on Hugging Face directories: zoo sample / eval / fill-mask / finetune take one, zoo pretrain gpt
--init-from continues one, zoo export writes one; bad input is one line (subprocesses, the HF fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np

import zoo
from tests.cli_helpers import zoo_cmd
from tests.test_cli_hardening import one_line_error, write_corpus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
GPT2, BERT_MLM, BERT_CLS = (str(FIXTURES / n) for n in ("gpt2-tied", "bert-mlm", "bert-classifier-fp16"))


def ok(proc) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stdout


def test_sample_and_eval_a_hf_gpt2(tmp_path):
    run = zoo.load_pretrained(GPT2)
    ref = np.load(FIXTURES / "gpt2-tied" / "reference.npz")
    prompt = "the king spoke"
    ids = run.tokenizer.encode(prompt)
    want = run.tokenizer.decode(np.asarray(zoo.generate(run.model, run.params, ids, 8, temperature=0)[0]))
    out = ok(zoo_cmd("sample", GPT2, "--prompt", prompt, "--max-new-tokens", "8", "--temperature", "0", cwd=tmp_path))
    assert out == prompt + want + "\n"
    assert ref["greedy"].shape == (20,)
    corpus = write_corpus(tmp_path / "text.txt")
    out = ok(zoo_cmd("eval", GPT2, "--data", str(corpus), "--batches", "1", cwd=tmp_path))
    assert "(step 0) on " in out and "val loss" in out and "perplexity" in out


def test_fill_mask_and_finetune_a_hf_bert(tmp_path):
    out = ok(zoo_cmd("fill-mask", BERT_MLM, "the king [MASK] to all", "--top-k", "2", cwd=tmp_path))
    assert out.startswith("[MASK] 1:") and "top-1: the king" in out
    rows = [f"the king spoke {'well' if i % 2 else 'to all'} by night,{i % 2}" for i in range(40)]
    (tmp_path / "labels.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    out = ok(zoo_cmd("finetune", BERT_CLS, "--data", "labels.csv", "--out", "ft", "--max-len", "16",
                     "--train.max-steps", "2", "--train.batch-size", "4", "--no-progress", cwd=tmp_path))
    assert "validation accuracy" in out
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["family"] == "bert-classifier"


def test_pretrain_init_from_a_hf_gpt2_then_export_it(tmp_path):
    corpus = write_corpus(tmp_path / "text.txt")
    ok(zoo_cmd("pretrain", "gpt", "--preset", "nano", "--init-from", GPT2, "--data", str(corpus), "--out", "run",
               "--model.block-size", "24", "--train.max-steps", "2", "--train.batch-size", "2",
               "--sample-tokens", "0", "--no-progress", cwd=tmp_path))
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["settings"]["init_from"] == GPT2 and saved["model"]["block_size"] == 24
    out = ok(zoo_cmd("export", "run", "hf", cwd=tmp_path))
    assert "GPT2LMHeadModel" in out and "AutoModelForCausalLM" in out
    run, back = zoo.load_run(tmp_path / "run"), zoo.load_pretrained(tmp_path / "hf")
    assert back.config.block_size == 24 and back.tokenizer.eot_id == run.tokenizer.eot_id
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), run.params, back.params)
    assert all(jax.tree.leaves(same))  # what was trained is what was written
    start = zoo.load_pretrained(GPT2)
    assert not np.array_equal(np.asarray(run.params["wte"]["embedding"]), np.asarray(start.params["wte"]["embedding"]))


def test_bad_input_is_one_line(tmp_path):
    bad = Path(shutil.copytree(GPT2, tmp_path / "bad"))
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "architectures": ["T5ForConditionalGeneration"]}))
    one_line_error(zoo_cmd("sample", str(bad), cwd=tmp_path), 2, "'T5ForConditionalGeneration' is not supported",
                   "GPT2LMHeadModel")
    one_line_error(zoo_cmd("pretrain", "gpt", "--init-from", GPT2, "--model.num-layers", "3", "--train.max-steps",
                           "2", cwd=tmp_path), 2, "--model.num-layers: the architecture comes from --init-from")
    one_line_error(zoo_cmd("fill-mask", GPT2, "a [MASK]", cwd=tmp_path), 2, "is a gpt run")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    one_line_error(zoo_cmd("export", GPT2, "out", cwd=tmp_path), 2, "out is not empty")
