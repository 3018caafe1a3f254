"""The ``zoo pretrain`` and ``zoo sample`` commands for language models: build a config, call the library.

    zoo pretrain gpt --preset quickstart --out runs/quick
    zoo pretrain lstm --preset shakespeare-char-cpu --data shakespeare.txt --out runs/lstm
    zoo pretrain gpt --preset nano --model.num-layers 3 --train.max-steps 100   # any config field
    zoo pretrain gpt --init-from hf/gpt2 --data shakespeare.txt --out runs/gpt2-shakespeare   # continue a GPT-2
    zoo pretrain nplm --preset shakespeare-word --data shakespeare.txt --init-embeddings runs/w2v  # word level
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
import math
from pathlib import Path
from typing import Literal, Sequence

import tyro

from zoo import presets
from zoo.commands.common import check_out_path, check_same_run, claim_run_dir, corpus_tokens, fit_warmup
from zoo.commands.common import load_text_corpus, notice, process_elapsed_s, say
from zoo.commands.common import is_primary_process, start_distributed
from zoo.harness.flags import cache_dir, parse_flags, parse_preset_args
from zoo.models.gpt import GPTConfig
from zoo.models.nplm import NPLMConfig
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
    resume: bool = True  # continue the run in --out from its latest checkpoint (--no-resume: refuse to)
    overwrite: bool = False  # start --out afresh, removing the run it holds
    allow_binary: bool = False  # train on --data even where it looks like a binary file
    progress: bool = True  # progress bar
    sample_tokens: int = 200  # tokens to sample at the end (0: none)
    sample_prompt: str = ""  # prompt of that sample (empty: start of a document)
    mesh: str = ""  # the devices as data=D,fsdp=F,tensor=T (product: the device count; default all on data)
    # join other processes with jax.distributed (Slurm, Open MPI, TPU pods: auto-detected; `zoo launch` sets it)
    distributed: bool = False
    coordinator: str | None = None  # with --distributed: HOST:PORT of process 0 (default: auto-detected)
    num_processes: int | None = None  # with --distributed: how many processes (default: auto-detected)
    process_id: int | None = None  # with --distributed: this process's index (default: auto-detected)
    preset: str = "nano"  # set by the first-stage parser; listed here for --help


@dataclasses.dataclass(frozen=True)
class GPTPretrain(_Common):
    # start from a Hugging Face GPT-2 directory or a zoo gpt run: its weights, architecture and tokenizer
    # (nanoGPT's init_from); --model.dropout-rate, --model.block-size (smaller: the position table is cropped),
    # --model.dtype, --model.remat and --model.attention-implementation may still be set
    init_from: Path | None = None
    model: GPTConfig = GPTConfig()
    train: TrainConfig = TrainConfig()


@dataclasses.dataclass(frozen=True)
class RNNPretrain(_Common):
    model: RNNLMConfig = RNNLMConfig()
    train: TrainConfig = TrainConfig()


@dataclasses.dataclass(frozen=True)
class NPLMPretrain(_Common):
    tokenizer: Literal["word", "char", "byte"] = "word"  # word: lower-cased words, a closed vocabulary with <unk>
    min_count: int = 2  # word tokenizer: words seen fewer times in the training split encode as <unk>
    max_vocab: int | None = None  # word tokenizer: keep at most this many words, the most frequent
    # start the word vectors (the table C) from a word2vec or fastText run's vectors, for the words it has;
    # --model.features must equal its vector size
    init_embeddings: Path | None = None
    model: NPLMConfig = NPLMConfig()
    train: TrainConfig = TrainConfig()


_PRETRAIN_ARGS = {"gpt": GPTPretrain, "nplm": NPLMPretrain}


def _parse_pretrain(argv: Sequence[str], prog: str):
    first = argparse.ArgumentParser(prog=prog, add_help=False)
    first.add_argument("family", nargs="?", choices=presets.FAMILIES)
    known, rest = first.parse_known_args(argv)
    if known.family is None:
        if "-h" in rest or "--help" in rest:
            lines = [f"usage: {prog} {{{','.join(presets.FAMILIES)}}} --preset NAME [--data ...] [overrides]", ""]
            lines += [f"  {f}: presets {', '.join(presets.names(f))}" for f in presets.FAMILIES]
            lines += ["", f"`{prog} FAMILY --help` lists every flag with the preset's defaults."]
            print("\n".join(lines))
            raise SystemExit(0)
        raise ValueError(f"the model family is missing; choose one of: {', '.join(presets.FAMILIES)}")
    family = known.family
    preset, args = parse_preset_args(
        argv, prog, family, _PRETRAIN_ARGS.get(family, RNNPretrain),
        f"Pretrain a {family} language model.", model=lambda p: p.model, train=lambda p: p.train,
        tokenizer=lambda p: p.tokenizer, bpe_vocab_size=lambda p: p.tokenizer_vocab_size or 4096,
    )
    return family, preset, args


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain FAMILY --preset NAME [flags]``: train a language model; see the module docstring.

    Every check that can fail (flags, schedule, output path, data, tokenizer)
    runs before the run directory is written; errors propagate to ``zoo.cli``,
    which prints them as one line.
    """
    family, preset, args = _parse_pretrain(argv, prog)
    train_config = fit_warmup(args.train, preset.train, argv, prog)
    run_dir = (args.out or Path("runs") / f"{family}-{preset.name}").expanduser()
    check_out_path(run_dir)

    from zoo.registry import flops_per_token, model_for  # noqa: PLC0415  (after argument errors: JAX takes a second)
    from zoo.run import write_run_json  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415
    from zoo import data  # noqa: PLC0415

    from zoo.train.sharding import mesh_str, parse_mesh  # noqa: PLC0415
    import jax  # noqa: PLC0415

    several = start_distributed(args)  # before any device is used
    mesh = parse_mesh(args.mesh, jax.device_count())
    init = _init_from(args, argv) if family == "gpt" and args.init_from is not None else None
    vectors = _word_vectors(args, prog) if family == "nplm" else None
    corpus = load_text_corpus(args.data, args.text_column, allow_binary=args.allow_binary, prog=prog)
    with claim_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite, prog=prog) as run:
        if init is not None:  # the checkpoint's tokenizer and architecture
            tokenizer, model_config, initial_params = init
            from zoo.train import distributed  # noqa: PLC0415

            tokens = distributed.primary_first(  # several processes: process 0 fills the cache, all map it
                lambda: data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(args.cache_dir), mmap=several),
                what="tokenizing the corpus")
        elif family == "nplm" and args.tokenizer == "word":
            tokenizer, tokens = _word_tokens(run, corpus, args, prog)
            model_config, initial_params = args.model.replace(vocab_size=tokenizer.vocab_size), None
        else:
            tokenizer, tokens = corpus_tokens(
                run, corpus, tokenizer_kind=args.tokenizer,
                vocab_size=args.bpe_vocab_size if args.tokenizer == "bpe" else None, cache=args.cache_dir, prog=prog,
            )
            model_config, initial_params = args.model.replace(vocab_size=tokenizer.vocab_size), None
        for split, stream in (("train", tokens.train), ("val", tokens.val)):
            if len(stream) < model_config.block_size + 1:
                raise ValueError(
                    f"--data {args.data}: the {split} split has {len(stream)} tokens, fewer than a block of "
                    f"{model_config.block_size} + 1; use more text or a smaller --model.block-size"
                )
        settings = {"data": args.data, "text_column": args.text_column,
                    "tokenizer": args.tokenizer if init is None else tokenizer.kind,
                    **({"bpe_vocab_size": args.bpe_vocab_size} if args.tokenizer == "bpe" and init is None else {}),
                    **({"init_from": str(args.init_from)} if init is not None else {}),
                    **({"min_count": args.min_count, "max_vocab": args.max_vocab}
                       if family == "nplm" and args.tokenizer == "word" else {}),
                    **({"init_embeddings": str(args.init_embeddings)} if vectors is not None else {}),
                    "corpus_fingerprint": corpus.info["fingerprint"]}
        if run.resuming:
            check_same_run(run, settings=settings, model=model_config, train=train_config)
        elif is_primary_process():
            tokenizer.save(run_dir / "tokenizer")
            write_run_json(run_dir, family=family, preset=preset.name, model=model_config, train=train_config,
                           settings=settings, data=args.data, text_column=args.text_column, tokens=tokens.info)

        if vectors is not None and not run.resuming:
            initial_params = _embeddings_from(vectors, args, model_config, tokenizer, prog)
        processes = f"{jax.process_count()} processes, " if several else ""
        say(f"{family}/{preset.name}: corpus {args.data}: {len(tokens.train):,} train and {len(tokens.val):,} val "
            f"tokens ({tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}); {processes}{jax.device_count()} "
            f"{jax.default_backend()} device(s), mesh {mesh_str(mesh)}; run directory {run_dir}")
        model = model_for(family, model_config)
        flops = flops_per_token(family, model_config)
        result = train(model, model_config, train_config, tokens.train, tokens.val, run_dir, flops_per_token=flops,
                       get_batch=data.get_batch, progress=args.progress, resume=True, initial_params=initial_params,
                       metadata={"family": family, "preset": preset.name}, mesh=mesh)
    elapsed = process_elapsed_s()
    val = result.get("val_loss")
    say(f"done: step {result.get('step')}, val loss {val:.4f}, {elapsed:.1f} s since the process started "
        f"(training {result.get('elapsed_s', float('nan')):.1f} s)" if val is not None else
        f"done: step {result.get('step')}, {elapsed:.1f} s since the process started")
    if args.sample_tokens > 0 and several:
        notice(prog, f"no sample after a --distributed run; `zoo sample {run_dir}` prints one")
    elif args.sample_tokens > 0:
        from zoo.run import load_run  # noqa: PLC0415

        run = load_run(run_dir)
        text = _sample(run, args.sample_prompt, args.sample_tokens, 0.8, None, None, seed=0, prog=prog)
        print(f"--- sample ---\n{text}\n--------------", flush=True)
    return 0


