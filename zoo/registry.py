"""One registry of model families: what each family name stands for, everywhere in zoo.

    zoo.registry.FAMILIES["lstm"].config           # RNNLMConfig
    zoo.registry.model_for("gpt", config)          # zoo.GPT(config)
    zoo.registry.param_count("bert", config)       # counted from the config (tested against init)

A family is one name used alike by the CLI (``zoo pretrain lstm``), run.json,
presets, the experiments and the benchmarks' tables. For each it holds the
config class, the linen module, the training objective, the parameter and
FLOP counts, and for the recurrent language models the cell
(:data:`zoo.layers.CELLS` names the cells: ``rnn``, ``lstm``, ``gru``,
``mingru``, ``minlstm``).

:func:`matched_width` is the one way zoo sizes one model to another's
parameter count: the presets match each recurrent LM to the GPT preset of
the same name, the ladder and the tasks do the same at their sizes, and the
benchmark suite matches layers to an attention layer.

To add a family: its config and module in ``zoo/models/``, its objective in
``zoo/train/objectives.py`` if it trains on a new kind of batch, an entry
here, presets in ``zoo/presets.py`` (docs/architecture.md lists the rest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from zoo.layers import CELLS
from zoo.models.bert import BERTConfig, BERTForMaskedLM, BERTForSequenceClassification, bert_flops_per_token
from zoo.models.bert import bert_param_count
from zoo.models.fasttext import FastText, FastTextConfig
from zoo.models.gpt import GPT, GPTConfig, gpt_flops_per_token, gpt_param_count
from zoo.models.nplm import NPLM, NPLMConfig, nplm_flops_per_token, nplm_param_count
from zoo.models.rnn_lm import RNNLM, RNNLMConfig, rnn_lm_flops_per_token, rnn_lm_param_count
from zoo.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from zoo.models.word2vec import Word2Vec, Word2VecConfig
from zoo.train.objectives import MASKED_LM, NEXT_TOKEN, SEQUENCE_CLASSIFICATION, TRANSLATION, Objective

__all__ = [
    "Family", "FAMILIES", "LM_FAMILIES", "RECURRENT_FAMILIES", "family", "model_for", "param_count",
    "flops_per_token", "matched_width", "recurrent_lm_width",
]


@dataclasses.dataclass(frozen=True)
class Family:
    """What a family name stands for.

    Attributes:
      name: the one spelling (CLI, run.json, tables, plots).
      config: the frozen config dataclass (``vocab_size`` comes from the tokenizer).
      module: the linen module, built as ``module(config)``.
      objective: what ``zoo.train.train`` optimises (:mod:`zoo.train.objectives`); None for the word
        vectors, which train with their own loop (``zoo.train.embeddings``).
      count: ``config -> parameters``, with the embedding table.
      flops: ``config -> training FLOPs per token`` (None when zoo has no formula).
      cell: the recurrent cell (a key of :data:`zoo.layers.CELLS`) of a recurrent LM, else None.
      summary: one line for listings.

    Examples:
      >>> gpt = zoo.registry.family("gpt")
      >>> gpt.name, gpt.config.__name__, gpt.module.__name__, gpt.objective.name, gpt.cell
      ('gpt', 'GPTConfig', 'GPT', 'next_token', None)
      >>> zoo.registry.family("gru").cell, sorted(zoo.registry.FAMILIES)[:4]
      ('gru', ['bert', 'bert-classifier', 'fasttext', 'gpt'])
    """

    name: str
    config: type
    module: type
    objective: Objective | None
    count: Callable[[Any], int] | None
    flops: Callable[[Any], float] | None
    cell: str | None = None
    summary: str = ""


def _recurrent(cell: str, label: str) -> Family:
    return Family(cell, RNNLMConfig, RNNLM, NEXT_TOKEN, rnn_lm_param_count, rnn_lm_flops_per_token, cell,
                  f"{label} language model (embedding, stacked {label} layers, tied head)")


FAMILIES: dict[str, Family] = {
    "gpt": Family("gpt", GPTConfig, GPT, NEXT_TOKEN, lambda c: gpt_param_count(c, non_embedding=False),
                  gpt_flops_per_token, summary="decoder-only Transformer language model"),
    "rnn": _recurrent("rnn", "Elman RNN"),
    "lstm": _recurrent("lstm", "LSTM"),
    "gru": _recurrent("gru", "GRU"),
    "mingru": _recurrent("mingru", "minGRU"),
    "nplm": Family("nplm", NPLMConfig, NPLM, NEXT_TOKEN, nplm_param_count, nplm_flops_per_token,
                   summary="Bengio et al.'s neural probabilistic language model (n-1 word vectors, tanh layer)"),
    "bert": Family("bert", BERTConfig, BERTForMaskedLM, MASKED_LM, bert_param_count, bert_flops_per_token,
                   summary="BERT encoder pretrained as a masked language model"),
    "bert-classifier": Family("bert-classifier", BERTConfig, BERTForSequenceClassification, SEQUENCE_CLASSIFICATION,
                              lambda c: bert_param_count(c, heads="sequence_classification"), None,
                              summary="BERT fine-tuned for sequence classification (zoo finetune)"),
    "seq2seq": Family("seq2seq", Seq2SeqConfig, Seq2SeqTransformer, TRANSLATION, None, None,
                      summary="encoder-decoder Transformer trained on translation"),
    "word2vec": Family("word2vec", Word2VecConfig, Word2Vec, None, None, None,
                       summary="word2vec word vectors (skip-gram or CBOW, negative sampling)"),
    "fasttext": Family("fasttext", FastTextConfig, FastText, None, None, None,
                       summary="fastText word vectors (words as bags of character n-grams)"),
}
LM_FAMILIES = tuple(name for name, f in FAMILIES.items() if f.objective is NEXT_TOKEN)  # gpt and the recurrent LMs
RECURRENT_FAMILIES = tuple(name for name, f in FAMILIES.items() if f.cell is not None)
assert all(f.cell in CELLS for f in FAMILIES.values() if f.cell), "every recurrent family names a cell of CELLS"


def family(name: str) -> Family:
    """The family ``name``; an unknown name is a ``ValueError`` listing the known ones.

    Examples:
      >>> zoo.registry.family("lstm").summary != ""
      True
      >>> try:
      ...     zoo.registry.family("transformer-xl")
      ... except ValueError as error:
      ...     print(str(error).split(";")[0])
      unknown model family 'transformer-xl'
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; expected one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def model_for(name: str, config: Any):
    """The linen module of family ``name`` for ``config`` (e.g. ``zoo.GPT(config)``).

    Examples:
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> zoo.registry.model_for("gpt", config) == zoo.GPT(config)
      True
    """
    return family(name).module(config)


