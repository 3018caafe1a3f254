"""Sharding (zoo.train.sharding): data, FSDP and tensor parallelism on 4 CPU devices, against one device.

One process, the 4 devices of conftest's XLA_FLAGS, nano models. Each mesh's
train step is compiled once (``GPT_RUNS``) and shared: its losses, its first
AdamW moments (the first step's gradients), its state's bytes per device and
its HLO's collectives are all checked from that one program.
"""

from __future__ import annotations

import collections
import functools
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from zoo_server import QUICK_XLA_FLAGS

import zoo
from zoo import presets
from zoo.cli import main
from zoo.data.masking import mlm_batch
from zoo.train import sharding
from zoo.train.costs import communication_table, state_memory, step_collectives
from zoo.train.hlo import hlo_collectives
from zoo.train.objectives import MASKED_LM, NEXT_TOKEN
from zoo.train.step import (
    abstract_train_state,
    init_train_state,
    make_mesh,
    make_train_step,
    param_layouts,
    shard_batch,
    state_shardings,
    step_config,
)
from zoo.train.trainer import random_windows

GPT_PRESET = presets.get("gpt", "nano")
GPT_CONFIG = GPT_PRESET.model  # 2 layers x 2 heads x 32, block 32, no biases
# The preset's schedule with a fixed decay, so that runs of any length share one compiled step.
TRAIN = GPT_PRESET.train.replace(max_steps=20, decay_steps=20)  # batch 8
STEPS = 20
MESHES = ("data=4", "fsdp=4", "tensor=2,data=2", "fsdp=2,tensor=2")
# A repeating random pattern (each token determines the next), so the losses fall.
TOKENS = np.tile(np.random.default_rng(0).permutation(40)[:11], 600).astype(np.int32)


def lm_batch(step: int, cfg=TRAIN, config=GPT_CONFIG) -> dict[str, np.ndarray]:
    x, y = random_windows(TOKENS % config.vocab_size, cfg.batch_size, config.block_size, seed=cfg.seed, step=step)
    return {"inputs": x, "targets": y}


@functools.cache
def initial_state(model, config, cfg, objective):
    """The step-0 state on one device, on the host: every mesh starts from it (placed, not re-initialised,
    so that each mesh costs one compilation: its train step)."""
    mesh = make_mesh(jax.devices()[:1])
    return jax.device_get(init_train_state(model, cfg, model_config=config, mesh=mesh, objective=objective))


def train_steps(model, config, cfg, objective, get_batch, mesh, steps):
    """``steps`` steps from the same initialisation: (losses, AdamW's first moments after step 1, final state,
    the compiled step's HLO text)."""
    shardings = state_shardings(model, config, objective, step_config(cfg), mesh)
    state = jax.device_put(initial_state(model, config, cfg, objective), shardings)
    step = make_train_step(model, cfg, mesh, objective, model_config=config)
    compiled, losses, first_mu = None, [], None
    for i in range(steps):
        batch = shard_batch(get_batch(i), cfg.grad_accum_steps, mesh)
        if compiled is None:
            compiled = step.lower(state, batch).compile()  # cached: the trainer's calls of `step` reuse it
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        if i == 0:  # AdamW's first moment after one step: (1 - beta1) x the (clipped) gradient
            first_mu = jax.device_get(optax.tree_utils.tree_get(state.opt_state, "mu"))
    return np.array(losses), first_mu, state, compiled.as_text()


@pytest.fixture(scope="module")
def gpt_runs():
    """{mesh: (losses, first moments, state, HLO)} for one device (``None``) and every mesh of MESHES."""
    model = zoo.GPT(GPT_CONFIG)
    runs = {None: train_steps(model, GPT_CONFIG, TRAIN, NEXT_TOKEN, lm_batch, make_mesh(jax.devices()[:1]), STEPS)}
    for spec in MESHES:
        runs[spec] = train_steps(model, GPT_CONFIG, TRAIN, NEXT_TOKEN, lm_batch, make_mesh(None, spec), STEPS)
    return runs


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# -- equal losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", MESHES)
def test_gpt_mesh_equals_one_device(gpt_runs, spec):
    losses, mu, _, _ = gpt_runs[spec]
    ref_losses, ref_mu, _, _ = gpt_runs[None]
    assert losses.shape == (STEPS,) and np.isfinite(losses).all()
    # the first step's gradients, array by array (through AdamW's first moment)
    flat, ref_flat = jax.tree_util.tree_leaves_with_path(mu), jax.tree_util.tree_leaves_with_path(ref_mu)
    assert [p for p, _ in flat] == [p for p, _ in ref_flat]
    worst = max((relative(g, r), jax.tree_util.keystr(p)) for (p, g), (_, r) in zip(flat, ref_flat))
    assert worst[0] < 1e-5, worst
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert ref_losses[-1] < ref_losses[0] - 0.05  # it learns


