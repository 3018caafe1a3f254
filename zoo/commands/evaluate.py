"""``zoo eval RUN_DIR [--data SPEC]``: evaluate a run of any family on held-out data.

    zoo eval runs/shakespeare          # gpt, lstm, gru, rnn, mingru: val loss, perplexity, bits per token/character
    zoo eval runs/bert                 # bert: masked-LM loss and accuracy, masked as in pretraining
    zoo eval runs/bert-sentiment       # bert-classifier: accuracy and loss on finetune's validation examples
    zoo eval runs/bert-sentiment --data test.csv    # ... or on every row of another labeled file
    zoo eval runs/numbers --beam-size 1             # seq2seq: val loss, exact match (greedy here)

What each family is evaluated on, by default the run's own data as
``run.json`` records it:

* language models: ``--batches`` (50) random windows of the corpus's
  validation split, ``batch_size`` rows of ``block_size`` tokens each, drawn
  with ``--seed`` (1234).
* ``bert``: the validation split cut into ``[CLS] window [SEP]`` rows and
  masked with the run's ``mask_prob`` by BERT's 80/10/10 rule
  (:func:`zoo.data.masking.mlm_batch`), from a fixed seed: by default the
  ``eval_batches`` batches the trainer evaluated on (seed
  :data:`zoo.train.trainer.EVAL_SEED`), so the figures are those of the
  run's last evaluation and two evals print the same numbers.
  No perplexity: the loss counts the masked positions only.
* ``bert-classifier``: every validation example that ``zoo finetune``
  reported its accuracy on, rebuilt from the data spec, columns, split,
  seed, ``max_len`` (the model's ``block_size``) and labels of ``run.json``.
  ``--data`` may name another labeled file (every row is evaluated) or an
  ``hf:``/``synthetic:`` spec (its validation split) with the run's label set.
* ``seq2seq``: the teacher-forced loss on the trainer's evaluation batches of
  the held-out pairs (by default its last reported ``val loss``), and exact
  match on the first ``--examples`` held-out pairs decoded by beam search
  (``--beam-size 1``: greedy), as at the end of ``zoo pretrain seq2seq``.
  A toy task's held-out pairs are regenerated from the run's task and seed,
  a corpus is re-read and the same deterministic 10% held out; ``--data``
  may name another parallel corpus (every pair) or ``toy:TASK``.

The evaluation code is shared with training: the trainer's batches and
compiled eval step (:func:`zoo.train.trainer.evaluation_batches`,
:func:`~zoo.train.trainer.evaluate_batches`), :func:`evaluate_classifier`
(``zoo finetune``'s final accuracy) and :func:`translation_exact_match`
(``zoo pretrain seq2seq``'s final exact match).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tyro

from zoo.commands.common import fail
from zoo.harness.flags import cache_dir, parse_flags

__all__ = ["eval_main", "evaluate_classifier", "pairs_that_fit", "translation_exact_match"]

LM_BATCHES, LM_SEED = 50, 1234  # the language models' default windows (as zoo eval has always drawn them)


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    run_dir: tyro.conf.Positional[Path]
    data: str | None = None  # other data to evaluate on (default: the run's own, its held-out part)
    batches: int | None = None  # loss batches (default: LMs 50, bert/seq2seq the run's eval_batches)
    seed: int | None = None  # seed of those batches (default: LMs 1234, bert/seq2seq the trainer's)
    examples: int | None = None  # seq2seq: held-out pairs decoded (default: as the run reported)
    beam_size: int | None = None  # seq2seq: beam width, 1: greedy (default: as the run reported)


# -- shared with the training commands ------------------------------------------------------------


def evaluate_classifier(run, encoded: dict, batch_size: int = 64) -> dict[str, float]:
    """``accuracy`` (argmax) and ``loss`` (mean cross-entropy) of a classifier run on every example of
    ``encoded`` (from :func:`zoo.data.labeled.encode_examples`); ``zoo finetune`` reports this accuracy."""
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import optax  # noqa: PLC0415

    from zoo.data.labeled import eval_batches  # noqa: PLC0415

    @jax.jit
    def predict(params, batch):
        logits = run.model.apply({"params": params}, batch["ids"], segment_ids=batch["segment_ids"],
                                 seq_lengths=batch["seq_lengths"]).astype(np.float32)  # (B, L)
        return logits.argmax(-1), optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])

    correct = nll = total = 0.0
    for batch in eval_batches(encoded, batch_size):
        pred, losses = predict(run.params, {k: batch[k] for k in ("ids", "segment_ids", "seq_lengths", "labels")})
        correct += float(((np.asarray(pred) == batch["labels"]) * batch["weights"]).sum())
        nll += float((np.asarray(losses) * batch["weights"]).sum())
        total += float(batch["weights"].sum())
    if total == 0:
        raise ValueError("evaluate_classifier: no examples to evaluate")
    return {"accuracy": correct / total, "loss": nll / total}


def pairs_that_fit(pairs: Sequence[tuple[str, str]], tokenizer, config) -> list[tuple[str, str]]:
    """The (source, target) pairs a seq2seq model trains and is evaluated on: a source of 1 to
    ``max_source_len`` tokens, a target of at most ``max_target_len - 1`` (room for BOS/EOS); order kept."""
    sources = tokenizer.encode_batch([s for s, _ in pairs])
    targets = tokenizer.encode_batch([t for _, t in pairs])
    return [p for p, x, y in zip(pairs, sources, targets)
            if 1 <= len(x) <= config.max_source_len and len(y) <= config.max_target_len - 1]


def translation_exact_match(run, pairs: Sequence[tuple[str, str]], *, beam_size: int) -> tuple[float, list]:
    """(exact match, wrong) of a seq2seq run on ``pairs`` decoded by beam search (``beam_size=1``: greedy);
    ``wrong`` lists the (source, prediction, target) of the misses in order."""
    from zoo.commands.seq2seq import translate  # noqa: PLC0415
    from zoo.data.translation import exact_match  # noqa: PLC0415

    predictions = translate(run, [s for s, _ in pairs], beam_size=beam_size)
    em = exact_match(predictions, [t for _, t in pairs])
    wrong = [(s, p, t) for (s, t), p in zip(pairs, predictions) if p.strip() != t.strip()]
    return em, wrong


# -- the families -------------------------------------------------------------------------------
# Each takes (args, run) and raises ValueError/FileNotFoundError for bad input; it returns a function
# that computes and prints (outside the error handling, so that a bug still shows its traceback).


def _batches_and_seed(args: EvalArgs, run, default_batches: int, default_seed: int) -> tuple[int, int]:
    batches = default_batches if args.batches is None else args.batches
    seed = default_seed if args.seed is None else args.seed
    if batches < 1:
        raise ValueError(f"--batches {batches}: expected at least 1")
    if seed < 0:
        raise ValueError(f"--seed {seed}: expected a non-negative integer")
    return batches, seed


def _language_model(args: EvalArgs, run) -> Callable[[], list[str]]:
    """Validation loss, perplexity, bits per token and per character of a next-token LM."""
    import numpy as np  # noqa: PLC0415

    from zoo import data  # noqa: PLC0415
    from zoo.train.objectives import NEXT_TOKEN  # noqa: PLC0415
    from zoo.train.trainer import evaluate_batches  # noqa: PLC0415

    n, seed = _batches_and_seed(args, run, LM_BATCHES, LM_SEED)
    spec = args.data or run.info.get("data", "stdlib")
    corpus = data.load_corpus(spec, text_column=run.info.get("text_column", "text"))
    tokens = data.tokenize_corpus(corpus, run.tokenizer, cache_dir=cache_dir(None))
    t, b = run.config.block_size, run.train_config.batch_size
    windows = [data.get_batch(tokens.val, b, t, seed=seed, step=i, split="val") for i in range(n)]
    batches = {"inputs": np.stack([x for x, _ in windows]), "targets": np.stack([y for _, y in windows])}

    def compute() -> list[str]:
        loss = evaluate_batches(run.model, run.params, batches, NEXT_TOKEN)["loss"]
        chars = tokens.info.get("corpus", {}).get("val_characters")
        per_char = f", {loss / math.log(2) * len(tokens.val) / chars:.4f} bits per character" if chars else ""
        return [f"{args.run_dir} (step {run.step}) on {spec}: val loss {loss:.4f} nats/token, perplexity "
                f"{math.exp(loss):.3f}, {loss / math.log(2):.4f} bits per token{per_char} "
                f"({n} x {b} windows of {t}, seed {seed})"]

    return compute


def _masked_lm(args: EvalArgs, run) -> Callable[[], list[str]]:
    """Masked-LM loss and accuracy of a BERT run on its validation split, masked as in pretraining."""
    import functools  # noqa: PLC0415

    from zoo import data  # noqa: PLC0415
    from zoo.data.masking import mlm_batch, mlm_special_ids  # noqa: PLC0415
    from zoo.train.objectives import MASKED_LM  # noqa: PLC0415
    from zoo.train.trainer import EVAL_SEED, evaluate_batches, evaluation_batches  # noqa: PLC0415

    n, seed = _batches_and_seed(args, run, run.train_config.eval_batches, EVAL_SEED)
    mask_prob = run.info.get("mask_prob")
    if not isinstance(mask_prob, (int, float)) or not 0 < mask_prob < 1:
        raise ValueError(f"{run.run_dir / 'run.json'}: mask_prob is {mask_prob!r}; expected a share in (0, 1)")
    spec = args.data or run.info.get("data", "stdlib")
    corpus = data.load_corpus(spec, text_column=run.info.get("text_column", "text"))
    tokens = data.tokenize_corpus(corpus, run.tokenizer, cache_dir=cache_dir(None))
    t, b = run.config.block_size, run.train_config.batch_size
    if len(tokens.val) < t - 2:
        raise ValueError(f"data {spec}: the validation split has {len(tokens.val)} tokens, fewer than a window of "
                         f"block_size - 2 = {t - 2}; use more text")
    get_batch = functools.partial(mlm_batch, mask_prob=mask_prob, **mlm_special_ids(run.tokenizer))
    batches = evaluation_batches(get_batch, tokens.val, run.train_config, t, num_batches=n, seed=seed)

    def compute() -> list[str]:
        metrics = evaluate_batches(run.model, run.params, batches, MASKED_LM)
        predictions = int(batches["mlm_weights"].sum())
        return [f"{args.run_dir} (step {run.step}) on {spec}: masked-LM loss {metrics['loss']:.4f} nats per masked "
                f"token, accuracy {metrics['accuracy']:.4f} ({predictions:,} masked tokens in {n} x {b} windows of "
                f"{t}; mask_prob {mask_prob}, 80/10/10, seed {seed})"]

    return compute


def _classifier(args: EvalArgs, run) -> Callable[[], list[str]]:
    """Accuracy and loss of a fine-tuned classifier on finetune's validation examples (or --data)."""
    import numpy as np  # noqa: PLC0415

    from zoo.data.labeled import encode_examples, load_examples, load_labeled  # noqa: PLC0415

    for flag, value in (("--batches", args.batches), ("--seed", args.seed)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to a bert-classifier run: it is evaluated on every "
                             "validation example, no sampling")
    info = run.info
    labels, own = info.get("labels"), info.get("data")
    if not isinstance(labels, list) or len(labels) < 2 or not isinstance(own, str):
        raise ValueError(f"{run.run_dir / 'run.json'}: no 'labels' list or 'data' spec; is it a `zoo finetune` run?")
    columns = info.get("columns") or {}
    kw = {"text_column": columns.get("text", "text"), "label_column": columns.get("label", "label"),
          "text_pair_column": columns.get("text_pair")}
    seed = run.train_config.seed
    spec = args.data or own
    if spec == own:  # the held-out examples finetune reported on
        recorded = info.get("labeled") or {}
        split = recorded.get("validation")  # the hf split used, or "held out 10% of train (seed S)"
        if recorded.get("source") != "load_dataset" or not isinstance(split, str) or split.startswith("held out "):
            split = None
        labeled = load_labeled(own, split=split, seed=seed, **kw)
        if labeled.labels != labels:
            raise ValueError(f"data {own}: its training labels are now {labeled.labels}, not the run's {labels}; "
                             "the data changed since `zoo finetune`")
        recorded_count = recorded.get("val_examples")
        if recorded_count is not None and recorded_count != len(labeled.validation):
            raise ValueError(f"data {own}: {len(labeled.validation)} validation examples now, {recorded_count} when "
                             "`zoo finetune` ran; the data changed since")
        examples, what = labeled.validation, "held-out examples"
    elif spec.startswith(("hf:", "synthetic:")):
        examples, what = load_labeled(spec, seed=seed, **kw).validation, "validation examples"
    else:
        examples, what = load_examples(spec, **kw), "examples (every row)"
    unknown = sorted({ex.label for ex in examples} - set(labels), key=repr)
    if unknown:
        raise ValueError(f"--data {spec}: labels {unknown} are not in the run's label set {labels}")
    encoded = encode_examples(examples, run.tokenizer, run.config.block_size, {x: i for i, x in enumerate(labels)})

    def compute() -> list[str]:
        metrics = evaluate_classifier(run, encoded)
        majority = np.bincount(encoded["labels"], minlength=len(labels)).max() / len(examples)
        return [f"{args.run_dir} (step {run.step}) on {spec}: accuracy {metrics['accuracy']:.4f}, loss "
                f"{metrics['loss']:.4f} on {len(examples):,} {what} (majority class: {majority:.4f}; "
                f"labels {labels}, max_len {run.config.block_size})"]

    return compute


