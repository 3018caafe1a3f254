"""Named presets: a model config and a training config that belong together.

    preset = zoo.presets.get("gpt", "shakespeare-char-cpu")
    preset.model, preset.train, preset.tokenizer

The vocabulary size in a preset is a placeholder: a run always takes it from
its tokenizer (:func:`Preset.with_vocab`). Recurrent families (``lstm``,
``gru``, ``rnn``, ``mingru``) share the GPT presets' names and training
recipes; their width is chosen so the parameter count matches the GPT preset
of the same name (:func:`matched_width`), which is what lets the language-model
ladder compare them fairly.

``bert`` presets pretrain a masked LM with a WordPiece tokenizer;
``seq2seq`` presets train the encoder-decoder Transformer on a translation
task (the built-in toy tasks by default).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Union

from zoo.models.bert import BERTConfig
from zoo.models.gpt import GPTConfig, gpt_param_count
from zoo.models.nplm import NPLMConfig
from zoo.models.rnn_lm import RNNLMConfig
from zoo.models.fasttext import FastTextConfig
from zoo.models.seq2seq import Seq2SeqConfig
from zoo.models.word2vec import Word2VecConfig
from zoo.registry import LM_FAMILIES, RECURRENT_FAMILIES, recurrent_lm_width
from zoo.train.config import TrainConfig
from zoo.train.embeddings import EmbeddingTrainConfig

__all__ = ["Preset", "FAMILIES", "LM_FAMILIES", "get", "names"]
ModelConfig = Union[GPTConfig, RNNLMConfig, NPLMConfig, BERTConfig, Seq2SeqConfig]


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    family: str
    model: ModelConfig
    train: TrainConfig
    tokenizer: Literal["byte", "char", "bpe", "wordpiece", "word"] = "byte"
    tokenizer_vocab_size: int | None = None  # BPE and WordPiece only
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


def _recurrent(family: str, gpt: Preset, num_layers: int = 2) -> Preset:
    g = gpt.model
    target = gpt_param_count(g, non_embedding=False)
    width = recurrent_lm_width(family, target, num_layers, g.vocab_size)
    model = RNNLMConfig(vocab_size=g.vocab_size, cell=family, features=width, num_layers=num_layers,
                        dropout_rate=g.dropout_rate, block_size=g.block_size)
    note = f"{family.upper()} LM of about the parameter count of gpt/{gpt.name} ({num_layers} layers x {width})"
    return dataclasses.replace(gpt, family=family, model=model, description=note)


# NPLM (Bengio et al. 2003) at word level: the words seen at least twice in training, the rest <unk>.
# The paper trained Brown (800k words) with n = 5, m = 30, h = 100 by plain SGD for about 20 epochs;
# zoo trains it with the GPT presets' AdamW recipe, on windows of block_size words.
_NPLM = {
    "tiny": Preset(
        "tiny", "nplm", NPLMConfig(vocab_size=512, order=3, features=16, hidden=16, block_size=16),
        TrainConfig(batch_size=8, max_steps=30, warmup_steps=3, learning_rate=3e-3, eval_interval=15,
                    eval_batches=2, log_interval=5, checkpoint_interval=15),
        tokenizer="word", description="seconds on a CPU: for tests and smoke runs",
    ),
    "shakespeare-word": Preset(
        "shakespeare-word", "nplm",
        NPLMConfig(vocab_size=8192, order=5, features=64, hidden=128, dropout_rate=0.2, block_size=64),
        TrainConfig(batch_size=32, max_steps=2000, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=100,
                    beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_batches=20,
                    log_interval=10, checkpoint_interval=1000),
        tokenizer="word",
        description="Tiny Shakespeare at word level (n = 5, 64-wide word vectors, 128 tanh units), a few CPU minutes",
    ),
}

# BERT (Devlin et al. 2018; the small sizes are Turc et al. 2019's "well-read students"). BERT's
# recipe: Adam, peak lr 1e-4, 10k warmup steps, linear decay, weight decay 0.01, beta2 0.999, batch
# 256 x 128 tokens, 1M steps. The small models take a larger rate and far fewer steps on one CPU.
_BERT_TRAIN = TrainConfig(batch_size=32, max_steps=2000, learning_rate=5e-4, min_learning_rate=5e-5,
                          warmup_steps=100, beta2=0.999, weight_decay=0.01, eval_interval=250, eval_batches=10,
                          log_interval=10, checkpoint_interval=1000)
_BERT = {
    "tiny": Preset(
        "tiny", "bert",
        # init_std 0.1, not BERT's 0.02: at this width the small init leaves attention so weak that
        # masked LM sits on the unigram plateau for hundreds of steps (measured on a repeated sentence)
        BERTConfig(vocab_size=512, max_positions=64, block_size=32, num_layers=2, num_heads=4, features=64,
                   dropout_rate=0.0, attention_dropout_rate=0.0, init_std=0.1),
        TrainConfig(batch_size=16, max_steps=30, warmup_steps=3, learning_rate=1e-3, min_learning_rate=1e-4,
                    eval_interval=15, eval_batches=2, log_interval=5, checkpoint_interval=15, beta2=0.999,
                    weight_decay=0.01),
        tokenizer="wordpiece", tokenizer_vocab_size=512,
        description="seconds on a CPU: for tests and smoke runs",
    ),
    "bert-mini": Preset(
        # scan_layers=False: at 4 layers the unrolled stack trains ~3% faster on CPU (zoo bench bert)
        "bert-mini", "bert", BERTConfig(num_layers=4, num_heads=4, features=256, scan_layers=False), _BERT_TRAIN,
        tokenizer="wordpiece", tokenizer_vocab_size=8192,
        description="BERT-mini (4 layers x 256, 4 heads; 5.5M parameters with an 8192 vocabulary), sequences of 128",
    ),
    "bert-small": Preset(
        "bert-small", "bert", BERTConfig(num_layers=4, num_heads=8, features=512, scan_layers=False), _BERT_TRAIN,
        tokenizer="wordpiece", tokenizer_vocab_size=8192,
        description="BERT-small (4 layers x 512, 8 heads), sequences of 128",
    ),
    "bert-base": Preset(
        "bert-base", "bert", BERTConfig(),
        TrainConfig(batch_size=256, max_steps=1_000_000, learning_rate=1e-4, min_learning_rate=0.0,
                    warmup_steps=10_000, beta2=0.999, weight_decay=0.01, eval_interval=10_000, eval_batches=50,
                    checkpoint_interval=10_000),
        tokenizer="wordpiece", tokenizer_vocab_size=30522,
        description="BERT-base (12 layers x 768, 12 heads, 110M) with BERT's recipe",
    ),
}

# The encoder-decoder Transformer (Vaswani et al. 2017). Data defaults to a built-in toy task.
_SEQ2SEQ = {
    "tiny": Preset(
        "tiny", "seq2seq",
        Seq2SeqConfig(vocab_size=64, max_source_len=16, max_target_len=48, num_encoder_layers=1,
                      num_decoder_layers=1, num_heads=2, features=32, dropout_rate=0.0),
        TrainConfig(batch_size=16, max_steps=30, warmup_steps=3, learning_rate=3e-3, eval_interval=15,
                    eval_batches=2, log_interval=5, checkpoint_interval=15, beta2=0.98, weight_decay=0.0),
        tokenizer="char", description="seconds on a CPU: for tests and smoke runs",
    ),
    "toy": Preset(
        "toy", "seq2seq",
        # max_target_len 80: the longest number below a million in words is 65 characters
        Seq2SeqConfig(vocab_size=64, max_source_len=16, max_target_len=80, num_encoder_layers=2,
                      num_decoder_layers=2, num_heads=4, features=128, dropout_rate=0.0),
        # 900 steps: 100% held-out exact match on number_words in 279 s here (1500 steps: also 100%, 435 s)
        TrainConfig(batch_size=64, max_steps=900, warmup_steps=100, learning_rate=2e-3, min_learning_rate=1e-4,
                    beta2=0.98, weight_decay=0.0, eval_interval=300, eval_batches=8, log_interval=20,
                    checkpoint_interval=900),
        tokenizer="char",
        description="the built-in toy translation tasks (number words, dates), character level, a few CPU minutes",
    ),
    "transformer-base": Preset(
        "transformer-base", "seq2seq", Seq2SeqConfig(label_smoothing=0.1),
        TrainConfig(batch_size=256, max_steps=100_000, learning_rate=7e-4, min_learning_rate=0.0, warmup_steps=4000,
                    beta2=0.98, weight_decay=0.0, eval_interval=2000, eval_batches=50, checkpoint_interval=2000),
        tokenizer="bpe", tokenizer_vocab_size=37000,
        description="the paper's base model (6 + 6 layers x 512, 8 heads), Adam beta2 0.98, label smoothing 0.1",
    ),
}

# word2vec and fastText (zoo.models.word2vec, zoo.models.fasttext): "gensim" is gensim 4's defaults throughout
# (CBOW, 100 dimensions, window 5, 5 negatives, sample 1e-3, min_count 5, alpha 0.025 -> 0.0001, 5 epochs).
_EMBEDDING_TINY = EmbeddingTrainConfig(epochs=3, batch_size=16, steps_per_call=8, log_interval=5)
_EMBEDDINGS = {
    "word2vec": {
        "gensim": Preset("gensim", "word2vec", Word2VecConfig(), EmbeddingTrainConfig(), tokenizer="word",
                         description="gensim's Word2Vec defaults (CBOW, 100 dims, window 5, 5 negatives, 5 epochs)"),
        "tiny": Preset("tiny", "word2vec", Word2VecConfig(vector_size=16, window=2, negative=3, sample=0.0,
                                                          min_count=1), _EMBEDDING_TINY, tokenizer="word",
                       description="seconds on a CPU: for tests and smoke runs"),
    },
    "fasttext": {
        "gensim": Preset("gensim", "fasttext", FastTextConfig(), EmbeddingTrainConfig(), tokenizer="word",
                         description="gensim's FastText defaults (word2vec's, n-grams 3-6 in 2,000,000 buckets)"),
        "tiny": Preset("tiny", "fasttext", FastTextConfig(vector_size=16, window=2, negative=3, sample=0.0,
                                                          min_count=1, bucket=2000), _EMBEDDING_TINY,
                       tokenizer="word", description="seconds on a CPU: for tests and smoke runs"),
    },
}

_PRESETS: dict[str, dict[str, Preset]] = {"gpt": _GPT}
for _family in RECURRENT_FAMILIES:
    _PRESETS[_family] = {name: _recurrent(_family, p) for name, p in _GPT.items() if name != "gpt2-small"}
_PRESETS.update(nplm=_NPLM, bert=_BERT, seq2seq=_SEQ2SEQ, **_EMBEDDINGS)
FAMILIES = tuple(_PRESETS)  # the families `zoo pretrain` trains (a fine-tuned classifier has no presets)


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
