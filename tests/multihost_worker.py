"""One process of tests/test_multihost.py's multi-process run: ``zoo launch --nproc 2 --local-devices 2 -- python
tests/multihost_worker.py OUT CORPUS``.

In one launch (the start-up and the compilations are the expensive part), every process:

1. checks the bad inputs of the sharding issue, and a run directory in use (the test holds OUT/held's
   lock), recording each error message in OUT/errors-I.json;
2. runs ``zoo pretrain gpt --distributed --mesh fsdp=2,tensor=2`` (OUT/cli, :func:`setup`'s configuration):
   the test sends Ctrl-C to the launcher once its first evaluation is logged (while the train step
   compiles), and every process should stop at step 1 with a checkpoint (exit status in OUT/cli-exit-I.json);
3. trains GPT nano for STEPS steps under each mesh of MESHES (runs OUT/gpt-MESH; the last one's steps are
   the command's, compiled already), then BERT tiny under data=4 (OUT/bert);
4. trains GPT once more under the last mesh (OUT/killed), checkpointing every 2 steps, and process 1 kills
   itself (SIGKILL) when it is asked for batch 4: the launcher must then stop process 0 and exit non-zero.

The data and configs are the ones the test trains on one device (``setup``), so the losses can be compared.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

STEPS = 20
MESHES = ("data=4", "fsdp=4", "fsdp=2,tensor=2")
KILL_AT = 4  # process 1 dies when asked for this training batch (after the checkpoint of step 4)
CLI_MESH = MESHES[-1]  # the command runs first: its step compiles after the first evaluation, when Ctrl-C comes


def cli_args(corpus: str, run: Path, cache: Path) -> list[str]:
    """``zoo pretrain gpt`` with :func:`setup`'s GPT configuration."""
    steps = str(STEPS)
    return ["pretrain", "gpt", "--preset", "nano", "--data", str(corpus), "--out", str(run), "--no-progress",
            "--sample-tokens", "0", "--cache-dir", str(cache), "--train.max-steps", steps, "--train.decay-steps",
            steps, "--train.log-interval", "1", "--train.eval-interval", steps, "--train.eval-batches", "1",
            "--train.checkpoint-interval", "10"]


def setup(corpus_path: str):
    """(GPT model, config, train config, train tokens, val tokens), (BERT model, config, train config, tokens,
    get_batch): the same in the worker and in the test."""
    import numpy as np  # noqa: PLC0415

    import zoo  # noqa: PLC0415
    from zoo import data, presets  # noqa: PLC0415
    from zoo.data.masking import mlm_batch  # noqa: PLC0415

    corpus = data.load_corpus(corpus_path)
    tokenizer = data.make_tokenizer("byte")
    tokens = data.tokenize_corpus(corpus, tokenizer)
    preset = presets.get("gpt", "nano")
    config = preset.model.replace(vocab_size=tokenizer.vocab_size)
    cfg = preset.train.replace(max_steps=STEPS, decay_steps=STEPS, log_interval=1, eval_interval=STEPS,
                               eval_batches=1, checkpoint_interval=STEPS)
    gpt = (zoo.GPT(config), config, cfg, tokens.train, tokens.val)
    bert_preset = presets.get("bert", "tiny")
    bert_config = bert_preset.model.replace(num_layers=1)
    bert_cfg = bert_preset.train.replace(max_steps=8, decay_steps=8, log_interval=1, eval_interval=8,
                                         eval_batches=1, checkpoint_interval=8)
    stream = np.random.default_rng(1).integers(5, bert_config.vocab_size, 3000)
    ids = {"cls_id": 2, "sep_id": 3, "mask_id": 4, "special_ids": (0, 1, 2, 3, 4), "vocab_size": bert_config.vocab_size}

    def bert_batch(tokens, batch_size, block_size, *, seed, step):
        return mlm_batch(tokens, batch_size, block_size, seed=seed, step=step, **ids)

    bert = (zoo.BERTForMaskedLM(bert_config), bert_config, bert_cfg, stream, bert_batch)
    return gpt, bert


def bad_inputs(gpt) -> dict[str, str]:
    """The sharding issue's bad inputs, each refused before compiling: {case: message}."""
    from zoo.train.trainer import train  # noqa: PLC0415

    model, config, cfg, train_tokens, val_tokens = gpt
    cases = {
        "mesh product": {"mesh": "data=3"},
        "unknown axis": {"mesh": "pipeline=4"},
        "heads": {"mesh": "tensor=4"},
        "batch split": {"mesh": "fsdp=4", "cfg": cfg.replace(batch_size=6)},
    }
    out = {}
    try:
        train(model, config, cfg, train_tokens, val_tokens, OUT / "held", progress=False, mesh="data=4")
        out["in use"] = "no error"
    except RuntimeError as e:  # RunInUseError
        out["in use"] = str(e)
    for name, case in cases.items():
        try:
            train(model, config, case.get("cfg", cfg), train_tokens, val_tokens, OUT / f"bad-{name}", progress=False,
                  mesh=case["mesh"])
            out[name] = "no error"
        except ValueError as e:
            out[name] = str(e)
    return out


def main() -> None:
    from zoo.train import distributed  # noqa: PLC0415

    distributed.initialize()
    import jax  # noqa: PLC0415

    from zoo.train.objectives import MASKED_LM  # noqa: PLC0415
    from zoo.train.trainer import train  # noqa: PLC0415

    me = jax.process_index()
    gpt, bert = setup(sys.argv[2])
    (OUT / f"errors-{me}.json").write_text(json.dumps({"devices": [jax.local_device_count(), jax.device_count()],
                                                        **bad_inputs(gpt)}))
    from zoo.cli import main as zoo_main  # noqa: PLC0415

    code = zoo_main([*cli_args(sys.argv[2], OUT / "cli", OUT / "tokens"), "--mesh", CLI_MESH, "--distributed"])
    (OUT / f"cli-exit-{me}.json").write_text(json.dumps(code))

    model, config, cfg, train_tokens, val_tokens = gpt
    for mesh in MESHES:
        train(model, config, cfg, train_tokens, val_tokens, OUT / f"gpt-{mesh}", progress=False, mesh=mesh)
    bert_model, bert_config, bert_cfg, stream, bert_batch = bert
    train(bert_model, bert_config, bert_cfg, stream, stream, OUT / "bert", objective=MASKED_LM, get_batch=bert_batch,
          progress=False, mesh="data=4")

    from zoo.data import get_batch  # noqa: PLC0415

    def dying_batch(tokens, batch_size, block_size, *, seed, step, rows=None):
        if me == 1 and seed == cfg.seed and step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        return get_batch(tokens, batch_size, block_size, seed=seed, step=step, rows=rows)

    train(model, config, cfg.replace(checkpoint_interval=2), train_tokens, val_tokens, OUT / "killed",
          progress=False, mesh=MESHES[-1], get_batch=dying_batch)
    raise SystemExit("process 1 should have died")


if __name__ == "__main__":
    OUT = Path(sys.argv[1])
    main()