# What --init-from leaves to the command line: settings that do not change the parameters' shapes
# (block_size may shrink: the position table is cropped, as nanoGPT's crop_block_size).
_INIT_FROM_FIELDS = ("dropout_rate", "block_size", "dtype", "remat", "attention_implementation")


def _init_from(args, argv: Sequence[str]):
    """(tokenizer, model config, params) of ``--init-from``: a HF GPT-2 directory or a zoo gpt run."""
    from zoo.run import load_run  # noqa: PLC0415

    set_flags = {a.split("=")[0] for a in argv if a.startswith("--")}
    for flag in sorted(set_flags):
        field = flag.removeprefix("--model.").replace("-", "_")
        if flag.startswith("--model.") and field not in _INIT_FROM_FIELDS:
            raise ValueError(f"{flag}: the architecture comes from --init-from {args.init_from}; only "
                             f"{', '.join('--model.' + f.replace('_', '-') for f in _INIT_FROM_FIELDS)} may be set")
        if flag in ("--tokenizer", "--bpe-vocab-size"):
            raise ValueError(f"{flag}: the tokenizer comes from --init-from {args.init_from}")
    start = load_run(args.init_from)
    if start.family != "gpt":
        raise ValueError(f"--init-from {args.init_from} is a {start.family} model; zoo pretrain gpt continues a gpt "
                         "run or a Hugging Face GPT-2 directory")
    changes = {f: getattr(args.model, f) for f in _INIT_FROM_FIELDS if f"--model.{f.replace('_', '-')}" in set_flags}
    block = changes.get("block_size", start.config.block_size)
    if block > start.config.block_size:
        raise ValueError(f"--model.block-size {block}: at most the checkpoint's {start.config.block_size} (its "
                         "position table)")
    config = start.config.replace(**changes)
    params = dict(start.params)
    if "wpe" in params and block < start.config.block_size:
        params["wpe"] = {"embedding": params["wpe"]["embedding"][:block]}  # (block_size, D): the first positions
    return start.tokenizer, config, params


