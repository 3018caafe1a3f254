"""The ``zoo pretrain`` and ``zoo sample`` commands for language models: build a config, call the library.

    zoo pretrain gpt --preset quickstart --out runs/quick
    zoo pretrain lstm --preset shakespeare-char-cpu --data shakespeare.txt --out runs/lstm
    zoo pretrain gpt --preset nano --model.num-layers 3 --train.max-steps 100   # any config field
    zoo sample runs/quick --prompt "def main(" --max-new-tokens 200
    zoo eval runs/quick                                   # zoo.commands.evaluate

A preset (``zoo.presets``) sets the model and training configs together;
every field can be overridden on the command line (tyro), except the
vocabulary size, which always comes from the tokenizer. Running ``pretrain``
again on the same ``--out`` resumes from the latest checkpoint (the configs
must match those saved in ``run.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Literal, Sequence

import tyro

from zoo import presets
from zoo.commands.common import check_same_configs, corpus_tokens
from zoo.commands.common import fail as _fail
from zoo.commands.common import process_elapsed_s
from zoo.models.gpt import GPTConfig
from zoo.models.rnn_lm import RNNLMConfig
from zoo.train.config import TrainConfig

__all__ = ["pretrain_main", "sample_main"]


@dataclasses.dataclass(frozen=True)
class _Common:
    out: Path | None = None  # run directory (default: runs/FAMILY-PRESET)
    data: str = "stdlib"  # "stdlib" (built-in), a text file, a directory or glob, or hf:NAME[:CONFIG]
    text_column: str = "text"  # the text column of an hf: dataset
    tokenizer: Literal["byte", "char", "bpe"] = "byte"  # byte: never out of vocabulary
    bpe_vocab_size: int = 4096  # vocabulary size when training a BPE tokenizer
    cache_dir: Path | None = None  # tokenized-corpus cache (default: $ZOO_CACHE_DIR or ~/.cache/zoo)/tokens
    resume: bool = True  # continue from the latest checkpoint in --out
    progress: bool = True  # progress bar
    sample_tokens: int = 200  # tokens to sample at the end (0: none)
    sample_prompt: str = ""  # prompt of that sample (empty: start of a document)
    preset: str = "nano"  # set by the first-stage parser; listed here for --help


@dataclasses.dataclass(frozen=True)
class GPTPretrain(_Common):
    model: GPTConfig = GPTConfig()
    train: TrainConfig = TrainConfig()


@dataclasses.dataclass(frozen=True)
class RNNPretrain(_Common):
    model: RNNLMConfig = RNNLMConfig()
    train: TrainConfig = TrainConfig()


def _parse_pretrain(argv: Sequence[str], prog: str):
    first = argparse.ArgumentParser(prog=prog, add_help=False)
    first.add_argument("family", nargs="?", choices=presets.FAMILIES)
    first.add_argument("--preset", default="nano")
    known, rest = first.parse_known_args(argv)
    if known.family is None:
        if "-h" in rest or "--help" in rest:
            lines = [f"usage: {prog} {{{','.join(presets.FAMILIES)}}} --preset NAME [--data ...] [overrides]", ""]
            lines += [f"  {f}: presets {', '.join(presets.names(f))}" for f in presets.FAMILIES]
            lines += ["", f"`{prog} FAMILY --help` lists every flag with the preset's defaults."]
            print("\n".join(lines))
            raise SystemExit(0)
        raise ValueError(f"the model family is missing; choose one of: {', '.join(presets.FAMILIES)}")
    preset = presets.get(known.family, known.preset)
    cls = GPTPretrain if known.family == "gpt" else RNNPretrain
    default = cls(preset=known.preset, tokenizer=preset.tokenizer, model=preset.model, train=preset.train,
                  bpe_vocab_size=preset.tokenizer_vocab_size or 4096)
    args = tyro.cli(cls, default=default, args=list(rest), prog=f"{prog} {known.family}",
                    description=f"Pretrain a {known.family} language model. Preset {known.preset}: "
                                f"{preset.description}. Every flag below defaults to the preset's value.")
    if args.model.vocab_size != preset.model.vocab_size:
        raise ValueError("--model.vocab-size cannot be set: the vocabulary size comes from the tokenizer")
    return known.family, preset, args


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain FAMILY --preset NAME [flags]``: train a language model; see the module docstring."""
    try:
        family, preset, args = _parse_pretrain(argv, prog)
    except ValueError as e:
        return _fail(prog, str(e))

    from zoo import data  # noqa: PLC0415  (after argument errors: importing JAX takes a second)
    from zoo.models.gpt import gpt_flops_per_token  # noqa: PLC0415
    from zoo.models.rnn_lm import rnn_lm_flops_per_token  # noqa: PLC0415
    from zoo.run import model_for, read_run_json, write_run_json  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415

    run_dir = (args.out or Path("runs") / f"{family}-{preset.name}").expanduser()
    try:
        existing, tokenizer, tokens = corpus_tokens(
            run_dir, data_spec=args.data, text_column=args.text_column, resume=args.resume,
            tokenizer_kind=args.tokenizer, vocab_size=args.bpe_vocab_size if args.tokenizer == "bpe" else None,
            cache=args.cache_dir,
        )
        model_config = args.model.replace(vocab_size=tokenizer.vocab_size)
        for split, stream in (("train", tokens.train), ("val", tokens.val)):
            if len(stream) < model_config.block_size + 1:
                raise ValueError(
                    f"--data {args.data}: the {split} split has {len(stream)} tokens, fewer than a block of "
                    f"{model_config.block_size} + 1; use more text or a smaller --model.block-size"
                )
        if existing:
            check_same_configs(run_dir, read_run_json(run_dir), model=model_config, train=args.train)
        else:
            tokenizer.save(run_dir / "tokenizer")
            write_run_json(run_dir, family=family, preset=preset.name, model=model_config, train=args.train,
                           data=args.data, text_column=args.text_column, tokens=tokens.info)
    except (ValueError, FileNotFoundError) as e:
        return _fail(prog, str(e))

    import jax  # noqa: PLC0415

    print(f"{family}/{preset.name}: corpus {args.data}: {len(tokens.train):,} train and {len(tokens.val):,} val "
          f"tokens ({tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}); {jax.device_count()} "
          f"{jax.default_backend()} device(s), data parallel; run directory {run_dir}", flush=True)
    model = model_for(family, model_config)
    flops = gpt_flops_per_token(model_config) if family == "gpt" else rnn_lm_flops_per_token(model_config)
    result = train(model, model_config, args.train, tokens.train, tokens.val, run_dir, flops_per_token=flops,
                   get_batch=data.get_batch, progress=args.progress, resume=args.resume,
                   metadata={"family": family, "preset": preset.name})
    elapsed = process_elapsed_s()
    val = result.get("val_loss")
    print(f"done: step {result.get('step')}, val loss {val:.4f}, {elapsed:.1f} s since the process started "
          f"(training {result.get('elapsed_s', float('nan')):.1f} s)" if val is not None else
          f"done: step {result.get('step')}, {elapsed:.1f} s since the process started", flush=True)
    if args.sample_tokens > 0:
        from zoo.run import load_run  # noqa: PLC0415

        run = load_run(run_dir)
        text = _sample(run, args.sample_prompt, args.sample_tokens, 0.8, None, None, seed=0)
        print(f"--- sample ---\n{text}\n--------------", flush=True)
    return 0


