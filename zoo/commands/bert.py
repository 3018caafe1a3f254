"""BERT from the command line: masked-LM pretraining, fill-mask, fine-tuning.

    zoo pretrain bert --preset bert-mini --data stdlib --out runs/bert
    zoo fill-mask runs/bert "the function returns a [MASK] of strings"
    zoo finetune runs/bert --data synthetic:sentiment --out runs/bert-sentiment
    zoo finetune runs/bert --data reviews.csv --text-column review --label-column stars

Pretraining trains a WordPiece tokenizer ([PAD] [UNK] [CLS] [SEP] [MASK]) on
the training split, joins documents with [SEP], cuts windows of
``block_size - 2`` tokens wrapped as ``[CLS] ... [SEP]`` (packed to the full
length) and masks 15% of each window's tokens afresh at every step, BERT's
80/10/10 rule (:mod:`zoo.data.masking`); the loss counts the masked positions
only. Fine-tuning copies the pretrained encoder into a
``BERTForSequenceClassification`` and trains it on labeled text
(:mod:`zoo.data.labeled`); it reports accuracy on the held-out split. Both
write an ordinary run directory: ``zoo.load_run`` loads either.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import tyro

from zoo.commands.common import check_out_path, check_same_run, claim_run_dir, corpus_tokens, fit_warmup
from zoo.commands.common import fail, load_text_corpus, process_elapsed_s
from zoo.commands.common import is_primary_process, say, start_distributed
from zoo.harness.flags import parse_flags, parse_preset_args
from zoo.models.bert import BERTConfig
from zoo.train.config import TrainConfig

__all__ = ["pretrain_main", "fill_mask_main", "finetune_main", "FINETUNE_TRAIN"]


@dataclasses.dataclass(frozen=True)
class BERTPretrain:
    out: Path | None = None  # run directory (default: runs/bert-PRESET)
    data: str = "stdlib"  # "stdlib" (built-in), a text file, a directory or glob, or hf:NAME[:CONFIG]
    text_column: str = "text"  # the text column of an hf: dataset
    vocab_size: int = 8192  # size of the WordPiece vocabulary to train (specials included)
    mask_prob: float = 0.15  # share of each window's tokens to predict (BERT: 15%, 80/10/10)
    cache_dir: Path | None = None  # tokenized-corpus cache (default: $ZOO_CACHE_DIR or ~/.cache/zoo)/tokens
    resume: bool = True  # continue the run in --out from its latest checkpoint (--no-resume: refuse to)
    overwrite: bool = False  # start --out afresh, removing the run it holds
    allow_binary: bool = False  # train on --data even where it looks like a binary file
    progress: bool = True  # progress bar
    mesh: str = ""  # the devices as data=D,fsdp=F,tensor=T (product: the device count; default all on data)
    # join other processes with jax.distributed (Slurm, Open MPI, TPU pods: auto-detected; `zoo launch` sets it)
    distributed: bool = False
    coordinator: str | None = None  # with --distributed: HOST:PORT of process 0 (default: auto-detected)
    num_processes: int | None = None  # with --distributed: how many processes (default: auto-detected)
    process_id: int | None = None  # with --distributed: this process's index (default: auto-detected)
    preset: str = "tiny"  # set by the first-stage parser; listed here for --help
    model: BERTConfig = BERTConfig()
    train: TrainConfig = TrainConfig()


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain bert --preset NAME [flags]``: masked-LM pretraining; see the module docstring."""
    preset, args = parse_preset_args(
        argv, prog, "bert", BERTPretrain, "Pretrain a BERT masked language model.",
        model=lambda p: p.model, train=lambda p: p.train, vocab_size=lambda p: p.tokenizer_vocab_size or 8192,
    )
    if not 0 < args.mask_prob < 1:
        raise ValueError(f"--mask-prob {args.mask_prob}: expected a share in (0, 1)")
    train_config = fit_warmup(args.train, preset.train, argv, prog)
    run_dir = (args.out or Path("runs") / f"bert-{preset.name}").expanduser()
    check_out_path(run_dir)

    from zoo.data.masking import max_predictions, mlm_batch, mlm_special_ids  # noqa: PLC0415
    from zoo.models.bert import BERTForMaskedLM, bert_flops_per_token  # noqa: PLC0415
    from zoo.train.objectives import MASKED_LM  # noqa: PLC0415
    from zoo.run import write_run_json  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415
    from zoo.train.sharding import mesh_str, parse_mesh  # noqa: PLC0415
    import jax  # noqa: PLC0415

    start_distributed(args)  # before any device is used
    mesh = parse_mesh(args.mesh, jax.device_count())
    corpus = load_text_corpus(args.data, args.text_column, allow_binary=args.allow_binary, prog=prog)
    with claim_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite, prog=prog) as run:
        tokenizer, tokens = corpus_tokens(run, corpus, tokenizer_kind="wordpiece", vocab_size=args.vocab_size,
                                          cache=args.cache_dir, prog=prog)
        model_config = args.model.replace(vocab_size=tokenizer.vocab_size)
        window = model_config.block_size - 2  # [CLS] window [SEP]
        for split, stream in (("train", tokens.train), ("val", tokens.val)):
            if len(stream) < window:
                raise ValueError(
                    f"--data {args.data}: the {split} split has {len(stream)} tokens, fewer than a window of "
                    f"block_size - 2 = {window}; use more text or a smaller --model.block-size"
                )
        settings = {"data": args.data, "text_column": args.text_column, "vocab_size": args.vocab_size,
                    "mask_prob": args.mask_prob, "corpus_fingerprint": corpus.info["fingerprint"]}
        if run.resuming:
            check_same_run(run, settings=settings, model=model_config, train=train_config)
        elif is_primary_process():
            tokenizer.save(run_dir / "tokenizer")
            write_run_json(run_dir, family="bert", preset=preset.name, model=model_config, train=train_config,
                           settings=settings, data=args.data, text_column=args.text_column, mask_prob=args.mask_prob,
                           tokens=tokens.info)

        say(f"bert/{preset.name}: corpus {args.data}: {len(tokens.train):,} train and {len(tokens.val):,} val "
              f"tokens (WordPiece vocabulary {tokenizer.vocab_size}); {jax.device_count()} {jax.default_backend()} "
              f"device(s), mesh {mesh_str(mesh)}; run directory {run_dir}")
        get_batch = functools.partial(mlm_batch, mask_prob=args.mask_prob, **mlm_special_ids(tokenizer))
        mlm_fraction = max_predictions(model_config.block_size, args.mask_prob) / model_config.block_size
        result = train(
            BERTForMaskedLM(model_config), model_config, train_config, tokens.train, tokens.val, run_dir,
            objective=MASKED_LM, get_batch=get_batch, progress=args.progress, resume=True,
            # the head runs at the P = max_predictions slots of each row
            flops_per_token=bert_flops_per_token(model_config, mlm_fraction=mlm_fraction),
            metadata={"family": "bert", "preset": preset.name}, mesh=mesh,
        )
    val, acc = result.get("val_loss"), result.get("val_accuracy")
    summary = f", val MLM loss {val:.4f}, val MLM accuracy {acc:.3f}" if val is not None and acc is not None else ""
    say(f"done: step {result.get('step')}{summary}, {process_elapsed_s():.1f} s since the process started")
    return 0