def _word_tokens(run, corpus, args, prog: str):
    """(tokenizer, tokens) of an NPLM run with the word tokenizer: --min-count and --max-vocab set its vocabulary."""
    from zoo import data  # noqa: PLC0415
    from zoo.data.words import WordTokenizer  # noqa: PLC0415

    if args.min_count < 1 or (args.max_vocab is not None and args.max_vocab < 1):
        raise ValueError(f"--min-count {args.min_count} / --max-vocab {args.max_vocab}: expected >= 1")
    if run.resuming:
        tokenizer = data.load_tokenizer(run.path / "tokenizer")
    else:
        try:
            tokenizer = WordTokenizer.train(corpus.train, min_count=args.min_count, max_size=args.max_vocab)
        except ValueError as e:
            raise ValueError(f"--data {args.data} with --min-count {args.min_count}: {e}") from e
    tokens = data.tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(args.cache_dir))
    unknown = tokens.info.get("unknown_tokens", {})
    for split in ("train", "val"):
        if unknown.get(split):
            notice(prog, f"the {split} split has {unknown[split]:,} words outside the vocabulary of "
                         f"{tokenizer.vocab_size:,} (seen fewer than --min-count {args.min_count} times or cut by "
                         "--max-vocab); they encode as <unk>")
    return tokenizer, tokens


def _word_vectors(args, prog: str):
    """The word vectors of --init-embeddings (a word2vec or fastText run), checked before any data is read."""
    if args.init_embeddings is None:
        return None
    from zoo.run import load_run, read_run_json  # noqa: PLC0415

    family = read_run_json(args.init_embeddings).get("family")
    if family not in ("word2vec", "fasttext"):
        raise ValueError(f"--init-embeddings {args.init_embeddings} is a {family} run; expected a word2vec or "
                         "fasttext run (zoo pretrain word2vec)")
    if args.tokenizer != "word":
        raise ValueError(f"--init-embeddings needs --tokenizer word, not {args.tokenizer} (the vectors are words')")
    vectors = load_run(args.init_embeddings).vectors
    if vectors.vector_size != args.model.features:
        raise ValueError(f"--init-embeddings {args.init_embeddings} has vectors of {vectors.vector_size} "
                         f"dimensions, --model.features is {args.model.features}; expected them equal (set "
                         f"--model.features {vectors.vector_size})")
    return vectors