def _translation(args: EvalArgs, run) -> Callable[[], list[str]]:
    """Teacher-forced validation loss and exact match of a seq2seq run on its held-out pairs (or --data)."""
    from zoo.commands.seq2seq import TOY, Seq2SeqPretrain, _encode, _pairs, _rows  # noqa: PLC0415
    from zoo.data.translation import load_parallel_corpus  # noqa: PLC0415
    from zoo.train.objectives import TRANSLATION  # noqa: PLC0415
    from zoo.train.trainer import EVAL_SEED, evaluate_batches, evaluation_batches  # noqa: PLC0415

    n, seed = _batches_and_seed(args, run, run.train_config.eval_batches, EVAL_SEED)
    info, defaults = run.info, Seq2SeqPretrain()
    recorded = info.get("evaluation") or {}  # what the end-of-training report used (runs before it: the defaults)
    reported = int(recorded.get("examples", defaults.eval_examples))
    examples = reported if args.examples is None else args.examples
    beam = int(recorded.get("beam_size", defaults.beam_size)) if args.beam_size is None else args.beam_size
    if examples < 1:
        raise ValueError(f"--examples {examples}: expected at least 1")
    if beam < 1:
        raise ValueError(f"--beam-size {beam}: expected at least 1 (1: greedy)")
    columns = info.get("columns") or {}
    own = info.get("data")
    spec = args.data or own
    if not isinstance(spec, str):
        raise ValueError(f"{run.run_dir / 'run.json'}: no 'data' spec; pass --data")
    if spec == own or spec.startswith(TOY):  # the held-out pairs, as pretraining chose them
        base = Seq2SeqPretrain(data=spec, source_column=columns.get("source", "source"),
                               target_column=columns.get("target", "target"), train_examples=1,
                               eval_examples=reported, train=run.train_config)
        _, val_pairs, _ = _pairs(base)
        what = "held-out pairs"
    else:
        val_pairs = load_parallel_corpus(spec, columns.get("source", "source"), columns.get("target", "target"))
        what = "pairs (every pair that fits)"
    val_data, dropped = _encode(val_pairs, run.tokenizer, run.config)
    fit = pairs_that_fit(val_pairs, run.tokenizer, run.config)
    recorded_count = (info.get("pairs") or {}).get("val")
    if spec == own and recorded_count is not None and recorded_count != len(fit):
        raise ValueError(f"data {own}: {len(fit)} held-out pairs now, {recorded_count} when the run was trained; "
                         "the data (or the held-out count of an older run) changed since")
    decode = fit[:examples]
    batches = evaluation_batches(_rows, val_data, run.train_config, run.config.block_size, num_batches=n, seed=seed)

    def compute() -> list[str]:
        metrics = evaluate_batches(run.model, run.params, batches, TRANSLATION)
        nll = metrics.get("nll", metrics["loss"])  # with label smoothing the loss is smoothed; nll is not
        smoothed = f" (label-smoothed), NLL {nll:.4f}" if "nll" in metrics else ""
        em, wrong = translation_exact_match(run, decode, beam_size=beam)
        lines = [f"{args.run_dir} (step {run.step}) on {spec}: val loss {metrics['loss']:.4f}{smoothed} nats per "
                 f"target token (teacher-forced; {n} x {run.train_config.batch_size} rows drawn from {len(fit):,} {what}, "
                 f"seed {seed}), perplexity {math.exp(nll):.3f}, next-token accuracy {metrics['accuracy']:.4f}; "
                 f"exact match {em:.4f} on {len(decode):,} {what} ({'greedy' if beam == 1 else f'beam {beam}'})"
                 + (f"; {dropped} too long for the model left out" if dropped else "")]
        lines += [f"  wrong: {s!r} -> {p!r} (expected {t!r})" for s, p, t in wrong[:3]]
        return lines

    return compute