# -- fill-mask ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FillMaskArgs:
    run_dir: tyro.conf.Positional[Path]  # a `zoo pretrain bert` run
    text: tyro.conf.Positional[str]  # text with one or more [MASK]
    top_k: int = 5  # fillings to print per [MASK]


def fill_mask(run, text: str, top_k: int = 5) -> tuple[list[list[tuple[int, str, float]]], str]:
    """The ``top_k`` (id, token, probability) fillings of each [MASK] in ``text``, in order, for a BERT
    run, and the text with every [MASK] replaced by its likeliest filling (as the tokenizer decodes it).

    Special tokens are never proposed. Raises ``ValueError`` when ``text`` has
    no [MASK] or is too long for the position table.
    """
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    tok, cfg = run.tokenizer, run.config
    if not 1 <= top_k <= cfg.vocab_size:
        raise ValueError(f"top_k={top_k}: expected 1 <= top_k <= vocab_size={cfg.vocab_size}")
    ids = np.concatenate([[tok.cls_id], tok.encode(text), [tok.sep_id]]).astype(np.int32)  # (T,)
    positions = np.flatnonzero(ids == tok.mask_id).astype(np.int32)  # (P,)
    if len(positions) == 0:
        raise ValueError(f"text {text!r} has no [MASK] token; write [MASK] where a word should be filled in")
    if len(ids) > cfg.max_positions:
        raise ValueError(f"text is {len(ids)} tokens with [CLS] and [SEP], longer than the model's "
                         f"max_positions={cfg.max_positions}")
    logits = run.model.apply({"params": run.params}, ids[None], masked_positions=positions[None])[0]  # (P, V)
    logits = logits.at[:, np.asarray(tok.special_ids)].set(-np.inf)
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))  # (P, V)
    vocab = getattr(getattr(tok, "hf", None), "id_to_token", None)  # word pieces as written (##ing)
    name = (lambda i: vocab(i)) if vocab is not None else (lambda i: tok.decode([i]))
    out = []
    for row in probs:
        best = np.argsort(-row)[:top_k]
        out.append([(int(i), name(int(i)), float(row[i])) for i in best])
    filled = ids.copy()
    filled[positions] = [options[0][0] for options in out]
    return out, tok.decode(filled[1:-1])


