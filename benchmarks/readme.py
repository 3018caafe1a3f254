"""Write README.md's generated tables: the model families and presets, and the summary of what was measured.

    python benchmarks/readme.py            # rewrite the tables in README.md
    python benchmarks/readme.py --check    # exit 1 if README.md differs from what this writes

Nothing in those tables is typed by hand: the families and presets come from
``zoo.registry`` and ``zoo.presets``, the figures from the stored results in
``benchmarks/results/`` (each line links to the page with its full table,
command and machine). The test suite runs ``--check``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

_COMMANDS = {
    "gpt": "zoo pretrain gpt --preset quickstart",
    "rnn": "zoo pretrain rnn --preset shakespeare-char-cpu --data FILE",
    "lstm": "zoo pretrain lstm --preset shakespeare-char-cpu --data FILE",
    "gru": "zoo pretrain gru --preset shakespeare-char-cpu --data FILE",
    "mingru": "zoo pretrain mingru --preset shakespeare-char-cpu --data FILE",
    "nplm": "zoo pretrain nplm --preset shakespeare-word --data FILE",
    "bert": "zoo pretrain bert --preset bert-mini",
    "bert-classifier": "zoo finetune RUN_DIR --data synthetic:sentiment",
    "seq2seq": "zoo pretrain seq2seq --preset toy",
    "word2vec": "zoo pretrain word2vec --preset gensim --data FILE",
    "fasttext": "zoo pretrain fasttext --preset gensim --data FILE",
}


def families_table() -> str:
    from zoo import presets, registry

    rows = ["| family | what it is | presets | start with |", "| --- | --- | --- | --- |"]
    for name, family in registry.FAMILIES.items():
        names = ", ".join(f"`{p}`" for p in presets.names(name)) if name in presets.FAMILIES else "(fine-tuned from a bert run)"
        rows.append(f"| `{name}` | {family.summary} | {names} | `{_COMMANDS.get(name, '')}` |")
    return "\n".join(rows)


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _machine(data: dict) -> str:
    env = data.get("environment", {})
    cpu, threads = env.get("cpu"), env.get("threads")
    return f"{cpu}, {threads} threads" if cpu else "see the page"


def results_summary() -> str:
    lines = []
    pre = _load("pretrain-cpu-amd-epyc-2t.json")
    if pre:
        lines.append(f"- nanoGPT's CPU recipe (Tiny Shakespeare, 2000 steps): zoo's wall time is "
                     f"{pre['ratio_wall']:.2f}x nanoGPT's, validation loss {pre['zoo']['val_loss']:.3f} against "
                     f"{pre['nanogpt']['val_loss']:.3f} ([benchmarks](docs/benchmarks.md#pretraining-wall-time-zoo-against-nanogpt); "
                     f"{_machine(pre)}).")
    bert = _load("bert-cpu-amd-epyc-2t.json")
    if bert:
        zoo_row = next(r for r in bert["rows"] if r["family"] == "zoo")
        lines.append(f"- BERT-mini masked-LM training: {zoo_row['vs_hf']:.2f}x the tokens/s of Hugging Face's "
                     f"`BertForMaskedLM` in PyTorch ([benchmarks](docs/benchmarks.md#bert-training-speed-against-hugging-face); "
                     f"{_machine(bert)}).")
    rec = _load("recurrent-cpu-amd-epyc-2t.json")
    if rec:
        parts = [f"{r['name'].removeprefix('zoo ')} {r['fwd_bwd_vs_flax']:.2f}x flax.linen, "
                 f"{r['fwd_bwd_vs_torch']:.2f}x PyTorch" for r in rec["rows"]
                 if r["family"] == "zoo" and r.get("fwd_bwd_vs_flax") and r.get("fwd_bwd_vs_torch")]
        lines.append(f"- Recurrent layers, forward and backward: {'; '.join(parts)} "
                     f"([benchmarks](docs/benchmarks.md#recurrent-layers-against-flaxlinen-and-pytorch); {_machine(rec)}).")
    suite = _load("suite-cpu-amd-epyc-2t.json")
    if suite:
        found = [(c["a"], c["b"], c["crossovers"][0]["x"]) for c in suite["crossovers"]
                 if c["mode"] == "train" and c["crossovers"] and c["b"] == "attention_blockwise"]
        text = "; ".join(f"{a} at T = {x:,.0f}" for a, _, x in found)
        ahead = [c["a"] for c in suite["crossovers"] if c["mode"] == "train" and c["b"] == "attention_blockwise"
                 and not c["crossovers"] and c["first_faster"] == c["a"]]
        lines.append(f"- Scan against attention at matched parameter count (training): overtaking blockwise "
                     f"attention as the sequence grows: {text}; ahead at every T measured: {', '.join(ahead)} "
                     f"([benchmarks](docs/benchmarks.md#scan-vs-attention-the-suite-zoo-bench); {_machine(suite)}).")
    ladder = _load("ladder-tinyshakespeare/ladder.json")
    if ladder:
        rungs = ", ".join(f"{r['label'].split(' (')[0]} {r['bits']:.2f}" for r in ladder["rows"])
        lines.append(f"- The ladder on Tiny Shakespeare, in {ladder['unit']} on the same validation text: {rungs} "
                     f"([the story](docs/story.md#the-ladder-zoo-ladder)).")
    emb = _load("embeddings-cpu-amd-epyc-2t.json")
    if emb:
        def mean(family, impl):
            v = [r["words_per_s"] for r in emb["rows"] if r["family"] == family and r["impl"] == impl]
            return sum(v) / len(v)

        ratios = ", ".join(f"{f} {mean(f, 'zoo') / mean(f, 'gensim'):.2f}x" for f in ("word2vec", "fasttext"))
        lines.append(f"- Word vectors against gensim, training words per second: {ratios} "
                     f"([word vectors](docs/embeddings.md); {_machine(emb)}; measured under load, see the page).")
    return "\n".join(lines)


TABLES = {"families": families_table, "results": results_summary}


def render(text: str) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _publish import replace_between_markers  # noqa: PLC0415

    for name, make in TABLES.items():
        text = replace_between_markers(text, make(), f"<!-- {name}:start -->", f"<!-- {name}:end -->")
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    now, new = README.read_text(), render(README.read_text())
    if "--check" in argv:
        if now != new:
            print("README.md's generated tables are stale: run python benchmarks/readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print("updated README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