def _evaluator(family: str) -> Callable[[EvalArgs, Any], Callable[[], list[str]]] | None:
    from zoo.registry import FAMILIES  # noqa: PLC0415
    from zoo.train.objectives import NEXT_TOKEN  # noqa: PLC0415

    if family in FAMILIES and FAMILIES[family].objective is NEXT_TOKEN:
        return _language_model
    return {"bert": _masked_lm, "bert-classifier": _classifier, "seq2seq": _translation}.get(family)


def _evaluated_families() -> list[str]:
    from zoo.registry import FAMILIES  # noqa: PLC0415

    return [f for f in FAMILIES if _evaluator(f) is not None]


def eval_main(argv: Sequence[str], prog: str = "zoo eval") -> int:
    """``zoo eval RUN_DIR [--data SPEC]``: evaluate a run's latest checkpoint on held-out data.

    By family: gpt, lstm, gru, rnn, mingru: val loss, perplexity, bits per token and per character on
    random windows of the validation split (--data: another corpus, its validation split). bert:
    masked-LM loss and accuracy, masked as in pretraining from a fixed seed (by default the batches the
    trainer evaluated on; --data: another corpus). bert-classifier: accuracy and loss on the validation
    examples finetune reported on (--data: every row of another labeled file, or the validation split
    of an hf:/synthetic: spec, with the run's label set). seq2seq: teacher-forced val loss and exact
    match of beam search (--beam-size 1: greedy) on the held-out pairs the run reported on (--data:
    every pair of another parallel corpus, or toy:TASK).
    """
    args = parse_flags(EvalArgs, args=list(argv), prog=prog, description=eval_main.__doc__)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # reading a file is no news: quiet stderr
    from zoo.pretrained import is_hf_directory  # noqa: PLC0415
    from zoo.run import load_run, read_run_json  # noqa: PLC0415

    try:
        # A Hugging Face directory has no run.json: its family comes from loading it.
        run = load_run(args.run_dir) if is_hf_directory(args.run_dir) else None
        family = run.family if run is not None else read_run_json(args.run_dir).get("family")
        evaluator = _evaluator(family)
        if evaluator is None:
            raise ValueError(f"{args.run_dir} is a {family!r} run, which zoo eval has no meaningful evaluation for; "
                             f"it evaluates {', '.join(_evaluated_families())} runs")
        if family != "seq2seq":
            for flag, value in (("--examples", args.examples), ("--beam-size", args.beam_size)):
                if value is not None:
                    raise ValueError(f"{flag} applies to seq2seq runs only; {args.run_dir} is a {family} run")
        run = run if run is not None else load_run(args.run_dir)
        compute = evaluator(args, run)
    except (ValueError, FileNotFoundError) as e:
        return fail(prog, str(e))
    for line in compute():
        print(line, flush=True)
    return 0