def _sample(run, prompt: str, max_new_tokens: int, temperature: float, top_k, top_p, *, seed: int) -> str:
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from zoo.models.generate import generate  # noqa: PLC0415

    ids = run.tokenizer.encode(prompt) if prompt else np.array([run.tokenizer.eot_id], np.int32)
    limit = getattr(run.config, "block_size", None) if run.family == "gpt" else None
    if limit is not None:
        max_new_tokens = min(max_new_tokens, limit - 1)
        if len(ids) + max_new_tokens > limit:  # documented truncation: keep the end of the prompt
            ids = ids[len(ids) + max_new_tokens - limit:]
    out = generate(run.model, run.params, np.asarray(ids)[None], max_new_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, rng=jax.random.key(seed))
    return prompt + run.tokenizer.decode(np.asarray(out[0]))


@dataclasses.dataclass(frozen=True)
class SampleArgs:
    run_dir: tyro.conf.Positional[Path]
    prompt: str = ""  # text to continue (empty: the start of a document)
    max_new_tokens: int = 200  # GPT: capped so prompt + new tokens fit the context window
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 200
    top_p: float | None = None
    num_samples: int = 1
    seed: int = 0


def sample_main(argv: Sequence[str], prog: str = "zoo sample") -> int:
    """``zoo sample RUN_DIR --prompt TEXT``: print continuations of a prompt.

    A GPT prompt longer than the context window minus the new tokens is
    truncated from the left (its last tokens are kept), with a notice.
    """
    args = tyro.cli(SampleArgs, args=list(argv), prog=prog, description=sample_main.__doc__)
    from zoo.run import load_run  # noqa: PLC0415

    try:
        run = load_run(args.run_dir)
        vocab = run.config.vocab_size
        if args.top_k is not None and not 1 <= args.top_k <= vocab:
            args = dataclasses.replace(args, top_k=min(max(args.top_k, 1), vocab))
        for i in range(args.num_samples):
            text = _sample(run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                           seed=args.seed + i)
            print(text if args.num_samples == 1 else f"--- sample {i + 1} ---\n{text}", flush=True)
    except (ValueError, FileNotFoundError) as e:
        return _fail(prog, str(e))
    return 0
