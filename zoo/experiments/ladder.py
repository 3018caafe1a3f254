"""The language-model ladder: from counting to GPT, on one corpus, in one unit.

    zoo ladder                                   # the built-in corpus, character level, quickstart sizes
    zoo ladder --data shakespeare.txt --preset shakespeare-char-cpu --out runs/ladder-shakespeare
    zoo ladder --level word --data shakespeare.txt    # words: n-grams, NPLM, LSTM, GPT (zoo.experiments.word_ladder)

Every rung reads the same training split through the same tokenizer
(characters by default) and is scored on the same validation characters, in
bits per character (bits per byte with ``--tokenizer byte``):

1. a **count-based** n-gram model with interpolated Kneser-Ney smoothing
   (:class:`zoo.models.ngram.KneserNeyLM`), counted over the whole training
   split;
2. a **SimpleRNN**, **LSTM**, **GRU** and **minGRU** language model and a
   **GPT**, trained through the same pipeline as ``zoo pretrain`` (the
   trainer, optimizer and schedule of ``gpt/<preset>``), each with about the
   GPT's parameter count (two recurrent layers, width matched; the widths
   are reported) and the same token budget: batch x block x steps.

Scoring: the validation stream is cut into windows of the preset's
``block_size``; each neural model predicts every token of a window from the
ones before it in that window (the context starts afresh at each window;
recurrent models too), and the n-gram model predicts the same tokens from
its ``order - 1`` predecessors. The mean negative log2-likelihood over those
tokens is the figure. Tokens/s and wall time are those of training (the
n-gram: counting).

Beside the ladder, a word-level view of the same text shows why counting
runs out: the share of validation words never seen in training (OOV) and of
validation n-grams never seen, for n = 1..5 (:func:`zoo.models.ngram.unseen_rates`).

Each neural rung is a normal run directory (``OUT/<family>``: ``zoo sample``
and ``zoo eval`` work on it); running the ladder again resumes or reuses
them. Results: ``OUT/ladder.json``, ``ladder.md`` and ``ladder.png``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from zoo.harness import flags, results
from zoo.harness.flags import cache_dir
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main

__all__ = ["LadderConfig", "NEURAL", "RUNGS", "model_configs", "score_windows", "words", "run", "render", "plots",
           "main"]

NEURAL = ("rnn", "lstm", "gru", "mingru", "gpt")
RUNGS = ("ngram", *NEURAL)
LABELS = {"ngram": "Kneser-Ney n-gram", "rnn": "SimpleRNN LM", "lstm": "LSTM LM", "gru": "GRU LM",
          "mingru": "minGRU LM", "gpt": "GPT"}


@dataclasses.dataclass(frozen=True)
class LadderConfig:
    """Train and score the ladder: n-gram (Kneser-Ney), RNN, LSTM, GRU, minGRU and GPT language models."""

    level: Literal["char", "word"] = "char"
    """char: this ladder; word: the word-level ladder (`zoo ladder --level word --help` lists its flags)."""
    data: str = "stdlib"
    """Corpus: "stdlib" (built-in), a text file, a directory or glob, or hf:NAME[:CONFIG]."""
    text_column: str = "text"
    """The text column of an hf: dataset."""
    tokenizer: Literal["char", "byte"] = "char"
    """char: bits per character; byte: bits per byte."""
    preset: str = "quickstart"
    """The GPT preset (model and training recipe); the recurrent LMs get its recipe and parameter count."""
    models: tuple[Literal["ngram", "rnn", "lstm", "gru", "mingru", "gpt"], ...] = RUNGS
    """Rungs to run."""
    ngram_order: int = 5
    """Order of the Kneser-Ney model (5: four characters of context)."""
    recurrent_layers: int = 2
    """Layers of each recurrent LM (its width is matched to the GPT's parameter count)."""
    max_steps: int | None = None
    """Training steps of every neural rung (default: the preset's)."""
    word_max_order: int = 5
    """Largest n of the word-level unseen n-gram statistics."""
    out: Path = Path("runs/ladder")
    """Directory for the rungs' runs and ladder.json/.md/.png."""
    cache_dir: Path | None = None
    """Tokenized-corpus cache (default: $ZOO_CACHE_DIR or ~/.cache/zoo)/tokens."""
    progress: bool = True
    """Progress bars while training."""

    def resolved(self) -> LadderConfig:
        from zoo import presets

        presets.get("gpt", self.preset)  # an unknown name lists the valid ones
        if not self.models:
            raise ValueError("--models: name at least one rung")
        flags.at_least(self, 1, "ngram_order", "recurrent_layers", "max_steps", "word_max_order")
        return self


def model_configs(preset: str, vocab_size: int, recurrent_layers: int = 2) -> dict[str, Any]:
    """family -> model config: gpt/<preset> at ``vocab_size``, and each recurrent LM matched to its size."""
    from zoo import presets, registry
    from zoo.models.gpt import gpt_param_count
    from zoo.models.rnn_lm import RNNLMConfig

    gpt = presets.get("gpt", preset).model.replace(vocab_size=vocab_size)
    target = gpt_param_count(gpt)
    out: dict[str, Any] = {}
    for family in registry.RECURRENT_FAMILIES:
        width = registry.recurrent_lm_width(family, target, recurrent_layers, vocab_size)
        out[family] = RNNLMConfig(vocab_size=vocab_size, cell=family, features=width, num_layers=recurrent_layers,
                                  dropout_rate=gpt.dropout_rate, block_size=gpt.block_size)
    out["gpt"] = gpt
    return out


def param_count(family: str, config: Any) -> int:
    from zoo.models.gpt import gpt_param_count
    from zoo.models.rnn_lm import rnn_lm_param_count

    return gpt_param_count(config) if family == "gpt" else rnn_lm_param_count(config)


def scored_prefix(val: np.ndarray, block_size: int) -> np.ndarray:
    """The validation tokens that every rung scores: whole windows of ``block_size`` predictions."""
    windows = (len(val) - 1) // block_size
    if windows < 1:
        raise ValueError(f"the validation split has {len(val)} tokens, fewer than one block of {block_size} + 1")
    return val[: windows * block_size + 1]


def score_windows(apply_fn, params: Any, tokens: np.ndarray, block_size: int, batch_size: int = 32) -> float:
    """Mean negative log2-likelihood of ``tokens[1:]``, read in windows of ``block_size``.

    ``apply_fn(params, ids (B, T)) -> logits (B, T, V)``; window ``i`` predicts
    ``tokens[i*T + 1 : (i+1)*T + 1]`` from ``tokens[i*T : (i+1)*T]``.
    """
    import jax
    import jax.numpy as jnp

    windows = (len(tokens) - 1) // block_size
    x = tokens[: windows * block_size].reshape(windows, block_size)  # (W, T)
    y = tokens[1 : windows * block_size + 1].reshape(windows, block_size)  # (W, T)

    @jax.jit
    def nll(params, x, y):  # (B, T) x2 -> (B,) summed negative log-likelihood of each row
        logp = jax.nn.log_softmax(apply_fn(params, x).astype(jnp.float32), axis=-1)  # (B, T, V)
        return -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0].sum(axis=-1)

    total = 0.0
    for start in range(0, windows, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        n = len(xb)
        if n < batch_size:  # one shape for every call: pad the last batch, count only its real rows
            xb, yb = (np.pad(a, ((0, batch_size - n), (0, 0))) for a in (xb, yb))
        total += float(np.asarray(nll(params, xb, yb))[:n].sum())
    return total / (windows * block_size) / math.log(2)


_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the word-level view of a text."""
    return _WORD.findall(text.lower())


def _ngram_rung(cfg: LadderConfig, train: np.ndarray, scored: np.ndarray, vocab_size: int) -> dict[str, Any]:
    from zoo.models.ngram import KneserNeyLM

    start = time.perf_counter()
    lm = KneserNeyLM(cfg.ngram_order, vocab_size).fit(train)
    fit_s = time.perf_counter() - start
    bits = lm.bits_per_token(scored)
    return dict(rung="ngram", label=f"{LABELS['ngram']} (order {cfg.ngram_order})", params=lm.num_counts,
                params_kind="n-gram counts", bits=bits, train_tokens=int(len(train)),
                tokens_per_s=len(train) / fit_s, wall_s=time.perf_counter() - start,
                discounts=[lv.discount for lv in lm.levels])


def _neural_rung(cfg: LadderConfig, family: str, model_config: Any, tokenizer: Any, tokens: Any,
                 scored: np.ndarray) -> dict[str, Any]:
    from zoo import data, presets
    from zoo.models.gpt import gpt_flops_per_token
    from zoo.models.rnn_lm import rnn_lm_flops_per_token
    from zoo.registry import model_for
    from zoo.run import load_run, read_run_json, write_run_json
    from zoo.train.trainer import train

    preset = presets.get("gpt", cfg.preset)
    train_config = preset.train if cfg.max_steps is None else preset.train.replace(
        max_steps=cfg.max_steps, eval_interval=min(preset.train.eval_interval, cfg.max_steps),
        checkpoint_interval=min(preset.train.checkpoint_interval, cfg.max_steps))
    run_dir = cfg.out / family
    if (run_dir / "run.json").is_file():
        saved = read_run_json(run_dir)
        if saved.get("model") != dataclasses.asdict(model_config) or saved.get("data") != cfg.data:
            raise ValueError(f"{run_dir} holds a different run (model or data); choose another --out")
    else:
        tokenizer.save(run_dir / "tokenizer")
        write_run_json(run_dir, family=family, preset=cfg.preset, model=model_config, train=train_config,
                       data=cfg.data, text_column=cfg.text_column, tokens=tokens.info)
    model = model_for(family, model_config)
    flops = gpt_flops_per_token(model_config) if family == "gpt" else rnn_lm_flops_per_token(model_config)
    result = train(model, model_config, train_config, tokens.train, tokens.val, run_dir, flops_per_token=flops,
                   get_batch=data.get_batch, progress=cfg.progress, resume=True,
                   metadata={"family": family, "preset": cfg.preset, "ladder": True})
    run = load_run(run_dir)
    bits = score_windows(lambda p, x: run.model.apply({"params": p}, x), run.params, scored, model_config.block_size)
    width = getattr(model_config, "features", None)
    label = LABELS[family] + (f" ({model_config.num_layers} x {width})" if family != "gpt" else
                              f" ({model_config.num_layers} x {model_config.num_heads} x {width})")
    return dict(rung=family, label=label, params=param_count(family, model_config), params_kind="parameters",
                bits=bits, train_tokens=int(result["step"]) * train_config.batch_size * model_config.block_size,
                tokens_per_s=result.get("tokens_per_s"), wall_s=result.get("elapsed_s"),
                steps=int(result["step"]), steps_run=result.get("steps_run"), trainer_val_loss=result.get("val_loss"))


def run(cfg: LadderConfig, command: str | None = None) -> dict[str, Any]:
    """Run every rung of ``cfg``; return the results. ``command``: the command line to record with them."""
    from zoo import data
    from zoo.models.ngram import unseen_rates

    cfg = cfg.resolved()
    other_load = results.OtherLoad()
    corpus = data.load_corpus(cfg.data, text_column=cfg.text_column)
    tokenizer = data.make_tokenizer(cfg.tokenizer, corpus.train)
    tokens = data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(cfg.cache_dir))
    configs = model_configs(cfg.preset, tokenizer.vocab_size, cfg.recurrent_layers)
    block = configs["gpt"].block_size
    scored = scored_prefix(np.asarray(tokens.val), block)
    unit = "bits per character" if cfg.tokenizer == "char" else "bits per byte"
    results.say(f"ladder on {cfg.data}: {len(tokens.train):,} train and {len(tokens.val):,} val tokens "
                f"({cfg.tokenizer}, vocabulary {tokenizer.vocab_size}); scoring {len(scored) - 1:,} validation "
                f"tokens in {unit}")
    rows = []
    for rung in cfg.models:
        results.say(f"-- {rung}")
        if rung == "ngram":
            row = _ngram_rung(cfg, np.asarray(tokens.train), scored, tokenizer.vocab_size)
        else:
            row = _neural_rung(cfg, rung, configs[rung], tokenizer, tokens, scored)
        results.say(f"   {row['label']}: {row['bits']:.3f} {unit}, {row['params']:,} {row['params_kind']}")
        rows.append(row)
    train_words, val_words = words("\n".join(corpus.train)), words("\n".join(corpus.val))
    stats = unseen_rates(train_words, val_words, cfg.word_max_order)
    env = results.environment()
    env["other_processes_cpu_share"] = other_load.fraction()
    return {
        "command": command,
        "config": results.config_json(cfg),
        "date": results.utc_now(),
        "environment": env,
        "unit": unit,
        "corpus": {"train_tokens": int(len(tokens.train)), "val_tokens": int(len(tokens.val)),
                   "scored_tokens": int(len(scored) - 1), "vocab_size": tokenizer.vocab_size, "block_size": block},
        "rows": rows,
        "words": {"train_words": len(train_words), "val_words": len(val_words), "vocab_size": stats.vocab_size,
                  "oov_rate": stats.oov_rate, "unseen": {str(n): r for n, r in stats.unseen.items()}},
    }


def render(result: dict[str, Any], images: str | None = "") -> str:
    """The ladder's table and the word-level statistics, from the results alone."""
    env, c, unit = result["environment"], result["corpus"], result["unit"]
    lines = results.header(
        f"**The ladder: validation {unit}** (lower is better) on `{result['config']['data']}`", env,
        f"- corpus: {c['train_tokens']:,} train and {c['val_tokens']:,} validation tokens, vocabulary "
        f"{c['vocab_size']}; every rung scores the same {c['scored_tokens']:,} validation tokens "
        f"(windows of {c['block_size']})",
        f"- neural rungs: the recipe of gpt/{result['config']['preset']}, same batch, block and steps",
        date=result["date"], command=result.get("command"), versions=False)
    lines += [""] + results.image("the ladder", images, "ladder.png")
    rows = [[r["label"], f"{r['bits']:.3f}", f"{r['params']:,}" + (" counts" if r["rung"] == "ngram" else ""),
             f"{r['train_tokens']:,}", results.format_rate(r.get("tokens_per_s")),
             "—" if r.get("wall_s") is None else f"{r['wall_s']:.1f}"] for r in result["rows"]]
    lines += [results.markdown_table(["model", unit, "parameters", "training tokens", "tokens/s", "wall s"], rows),
              ""]
    other = env.get("other_processes_cpu_share")
    if other is not None and other > results.MAX_OTHER_LOAD:
        lines += [f"Other processes used {other:.0%} of the CPU time during the run: tokens/s and wall times are "
                  "unreliable (the bits per character are not affected).", ""]
    w = result["words"]
    orders = sorted(w["unseen"], key=int)
    lines += [
        f"Word level, the same text ({w['train_words']:,} training and {w['val_words']:,} validation words and "
        f"punctuation marks, {w['vocab_size']:,} distinct in training): validation words never seen in training "
        f"(OOV) {w['oov_rate']:.1%}; validation n-grams never seen in training:",
        "",
        results.markdown_table(["n", *orders], [["unseen", *[f"{w['unseen'][n]:.1%}" for n in orders]]]),
        "",
    ]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any]) -> dict[str, Any]:
    """``ladder.png``: the bits of every rung, and the share of unseen word n-grams against n."""
    from zoo.plots import subplots

    rows = result["rows"]
    fig, (ax, ax2) = subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    ax.barh([r["label"] for r in rows][::-1], [r["bits"] for r in rows][::-1], color="tab:blue")
    for i, r in enumerate(rows[::-1]):
        ax.text(r["bits"], i, f" {r['bits']:.3f}", va="center", fontsize=8)
    ax.set_xlabel(f"validation {result['unit']} (lower is better)")
    ax.set_title("from counting to GPT")
    w = result["words"]
    orders = sorted(w["unseen"], key=int)
    ax2.plot([int(n) for n in orders], [100 * w["unseen"][n] for n in orders], "o-")
    ax2.axhline(100 * w["oov_rate"], color="gray", ls="--", label=f"OOV words {w['oov_rate']:.1%}")
    ax2.set_xlabel("n (words)")
    ax2.set_ylabel("% of validation n-grams unseen")
    ax2.set_ylim(0, 100)
    ax2.set_title("word n-grams: sparsity")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return {"": fig}


EXPERIMENT = Experiment(LadderConfig, run, render, stem="ladder", plots=plots, description=__doc__,
                        print_images=True)


def main(argv: Sequence[str] | None = None, prog: str = "zoo ladder") -> int:
    """``zoo ladder [flags]``: run the ladder, print the table, write OUT/ladder.{json,md,png}."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    level = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--level"), None)
    level = next((a.split("=", 1)[1] for a in argv if a.startswith("--level=")), level)
    if level == "word":  # the word-level ladder has flags of its own
        from zoo.experiments.word_ladder import main as word_main

        rest = [a for i, a in enumerate(argv) if a != "--level" and not a.startswith("--level=")
                and not (i > 0 and argv[i - 1] == "--level")]
        return word_main(rest, f"{prog} --level word")
    return harness_main(EXPERIMENT, argv, prog)
