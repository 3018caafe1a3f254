"""A run directory, and loading one back: ``zoo.load_run(RUN_DIR)``.

    run = zoo.load_run("runs/shakespeare")
    ids = run.tokenizer.encode("ROMEO:")
    out = zoo.generate(run.model, run.params, ids, 100, temperature=0.8, rng=jax.random.key(0))
    print(run.tokenizer.decode(out[0]))

Every family loads the same way: ``gpt`` and the recurrent LMs (``lstm``,
``gru``, ``rnn``, ``mingru``), ``bert`` (a masked LM: ``zoo.BERTForMaskedLM``),
``bert-classifier`` (a fine-tuned ``zoo.BERTForSequenceClassification``; its
label names are in ``run.info["labels"]``) and ``seq2seq``
(``zoo.Seq2SeqTransformer``); ``word2vec`` and ``fasttext`` (word vectors:
``run.vectors`` answers ``most_similar``, ``similarity``, ``analogy``, see
:mod:`zoo.embeddings`). The family names are those of :mod:`zoo.registry`,
which maps each to its config class, module and training objective.

Layout written by ``zoo pretrain``::

    RUN_DIR/run.json        family, preset, model and training configs, data spec, corpus info, zoo version
    RUN_DIR/tokenizer/      the tokenizer (zoo.data.load_tokenizer)
    RUN_DIR/checkpoints/    orbax checkpoints (the newest that reads and verifies is loaded)
    RUN_DIR/metrics.jsonl   one JSON object per logged step
    RUN_DIR/loss.png        the loss curves
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zoo._version import __version__
from zoo.registry import model_for
from zoo.registry import family as family_of
from zoo.train.config import TrainConfig

__all__ = ["Run", "load_run", "write_run_json", "read_run_json"]

RUN_JSON = "run.json"


def _model_config(name: str, data: dict[str, Any]) -> Any:
    return family_of(name).config(**data)


def write_run_json(run_dir: Path, *, family: str, preset: str, model: Any, train: TrainConfig, **extra: Any) -> Path:
    """Write RUN_DIR/run.json atomically (a temp file, then rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "zoo_version": __version__,
        "family": family,
        "preset": preset,
        "model": dataclasses.asdict(model),
        "train": dataclasses.asdict(train),
        **extra,
    }
    tmp = run_dir / (RUN_JSON + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(run_dir / RUN_JSON)
    return run_dir / RUN_JSON


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """RUN_DIR/run.json as a dict; a clear error if the directory is not a run."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a zoo run directory (no {RUN_JSON}); create one with `zoo pretrain`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt run file ({e})") from e


@dataclasses.dataclass
class Run:
    """A trained model with everything needed to use it: what ``zoo.load_run`` (and ``zoo.load_pretrained``)
    gives back, ready to ``zoo.generate``.

    Every run has all of these fields, whatever made it:

    * ``run_dir``: where it was loaded from;
    * ``family``: a name of :data:`zoo.registry.FAMILIES` (``gpt``, ``lstm``, ``bert``, ...; from a Hugging
      Face directory also ``bert-encoder``, ``bert-token-classifier``);
    * ``config``: the family's model config (``GPTConfig``, ``RNNLMConfig``, ...);
    * ``model``: the linen module, ``registry.model_for(family, config)``; ``model.apply({"params":
      params}, ...)`` runs it;
    * ``params``: its parameters, plain (unboxed) arrays;
    * ``tokenizer``: a :mod:`zoo.data` tokenizer (``encode``/``decode``);
    * ``step``: the optimizer step of the parameters (0 for parameters zoo did not train);
    * ``train_config``: the :class:`~zoo.train.TrainConfig` they were trained with (a default
      ``TrainConfig()`` when zoo did not train them);
    * ``info``: everything else the run records: run.json (the preset, the data spec, ``settings``); for a
      Hugging Face directory ``info["source"] == "huggingface"``, the architecture and the original
      ``hf_config``. Later kinds of runs (runs of several processes, say) add keys here, not fields;
    * ``vectors``: for the word-vector families (``word2vec``, ``fasttext``) their
      :class:`zoo.embeddings.KeyedVectors` (``most_similar``, ``similarity``, a vector for a word); None
      for every other family.

    Examples:
      >>> import flax.linen as nn
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = zoo.GPT(config)
      >>> shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])   # stand-in weights
      >>> run = zoo.Run("my-run", "gpt", config, zoo.train.TrainConfig(), model, params,
      ...               zoo.data.ByteTokenizer(), 0, {})
      >>> run.family, run.step, run.tokenizer.encode("hi"), run.vectors
      ('gpt', 0, array([104, 105], dtype=int32), None)
      >>> path = zoo.export_pretrained(run, "my-gpt2")       # a Hugging Face directory
      >>> zoo.load_run("my-gpt2").info["source"]
      'huggingface'
    """

    run_dir: Path
    family: str
    config: Any
    train_config: TrainConfig
    model: Any
    params: Any
    tokenizer: Any
    step: int
    info: dict[str, Any]
    vectors: Any = None


def load_run(run_dir: str | Path, *, step: int | None = None) -> Run:
    """Load a run's config, model, parameters and tokenizer.

    The parameters are those of checkpoint ``step``, by default the newest
    one that reads and passes its digests (a newer damaged one is skipped
    with a :class:`~zoo.train.checkpoint.CheckpointWarning`; nothing on disk
    is changed). Parameters with NaN or inf are refused with a ``ValueError``.

    A Hugging Face model directory (``config.json`` and no ``run.json``) is
    loaded by :func:`zoo.load_pretrained`.

    Examples:
      >>> import flax.linen as nn
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = zoo.GPT(config)
      >>> shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])   # stand-in weights
      >>> run = zoo.Run("my-run", "gpt", config, zoo.train.TrainConfig(), model, params,
      ...               zoo.data.ByteTokenizer(), 0, {})
      >>> path = zoo.export_pretrained(run, "my-gpt2")
      >>> loaded = zoo.load_run("my-gpt2")                   # a zoo run directory (run.json) or a HF one
      >>> loaded.family, loaded.config.num_layers, type(loaded.model).__name__
      ('gpt', 1, 'GPT')
      >>> loaded.params["wte"]["embedding"].shape
      (257, 16)
    """
    from zoo.data import load_tokenizer  # noqa: PLC0415

    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file() and not (run_dir / RUN_JSON).is_file():
        from zoo.pretrained import load_pretrained  # noqa: PLC0415

        if step is not None:
            raise ValueError(f"{run_dir}: a Hugging Face directory has one set of weights; step={step} does not apply")
        return load_pretrained(run_dir)
    info = read_run_json(run_dir)
    name = info["family"]
    if family_of(name).objective is None:  # word vectors (word2vec, fastText): their own tables
        from zoo.embeddings import load_embedding_run  # noqa: PLC0415

        return load_embedding_run(run_dir, info, step=step)
    config = _model_config(name, info["model"])
    train_config = TrainConfig(**info["train"])
    model = model_for(name, config)
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    directory = run_dir / "checkpoints"
    objective = family_of(name).objective
    step, params = restore_params(directory, model, config, train_config, objective, step=step)
    problem = nonfinite_summary(params, prefix="params")
    if problem:
        from zoo.train.checkpoint import Checkpointer  # noqa: PLC0415

        with Checkpointer(directory, create=False) as ckpt:
            others = [s for s in ckpt.all_steps() if s != step]
        hint = (f"the other saved steps are {others}; zoo.load_run(run_dir, step=N) loads one" if others
                else "there is no other saved step")
        raise ValueError(
            f"{run_dir}: checkpoint step {step} has non-finite parameters ({problem}); the training diverged "
            f"before it was saved, or the checkpoint is damaged; {hint}"
        )
    return Run(run_dir, name, config, train_config, model, params, tokenizer, step, info)


def _nonfinite_counts(arrays: list) -> list:
    import jax.numpy as jnp  # noqa: PLC0415

    return [(jnp.isnan(x).sum(), jnp.isinf(x).sum()) for x in arrays]


def nonfinite_summary(params: Any, prefix: str = "") -> str | None:
    """None when every floating-point array in ``params`` is finite; else the first one with NaN or inf,
    its counts, and how many arrays have any, e.g. ``params/wte/embedding: 12 NaN; 1 of 20 arrays``."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from zoo.train.checkpoint import leaves_with_paths  # noqa: PLC0415

    leaves = [(f"{prefix}/{path}" if prefix else path, x) for path, x in leaves_with_paths(params)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    # one compiled program for every array: eagerly, each op of each shape compiles on its own (1.7 s of a
    # bert/tiny load_run on this 2-core machine)
    counts = jax.device_get(jax.jit(_nonfinite_counts)([x for _, x in leaves]))
    bad = [(path, int(n), int(i)) for (path, _), (n, i) in zip(leaves, counts, strict=True) if n or i]
    if not bad:
        return None
    path, n, i = bad[0]
    what = ", ".join(part for part in (f"{n} NaN" * bool(n), f"{i} inf" * bool(i)) if part)
    return f"{path}: {what}; {len(bad)} of {len(leaves)} arrays"


def restore_params(
    directory: Path, model: Any, config: Any, train_config: TrainConfig, objective: Any = None, *,
    step: int | None = None,
) -> tuple[int, Any]:
    """(step, params) of checkpoint ``step`` in ``directory`` (default: the newest good one), on the
    default devices. Read only: a damaged newer checkpoint is skipped with a warning, not moved."""
    from zoo.train.checkpoint import Checkpointer  # noqa: PLC0415
    from zoo.train.objectives import NEXT_TOKEN  # noqa: PLC0415
    from zoo.train.step import abstract_train_state, make_mesh  # noqa: PLC0415

    objective = NEXT_TOKEN if objective is None else objective

    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no checkpoints (was the run started with `zoo pretrain`?)")
    target = abstract_train_state(model, train_config, model_config=config, mesh=make_mesh(), objective=objective)
    with Checkpointer(directory, keep=train_config.keep_checkpoints, create=False) as ckpt:
        state, _ = ckpt.restore(target, step)
    return int(state.step), state.params
