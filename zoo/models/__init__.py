"""Models: they only assemble layers from :mod:`zoo.layers`."""

from zoo.models.bert import (
    BERT,
    BERTConfig,
    BERTForMaskedLM,
    BERTForPreTraining,
    BERTForSequenceClassification,
    BERTForTokenClassification,
    bert_flops_per_token,
    bert_param_count,
    transfer_encoder,
)
from zoo.models.beam import Decoded, beam_search, greedy_decode
from zoo.models.generate import generate, init_cache, sample_logits
from zoo.models.gpt import GPT, GPTConfig, gpt_flops_per_token, gpt_param_count
from zoo.models.ngram import KneserNeyLM, unseen_rates
from zoo.models.nplm import NPLM, NPLMConfig, nplm_flops_per_token, nplm_param_count
from zoo.models.rnn_lm import RNNLM, RNNLMConfig, rnn_lm_flops_per_token, rnn_lm_param_count
from zoo.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

__all__ = [
    "GPT", "GPTConfig", "gpt_param_count", "gpt_flops_per_token",
    "KneserNeyLM", "unseen_rates",
    "NPLM", "NPLMConfig", "nplm_param_count", "nplm_flops_per_token",
    "RNNLM", "RNNLMConfig", "rnn_lm_param_count", "rnn_lm_flops_per_token",
    "generate", "init_cache", "sample_logits",
    "BERT", "BERTConfig", "BERTForMaskedLM", "BERTForPreTraining", "BERTForSequenceClassification",
    "BERTForTokenClassification", "bert_param_count", "bert_flops_per_token", "transfer_encoder",
    "Seq2SeqConfig", "Seq2SeqTransformer", "greedy_decode", "beam_search", "Decoded",
]
