"""Models: they only assemble layers from :mod:`zoo.layers`."""

from zoo.models.generate import generate, init_cache, sample_logits
from zoo.models.gpt import GPT, GPTConfig, gpt_flops_per_token, gpt_param_count
from zoo.models.rnn_lm import RNNLM, RNNLMConfig, rnn_lm_flops_per_token, rnn_lm_param_count

__all__ = [
    "GPT", "GPTConfig", "gpt_param_count", "gpt_flops_per_token",
    "RNNLM", "RNNLMConfig", "rnn_lm_param_count", "rnn_lm_flops_per_token",
    "generate", "init_cache", "sample_logits",
]
