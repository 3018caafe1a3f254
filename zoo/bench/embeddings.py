"""word2vec and fastText side by side: zoo's JAX training against gensim's, same data, settings and threads.

    zoo bench embeddings                     # GCIDE (apt-get install dict-gcide), 3 seeds, gensim installed
    zoo bench embeddings --quick             # seconds: a small built-in corpus, gensim optional

Both sides get the same sentences of the same words (zoo's word tokenizer:
lower-cased, punctuation dropped, paragraphs as sentences), the same
hyperparameters (gensim's defaults: CBOW, 100 dimensions, window 5, 5
negatives, sample 1e-3, min_count 5, alpha 0.025 -> 0.0001, 5 epochs;
fastText: n-grams 3-6 in 2,000,000 buckets) and the same number of threads
(gensim's ``workers``; XLA's CPU thread pool, which sizes itself to the
cores this process may use). Rounds are interleaved: seed 1 runs gensim's
and zoo's word2vec and fastText, then seed 2 does, and so on, so a change in
the machine's load hits every row alike.

Measured per run: training throughput as gensim's log counts it, raw corpus
words (every word of the text, rare ones included) times epochs per second
of the training call's wall time (vocabulary building excluded on both
sides; zoo's includes planning its epochs and compiling its step), and every
evaluation of :mod:`zoo.embedding_eval`, computed by the same code on both
sides: Spearman on WordSim353 and SimLex-999, 3CosAdd analogy accuracy (by
section), and unseen word forms. For the unseen inflections, 100 inflected
words of the vocabulary (``base + s/es/ed/ing/ly/er/ness`` with ``base`` in
the vocabulary) are held out: deleted from the training text of every run,
then asked for by their fastText vectors (is ``base`` among the 10 nearest?);
misspellings are one edit away from frequent words.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.harness import results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main

# The rounds are interleaved and the result is a ratio, so a shared machine slows both sides alike; the
# share other processes took is printed under the table rather than refusing to publish it.
MAX_OTHER_LOAD = 1.0
SCORE_POINTS = 0.02  # analogy accuracy: within 2 points of gensim's ...
SPEARMAN = 0.03  # ... and Spearman within 0.03, or within gensim's seed-to-seed spread, whichever is wider
HELD_OUT = 100


@dataclasses.dataclass(frozen=True)
class Config:
    """Time and evaluate zoo's word2vec and fastText beside gensim's."""

    data: str = "gcide"  # the corpus (a spec of zoo pretrain's --data)
    seeds: int = 3  # rounds, seeds 1..N
    families: tuple[str, ...] = ("word2vec", "fasttext")
    sg: bool = False  # skip-gram (default: CBOW, gensim's)
    epochs: int = 5
    bucket: int = 2_000_000
    max_words: int | None = None  # keep only the first sentences, up to this many words
    threads: int | None = None  # gensim's workers (default: the cores this process may use)
    gensim: bool = True  # run gensim too when it is installed
    out: Path | None = None  # where to write embeddings-<device>.json/.md
    quick: bool = False  # seconds: a small built-in corpus, small vectors, 2 seeds

    def resolved(self) -> Config:
        if self.seeds < 1 or self.epochs < 1:
            raise ValueError(f"--seeds {self.seeds} / --epochs {self.epochs}: expected at least 1")
        bad = [f for f in self.families if f not in ("word2vec", "fasttext")]
        if bad:
            raise ValueError(f"--families {' '.join(bad)}: expected word2vec and/or fasttext")
        return self


# -- data ---------------------------------------------------------------------------------


def quick_text(seed: int = 0, sentences: int = 3000) -> str:
    """A small corpus with planted structure (words of a group share their contexts), for --quick."""
    rng = np.random.default_rng(seed)
    groups = [["cat", "dog", "mouse", "horse"], ["red", "green", "blue", "yellow"], ["run", "walk", "jump", "swim"],
              ["king", "queen", "prince", "lord"]]
    contexts = [["the", "a", "pet"], ["is", "very", "colour"], ["they", "we", "quickly"], ["royal", "crown", "throne"]]
    out = []
    for _ in range(sentences):
        g = int(rng.integers(len(groups)))
        out.append(" ".join([rng.choice(contexts[g]), rng.choice(groups[g]) + rng.choice(["", "s"], p=[0.8, 0.2]),
                             rng.choice(contexts[g]), rng.choice(["and", "of", "to"])]))
    return "\n\n".join(out)


def held_out_inflections(counts: Counter, n: int = HELD_OUT, min_count: int = 5) -> list[tuple[str, str]]:
    """``(form, base)`` pairs of vocabulary words, chosen evenly by frequency among all such pairs: held out."""
    from zoo.embedding_eval import SUFFIXES  # noqa: PLC0415

    pairs = []
    for form, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if c < min_count or len(form) < 6 or not form.isalpha():
            continue
        base = next((form[: -len(s)] for s in SUFFIXES if form.endswith(s) and counts.get(form[: -len(s)], 0)
                     >= min_count and len(form) - len(s) >= 4), None)
        if base is not None:
            pairs.append((form, base))
    step = max(1, len(pairs) // n)
    return pairs[::step][:n]


def prepare(cfg: Config) -> dict[str, Any]:
    from zoo.data import load_corpus  # noqa: PLC0415
    from zoo.data.words import prepare_words, split_sentences  # noqa: PLC0415

    texts = [quick_text()] if cfg.quick else load_corpus(cfg.data, val_fraction=0).train
    sentences = split_sentences(texts)
    if cfg.max_words:
        total, kept = 0, []
        for s in sentences:
            if total >= cfg.max_words:
                break
            kept.append(s)
            total += len(s)
        sentences = kept
    raw_words = sum(len(s) for s in sentences)
    counts = Counter(w for s in sentences for w in s)
    min_count = 1 if cfg.quick else 5
    held = held_out_inflections(counts, 10 if cfg.quick else HELD_OUT, min_count)
    removed = {form for form, _ in held}
    sentences = [[w for w in s if w not in removed] for s in sentences]
    sentences = [s for s in sentences if s]
    texts_again = ["\n\n".join(" ".join(s) for s in sentences)]
    tokenizer, ids, _ = prepare_words(texts_again, min_count=min_count)
    return {"sentences": sentences, "ids": ids, "tokenizer": tokenizer, "raw_words": raw_words, "held_out": held,
            "min_count": min_count}


# -- runs ---------------------------------------------------------------------------------


def settings(cfg: Config, family: str, min_count: int) -> dict[str, Any]:
    s = {"vector_size": 16 if cfg.quick else 100, "window": 2 if cfg.quick else 5, "negative": 5,
         "sample": 0.0 if cfg.quick else 1e-3, "min_count": min_count, "sg": cfg.sg, "epochs": cfg.epochs,
         "alpha": 0.025, "min_alpha": 0.0001}
    if family == "fasttext":
        s.update(min_n=3, max_n=6, bucket=2000 if cfg.quick else cfg.bucket)
    return s


def run_zoo(family: str, s: dict[str, Any], data: dict[str, Any], seed: int):
    from zoo.embeddings import keyed_vectors  # noqa: PLC0415
    from zoo.models.fasttext import FastText, FastTextConfig  # noqa: PLC0415
    from zoo.models.word2vec import Word2Vec, Word2VecConfig  # noqa: PLC0415
    from zoo.train.embeddings import EmbeddingTrainConfig, train_embeddings  # noqa: PLC0415

    tok = data["tokenizer"]
    model_fields = {k: v for k, v in s.items() if k not in ("epochs", "alpha", "min_alpha")}
    if family == "fasttext":
        model = FastText(FastTextConfig(vocab_size=tok.vocab_size, **model_fields), tok.words)
    else:
        model = Word2Vec(Word2VecConfig(vocab_size=tok.vocab_size, **model_fields))
    train_cfg = EmbeddingTrainConfig(epochs=s["epochs"], alpha=s["alpha"], min_alpha=s["min_alpha"], seed=seed)
    counts = np.concatenate([[0, 0], tok.counts])
    result = train_embeddings(model, data["ids"], counts, train_cfg, raw_words=data["raw_words"], progress=False)
    return keyed_vectors(model, result["tables"], tok, f"zoo {family}"), result["train_seconds"]


def run_gensim(family: str, s: dict[str, Any], data: dict[str, Any], seed: int, threads: int):
    from gensim.models import FastText, Word2Vec  # noqa: PLC0415

    from zoo.embeddings import KeyedVectors  # noqa: PLC0415

    kwargs = dict(vector_size=s["vector_size"], window=s["window"], negative=s["negative"], sample=s["sample"],
                  min_count=s["min_count"], sg=int(s["sg"]), alpha=s["alpha"], min_alpha=s["min_alpha"],
                  workers=threads, seed=seed, hs=0)
    if family == "fasttext":
        kwargs.update(min_n=s["min_n"], max_n=s["max_n"], bucket=s["bucket"])
    model = (FastText if family == "fasttext" else Word2Vec)(**kwargs)
    model.build_vocab(data["sentences"])
    start = time.perf_counter()
    model.train(data["sentences"], total_examples=model.corpus_count, epochs=s["epochs"])
    seconds = time.perf_counter() - start
    wv = model.wv
    oov = (lambda word: wv.get_vector(word)) if family == "fasttext" else None  # noqa: E731
    return KeyedVectors(list(wv.index_to_key), wv.vectors, oov=oov, name=f"gensim {family}"), seconds


def evaluate(vectors, data: dict[str, Any], evalsets: dict[str, Any]) -> dict[str, Any]:
    from zoo.embedding_eval import evaluate_all, misspellings  # noqa: PLC0415

    words = data["tokenizer"].words
    return evaluate_all(vectors, **evalsets, inflections=[(f, b) for f, b in data["held_out"]],
                        typos=misspellings(words, limit=20 if len(words) < 1000 else 200))


def _evalsets() -> tuple[dict[str, Any], list[str]]:
    from zoo.data.wordsim import evaluation_file, load_analogies, load_similarity  # noqa: PLC0415

    out, missing = {}, []
    for key, name, load in (("wordsim", "wordsim353", load_similarity), ("simlex", "simlex999", load_similarity),
                            ("questions", "questions-words", load_analogies)):
        try:
            out[key] = load(evaluation_file(name))
        except FileNotFoundError:
            missing.append(name)
    return out, missing


def run(cfg: Config, command: str) -> dict[str, Any]:
    cfg = cfg.resolved()
    seeds = list(range(1, (2 if cfg.quick else cfg.seeds) + 1))
    threads = cfg.threads or results.num_threads()
    have_gensim = cfg.gensim and results.package_version("gensim") is not None
    load = results.OtherLoad()
    data = prepare(cfg)
    evalsets, missing = _evalsets()
    rows: list[dict[str, Any]] = []
    for seed in seeds:  # interleaved rounds
        for family in cfg.families:
            s = settings(cfg, family, data["min_count"])
            for impl in (["gensim"] if have_gensim else []) + ["zoo"]:
                results.say(f"round seed {seed}: {impl} {family} ...")
                vectors, seconds = (run_gensim(family, s, data, seed, threads) if impl == "gensim"
                                    else run_zoo(family, s, data, seed))
                rows.append({"impl": impl, "family": family, "seed": seed, "train_s": seconds,
                             "words_per_s": data["raw_words"] * s["epochs"] / seconds,
                             "vocabulary": len(vectors), "eval": evaluate(vectors, data, evalsets)})
    env = results.environment()
    env["other_processes_cpu_share"] = load.fraction()
    env["threads"] = threads
    env["versions"]["gensim"] = results.package_version("gensim")
    out = {"config": dataclasses.asdict(cfg), "environment": env, "date": results.utc_now(), "command": command,
           "corpus": {"spec": "quick (built-in)" if cfg.quick else cfg.data, "words": data["raw_words"],
                      "sentences": len(data["sentences"]), "vocabulary": len(data["tokenizer"].words),
                      "held_out": data["held_out"]},
           "settings": {f: settings(cfg, f, data["min_count"]) for f in cfg.families}, "rows": rows,
           "missing_evaluation_files": missing, "gensim": have_gensim}
    return out


# -- the report ---------------------------------------------------------------------------


def _measures(row: dict[str, Any]) -> dict[str, float | None]:
    e = row["eval"]
    a = e.get("analogies", {})
    return {
        "words/s": row["words_per_s"],
        "WordSim353": e.get("wordsim353", {}).get("spearman"),
        "SimLex-999": e.get("simlex999", {}).get("spearman"),
        "analogies": a.get("total", {}).get("accuracy"),
        "semantic": a.get("semantic", {}).get("accuracy"),
        "syntactic": a.get("syntactic", {}).get("accuracy"),
        "held-out inflections hit@10": e.get("unseen_inflections", {}).get("hit@10"),
        "misspellings hit@10": e.get("misspellings", {}).get("hit@10"),
    }


def _summary(values: list[float | None]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    return (statistics.mean(values), min(values), max(values)) if values else None


def _cell(stat, name: str) -> str:
    if stat is None:
        return "—"
    mean, lo, hi = stat
    if name == "words/s":
        return f"{mean:,.0f} ({lo:,.0f}–{hi:,.0f})"
    if name in ("WordSim353", "SimLex-999"):
        return f"{mean:.3f} ({lo:.3f}–{hi:.3f})"
    return f"{100 * mean:.1f}% ({100 * lo:.1f}–{100 * hi:.1f})"


def _verdict(zoo_stat, gensim_stat, name: str) -> str:
    if zoo_stat is None or gensim_stat is None:
        return "—"
    if name == "words/s":
        return f"{zoo_stat[0] / gensim_stat[0]:.2f}×"
    tolerance = max(SPEARMAN if name in ("WordSim353", "SimLex-999") else SCORE_POINTS,
                    gensim_stat[2] - gensim_stat[1])
    diff = zoo_stat[0] - gensim_stat[0]
    shown = f"{diff:+.3f}" if name in ("WordSim353", "SimLex-999") else f"{100 * diff:+.1f} pt"
    return f"{shown} ({'within' if abs(diff) <= tolerance else 'outside'})"


def render(data: dict[str, Any], images: str | None = "") -> str:
    env, cfg, corpus = data["environment"], data["config"], data["corpus"]
    seeds = sorted({r["seed"] for r in data["rows"]})
    lines = [
        "**word2vec and fastText: zoo (JAX) vs gensim**, same sentences, settings and threads; mean (min–max) over "
        f"seeds {', '.join(map(str, seeds))}",
        "",
        results.device_line(env),
        f"- versions: jax {env['versions']['jax']}, gensim {env['versions'].get('gensim') or 'absent'}",
        f"- threads: {env['threads']} (gensim workers; XLA's CPU pool on the same cores)",
        f"- corpus: {corpus['spec']}: {corpus['words']:,} words, {corpus['sentences']:,} sentences, vocabulary "
        f"{corpus['vocabulary']:,} (min_count {next(iter(data['settings'].values()))['min_count']}), "
        f"{len(corpus['held_out'])} inflections held out",
        f"- other processes: {env['other_processes_cpu_share']:.0%} of the CPU time during the run (a shared "
        "machine; the rounds are interleaved so both sides share it)" if env.get("other_processes_cpu_share")
        is not None else "- other processes: not measured",
        f"- date: {data['date']}",
        f"- command: `{data['command']}`",
    ]
    for family, s in data["settings"].items():
        lines.append(f"- {family}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    lines.append("")
    names = list(_measures(data["rows"][0]))
    for family in data["settings"]:
        stats = {impl: {n: _summary([_measures(r)[n] for r in data["rows"] if r["impl"] == impl
                                     and r["family"] == family]) for n in names} for impl in ("gensim", "zoo")}
        if not any(r["impl"] == "gensim" and r["family"] == family for r in data["rows"]):
            stats["gensim"] = {n: None for n in names}
        table = [[n, _cell(stats["gensim"][n], n), _cell(stats["zoo"][n], n),
                  _verdict(stats["zoo"][n], stats["gensim"][n], n)] for n in names]
        lines += [f"*{family}* ({'skip-gram' if cfg['sg'] else 'CBOW'})", "",
                  results.markdown_table(["measure", "gensim", "zoo", "zoo − gensim (target: within gensim's spread, "
                                         "2 pt analogies, 0.03 Spearman) / speed ratio"], table, "lrrr"), ""]
    coverage = _coverage(data["rows"])
    if coverage:
        lines += ["Coverage (pairs or questions with every word in the vocabulary, the same for both sides): "
                  + coverage, ""]
    lines += _sections(data["rows"])
    if data["missing_evaluation_files"]:
        lines += [f"Not evaluated (no file; pip install gensim): {', '.join(data['missing_evaluation_files'])}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _coverage(rows: list[dict[str, Any]]) -> str:
    r = next((r for r in rows if r["impl"] == "zoo"), None)
    if r is None:
        return ""
    e = r["eval"]
    parts = [f"{name} {e[key]['coverage']}/{e[key]['pairs']}" for key, name in (("wordsim353", "WordSim353"),
                                                                              ("simlex999", "SimLex-999")) if key in e]
    if "analogies" in e:
        t = e["analogies"]["total"]
        parts.append(f"analogies {t['coverage']:,}/{t['questions']:,}")
    for key, name in (("unseen_inflections", "held-out inflections"), ("misspellings", "misspellings")):
        if key in e:
            w2v = next((x["eval"][key]["coverage"] for x in rows if x["family"] == "word2vec"), None)
            ft = next((x["eval"][key]["coverage"] for x in rows if x["family"] == "fasttext"), None)
            parts.append(f"{name} {e[key]['cases']} (with a vector: fastText {ft if ft is not None else '—'}, "
                         f"word2vec {w2v if w2v is not None else '—'})")
    return "; ".join(parts) + "."


def _sections(rows: list[dict[str, Any]]) -> list[str]:
    if not rows or "analogies" not in rows[0]["eval"]:
        return []
    keys = sorted({(r["family"], r["impl"]) for r in rows}, key=lambda k: (k[0] != "word2vec", k[1] != "gensim"))
    names = list(rows[0]["eval"]["analogies"]["sections"])
    table = []
    for name in names:
        cells = []
        for family, impl in keys:
            acc = [r["eval"]["analogies"]["sections"][name]["accuracy"] for r in rows
                   if r["family"] == family and r["impl"] == impl]
            acc = [a for a in acc if a is not None]
            cells.append(f"{100 * statistics.mean(acc):.1f}%" if acc else "—")
        cov = rows[0]["eval"]["analogies"]["sections"][name]
        table.append([name, f"{cov['coverage']}/{cov['questions']}", *cells])
    return ["Analogy accuracy by section (3CosAdd, mean over seeds):", "",
            results.markdown_table(["section", "covered", *[f"{i} {f}" for f, i in keys]], table), ""]


EXPERIMENT = Experiment(Config, run, render, stem="embeddings-{device}", description=__doc__.split("\n\n")[0])


def main(argv: Sequence[str] | None = None, prog: str = "zoo bench embeddings") -> int:
    return harness_main(EXPERIMENT, argv, prog)
