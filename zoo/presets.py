"""Named presets: a model config and a training config that belong together.

    preset = zoo.presets.get("gpt", "shakespeare-char-cpu")
    preset.model, preset.train, preset.tokenizer

The vocabulary size in a preset is a placeholder: a run always takes it from
its tokenizer (:func:`Preset.with_vocab`). Recurrent families (``lstm``,
``gru``, ``rnn``, ``mingru``) share the GPT presets' names and training
recipes; their width is chosen so the parameter count matches the GPT preset
of the same name (:func:`matched_width`), which is what lets the language-model
ladder compare them fairly.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Union

from zoo.models.gpt import GPTConfig, gpt_param_count
from zoo.models.rnn_lm import RNNLMConfig, rnn_lm_param_count
from zoo.train.config import TrainConfig

__all__ = ["Preset", "FAMILIES", "get", "names", "matched_width"]

Family = Literal["gpt", "lstm", "gru", "rnn", "mingru"]
FAMILIES = ("gpt", "lstm", "gru", "rnn", "mingru")
ModelConfig = Union[GPTConfig, RNNLMConfig]


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    family: str
    model: ModelConfig
    train: TrainConfig
    tokenizer: Literal["byte", "char", "bpe"] = "byte"
    tokenizer_vocab_size: int | None = None  # BPE only
    description: str = ""

    def with_vocab(self, vocab_size: int) -> Preset:
        return dataclasses.replace(self, model=self.model.replace(vocab_size=vocab_size))


# nanoGPT's config/train_shakespeare_char.py and its README's CPU variant:
# "--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64
#  --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
#  --lr_decay_iters=2000 --dropout=0.0"
_SHAKESPEARE_CPU = TrainConfig(
    batch_size=12, max_steps=2000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
    beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_batches=20, log_interval=10,
    checkpoint_interval=1000,
)

_GPT = {
    "nano": Preset(
        "nano", "gpt",
        GPTConfig(vocab_size=257, block_size=32, num_layers=2, num_heads=2, features=32, use_bias=False),
        TrainConfig(batch_size=8, max_steps=30, warmup_steps=3, learning_rate=3e-3, eval_interval=15,
                    eval_batches=2, log_interval=5, checkpoint_interval=15),
        description="seconds on a CPU: for tests and smoke runs",
    ),
    "quickstart": Preset(
        "quickstart", "gpt",
        GPTConfig(vocab_size=257, block_size=128, num_layers=4, num_heads=4, features=128, use_bias=False),
        TrainConfig(batch_size=16, max_steps=600, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=50,
                    beta2=0.99, eval_interval=200, eval_batches=10, log_interval=20, checkpoint_interval=600),
        description="README quick start: byte-level mini GPT on the built-in corpus, about two minutes on 2 cores",
    ),
    "shakespeare-char-cpu": Preset(
        "shakespeare-char-cpu", "gpt",
        # scan_layers=False: at 4 small layers the unrolled stack trains ~10% faster on CPU
        GPTConfig(vocab_size=65, block_size=64, num_layers=4, num_heads=4, features=128, use_bias=False,
                  dropout_rate=0.0, scan_layers=False),
        _SHAKESPEARE_CPU, tokenizer="char",
        description="nanoGPT's CPU run of shakespeare_char (4 x 4 x 128, block 64, batch 12, 2000 steps)",
    ),
    "shakespeare-char": Preset(
        "shakespeare-char", "gpt",
        GPTConfig(vocab_size=65, block_size=256, num_layers=6, num_heads=6, features=384, use_bias=False,
                  dropout_rate=0.2),
        TrainConfig(batch_size=64, max_steps=5000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                    beta2=0.99, weight_decay=0.1, eval_interval=250, eval_batches=200, checkpoint_interval=1000),
        tokenizer="char",
        description="nanoGPT's GPU run of shakespeare_char (6 x 6 x 384, block 256, batch 64, 5000 steps)",
    ),
    "gpt2-small": Preset(
        "gpt2-small", "gpt",
        GPTConfig(),  # 12 x 12 x 768, block 1024, biases: GPT-2 small, 124M with its 50257-token vocabulary
        TrainConfig(batch_size=480, grad_accum_steps=40, max_steps=600000, learning_rate=6e-4,
                    min_learning_rate=6e-5, warmup_steps=2000, beta2=0.95, weight_decay=0.1,
                    eval_interval=2000, eval_batches=200, checkpoint_interval=2000),
        tokenizer="bpe", tokenizer_vocab_size=50257,
        description="GPT-2 small (124M) with nanoGPT's OpenWebText recipe (batch 480 via accumulation)",
    ),
}


def matched_width(family: str, target_params: int, num_layers: int, vocab_size: int, multiple: int = 8) -> int:
    """The width (a multiple of ``multiple``) whose recurrent LM has the parameter count closest to the target."""
    def count(d):
        return rnn_lm_param_count(RNNLMConfig(vocab_size=vocab_size, cell=family, features=d, num_layers=num_layers))

    return min(range(multiple, 4096 + 1, multiple), key=lambda d: abs(count(d) - target_params))


def _recurrent(family: str, gpt: Preset, num_layers: int = 2) -> Preset:
    g = gpt.model
    target = gpt_param_count(g, non_embedding=False)
    width = matched_width(family, target, num_layers, g.vocab_size)
    model = RNNLMConfig(vocab_size=g.vocab_size, cell=family, features=width, num_layers=num_layers,
                        dropout_rate=g.dropout_rate, block_size=g.block_size)
    note = f"{family.upper()} LM of about the parameter count of gpt/{gpt.name} ({num_layers} layers x {width})"
    return dataclasses.replace(gpt, family=family, model=model, description=note)


_PRESETS: dict[str, dict[str, Preset]] = {"gpt": _GPT}
for _family in ("lstm", "gru", "rnn", "mingru"):
    _PRESETS[_family] = {name: _recurrent(_family, p) for name, p in _GPT.items() if name != "gpt2-small"}


def names(family: str) -> list[str]:
    """The preset names of a family."""
    _check_family(family)
    return list(_PRESETS[family])


def _check_family(family: str) -> None:
    if family not in _PRESETS:
        raise ValueError(f"unknown model family {family!r}; choose one of: {', '.join(FAMILIES)}")


def get(family: str, name: str) -> Preset:
    """The preset ``name`` of ``family``; an unknown name lists the valid ones."""
    _check_family(family)
    if name not in _PRESETS[family]:
        raise ValueError(f"unknown preset {name!r} for {family}; choose one of: {', '.join(_PRESETS[family])}")
    return _PRESETS[family][name]
