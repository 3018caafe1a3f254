"""The encoder-decoder Transformer from the command line: train a translation model, translate.

    zoo pretrain seq2seq --preset toy --data toy:number_words --out runs/numbers
    zoo translate runs/numbers "40719"                       # beam search (width 4)
    zoo pretrain seq2seq --preset toy --data pairs.csv --source-column en --target-column de

Data: ``toy:number_words`` ("4071" -> "four thousand seventy one") and
``toy:dates`` ("2024-03-07" -> "7 March 2024") are generated on the fly
(:mod:`zoo.data.translation`; held-out sources never appear in training), or
a local parallel corpus (.csv/.tsv/.json/.jsonl/.parquet) or
``hf:NAME[:CONFIG]`` with ``--source-column`` and ``--target-column``, of
which a deterministic 10% is held out. One tokenizer, trained on both sides
of the training pairs, serves source and target; its end-of-text token is
both BOS and EOS. Pairs longer than the model's ``max_source_len`` /
``max_target_len - 1`` tokens are dropped from a corpus, and the count is
printed. At the end the run reports exact match on held-out pairs, decoded
by beam search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import tyro

from zoo.commands.common import check_out_path, check_same_run, claim_run_dir, fail, fit_warmup
from zoo.commands.common import process_elapsed_s
from zoo.harness.flags import parse_flags, parse_preset_args
from zoo.models.seq2seq import Seq2SeqConfig
from zoo.train.config import TrainConfig

__all__ = ["pretrain_main", "translate_main", "translate"]

TOY = "toy:"


@dataclasses.dataclass(frozen=True)
class Seq2SeqPretrain:
    out: Path | None = None  # run directory (default: runs/seq2seq-PRESET)
    data: str = "toy:number_words"  # toy:number_words, toy:dates, a .csv/.tsv/.json/.jsonl/.parquet file, hf:NAME
    source_column: str = "source"  # columns of a corpus ("a.b": field b of a struct column a)
    target_column: str = "target"
    tokenizer: Literal["char", "byte", "bpe", "wordpiece"] = "char"  # one tokenizer for both sides
    vocab_size: int = 8000  # for bpe / wordpiece
    train_examples: int = 200_000  # toy tasks: training pairs drawn (with replacement) from the train sources
    eval_examples: int = 500  # held-out pairs decoded at the end for exact match
    beam_size: int = 4  # for that evaluation (1: greedy)
    resume: bool = True  # continue the run in --out from its latest checkpoint (--no-resume: refuse to)
    overwrite: bool = False  # start --out afresh, removing the run it holds
    progress: bool = True
    mesh: str = ""  # the devices as data=D,fsdp=F,tensor=T (product: the device count; default all on data)
    preset: str = "tiny"
    model: Seq2SeqConfig = Seq2SeqConfig()
    train: TrainConfig = TrainConfig()


def _pairs(args: Seq2SeqPretrain) -> tuple[list, list, dict]:
    """(train pairs, held-out pairs, info) of strings."""
    from zoo.data.translation import TASKS, load_parallel_corpus, toy_pairs  # noqa: PLC0415

    if args.data.startswith(TOY):
        task = args.data[len(TOY):]
        if task not in TASKS:
            raise ValueError(f"--data {args.data}: unknown toy task {task!r}; expected one of "
                             f"{', '.join(TOY + t for t in TASKS)}")
        train = toy_pairs(task, args.train_examples, seed=args.train.seed, split="train")
        val = toy_pairs(task, max(args.eval_examples, 1000), seed=args.train.seed, split="val")
        return train, val, {"source": "toy", "task": task}
    import numpy as np  # noqa: PLC0415

    pairs = load_parallel_corpus(args.data, args.source_column, args.target_column)
    if len(pairs) < 10:
        raise ValueError(f"--data {args.data}: {len(pairs)} pairs; expected at least 10 (10% are held out)")
    held = np.random.default_rng(args.train.seed).permutation(len(pairs))[: max(1, len(pairs) // 10)]
    held_set = set(held.tolist())
    train = [p for i, p in enumerate(pairs) if i not in held_set]
    val = [pairs[i] for i in sorted(held_set)]
    return train, val, {"source": "corpus", "pairs": len(pairs)}


def _fingerprint(*splits: list) -> str:
    """SHA-256 of the (source, target) pairs of every split, in order."""
    import hashlib  # noqa: PLC0415

    h = hashlib.sha256()
    for pairs in splits:
        h.update(f"{len(pairs)}\0".encode())
        for source, target in pairs:
            h.update(f"{source}\0{target}\0".encode("utf-8", errors="surrogatepass"))
    return h.hexdigest()


def _encode(pairs: list, tokenizer, config: Seq2SeqConfig) -> tuple[dict, int]:
    """A TRANSLATION dataset (every row of ``make_translation_batch``) and the count of pairs too long to keep."""
    from zoo.data.translation import make_translation_batch  # noqa: PLC0415

    sources = tokenizer.encode_batch([s for s, _ in pairs])
    targets = tokenizer.encode_batch([t for _, t in pairs])
    keep = [(x, y) for x, y in zip(sources, targets)
            if 1 <= len(x) <= config.max_source_len and len(y) <= config.max_target_len - 1]
    if not keep:
        raise ValueError(f"no pair fits max_source_len={config.max_source_len} and max_target_len="
                         f"{config.max_target_len} (with its BOS/EOS); raise them with --model.max-source-len / "
                         "--model.max-target-len")
    return make_translation_batch(keep, config), len(pairs) - len(keep)


def _rows(data, batch_size, block_size, *, seed, step):
    """Training batch ``step``: rows drawn by ``default_rng([seed, step])`` (a pure function of (seed, step))."""
    import numpy as np  # noqa: PLC0415

    index = np.random.default_rng([seed, step]).integers(0, len(data["src"]), size=batch_size)  # (B,)
    return {k: v[index] for k, v in data.items()}


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain seq2seq --preset NAME [flags]``: train a translation model; see the module docstring."""
    preset, args = parse_preset_args(
        argv, prog, "seq2seq", Seq2SeqPretrain, "Train an encoder-decoder Transformer on translation.",
        model=lambda p: p.model, train=lambda p: p.train, tokenizer=lambda p: p.tokenizer,
        vocab_size=lambda p: p.tokenizer_vocab_size or 8000,
    )
    for flag, value in (("--beam-size", args.beam_size), ("--eval-examples", args.eval_examples),
                        ("--train-examples", args.train_examples)):
        if value < 1:
            raise ValueError(f"{flag} {value}: expected at least 1")
    train_config = fit_warmup(args.train, preset.train, argv, prog)
    run_dir = (args.out or Path("runs") / f"seq2seq-{preset.name}").expanduser()
    check_out_path(run_dir)

    from zoo import data  # noqa: PLC0415
    from zoo.models.seq2seq import Seq2SeqTransformer  # noqa: PLC0415
    from zoo.train.objectives import TRANSLATION  # noqa: PLC0415
    from zoo.run import load_run, write_run_json  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415
    from zoo.train.sharding import mesh_str, parse_mesh  # noqa: PLC0415
    import jax  # noqa: PLC0415

    mesh = parse_mesh(args.mesh, jax.device_count())
    try:
        train_pairs, val_pairs, info = _pairs(args)
    except ValueError as e:
        raise ValueError(f"--data {args.data}: {e}") from e
    with claim_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite, prog=prog) as run:
        if run.resuming:
            tokenizer = data.load_tokenizer(run_dir / "tokenizer")
        else:
            texts = [text for pair in train_pairs for text in pair]
            vocab = args.vocab_size if args.tokenizer in ("bpe", "wordpiece") else None
            tokenizer = data.make_tokenizer(args.tokenizer, texts, vocab_size=vocab)
        config = args.model.replace(vocab_size=tokenizer.vocab_size, bos_id=tokenizer.eot_id,
                                    eos_id=tokenizer.eot_id)
        train_data, dropped = _encode(train_pairs, tokenizer, config)
        val_data, val_dropped = _encode(val_pairs, tokenizer, config)
        settings = {"data": args.data, "source_column": args.source_column, "target_column": args.target_column,
                    "tokenizer": args.tokenizer, "train_examples": args.train_examples,
                    **({"vocab_size": args.vocab_size} if args.tokenizer in ("bpe", "wordpiece") else {}),
                    "corpus_fingerprint": _fingerprint(train_pairs, val_pairs)}
        if run.resuming:
            check_same_run(run, settings=settings, model=config, train=train_config)
        else:
            tokenizer.save(run_dir / "tokenizer")
            write_run_json(run_dir, family="seq2seq", preset=preset.name, model=config, train=train_config,
                           settings=settings, data=args.data,
                           columns={"source": args.source_column, "target": args.target_column},
                           pairs={**info, "train": len(train_pairs) - dropped, "val": len(val_pairs) - val_dropped,
                                  "dropped_too_long": dropped + val_dropped},
                           evaluation={"examples": args.eval_examples, "beam_size": args.beam_size})

        print(f"seq2seq/{preset.name}: {args.data}: {len(train_pairs) - dropped:,} train and "
              f"{len(val_pairs) - val_dropped:,} held-out pairs ({tokenizer.kind} tokenizer, vocabulary "
              f"{tokenizer.vocab_size}){f'; dropped {dropped + val_dropped} too long' if dropped + val_dropped else ''}"
              f"; {jax.device_count()} {jax.default_backend()} device(s), mesh {mesh_str(mesh)}; run directory {run_dir}",
              flush=True)
        result = train(Seq2SeqTransformer(config), config, train_config, train_data, val_data, run_dir,
                       objective=TRANSLATION, get_batch=_rows, progress=args.progress, resume=True,
                       metadata={"family": "seq2seq", "preset": preset.name}, mesh=mesh)
    from zoo.commands.evaluate import pairs_that_fit, translation_exact_match  # noqa: PLC0415

    run = load_run(run_dir)
    pairs = pairs_that_fit(val_pairs, tokenizer, config)[: args.eval_examples]  # what zoo eval decodes too
    em, wrong = translation_exact_match(run, pairs, beam_size=args.beam_size)
    print(f"done: step {result.get('step')}, val loss {result.get('val_loss', float('nan')):.4f}, held-out exact "
          f"match {em:.4f} on {len(pairs)} pairs (beam {args.beam_size}), {process_elapsed_s():.1f} s since the "
          f"process started", flush=True)
    for s, p, t in wrong[:3]:
        print(f"  wrong: {s!r} -> {p!r} (expected {t!r})")
    return 0


