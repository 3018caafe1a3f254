"""The ladder at word level: do learned word vectors fix the sparsity of counting? Measured.

    zoo ladder --level word                                   # the built-in corpus, preset shakespeare-word
    zoo ladder --level word --data shakespeare.txt --max-steps 300 --out runs/word-ladder

One corpus, one word tokenizer (:class:`zoo.data.words.WordTokenizer`: the
words of the training split seen at least ``--min-count`` times, every other
word ``<unk>``), one validation stream; every rung predicts the same
validation words and is scored in perplexity per word (``<unk>`` and the
end-of-document token count as words, as in any closed-vocabulary
perplexity):

1. **Kneser-Ney** word 3- and 5-grams (:class:`zoo.models.ngram.KneserNeyLM`),
   counted over the training split;
2. **NPLM** (Bengio et al. 2003, :class:`zoo.NPLM`) of ``nplm/<preset>``,
   and the same NPLM with its word vectors started from a **word2vec** run
   trained on the training split only (CBOW, gensim's defaults, at the
   NPLM's vector width);
3. an **LSTM** LM and a **GPT** with about the NPLM's parameter count
   (tables included, which dominate at word level; widths matched and
   shown), trained with the same recipe and token budget: batch x block x
   steps of the preset.

Scoring: the neural models read the validation stream in windows of the
preset's ``block_size`` T that overlap by half: the first window scores all
its T predictions, every later one only its last T/2, so every word is
predicted once, from at least T/2 words before it (the NPLM uses its last
``order - 1`` of them). The n-grams predict the same words from their
``order - 1`` predecessors.

The claim becomes a row: each prediction is also classed by whether its
context, the ``n - 1`` words before it, occurs anywhere in the training
split, for each n of ``--split-orders`` (3 and 5: the contexts of the two
n-grams, and of the NPLM with n = 5). Perplexity on *unseen* contexts is where
counting has only its back-off, and where word vectors should help.
Predictions too close to the start of the stream to have the longest
context are left out of every figure.

Each neural rung is a run directory (``OUT/nplm``, ``OUT/nplm-w2v``,
``OUT/lstm``, ``OUT/gpt``; ``zoo sample`` and ``zoo eval`` work on them);
word2vec is ``OUT/word2vec``. Running again resumes or reuses them. Results:
``OUT/word_ladder.json``, ``word_ladder.md`` and ``word_ladder.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["WordLadderConfig", "RUNGS", "model_configs", "context_seen", "window_log2_probs", "run_word_ladder",
           "render", "render_markdown", "plot_word_ladder", "main"]

RUNGS = ("kn3", "kn5", "nplm", "nplm-w2v", "lstm", "gpt")
LABELS = {"kn3": "Kneser-Ney 3-gram", "kn5": "Kneser-Ney 5-gram", "nplm": "NPLM",
          "nplm-w2v": "NPLM, vectors from word2vec", "lstm": "LSTM LM", "gpt": "GPT"}


@dataclasses.dataclass(frozen=True)
class WordLadderConfig:
    """Score Kneser-Ney word n-grams, NPLM (also from word2vec), an LSTM and a GPT in perplexity per word."""

    data: str = "stdlib"
    """Corpus: "stdlib" (built-in), a text file, a directory or glob, or hf:NAME[:CONFIG]."""
    text_column: str = "text"
    """The text column of an hf: dataset."""
    preset: str = "shakespeare-word"
    """The nplm preset: the NPLM, the parameter count the LSTM and GPT are matched to, and the recipe of all."""
    models: tuple[Literal["kn3", "kn5", "nplm", "nplm-w2v", "lstm", "gpt"], ...] = RUNGS
    """Rungs to run."""
    min_count: int = 2
    """Words seen fewer times in the training split are <unk>."""
    max_vocab: int | None = None
    """Keep at most this many words (the most frequent)."""
    max_steps: int | None = None
    """Training steps of every neural rung (default: the preset's)."""
    split_orders: tuple[int, ...] = (3, 5)
    """n of the seen/unseen split: a prediction's context is its n - 1 previous words."""
    recurrent_layers: int = 2
    """Layers of the LSTM (its width is matched to the NPLM's parameter count)."""
    gpt_layers: int = 2
    """Layers of the GPT (4 heads; its width is matched to the NPLM's parameter count)."""
    word2vec_epochs: int = 5
    """Epochs of the word2vec run behind nplm-w2v (gensim's default)."""
    out: Path = Path("runs/word-ladder")
    """Directory for the rungs' runs and word_ladder.json/.md/.png."""
    cache_dir: Path | None = None
    """Tokenized-corpus cache (default: $ZOO_CACHE_DIR or ~/.cache/zoo)/tokens."""
    progress: bool = True
    """Progress bars while training."""

    def check(self) -> None:
        from zoo import presets

        presets.get("nplm", self.preset)  # an unknown name lists the valid ones
        if not self.models:
            raise ValueError("--models: name at least one rung")
        if self.min_count < 1:
            raise ValueError(f"--min-count must be >= 1, got {self.min_count}")
        if self.max_vocab is not None and self.max_vocab < 1:
            raise ValueError(f"--max-vocab must be >= 1, got {self.max_vocab}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        if not self.split_orders or min(self.split_orders) < 2:
            raise ValueError(f"--split-orders {self.split_orders}: expected one or more n >= 2")
        for name in ("recurrent_layers", "gpt_layers", "word2vec_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


# -- the models --------------------------------------------------------------------------------


def model_configs(preset: str, vocab_size: int, recurrent_layers: int = 2, gpt_layers: int = 2) -> dict[str, Any]:
    """family -> model config: nplm/<preset> at ``vocab_size``, an LSTM and a GPT matched to its parameter count."""
    from zoo import presets, registry
    from zoo.models.gpt import GPTConfig
    from zoo.models.rnn_lm import RNNLMConfig

    nplm = presets.get("nplm", preset).model.replace(vocab_size=vocab_size)
    target = registry.param_count("nplm", nplm)
    width = registry.recurrent_lm_width("lstm", target, recurrent_layers, vocab_size)
    lstm = RNNLMConfig(vocab_size=vocab_size, cell="lstm", features=width, num_layers=recurrent_layers,
                       dropout_rate=nplm.dropout_rate, block_size=nplm.block_size)
    # scan_layers=False: a few small layers train faster unrolled on CPU (as gpt/shakespeare-char-cpu)
    gpt = GPTConfig(vocab_size=vocab_size, block_size=nplm.block_size, num_layers=gpt_layers, num_heads=4,
                    features=64, use_bias=False, dropout_rate=nplm.dropout_rate, scan_layers=False)
    gpt = gpt.replace(features=registry.matched_width(
        lambda d: registry.param_count("gpt", gpt.replace(features=d)), target, multiple=8, max_width=4096))
    return {"nplm": nplm, "nplm-w2v": nplm, "lstm": lstm, "gpt": gpt}


def _label(rung: str, config: Any) -> str:
    if rung in ("nplm", "nplm-w2v"):
        return f"{LABELS[rung]} (n = {config.order}, m = {config.features}, h = {config.hidden})"
    if rung == "lstm":
        return f"{LABELS[rung]} ({config.num_layers} x {config.features})"
    return f"{LABELS[rung]} ({config.num_layers} x {config.num_heads} x {config.features})"


# -- scoring -----------------------------------------------------------------------------------


def window_log2_probs(apply_fn, params: Any, tokens: np.ndarray, window: int, batch_size: int = 16) -> np.ndarray:
    """log2 P(tokens[i + 1] | the words before it) for i = 0..N-2, from windows that overlap by half.

    ``apply_fn(params, ids (B, T)) -> logits (B, T, V)``. Window 0 starts at
    0 and scores its ``window`` predictions; window k >= 1 starts at k *
    stride (stride = window // 2, at least 1) and scores only its last
    ``stride`` predictions, so each of the N - 1 predictions is made once,
    from at least ``window - stride`` words (or all there are before it).
    """
    import jax
    import jax.numpy as jnp

    n = len(tokens) - 1
    if n < 1:
        raise ValueError(f"window_log2_probs: {len(tokens)} tokens; expected at least 2")
    stride = max(1, window // 2)
    starts = [0]
    while starts[-1] + window < n:
        starts.append(len(starts) * stride)
    padded = np.zeros(starts[-1] + window + 1, np.int64)
    padded[: len(tokens)] = tokens
    x = np.stack([padded[s : s + window] for s in starts]).astype(np.int32)  # (W, T)
    y = np.stack([padded[s + 1 : s + window + 1] for s in starts]).astype(np.int32)  # (W, T)

    @jax.jit
    def log2p(params, x, y):  # (B, T) x2 -> (B, T)
        logp = jax.nn.log_softmax(apply_fn(params, x).astype(jnp.float32), axis=-1)  # (B, T, V)
        return jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0] / math.log(2)

    rows = []
    for b in range(0, len(starts), batch_size):
        xb, yb = x[b : b + batch_size], y[b : b + batch_size]
        m = len(xb)
        if m < batch_size:  # one shape for every call
            xb, yb = (np.pad(a, ((0, batch_size - m), (0, 0))) for a in (xb, yb))
        rows.append(np.asarray(log2p(params, xb, yb))[:m])
    lp = np.concatenate(rows)  # (W, T)
    out = np.full(n, np.nan)
    for k, s in enumerate(starts):
        first = 0 if k == 0 else window - stride
        end = min(s + window, n)
        out[s + first : end] = lp[k, first : end - s]
    assert not np.isnan(out).any()
    return out


def context_seen(train: Sequence[int], val: Sequence[int], context: int) -> np.ndarray:
    """(len(val) - 1,) bool: whether the ``context`` words before val[i + 1] occur in ``train`` as ``context``
    consecutive words followed by some word (predictions with fewer words before them: False)."""
    train, val = list(train), list(val)
    seen = set(zip(*(train[i : len(train) - context + i] for i in range(context)))) if context else {()}
    out = np.zeros(max(len(val) - 1, 0), bool)
    for i in range(context - 1, len(val) - 1):
        out[i] = tuple(val[i + 1 - context : i + 1]) in seen
    return out


def perplexity(log2p: np.ndarray) -> float:
    return float(2.0 ** -log2p.mean()) if log2p.size else float("nan")


def _split(log2p: np.ndarray, scored: np.ndarray, seen: dict[int, np.ndarray]) -> dict[str, Any]:
    out = {"ppl": perplexity(log2p[scored]), "split": {}}
    for n, mask in seen.items():
        out["split"][str(n)] = {"seen": perplexity(log2p[scored & mask]), "unseen": perplexity(log2p[scored & ~mask])}
    return out


# -- the rungs ---------------------------------------------------------------------------------


def _train_config(cfg: WordLadderConfig):
    from zoo import presets

    train = presets.get("nplm", cfg.preset).train
    if cfg.max_steps is None:
        return train
    return train.replace(max_steps=cfg.max_steps, eval_interval=min(train.eval_interval, cfg.max_steps),
                         checkpoint_interval=min(train.checkpoint_interval, cfg.max_steps),
                         warmup_steps=min(train.warmup_steps, max(cfg.max_steps // 10, 1)))


def _word2vec(cfg: WordLadderConfig, corpus, tokenizer, vector_size: int, say):
    """Word vectors of the training split (word2vec CBOW, gensim's defaults at ``vector_size``): a run in OUT/word2vec."""
    from zoo.data.words import split_sentences
    from zoo.models.word2vec import Word2Vec, Word2VecConfig
    from zoo.run import load_run, read_run_json, write_run_json
    from zoo.train.embeddings import EmbeddingTrainConfig, train_embeddings

    run_dir = cfg.out / "word2vec"
    config = Word2VecConfig(vector_size=vector_size, min_count=cfg.min_count, vocab_size=tokenizer.vocab_size)
    train_config = EmbeddingTrainConfig(epochs=cfg.word2vec_epochs)
    sentences = [tokenizer.encode_words(s) for s in split_sentences(corpus.train)]
    raw_words = sum(len(s) for s in sentences)
    if (run_dir / "run.json").is_file():
        saved = read_run_json(run_dir)
        if saved.get("model") != dataclasses.asdict(config) or saved.get("data") != cfg.data:
            raise ValueError(f"{run_dir} holds a different word2vec run (model or data); choose another --out")
    else:
        tokenizer.save(run_dir / "tokenizer")
        write_run_json(run_dir, family="word2vec", preset="gensim", model=config, train=train_config,
                       data=cfg.data, text_column=cfg.text_column, split="train",
                       tokens={"words": raw_words, "sentences": len(sentences)})
    start = time.perf_counter()
    counts = np.concatenate([[0, 0], tokenizer.counts])
    train_embeddings(Word2Vec(config), sentences, counts, train_config, raw_words=raw_words, run_dir=run_dir,
                     progress=cfg.progress, metadata={"family": "word2vec", "preset": "gensim", "ladder": True})
    say(f"   word2vec ({vector_size} dimensions, {cfg.word2vec_epochs} epochs over {raw_words:,} training words): "
        f"{time.perf_counter() - start:.1f} s")
    return load_run(run_dir).vectors


def _neural(cfg: WordLadderConfig, rung: str, model_config: Any, tokenizer, tokens, val: np.ndarray,
            initial_params=None) -> tuple[dict[str, Any], np.ndarray]:
    from zoo import data, registry
    from zoo.run import load_run, read_run_json, write_run_json
    from zoo.train.trainer import train

    family = "nplm" if rung.startswith("nplm") else rung
    train_config = _train_config(cfg)
    run_dir = cfg.out / rung
    if (run_dir / "run.json").is_file():
        saved = read_run_json(run_dir)
        if saved.get("model") != dataclasses.asdict(model_config) or saved.get("data") != cfg.data:
            raise ValueError(f"{run_dir} holds a different run (model or data); choose another --out")
    else:
        tokenizer.save(run_dir / "tokenizer")
        write_run_json(run_dir, family=family, preset=cfg.preset, model=model_config, train=train_config,
                       data=cfg.data, text_column=cfg.text_column, tokens=tokens.info,
                       settings={"data": cfg.data, "tokenizer": "word", "min_count": cfg.min_count,
                                 "max_vocab": cfg.max_vocab})
    result = train(registry.model_for(family, model_config), model_config, train_config, tokens.train, tokens.val,
                   run_dir, flops_per_token=registry.flops_per_token(family, model_config), get_batch=data.get_batch,
                   progress=cfg.progress, resume=True, initial_params=initial_params,
                   metadata={"family": family, "preset": cfg.preset, "ladder": "word"})
    run = load_run(run_dir)
    lp = window_log2_probs(lambda p, x: run.model.apply({"params": p}, x), run.params, val, model_config.block_size)
    row = dict(rung=rung, label=_label(rung, model_config), params=registry.param_count(family, model_config),
               params_kind="parameters", train_tokens=int(result["step"]) * train_config.batch_size
               * model_config.block_size, tokens_per_s=result.get("tokens_per_s"), wall_s=result.get("elapsed_s"),
               steps=int(result["step"]))
    return row, lp


def _kneser_ney(rung: str, train: np.ndarray, val: np.ndarray, vocab_size: int) -> tuple[dict[str, Any], np.ndarray]:
    from zoo.models.ngram import KneserNeyLM

    order = int(rung[2:])
    start = time.perf_counter()
    lm = KneserNeyLM(order, vocab_size).fit(train)
    fit_s = time.perf_counter() - start
    lp = lm.log2_probs(val)
    row = dict(rung=rung, label=LABELS[rung], params=lm.num_counts, params_kind="n-gram counts",
               train_tokens=int(len(train)), tokens_per_s=len(train) / fit_s, wall_s=time.perf_counter() - start,
               discounts=[lv.discount for lv in lm.levels])
    return row, lp


def run_word_ladder(cfg: WordLadderConfig, say=print, command: str | None = None) -> dict[str, Any]:
    """Run every rung of ``cfg``; return the results (also written to ``cfg.out``)."""
    from zoo import data
    from zoo.harness import results as timing
    from zoo.harness.flags import cache_dir
    from zoo.data.words import WordTokenizer

    cfg.check()
    other_load = timing.OtherLoad()
    corpus = data.load_corpus(cfg.data, text_column=cfg.text_column)
    tokenizer = WordTokenizer.train(corpus.train, min_count=cfg.min_count, max_size=cfg.max_vocab)
    tokens = data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(cfg.cache_dir))
    train, val = np.asarray(tokens.train, np.int64), np.asarray(tokens.val, np.int64)
    vocab = tokenizer.vocab_size
    configs = model_configs(cfg.preset, vocab, cfg.recurrent_layers, cfg.gpt_layers)
    longest = max(cfg.split_orders) - 1
    if len(val) < longest + 2:
        raise ValueError(f"--data {cfg.data}: the validation split has {len(val)} words; expected more than {longest + 1}")
    scored = np.arange(len(val) - 1) >= longest - 1  # predictions with the longest split context before them
    seen = {n: context_seen(train, val, n - 1) for n in sorted(set(cfg.split_orders))}
    unk = {"train": float(np.mean(train == tokenizer.unk_id)), "val": float(np.mean(val == tokenizer.unk_id))}
    say(f"word ladder on {cfg.data}: {len(train):,} train and {len(val):,} val words (vocabulary {vocab:,}: "
        f"min count {cfg.min_count}; <unk> {unk['val']:.1%} of validation words); scoring {int(scored.sum()):,} "
        "predictions in perplexity per word")
    rows = []
    for rung in cfg.models:
        say(f"-- {rung}")
        if rung.startswith("kn"):
            row, lp = _kneser_ney(rung, train, val, vocab)
        else:
            initial = None
            if rung == "nplm-w2v":
                from zoo.models.nplm import with_word_vectors
                from zoo.registry import family, model_for

                import jax

                vectors = _word2vec(cfg, corpus, tokenizer, configs[rung].features, say)
                if not (cfg.out / rung / "run.json").is_file():
                    fresh = family("nplm").objective.init_params(model_for("nplm", configs[rung]), configs[rung],
                                                                 jax.random.key(_train_config(cfg).seed))
                    initial, covered = with_word_vectors(fresh, tokenizer.words, vectors)
                    say(f"   {covered:,} of {len(tokenizer.words):,} words start from their word2vec vectors")
            row, lp = _neural(cfg, rung, configs[rung], tokenizer, tokens, val, initial)
        row.update(_split(lp, scored, seen))
        say(f"   {row['label']}: perplexity {row['ppl']:.1f}, " + ", ".join(
            f"contexts of {int(n) - 1} seen {s['seen']:.1f} / unseen {s['unseen']:.1f}" for n, s in row["split"].items()))
        rows.append(row)
    env = timing.environment()
    env["other_processes_cpu_share"] = other_load.fraction()
    preset_train = _train_config(cfg)
    result = {
        "command": command,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
        "date": timing.utc_now(),
        "environment": env,
        "corpus": {"train_words": int(len(train)), "val_words": int(len(val)), "vocab_size": vocab,
                   "scored": int(scored.sum()), "unk_rate": unk, "nplm_order": configs["nplm"].order,
                   "block_size": configs["nplm"].block_size,
                   "batch_size": preset_train.batch_size, "steps": preset_train.max_steps,
                   "seen_share": {str(n): float(m[scored].mean()) for n, m in seen.items()}},
        "rows": rows,
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "word_ladder.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (cfg.out / "word_ladder.md").write_text(render_markdown(result, command=command, image="word_ladder.png"))
    plot_word_ladder(result, cfg.out / "word_ladder.png")
    return result


# -- reporting ---------------------------------------------------------------------------------


def _claim(result: dict[str, Any]) -> list[str]:
    """The seed's claim as sentences: each NPLM against the Kneser-Ney n-gram of its own n (else the largest),
    on the contexts seen and unseen in training, for every split."""
    rows = {r["rung"]: r for r in result["rows"]}
    order = str(result["corpus"].get("nplm_order", 5))
    kn = f"kn{order}" if f"kn{order}" in rows else next((k for k in ("kn5", "kn3") if k in rows), None)
    lines = []
    for nplm in ("nplm", "nplm-w2v"):
        if nplm not in rows or kn is None:
            continue
        for n in sorted(rows[nplm]["split"], key=int):
            a, b = rows[nplm]["split"][n], rows[kn]["split"][n]
            parts = [f"{what} {a[what]:.1f} vs {b[what]:.1f} ({a[what] / b[what] - 1:+.0%})"
                     for what in ("unseen", "seen") if math.isfinite(a[what]) and math.isfinite(b[what])]
            if parts:
                lines.append(f"- {rows[nplm]['label']} against the {LABELS[kn]}, {int(n) - 1}-word contexts: "
                             + "; ".join(parts))
    return lines


def _num(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "—"  # — : no prediction of that kind


def render_markdown(result: dict[str, Any], command: str | None = None, image: str | None = None) -> str:
    from zoo.harness import results as timing

    env, c = result["environment"], result["corpus"]
    orders = sorted(c["seen_share"], key=int)
    lines = [
        f"**The word-level ladder: validation perplexity per word** (lower is better) on "
        f"`{Path(str(result['config']['data'])).name}`",
        "",
        timing.device_line(env),
        f"- corpus: {c['train_words']:,} training and {c['val_words']:,} validation words; vocabulary "
        f"{c['vocab_size']:,} (words seen at least {result['config']['min_count']} times in training, the rest "
        f"<unk>: {c['unk_rate']['val']:.1%} of validation words); every rung predicts the same {c['scored']:,} "
        "validation words",
        f"- neural rungs: the recipe of nplm/{result['config']['preset']}, {c['steps']} steps of {c['batch_size']} x "
        f"{c['block_size']} words; LSTM and GPT widths matched to the NPLM's parameter count",
        "- contexts seen in training: " + ", ".join(
            f"{int(n) - 1} words (n = {n}) {c['seen_share'][n]:.1%}" for n in orders) + " of the predictions",
        f"- date: {result['date']}",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines.append("")
    if image:
        lines += [f"![the word-level ladder]({image})", ""]
    headers = ["model", "perplexity"]
    for n in orders:
        headers += [f"seen {int(n) - 1}-word context", f"unseen {int(n) - 1}-word context"]
    headers += ["parameters", "training words", "wall s"]
    rows = []
    for r in result["rows"]:
        cells = [r["label"], _num(r["ppl"])]
        for n in orders:
            s = r["split"].get(n, {})
            cells += [_num(s.get("seen", math.nan)), _num(s.get("unseen", math.nan))]
        cells += [f"{r['params']:,}" + (" counts" if r["params_kind"] != "parameters" else ""),
                  f"{r['train_tokens']:,}", "—" if r.get("wall_s") is None else f"{r['wall_s']:.1f}"]
        rows.append(cells)
    lines += [timing.markdown_table(headers, rows), ""]
    claim = _claim(result)
    if claim:
        lines += ["Perplexity per word, NPLM against counting:", "", *claim, ""]
    other = env.get("other_processes_cpu_share")
    if other is not None and other > 0.05:
        lines += [f"Other processes used {other:.0%} of the CPU time during the run: wall times are unreliable "
                  "(the perplexities are not affected).", ""]
    return "\n".join(lines) + "\n"


def render(result: dict[str, Any], images: str | None = "") -> str:
    """The report from the results alone (the harness's interface): ``images`` prefixes the plot's link
    (None: no plot)."""
    return render_markdown(result, command=result.get("command"),
                           image=None if images is None else f"{images}word_ladder.png")


def plot_word_ladder(result: dict[str, Any], path: Path) -> Path:
    """Bars: each rung's perplexity over all predictions and on seen and unseen contexts, for the split whose
    seen share is nearest one half (the most even, so both bars stand on many predictions)."""
    from zoo.plots import subplots

    rows = result["rows"]
    shares = result["corpus"]["seen_share"]
    n = min(shares, key=lambda k: (abs(shares[k] - 0.5), int(k)))
    groups = [("all", lambda r: r["ppl"]), (f"seen {int(n) - 1}-word context", lambda r: r["split"][n]["seen"]),
              (f"unseen {int(n) - 1}-word context", lambda r: r["split"][n]["unseen"])]
    fig, ax = subplots(1, 1, figsize=(10, 4))
    width = 0.8 / len(groups)
    x = np.arange(len(rows))
    for g, (name, value) in enumerate(groups):
        values = [value(r) for r in rows]
        bars = ax.bar(x + (g - (len(groups) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [r["label"].split(" (")[0] for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("validation perplexity per word (log scale)")
    ax.set_title(f"do word vectors fix sparsity? {int(n) - 1}-word contexts seen ({shares[n]:.0%}) and unseen "
                 "in training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: Sequence[str], prog: str = "zoo ladder --level word") -> int:
    """``zoo ladder --level word [flags]``: run the word-level ladder, print the table, write OUT/word_ladder.*"""
    import shlex
    import sys

    from zoo.harness.flags import parse_flags

    argv = list(argv)
    cfg = parse_flags(WordLadderConfig, args=argv, prog=prog, description=__doc__)
    cfg.check()
    result = run_word_ladder(cfg, command=" ".join([prog, *map(shlex.quote, argv)]))
    print(render_markdown(result, command=result["command"], image="word_ladder.png"), end="")
    print(f"wrote {cfg.out / 'word_ladder.json'}, word_ladder.md and word_ladder.png", file=sys.stderr)
    return 0