def fill_mask_main(argv: Sequence[str], prog: str = "zoo fill-mask") -> int:
    """``zoo fill-mask RUN_DIR "text with [MASK]"``: the most likely fillings of each [MASK], with probabilities."""
    args = parse_flags(FillMaskArgs, args=list(argv), prog=prog, description=fill_mask_main.__doc__)
    from zoo.run import load_run  # noqa: PLC0415

    try:
        run = load_run(args.run_dir)
        if run.family != "bert":
            raise ValueError(f"{args.run_dir} is a {run.family} run; fill-mask needs a `zoo pretrain bert` run")
        fillings, filled = fill_mask(run, args.text, args.top_k)
    except (ValueError, FileNotFoundError) as e:
        return fail(prog, str(e))
    for i, options in enumerate(fillings):
        print(f"[MASK] {i + 1}:")
        for _, token, p in options:
            print(f"  {p:7.4f}  {token}")
    print(f"top-1: {filled}")
    return 0


# -- fine-tuning ------------------------------------------------------------------------------

# BERT's fine-tuning recipe (Devlin et al. 2018, appendix A.3: batch 32, a few epochs, 10% warmup,
# learning rate 2e-5 to 5e-5); small, briefly pretrained models need a larger rate.
FINETUNE_TRAIN = TrainConfig(batch_size=32, max_steps=300, learning_rate=3e-4, min_learning_rate=3e-5,
                             warmup_steps=30, beta2=0.999, weight_decay=0.01, eval_interval=100, eval_batches=4,
                             log_interval=10, checkpoint_interval=300)


@dataclasses.dataclass(frozen=True)
class FinetuneArgs:
    run_dir: tyro.conf.Positional[Path]  # a `zoo pretrain bert` run
    data: str = "synthetic:sentiment"  # a .csv/.json/.jsonl/.parquet file, hf:NAME[:CONFIG] or synthetic:NAME
    text_column: str = "text"
    text_pair_column: str | None = None  # a second text (sentence pairs: [CLS] a [SEP] b [SEP])
    label_column: str = "label"
    split: str | None = None  # the validation split of an hf: dataset (default: validation/test, else 10% held out)
    max_len: int | None = None  # tokens per example with [CLS]/[SEP] (default: the pretraining block_size);
    # longer examples are cut, pairs longest-first
    out: Path | None = None  # run directory (default: RUN_DIR-finetuned)
    dropout_rate: float | None = None  # default: the pretrained model's
    resume: bool = True  # continue the run in --out from its latest checkpoint (--no-resume: refuse to)
    overwrite: bool = False  # start --out afresh, removing the run it holds
    progress: bool = True
    train: TrainConfig = FINETUNE_TRAIN


def _classification_batch(encoded, batch_size, block_size, *, seed, step):
    from zoo.data.labeled import classification_batch  # noqa: PLC0415

    return classification_batch(encoded, batch_size, seed=seed, step=step)