# -- translate --------------------------------------------------------------------------------


def translate(run, sources: Sequence[str], *, beam_size: int = 4, length_penalty: float = 0.6,
              batch_size: int = 64) -> list[str]:
    """Translate ``sources`` with a seq2seq run: beam search (``beam_size=1``: greedy), decoded to text.

    A source longer than the model's ``max_source_len`` tokens raises ``ValueError``.
    """
    import numpy as np  # noqa: PLC0415

    from zoo.models.beam import beam_search, greedy_decode  # noqa: PLC0415

    cfg, tok = run.config, run.tokenizer
    encoded = tok.encode_batch(list(sources))
    for i, ids in enumerate(encoded):
        if not 1 <= len(ids) <= cfg.max_source_len:
            raise ValueError(f"source {i} ({sources[i][:40]!r}) is {len(ids)} tokens; expected 1 to "
                             f"max_source_len={cfg.max_source_len}")
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        rows = len(chunk)
        src = np.full((batch_size, cfg.max_source_len), cfg.eos, np.int32)  # one compiled shape
        lengths = np.ones((batch_size,), np.int32)
        for i, ids in enumerate(chunk):
            src[i, : len(ids)], lengths[i] = ids, len(ids)
        if beam_size == 1:
            decoded = greedy_decode(run.model, run.params, src, lengths, length_penalty=length_penalty)
        else:
            decoded = beam_search(run.model, run.params, src, lengths, beam_size=beam_size,
                                  length_penalty=length_penalty)
        ids, n = np.asarray(decoded.ids), np.asarray(decoded.lengths)
        out += [tok.decode(ids[i, : n[i]]) for i in range(rows)]
    return out