def test_fsdp_state_is_split(gpt_runs):
    """Under fsdp=4 each device holds at most a quarter of the parameters and AdamW moments, plus the
    replicated remainder (the vectors, whole on every device, and the step counts)."""
    state = gpt_runs["fsdp=4"][2]
    mesh = make_mesh(None, "fsdp=4")
    tree = (state.params, state.opt_state)
    total = sum(x.nbytes for x in jax.tree.leaves(tree))
    layouts = param_layouts(zoo.GPT(GPT_CONFIG), GPT_CONFIG, NEXT_TOKEN, mesh)
    params_total = sum(x.nbytes for x in jax.tree.leaves(state.params))
    counters = total - 3 * params_total  # the optimizer's scalars (step counts)
    remainder = 3 * sharding.replicated_remainder(layouts) + counters
    held = sharding.bytes_per_device(tree)
    assert len(held) == 4
    for device, nbytes in held.items():
        assert nbytes <= total / 4 + remainder, (device, nbytes, total, remainder)
    assert max(held.values()) < 0.3 * total  # the remainder is small: nano's 5 LayerNorm scales
    # every weight matrix is split, and the placement is what zoo.train.costs counts
    assert all("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(state.params) if x.ndim - 1 >= 2)
    predicted = state_memory(GPT_CONFIG, "fsdp=4")
    assert predicted["params"] == sharding.bytes_per_device(state.params)[jax.devices()[0]]


def test_checkpoint_from_one_device_restores_split(gpt_runs, tmp_path):
    """The other way round from the resume test below: a state saved on one device restores onto fsdp=4
    (split as the rules say, every value equal, digests verified), and keep=1 keeps the newest step."""
    state = gpt_runs[None][2]
    mesh = make_mesh(None, "fsdp=4")
    target = abstract_train_state(zoo.GPT(GPT_CONFIG), TRAIN, model_config=GPT_CONFIG, mesh=mesh)
    with zoo.train.Checkpointer(tmp_path / "ckpt", keep=1) as ckpt:
        assert ckpt.save(1, state, {}) and ckpt.save(2, state, {})
        assert ckpt.all_steps() == [2]
        restored, _ = ckpt.restore(target)
    for got, want, like in zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(target)):
        assert got.sharding == like.sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert any("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(restored.params))


# -- communication -----------------------------------------------------------------------------------


def hlo_counts(hlo: str, shape: dict[str, int]) -> collections.Counter:
    """{(kind, axes, bytes of one array): how many per step} of a compiled program, scalars left out."""
    counts = collections.Counter()
    for c in hlo_collectives(hlo, shape):
        for dims, nbytes in zip(c.shapes, c.array_bytes):
            if dims:
                counts[(c.kind, c.axes, nbytes)] += c.count
    return counts


@pytest.mark.parametrize("spec", MESHES)
def test_predicted_collectives_are_the_compiled_ones(gpt_runs, spec):
    mesh = make_mesh(None, spec)
    shape = sharding.mesh_shape(mesh)
    predicted = collections.Counter()
    for c in step_collectives(GPT_CONFIG, mesh, TRAIN.batch_size):
        predicted[(c.kind, c.axes, c.array_bytes)] += c.count
    assert predicted == hlo_counts(gpt_runs[spec][3], shape)
    table = communication_table(step_collectives(GPT_CONFIG, mesh, TRAIN.batch_size))
    kinds = {kind for _, kind in table}
    assert ("all-gather" in kinds) == (shape["fsdp"] > 1)
    assert (("tensor", "all-reduce") in table) == (shape["tensor"] > 1)


def test_collectives_with_accumulation_biases_and_remat():
    """Micro-batches (the parameters outside the stack gathered once), biases, remat (the attention's
    all-reduce again in the backward pass): prediction and program agree. Compiled, not run."""
    config = GPT_CONFIG.replace(use_bias=True, remat=True)
    cfg = TRAIN.replace(grad_accum_steps=2)
    mesh = make_mesh(None, "fsdp=2,tensor=2")
    model = zoo.GPT(config)
    state = abstract_train_state(model, cfg, model_config=config, mesh=mesh)
    batch = shard_batch(lm_batch(0, cfg, config), 2, mesh)
    hlo = make_train_step(model, cfg, mesh, model_config=config).lower(state, batch).compile().as_text()
    predicted = collections.Counter()
    for c in step_collectives(config, mesh, cfg.batch_size, grad_accum_steps=2):
        predicted[(c.kind, c.axes, c.array_bytes)] += c.count
    assert predicted == hlo_counts(hlo, sharding.mesh_shape(mesh))


# -- other families -------------------------------------------------------------------------------------


def test_bert_under_two_meshes():
    config = presets.get("bert", "tiny").model.replace(num_layers=1)  # 4 heads x 64, MLP 256
    cfg = presets.get("bert", "tiny").train.replace(max_steps=20, decay_steps=20)
    stream = np.random.default_rng(1).integers(5, config.vocab_size, 3000)
    ids = {"cls_id": 2, "sep_id": 3, "mask_id": 4, "special_ids": (0, 1, 2, 3, 4), "vocab_size": config.vocab_size}

    def get(i):
        return mlm_batch(stream, cfg.batch_size, config.block_size, seed=0, step=i, **ids)

    model = zoo.BERTForMaskedLM(config)
    ref, ref_mu, _, _ = train_steps(model, config, cfg, MASKED_LM, get, make_mesh(jax.devices()[:1]), 4)
    for spec in ("fsdp=4", "fsdp=2,tensor=2"):
        losses, mu, _, _ = train_steps(model, config, cfg, MASKED_LM, get, make_mesh(None, spec), 4)
        np.testing.assert_allclose(losses, ref, rtol=1e-4, err_msg=spec)
        assert max(relative(g, r) for g, r in zip(jax.tree.leaves(mu), jax.tree.leaves(ref_mu))) < 1e-5


def test_seq2seq_under_fsdp_and_tensor():
    """The encoder-decoder (self- and cross-attention, two scanned stacks) under fsdp=2,tensor=2."""
    from zoo.data.translation import make_translation_batch  # noqa: PLC0415
    from zoo.models.seq2seq import Seq2SeqTransformer  # noqa: PLC0415
    from zoo.train.objectives import TRANSLATION  # noqa: PLC0415

    preset = presets.get("seq2seq", "tiny")
    config = preset.model.replace(max_target_len=16)  # 2 heads x 16, MLP 128
    cfg = preset.train.replace(batch_size=8, max_steps=20, decay_steps=20)
    rng = np.random.default_rng(0)
    pairs = [(x, x[::-1].copy()) for x in (rng.integers(2, 60, rng.integers(2, 8)) for _ in range(64))]
    data = make_translation_batch(pairs, config)  # reverse the sequence

    def get(i):
        return {k: v[np.random.default_rng([0, i]).integers(0, len(data["src"]), cfg.batch_size)]
                for k, v in data.items()}

    model = Seq2SeqTransformer(config)
    ref, ref_mu, _, _ = train_steps(model, config, cfg, TRANSLATION, get, make_mesh(jax.devices()[:1]), 3)
    losses, mu, state, _ = train_steps(model, config, cfg, TRANSLATION, get, make_mesh(None, "fsdp=2,tensor=2"), 3)
    np.testing.assert_allclose(losses, ref, rtol=1e-4)
    assert max(relative(g, r) for g, r in zip(jax.tree.leaves(mu), jax.tree.leaves(ref_mu))) < 1e-5
    assert any("tensor" in str(x.sharding.spec) for x in jax.tree.leaves(state.params))


def test_lstm_under_fsdp():
    config = presets.get("lstm", "nano").model  # 2 layers x 40, tied
    cfg = TRAIN.replace(learning_rate=3e-2)
    model = zoo.RNNLM(config)

    def get(i):
        return lm_batch(i, cfg, config)

    ref, ref_mu, _, _ = train_steps(model, config, cfg, NEXT_TOKEN, get, make_mesh(jax.devices()[:1]), 6)
    mesh = make_mesh(None, "fsdp=4")
    losses, mu, state, hlo = train_steps(model, config, cfg, NEXT_TOKEN, get, mesh, 6)
    np.testing.assert_allclose(losses, ref, rtol=1e-4)
    assert max(relative(g, r) for g, r in zip(jax.tree.leaves(mu), jax.tree.leaves(ref_mu))) < 1e-5
    assert ref[-1] < ref[0]
    # the cells' matrices (no logical names) are split over fsdp too
    cell = state.params["rnn"]["layer_0"]["cell"]
    assert str(cell["input_kernel"].sharding.spec) == str(jax.sharding.PartitionSpec("fsdp", None))
    # XLA reduces the cells' gradients gate by gate (more, smaller all-reduces): compare bytes per kind
    by_kind = collections.Counter()
    for c in hlo_collectives(hlo, sharding.mesh_shape(mesh)):
        by_kind[c.kind] += c.count * sum(b for dims, b in zip(c.shapes, c.array_bytes) if dims)
    predicted = collections.Counter()
    for c in step_collectives(config, mesh, cfg.batch_size):
        predicted[c.kind] += c.count * c.array_bytes
    assert by_kind == predicted
    with pytest.raises(ValueError, match="tensor=2: RNNLM has no parameter axis to split over tensor"):
        make_train_step(model, cfg, make_mesh(None, "tensor=2,data=2"))


# -- inference on sharded parameters ----------------------------------------------------------------------


def test_generate_and_evaluate_on_sharded_parameters(gpt_runs):
    """zoo.generate (prefill, the KV cache, the window past block_size) and evaluation take parameters split
    over fsdp and tensor, and give what the same values give on one device."""
    model = zoo.GPT(GPT_CONFIG)
    params = jax.device_get(gpt_runs[None][2].params)
    mesh = make_mesh(None, "fsdp=2,tensor=2")
    placed = jax.device_put(params, sharding.param_shardings(param_layouts(model, GPT_CONFIG, NEXT_TOKEN, mesh), mesh))
    assert any("tensor" in str(x.sharding.spec) for x in jax.tree.leaves(placed))
    prompt = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int32)
    want = zoo.generate(model, params, prompt, 30, temperature=0)  # 4 + 30 > 32: the window phase too
    got = zoo.generate(model, placed, prompt, 30, temperature=0)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    batches = {k: np.stack([lm_batch(100 + i)[k] for i in range(2)]) for k in ("inputs", "targets")}
    one = zoo.train.trainer.evaluate_batches(model, params, batches, devices=jax.devices()[:1])
    spread = zoo.train.trainer.evaluate_batches(model, placed, batches)
    np.testing.assert_allclose(spread["loss"], one["loss"], rtol=1e-5)