def _embeddings_from(vectors, args, model_config, tokenizer, prog: str):
    """Fresh NPLM parameters whose table C holds the --init-embeddings vectors of the words they cover."""
    import jax  # noqa: PLC0415

    from zoo.models.nplm import with_word_vectors  # noqa: PLC0415
    from zoo.registry import family, model_for  # noqa: PLC0415

    model = model_for("nplm", model_config)
    init = jax.jit(lambda key: family("nplm").objective.init_params(model, model_config, key))  # as the trainer does
    params = init(jax.random.key(args.train.seed))
    params, covered = with_word_vectors(params, tokenizer.words, vectors)
    notice(prog, f"--init-embeddings {args.init_embeddings}: {covered:,} of the {len(tokenizer.words):,} words "
                 "start from its vectors; the others (and <unk>, <|endoftext|>) from the random initialisation")
    return params


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """The sampling flags, checked before a model is loaded."""
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"--temperature {temperature}: expected a finite number >= 0 (0: greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k {top_k}: expected at least 1 (leave it out to sample from every token)")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"--top-p {top_p}: expected a number in (0, 1]")


def _sample(run, prompt: str, max_new_tokens: int, temperature: float, top_k, top_p, *, seed: int,
            prog: str) -> str:
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from zoo.data.pipeline import unknown_characters  # noqa: PLC0415
    from zoo.models.generate import generate  # noqa: PLC0415

    tok = run.tokenizer
    ids = tok.encode(prompt) if prompt else np.array([tok.eot_id], np.int32)
    if prompt and getattr(tok, "unk_id", None) is not None and (n := int(np.count_nonzero(ids == tok.unk_id))):
        chars = unknown_characters(tok, [prompt]) if tok.kind == "char" else {}
        which = f" ({', '.join(map(repr, chars))})" if chars else ""
        notice(prog, f"the prompt has {n} token(s) the {tok.kind} vocabulary cannot encode{which}; they encode as "
                     "unknown")
    window = getattr(run.config, "block_size", None) if run.family == "gpt" else None
    if window is not None and len(ids) > window:  # the context window: keep the prompt's last tokens
        notice(prog, f"the prompt is {len(ids)} tokens, longer than the model's window of {window}: it is cropped "
                     f"to its last {window} tokens")
        ids = ids[-window:]
    top_k = None if top_k is None else min(top_k, run.config.vocab_size)  # k >= vocabulary: no filtering
    out = generate(run.model, run.params, np.asarray(ids)[None], max_new_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, rng=jax.random.key(seed))
    sep = " " if prompt and tok.kind == "word" else ""  # the word tokenizer's decode joins words by spaces
    return prompt + sep + tok.decode(np.asarray(out[0]))


@dataclasses.dataclass(frozen=True)
class SampleArgs:
    run_dir: tyro.conf.Positional[Path]
    prompt: str = ""  # text to continue (empty: the start of a document)
    max_new_tokens: int = 200  # any number: past a GPT's window, each token sees the last block_size tokens
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 200  # sample among the k most likely tokens (more than the vocabulary: all)
    top_p: float | None = None  # nucleus sampling: the smallest set of tokens with this much probability
    num_samples: int = 1
    seed: int = 0


def sample_main(argv: Sequence[str], prog: str = "zoo sample") -> int:
    """``zoo sample RUN_DIR --prompt TEXT``: print continuations of a prompt.

    A GPT generates past its context window as nanoGPT does: each new token
    is predicted from the last block_size tokens. A prompt longer than the
    window is cropped to its last block_size tokens, with a notice.
    """
    args = parse_flags(SampleArgs, args=list(argv), prog=prog, description=sample_main.__doc__)
    check_sampling(args.temperature, args.top_k, args.top_p)
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens} / --num-samples {args.num_samples}: expected "
                         ">= 0 and >= 1")
    from zoo.run import load_run  # noqa: PLC0415

    run = load_run(args.run_dir)
    if run.family not in presets.LM_FAMILIES:
        raise ValueError(f"{args.run_dir} is a {run.family} run; zoo sample needs a language model "
                         f"({', '.join(presets.LM_FAMILIES)}){_OTHER_COMMANDS.get(run.family, '')}")
    for i in range(args.num_samples):
        text = _sample(run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                       seed=args.seed + i, prog=prog)
        print(text if args.num_samples == 1 else f"--- sample {i + 1} ---\n{text}", flush=True)
    return 0


_OTHER_COMMANDS = {"bert": "; for BERT use zoo fill-mask", "seq2seq": "; for seq2seq use zoo translate",
                   "bert-classifier": "; a classifier does not generate text"}