@dataclasses.dataclass(frozen=True)
class TranslateArgs:
    run_dir: tyro.conf.Positional[Path]  # a `zoo pretrain seq2seq` run
    text: tyro.conf.Positional[tuple[str, ...]]  # one or more inputs
    beam_size: int = 4  # 1: greedy
    length_penalty: float = 0.6  # GNMT's alpha: scores are log P / ((5 + length) / 6) ** alpha


def translate_main(argv: Sequence[str], prog: str = "zoo translate") -> int:
    """``zoo translate RUN_DIR "input" ...``: translate each input with beam search; one line each."""
    args = parse_flags(TranslateArgs, args=list(argv), prog=prog, description=translate_main.__doc__)
    from zoo.run import load_run  # noqa: PLC0415

    try:
        if args.beam_size < 1:
            raise ValueError(f"--beam-size {args.beam_size}: expected at least 1")
        run = load_run(args.run_dir)
        if run.family != "seq2seq":
            raise ValueError(f"{args.run_dir} is a {run.family} run; translate needs a `zoo pretrain seq2seq` run")
        for line in translate(run, args.text, beam_size=args.beam_size, length_penalty=args.length_penalty):
            print(line, flush=True)
    except (ValueError, FileNotFoundError) as e:
        return fail(prog, str(e))
    return 0