# -- stop under one mesh, resume under another; load on one device -----------------------------------------


def test_resume_under_another_mesh_and_load_on_one_device(gpt_runs, tmp_path):
    """``zoo pretrain gpt --mesh``: stopped under fsdp=4, resumed under tensor=2,data=2, then loaded, sampled
    and evaluated in a process with one device. (The steps are TRAIN's, compiled already by gpt_runs.)"""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(np.random.default_rng(0).choice(["the", "cat", "sat", "on", "a", "mat"], 3000)))
    run = tmp_path / "run"
    args = ["pretrain", "gpt", "--preset", "nano", "--data", str(corpus), "--out", str(run), "--no-progress",
            "--sample-tokens", "0", "--train.max-steps", "10", "--train.decay-steps", str(TRAIN.decay_steps),
            "--train.checkpoint-interval", "5", "--train.log-interval", "1", "--train.eval-batches", "1"]
    assert main([*args, "--mesh", "fsdp=4"]) == 0
    full = zoo.train.read_metrics(run)
    full_losses = {r["step"]: r["train_loss"] for r in full if "train_loss" in r}
    import shutil  # noqa: PLC0415

    shutil.rmtree(run / "checkpoints" / "10")  # as if stopped after step 5
    assert main([*args, "--mesh", "tensor=2,data=2"]) == 0  # resumes from step 5 on another mesh
    resumed = {r["step"]: r["train_loss"] for r in zoo.train.read_metrics(run) if "train_loss" in r}
    assert sorted(resumed) == list(range(1, 11))
    np.testing.assert_allclose([resumed[s] for s in range(6, 11)], [full_losses[s] for s in range(6, 11)],
                               rtol=1e-4)
    with zoo.train.Checkpointer(run / "checkpoints", create=False) as ckpt:
        assert ckpt.metadata(10)["mesh"] == {"data": 2, "fsdp": 1, "tensor": 2}
        assert ckpt.metadata(5)["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    # one device: zoo.load_run, zoo sample and zoo eval of the run trained on meshes
    code = (
        "import jax, zoo; from zoo.cli import main; assert jax.device_count() == 1\n"
        f"run = zoo.load_run({str(run)!r}); assert run.step == 10\n"
        f"assert main(['sample', {str(run)!r}, '--max-new-tokens', '8', '--temperature', '0']) == 0\n"
        f"assert main(['eval', {str(run)!r}]) == 0\n"
    )
    env = {**os.environ, "XLA_FLAGS": QUICK_XLA_FLAGS, "ZOO_CACHE_DIR": str(tmp_path / "c")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loss" in proc.stdout


# -- bad input: clear errors before anything is compiled ---------------------------------------------------


def test_bad_meshes_are_refused_before_compiling(tmp_path, capsys):
    model = zoo.GPT(GPT_CONFIG)
    with pytest.raises(ValueError, match=r"--mesh data=3: data x fsdp x tensor = 3 x 1 x 1 = 3, expected the "
                                         r"device count 4"):
        make_mesh(None, "data=3")
    with pytest.raises(ValueError, match="unknown mesh axis 'pipeline'; expected some of data, fsdp, tensor"):
        make_mesh(None, "pipeline=4")
    with pytest.raises(ValueError, match="'fsdp' is given twice"):
        make_mesh(None, "fsdp=2,fsdp=2")
    with pytest.raises(ValueError, match="tensor='x', expected a positive int"):
        make_mesh(None, "tensor=x")
    with pytest.raises(ValueError, match="tensor=4: GPT has 2 attention heads .* not divisible by tensor=4"):
        make_train_step(model, TRAIN, make_mesh(None, "tensor=4"))
    with pytest.raises(ValueError, match="micro-batches of 6 rows, expected a multiple of data x fsdp = 1 x 4 = 4"):
        make_train_step(model, TRAIN.replace(batch_size=6), make_mesh(None, "fsdp=4"))
    with pytest.raises(ValueError, match="micro-batches of 6 rows, expected a multiple of data x fsdp = 2 x 2"):
        zoo.train.train(model, GPT_CONFIG, TRAIN.replace(batch_size=6), TOKENS, TOKENS, tmp_path / "r",
                        progress=False, mesh={"data": 2, "fsdp": 2})
    assert not (tmp_path / "r" / "checkpoints").exists() or not any((tmp_path / "r" / "checkpoints").iterdir())
    # the command line: one line naming the flag (the axes before the data is read; the model's heads
    # once its configuration is known, before compiling), and no run directory left behind
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat " * 200)
    for mesh, needle in (("data=3", "expected the device count 4"), ("pipeline=4", "unknown mesh axis"),
                         ("tensor=4", "2 attention heads")):
        capsys.readouterr()
        code = main(["pretrain", "gpt", "--preset", "nano", "--data", str(corpus), "--out", str(tmp_path / "cli"),
                     "--mesh", mesh, "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "--mesh" in err[0] and needle in err[0], err
        assert not (tmp_path / "cli").exists()


def test_sharding_plan_in_the_docs_is_current():
    """docs/sharding.md's GPT-2-small tables are what benchmarks/sharding_plan.py computes (shapes only)."""
    import importlib.util  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sharding_plan.py"
    spec = importlib.util.spec_from_file_location("sharding_plan", path)
    plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plan)
    assert plan.main(["--check"]) == 0