def finetune_main(argv: Sequence[str], prog: str = "zoo finetune") -> int:
    """``zoo finetune RUN_DIR --data ... --label-column ...``: fine-tune a pretrained BERT for sequence
    classification; prints the accuracy on the held-out split."""
    args = parse_flags(FinetuneArgs, args=list(argv), prog=prog, description=finetune_main.__doc__)

    import flax.linen as nn  # noqa: PLC0415
    import jax  # noqa: PLC0415

    from zoo.commands.evaluate import evaluate_classifier  # noqa: PLC0415
    from zoo.data.labeled import encode_examples, load_labeled  # noqa: PLC0415
    from zoo.models.bert import BERTForSequenceClassification  # noqa: PLC0415
    from zoo.train.objectives import SEQUENCE_CLASSIFICATION  # noqa: PLC0415
    from zoo.models.bert import transfer_encoder  # noqa: PLC0415
    from zoo.run import load_run, write_run_json  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415

    out = (args.out or args.run_dir.with_name(args.run_dir.name + "-finetuned")).expanduser()
    train_config = fit_warmup(args.train, FINETUNE_TRAIN, argv, prog)
    check_out_path(out)
    pretrained = load_run(args.run_dir)
    if not pretrained.family.startswith("bert"):
        raise ValueError(f"{args.run_dir} is a {pretrained.family} run; finetune needs a `zoo pretrain bert` run "
                         "or a Hugging Face BERT directory")
    if pretrained.family == "bert-encoder":  # a HF BertModel: zoo.BERT's params, and its pooler
        encoder = {k: v for k, v in pretrained.params.items() if k != "pooler"}
        pretrained.params = {"bert": encoder, **{k: v for k, v in pretrained.params.items() if k == "pooler"}}
    try:
        labeled = load_labeled(args.data, text_column=args.text_column, label_column=args.label_column,
                               text_pair_column=args.text_pair_column, split=args.split, seed=args.train.seed)
    except ValueError as e:
        raise ValueError(f"--data {args.data}: {e}") from e
    max_len = args.max_len or pretrained.config.block_size
    if not 4 <= max_len <= pretrained.config.max_positions:
        raise ValueError(f"--max-len {max_len}: expected 4 to max_positions={pretrained.config.max_positions}")
    tok = pretrained.tokenizer
    train_data = encode_examples(labeled.train, tok, max_len, labeled.label_to_id)
    val_data = encode_examples(labeled.validation, tok, max_len, labeled.label_to_id)
    changes = {"num_labels": labeled.num_labels, "block_size": max_len}
    if args.dropout_rate is not None:
        changes.update(dropout_rate=args.dropout_rate, attention_dropout_rate=args.dropout_rate)
    config = pretrained.config.replace(**changes)
    columns = {"text": args.text_column, "text_pair": args.text_pair_column, "label": args.label_column}
    settings = {"pretrained": str(args.run_dir), "pretrained_step": pretrained.step, "data": args.data,
                "text_column": args.text_column, "text_pair_column": args.text_pair_column,
                "label_column": args.label_column, "split": args.split, "labels": labeled.labels}
    with claim_run_dir(out, resume=args.resume, overwrite=args.overwrite, prog=prog) as run:
        if run.resuming:
            check_same_run(run, settings=settings, model=config, train=train_config)
        else:
            tok.save(out / "tokenizer")
            write_run_json(out, family="bert-classifier", preset=pretrained.info.get("preset", ""), model=config,
                           train=train_config, settings=settings, data=args.data, labels=labeled.labels,
                           pretrained=str(args.run_dir), columns=columns, split=args.split, labeled=labeled.info)

        model = BERTForSequenceClassification(config)
        # under jit, as the trainer initialises: eagerly every op of the init compiles on its own (5 of the 18 s
        # of a 2-step `zoo finetune` of bert/tiny on this 2-core machine)
        init = jax.jit(lambda key: SEQUENCE_CLASSIFICATION.init_params(model, config, key))
        fresh = nn.unbox(init(jax.random.key(args.train.seed)))
        with warnings.catch_warnings():  # a masked-LM run has no pooler: say so in one line instead
            warnings.simplefilter("ignore")
            params = transfer_encoder(pretrained.params, fresh)
        if "pooler" not in pretrained.params:
            print("the pretrained run has no pooler (masked LM only): the pooler and classifier start fresh")
        print(f"finetune {args.run_dir} on {args.data}: {len(labeled.train):,} train and "
              f"{len(labeled.validation):,} validation examples, labels {labeled.labels}, max_len {max_len}; "
              f"run directory {out}", flush=True)
        train(model, config, train_config, train_data, val_data, out, objective=SEQUENCE_CLASSIFICATION,
              get_batch=_classification_batch, progress=args.progress, resume=True, initial_params=params,
              metadata={"family": "bert-classifier"})
    run = load_run(out)
    accuracy = evaluate_classifier(run, val_data)["accuracy"]
    counts = {label: sum(ex.label == label for ex in labeled.validation) for label in labeled.labels}
    majority = max(counts.values()) / len(labeled.validation)
    print(f"validation accuracy {accuracy:.4f} on {len(labeled.validation):,} held-out examples "
          f"(majority class: {majority:.4f})", flush=True)
    return 0