def param_count(name: str, config: Any) -> int:
    """Parameters of family ``name`` at ``config``, embedding table included.

    Examples:
      >>> zoo.registry.param_count("gpt", zoo.GPTConfig())   # embedding tables included
      124439808
      >>> zoo.registry.param_count("lstm", zoo.RNNLMConfig(vocab_size=65, features=64))
      70208
    """
    count = family(name).count
    if count is None:
        raise ValueError(f"zoo has no parameter count for family {name!r}")
    return count(config)


def flops_per_token(name: str, config: Any) -> float | None:
    """Training FLOPs per token of family ``name`` at ``config`` (None when zoo has no formula).

    Examples:
      >>> zoo.registry.flops_per_token("lstm", zoo.RNNLMConfig(vocab_size=65, features=64))
      421248
    """
    flops = family(name).flops
    return None if flops is None else flops(config)


def matched_width(count: Callable[[int], int], target: int, *, multiple: int = 8, max_width: int = 16384) -> int:
    """The width (a multiple of ``multiple``) whose ``count(width)`` is closest to ``target`` (the smaller on a tie).

    ``count`` is the parameter count of the model being sized as a function
    of its width, e.g. ``lambda d: param_count("lstm", config.replace(features=d))``.

    Examples:
      >>> target = zoo.registry.param_count("gpt", zoo.GPTConfig(vocab_size=65, block_size=64, num_layers=2,
      ...                                                        num_heads=2, features=64))
      >>> config = zoo.RNNLMConfig(vocab_size=65, cell="lstm", num_layers=2)
      >>> count = lambda d: zoo.registry.param_count("lstm", config.replace(features=d))
      >>> width = zoo.registry.matched_width(count, target)
      >>> width, width % 8
      (80, 0)
    """
    if target < 1 or multiple < 1 or max_width < multiple:
        raise ValueError(f"matched_width: target={target}, multiple={multiple}, max_width={max_width}; expected "
                         "target >= 1 and 1 <= multiple <= max_width")
    return min(range(multiple, max_width + 1, multiple), key=lambda w: (abs(count(w) - target), w))


def recurrent_lm_width(name: str, target: int, num_layers: int, vocab_size: int, multiple: int = 8) -> int:
    """The width of recurrent LM ``name`` whose parameter count (table included) is closest to ``target``.

    Examples:
      >>> zoo.registry.recurrent_lm_width("lstm", target=100_000, num_layers=2, vocab_size=65)
      80
      >>> zoo.registry.recurrent_lm_width("mingru", target=100_000, num_layers=2, vocab_size=65)
      152
    """
    cell = family(name).cell
    if cell is None:
        raise ValueError(f"recurrent_lm_width: {name!r} is not a recurrent language model; expected one of "
                         f"{', '.join(RECURRENT_FAMILIES)}")
    base = RNNLMConfig(vocab_size=vocab_size, cell=cell, num_layers=num_layers)
    return matched_width(lambda d: rnn_lm_param_count(base.replace(features=d)), target, multiple=multiple,
                         max_width=4096)
