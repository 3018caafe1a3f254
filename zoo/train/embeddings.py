"""Training word2vec and fastText: epochs of sub-sampled words, linear learning-rate decay, :func:`run_steps`.

    model = zoo.models.word2vec.Word2Vec(config)
    result = train_embeddings(model, sentences, counts, EmbeddingTrainConfig(), run_dir="runs/w2v")

The host plans each epoch (:func:`zoo.models.word2vec.plan_epoch`: sub-sampling
and the dynamic windows, a pure function of (seed, epoch)), the device runs
the jitted steps over it; a resumed run replans the same epoch and goes on at
the same position, so it trains exactly as one that was never stopped.
Throughput is counted as gensim counts it: raw corpus words (every word of
the text, those under min_count included) per second of wall time.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import config_error
from zoo.models.word2vec import keep_probabilities, learning_rate, noise_table, plan_epoch, sentence_stream
from zoo.train.steps import run_steps

__all__ = ["EmbeddingTrainConfig", "train_embeddings"]


@dataclasses.dataclass(frozen=True)
class EmbeddingTrainConfig:
    """SGD for word2vec and fastText: gensim's defaults (alpha 0.025 -> 0.0001 over 5 epochs, seed 1).

    ``batch_size`` center words are updated together (see
    :mod:`zoo.models.word2vec`); ``steps_per_call`` batches make one jitted
    call, which is one step of the progress bar, the metrics and the checkpoints.
    """

    alpha: float = 0.025
    min_alpha: float = 0.0001
    epochs: int = 5
    batch_size: int = 256
    steps_per_call: int = 64
    seed: int = 1
    log_interval: int = 50  # calls between metrics lines
    checkpoint_interval: int = 0  # calls between checkpoints (0: only at the end)
    keep_checkpoints: int = 2

    def __post_init__(self):
        name = "EmbeddingTrainConfig"
        for field in ("alpha", "min_alpha"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise config_error(name, field, value, "a finite number >= 0")
        for field, low in (("epochs", 1), ("batch_size", 1), ("steps_per_call", 1), ("seed", 0),
                           ("log_interval", 1), ("checkpoint_interval", 0), ("keep_checkpoints", 1)):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise config_error(name, field, value, f"an int >= {low}")

    def replace(self, **changes: Any) -> EmbeddingTrainConfig:
        return dataclasses.replace(self, **changes)


def train_embeddings(
    model: Any,
    sentences: Sequence[np.ndarray],
    counts: np.ndarray,
    cfg: EmbeddingTrainConfig,
    *,
    raw_words: int | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`~zoo.models.word2vec.Word2Vec` or :class:`~zoo.models.fasttext.FastText`).

    Args:
      sentences: each sentence's word ids (``<unk>`` = 0 is left out, as gensim drops rare words).
      counts: (V,) each id's count in the training text (0 for the specials): sub-sampling and noise.
      raw_words: words of the text per epoch, rare ones included (default: the ids in ``sentences``),
        for the words-per-second figure.
      run_dir: checkpoints and metrics.jsonl (see :func:`zoo.train.steps.run_steps`); None: none.

    Returns:
      ``tables`` (host arrays: the trainable ones), ``step``, ``steps``, ``loss`` (mean over the last
      logged interval), ``words_per_s`` (raw words of the steps run per second of the loop's wall time),
      ``train_seconds``, ``words`` (raw words per epoch) and ``resumed_from``.
    """
    config = model.config
    counts = np.asarray(counts, np.int64)
    if counts.shape != (config.vocab_size,):
        raise ValueError(f"train_embeddings: counts has shape {counts.shape}, expected ({config.vocab_size},)")
    ids, sentence = sentence_stream(sentences)
    if len(ids) < 2:
        raise ValueError(f"the corpus has {len(ids)} word(s) in the vocabulary; word2vec needs at least two "
                         "(a word and a context)")
    raw_words = int(raw_words if raw_words is not None else sum(len(s) for s in sentences))
    keep = keep_probabilities(counts, config.sample)
    table = jnp.asarray(noise_table(counts, config.ns_exponent), jnp.int32)
    chunk = cfg.batch_size * cfg.steps_per_call

    def plan(epoch: int):
        return plan_epoch(ids, sentence, keep, window=config.window, chunk=chunk, seed=cfg.seed, epoch=epoch)

    # Each epoch's steps depend on how many words sub-sampling keeps: plan them all (cheap) to know the total.
    epoch_words = [plan(e).words for e in range(cfg.epochs)]
    epoch_steps = [max(1, -(-n // chunk)) for n in epoch_words]
    first_step = np.concatenate([[0], np.cumsum(epoch_steps)])  # (epochs + 1,)
    total = int(first_step[-1])
    static = {k: jnp.asarray(v) for k, v in model.static_tables().items()}
    per_word = model.rows_per_word()
    capacity = None
    if per_word is not None:  # fastText: the most n-gram rows of any batch's positions, over every epoch
        capacity = max(_most_rows(plan(e).ids, per_word, cfg.batch_size, config.window) for e in range(cfg.epochs))
    train_step = model.train_step(cfg.batch_size, cfg.steps_per_call, capacity)
    key = jax.random.key(cfg.seed)
    current: dict[str, Any] = {"epoch": None, "plan": None}

    def step(state, i):
        epoch = int(np.searchsorted(first_step, i, side="right") - 1)
        if current["epoch"] != epoch:
            p = plan(epoch)
            current.update(epoch=epoch, plan={"ids": jnp.asarray(p.ids), "sentence": jnp.asarray(p.sentence),
                                              "span": jnp.asarray(p.span)})
        t = i - int(first_step[epoch])
        words = max(epoch_words[epoch], 1)
        alpha = learning_rate((epoch + t * chunk / words) / cfg.epochs, cfg.alpha, cfg.min_alpha)
        alpha_step = (cfg.alpha - cfg.min_alpha) * cfg.batch_size / (words * cfg.epochs)
        tables, stats = train_step(state["tables"], static, current["plan"], table, jnp.int32(t * chunk),
                                   jax.random.fold_in(key, i), jnp.float32(alpha), jnp.float32(alpha_step))
        return {"tables": tables, "step": state["step"] + 1}, {**stats, "alpha": alpha, "epoch": epoch,
                                                                   "raw_words": raw_words * min(chunk, words) / words}

    def record(i, stats, seconds):
        predictions = sum(int(s["predictions"]) for s in stats)
        return {"epoch": stats[-1]["epoch"], "loss": sum(float(s["loss"]) for s in stats) / max(predictions, 1),
                "lr": stats[-1]["alpha"], "words_per_s": sum(s["raw_words"] for s in stats) / seconds}

    state = {"tables": model.init(jax.random.key(cfg.seed)), "step": jnp.int32(0)}
    model_config = json_config(config)
    start_time = time.perf_counter()
    state, start, last = run_steps(
        state, step, total, run_dir=run_dir, record=record, log_interval=cfg.log_interval,
        checkpoint_interval=cfg.checkpoint_interval, keep_checkpoints=cfg.keep_checkpoints,
        metadata={**(metadata or {}), "train_config": dataclasses.asdict(cfg)}, model_config=model_config,
        progress=progress, unit="call")
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start_time
    done_words = raw_words * cfg.epochs * (total - start) / total  # raw words of the steps run
    return {"tables": jax.device_get(state["tables"]), "step": total, "steps": total - start, "resumed_from": start,
            "loss": last.get("loss"), "words_per_s": done_words / seconds if total > start else None,
            "train_seconds": seconds, "words": raw_words}


def _most_rows(ids: np.ndarray, per_word: np.ndarray, batch_size: int, window: int) -> int:
    """The most rows (``per_word[id]``) in the ``batch_size + 2 * window`` positions of any batch of a plan,
    rounded up to a multiple of 256 (one compiled step serves every epoch)."""
    n = np.where(ids >= 0, per_word[np.maximum(ids, 0)], 0).astype(np.int64)
    end = np.concatenate([[0], np.cumsum(n)])
    starts = np.arange(0, len(ids) - 2 * window - batch_size + 1, batch_size)
    most = int((end[starts + batch_size + 2 * window] - end[starts]).max(initial=1))
    return -(-most // 256) * 256


def json_config(config: Any) -> dict[str, Any]:
    """A config dataclass as the JSON dict checkpoints record (tuples as lists)."""
    import json  # noqa: PLC0415

    return json.loads(json.dumps(dataclasses.asdict(config)))
