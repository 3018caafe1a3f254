"""zoo.train: optimizer, steps, checkpoints, metrics and the training loop, on nano models.

The tests share train configs where they can: compiled steps are cached on
(model, step-relevant config, mesh), so most runs after the first reuse a
compilation.
"""

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zoo
from zoo.train import (
    Checkpointer,
    TrainConfig,
    make_optimizer,
    make_schedule,
    random_windows,
    read_metrics,
    train,
    weight_decay_mask,
)
from zoo.train import metrics as metrics_lib

GPT_CONFIG = zoo.GPTConfig(vocab_size=32, block_size=16, num_layers=1, num_heads=2, features=16)
LSTM_CONFIG = zoo.RNNLMConfig(vocab_size=32, features=16, num_layers=1, block_size=16)
# Fast-learning settings shared by most runs (so their compiled steps are shared too).
BASE = TrainConfig(
    batch_size=8, max_steps=12, learning_rate=1e-2, min_learning_rate=1e-3, warmup_steps=0,
    eval_interval=6, eval_batches=2, log_interval=1, checkpoint_interval=100,
)


def pattern_tokens(n=2000, period=11, vocab=30, seed=0):
    """A repeating random pattern: each token determines the next."""
    cycle = np.random.default_rng(seed).permutation(vocab)[:period]
    return np.tile(cycle, n // period + 1)[:n].astype(np.int32)


TOKENS = pattern_tokens()


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "zoo-cache"))


def run(tmp_path, name, cfg=BASE, model_config=GPT_CONFIG, **kwargs):
    model = zoo.GPT(model_config) if isinstance(model_config, zoo.GPTConfig) else zoo.RNNLM(model_config)
    kwargs.setdefault("progress", False)
    return train(model, model_config, cfg, TOKENS, TOKENS[:500], tmp_path / name, **kwargs)


def train_losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r}


# -- optimizer ----------------------------------------------------------------------------------


def test_schedule_follows_warmup_and_cosine():
    cfg = TrainConfig(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=10, max_steps=110)
    lr = make_schedule(cfg)

    def expected(s):
        if s < 10:
            return 1e-3 * s / 10
        p = min((s - 10) / 100, 1.0)
        return 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * p))

    for s in (0, 1, 5, 10, 11, 35, 60, 85, 109, 110, 500):
        np.testing.assert_allclose(float(lr(s)), expected(s), rtol=1e-5, atol=1e-9, err_msg=f"step {s}")
    # decay_steps overrides max_steps
    lr2 = make_schedule(cfg.replace(decay_steps=60))
    np.testing.assert_allclose(float(lr2(35)), 1e-4 + 0.45e-3 * (1 + math.cos(math.pi * 0.5)), rtol=1e-5)
    np.testing.assert_allclose(float(lr2(60)), 1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="warmup_steps=10, expected fewer than decay_steps=5"):
        make_schedule(cfg.replace(decay_steps=5))
    # Floats are checked one by one, finiteness first, so the error names the field that is wrong.
    for field, value in (("learning_rate", math.nan), ("min_learning_rate", math.inf), ("beta2", 1.0),
                         ("weight_decay", math.nan), ("grad_clip", -1.0)):
        with pytest.raises(ValueError, match=f"TrainConfig: {field}={value!r}, expected"):
            TrainConfig(**{field: value})


def test_weight_decay_mask_matrices_only():
    boxed = jax.eval_shape(
        lambda: zoo.GPT(GPT_CONFIG).init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    )
    for tree in (boxed, nn.unbox(boxed)):
        flat = {
            "/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_flatten_with_path(weight_decay_mask(tree))[0]
        }
        decayed = sorted(k for k, v in flat.items() if v)
        kept = sorted(k for k, v in flat.items() if not v)
        assert "wte/embedding" in decayed and "wpe/embedding" in decayed
        assert all("kernel" in k or "embedding" in k for k in decayed), decayed
        assert any("scale" in k for k in kept) and any("bias" in k for k in kept)
        assert all("bias" in k or "scale" in k for k in kept), kept
    # Apply it: zero gradients, so the only change is the decay p -> p * (1 - lr * wd).
    params = {"dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))}, "norm": {"scale": jnp.ones((2, 4))}}
    cfg = TrainConfig(learning_rate=0.1, min_learning_rate=0.1, warmup_steps=0, weight_decay=0.5, grad_clip=1.0)
    opt = make_optimizer(cfg)
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["dense"]["kernel"], 0.95, rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["bias"], 1.0)
    np.testing.assert_allclose(new["norm"]["scale"], 1.0)


def test_lstm_mask_and_clipping_off():
    boxed = jax.eval_shape(
        lambda: zoo.RNNLM(LSTM_CONFIG).init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    )
    mask = jax.tree_util.tree_flatten_with_path(weight_decay_mask(nn.unbox(boxed)))[0]
    assert {str(p[-1].key): v for p, v in mask} == {
        "embedding": True, "input_kernel": True, "recurrent_kernel": True, "bias": False
    }
    # Clipping: Adam's first step is g / (|g| + eps), about lr per element unclipped, but a third of
    # that when clipping shrinks the elements to eps / 2 (then eps matters).
    params, grads = {"w": jnp.zeros(4)}, {"w": jnp.full(4, 1e3)}  # |grads| = 2000
    for clip, expected in ((0.0, 0.1), (1e-8, 0.1 / 3)):
        cfg = TrainConfig(learning_rate=0.1, min_learning_rate=0.1, warmup_steps=0, grad_clip=clip)
        opt = make_optimizer(cfg)
        updates, _ = opt.update(grads, opt.init(params), params)
        np.testing.assert_allclose(updates["w"], -expected, rtol=1e-4)
    with pytest.raises(ValueError, match="grad_clip=-1"):
        make_optimizer(TrainConfig(grad_clip=-1))


# -- the loop -----------------------------------------------------------------------------------


def test_gpt_training_lowers_loss_and_logs_metrics(tmp_path):
    result = run(tmp_path, "gpt", flops_per_token=zoo.gpt_flops_per_token(GPT_CONFIG))
    records = read_metrics(tmp_path / "gpt")
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 6, 12]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0, evals
    assert result["step"] == 12 and result["steps_run"] == 12
    assert result["val_loss"] == evals[-1]["val_loss"]
    assert math.isclose(evals[-1]["val_ppl"], math.exp(evals[-1]["val_loss"]))
    trains = [r for r in records if "train_loss" in r]
    assert [r["step"] for r in trains] == list(range(1, 13))
    for r in trains:
        assert {"lr", "tokens_per_s", "mfu", "elapsed_s", "grad_norm", "nonfinite_steps"} <= set(r)
        assert r["tokens_per_s"] > 0 and r["mfu"] > 0
    assert result["tokens_per_s"] > 0 and result["elapsed_s"] > 0 and result["mfu"] > 0
    png = (tmp_path / "gpt" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "gpt" / "checkpoints" / "12").is_dir()
    # Already at max_steps: nothing to do.
    again = run(tmp_path, "gpt")
    assert again["steps_run"] == 0 and again["step"] == 12
    assert len(read_metrics(tmp_path / "gpt")) == len(records)


def test_lstm_training_lowers_loss(tmp_path):
    run(tmp_path, "lstm", BASE.replace(learning_rate=5e-2, min_learning_rate=5e-3), model_config=LSTM_CONFIG)
    evals = [r for r in read_metrics(tmp_path / "lstm") if "val_loss" in r]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0, evals


def test_overfits_a_tiny_corpus(tmp_path):
    cfg = BASE.replace(max_steps=150, learning_rate=2e-2, min_learning_rate=2e-3, log_interval=50, eval_interval=150)
    result = run(tmp_path, "overfit", cfg)
    assert result["eval_train_loss"] < 0.05, result


def test_resume_is_exact(tmp_path):
    config = GPT_CONFIG.replace(dropout_rate=0.1)  # resumed dropout masks must match too
    run(tmp_path, "full", model_config=config)

    def interrupted(tokens, batch_size, block_size, *, seed, step):
        if step == 7:
            raise KeyboardInterrupt
        return random_windows(tokens, batch_size, block_size, seed=seed, step=step)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "resumed", model_config=config, get_batch=interrupted)
    with Checkpointer(tmp_path / "resumed" / "checkpoints", create=False) as ckpt:
        assert ckpt.all_steps() == [7]
        assert ckpt.metadata()["step"] == 7
        assert ckpt.metadata()["model_config"]["dropout_rate"] == 0.1
        target = zoo.train.abstract_train_state(zoo.GPT(config), BASE, model_config=config, mesh=zoo.train.make_mesh())
        state, _ = ckpt.restore(target)  # restores into the abstract state's structure and shardings
        assert int(state.step) == 7 and state.params["wte"]["embedding"].sharding.is_fully_replicated
    assert max(train_losses(tmp_path / "resumed")) == 7
    result = run(tmp_path, "resumed", model_config=config)
    assert result["steps_run"] == 5
    full, resumed = train_losses(tmp_path / "full"), train_losses(tmp_path / "resumed")
    assert list(full) == list(resumed) == list(range(1, 13))
    assert full == resumed  # exactly
    # Another model config cannot resume this run.
    with pytest.raises(ValueError, match="another model config.*dropout_rate"):
        run(tmp_path, "resumed", model_config=GPT_CONFIG, cfg=BASE.replace(max_steps=20))


def test_data_parallel_equals_one_device(tmp_path):
    assert jax.device_count() == 4
    cfg = BASE.replace(max_steps=4, eval_interval=4)
    run(tmp_path, "dp4", cfg)
    run(tmp_path, "dp1", cfg, devices=jax.devices()[:1])
    a, b = train_losses(tmp_path / "dp4"), train_losses(tmp_path / "dp1")
    assert list(a) == list(b) == [1, 2, 3, 4]
    np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=2e-5)


def test_grad_accumulation_equals_full_batch(tmp_path):
    cfg = BASE.replace(batch_size=12, max_steps=4, eval_interval=4)
    devices = jax.devices()[:2]  # micro-batches of 6 rows split over 2 devices
    run(tmp_path, "full", cfg, devices=devices)
    run(tmp_path, "accum", cfg.replace(grad_accum_steps=2), devices=devices)
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "accum")
    np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=2e-5)


def test_batch_must_split_over_devices(tmp_path):
    with pytest.raises(ValueError, match="micro-batches of 6 rows.*device count 4"):
        run(tmp_path, "bad", BASE.replace(batch_size=6))
    with pytest.raises(ValueError, match="grad_accum_steps=4 gives micro-batches of 2 rows.*device count 4"):
        zoo.train.make_train_step(zoo.GPT(GPT_CONFIG), BASE.replace(grad_accum_steps=4), zoo.train.make_mesh())


def test_token_and_batch_checks(tmp_path):
    with pytest.raises(ValueError, match="train_data has token ids in \\[0, 40\\].*vocab_size=32"):
        train(zoo.GPT(GPT_CONFIG), GPT_CONFIG, BASE, np.arange(41), TOKENS, tmp_path, progress=False)
    with pytest.raises(ValueError, match="val_data has 10 tokens, expected at least block_size \\+ 1 = 17"):
        train(zoo.GPT(GPT_CONFIG), GPT_CONFIG, BASE, TOKENS, TOKENS[:10], tmp_path, progress=False)


# -- non-finite losses --------------------------------------------------------------------------

POISON = 31  # a token the pattern never uses; the model below turns a batch containing it into NaN


class PoisonedGPT(nn.Module):
    config: zoo.GPTConfig

    @nn.compact
    def __call__(self, ids, *, deterministic=True):
        logits = zoo.GPT(self.config, name="gpt")(ids, deterministic=deterministic)
        return logits * jnp.where((ids == POISON).any(), jnp.nan, 1.0)


def poisoned_batches(tokens, batch_size, block_size, *, seed, step):
    x, y = random_windows(tokens, batch_size, block_size, seed=seed, step=step)
    if step == 3 and seed != zoo.train.EVAL_SEED:
        x[0, 0] = POISON
    return x, y


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nonfinite_loss(tmp_path, policy):
    cfg = BASE.replace(max_steps=6, eval_interval=6, log_interval=5, checkpoint_interval=2, on_nonfinite=policy)
    args = (PoisonedGPT(GPT_CONFIG), GPT_CONFIG, cfg, TOKENS, TOKENS, tmp_path)
    if policy == "stop":
        with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step 3 .*steps \\[2\\]"):
            train(*args, get_batch=poisoned_batches, progress=False)
        # The sync at step 4 (a checkpoint step) caught it; nothing after step 2 was saved.
        with Checkpointer(tmp_path / "checkpoints") as ckpt:
            assert ckpt.all_steps() == [2]
    else:
        result = train(*args, get_batch=poisoned_batches, progress=False)
        assert result["step"] == 6 and result["nonfinite_steps"] == 1
        assert math.isfinite(result["val_loss"]) and math.isfinite(result["train_loss"])
        assert [r["nonfinite_steps"] for r in read_metrics(tmp_path) if "train_loss" in r] == [1, 1]


# -- checkpoints --------------------------------------------------------------------------------


def small_state(value=1.0):
    return {"w": jnp.full((4, 3), value), "step": jnp.asarray(3, jnp.int32)}


def test_checkpoint_round_trip_and_keep(tmp_path):
    with Checkpointer(tmp_path / "ck", keep=2) as ckpt:
        for step in (1, 2, 3):
            assert ckpt.save(step, small_state(step), {"step": step, "note": "x"})
        assert not ckpt.save(3, small_state(9.0), {"step": 3})  # already saved: left alone
        assert ckpt.all_steps() == [2, 3]
        state, meta = ckpt.restore(small_state(0.0))
        np.testing.assert_array_equal(state["w"], 3.0)
        assert meta == {"step": 3, "note": "x"}
        state, _ = ckpt.restore(small_state(0.0), step=2)
        np.testing.assert_array_equal(state["w"], 2.0)
        with pytest.raises(FileNotFoundError, match="no checkpoint for step 1 .*saved steps: \\[2, 3\\]"):
            ckpt.restore(small_state(), step=1)


def test_checkpoint_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist"):
        Checkpointer(missing, create=False)
    with Checkpointer(tmp_path / "empty") as ckpt, pytest.raises(FileNotFoundError, match="no checkpoint in .*empty"):
        ckpt.restore(small_state())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file exists but is not a directory"):
        Checkpointer(tmp_path / "file")


def test_checkpoint_corrupt_or_mismatched(tmp_path):
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(5, small_state(), {"step": 5})
        with pytest.raises(ValueError, match=f"checkpoint {tmp_path / 'ck' / '5'} could not be restored"):
            ckpt.restore({"w": jnp.zeros((2, 2)), "other": jnp.zeros(())})
    for f in (tmp_path / "ck" / "5").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    ck = tmp_path / "ck"
    with Checkpointer(ck) as ckpt:
        with pytest.raises(ValueError, match=f"no usable checkpoint in {ck}: step 5: its metadata cannot"):
            ckpt.restore(small_state())
        with pytest.raises(ValueError, match=f"checkpoint {ck / '5'} could not be restored: its metadata"):
            ckpt.restore(small_state(), step=5)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    directory = tmp_path / "ck"
    with Checkpointer(directory, keep=1) as ckpt:
        ckpt.save(1, small_state(1.0), {"step": 1})
        seen = {}
        original = ocp.handlers.JsonCheckpointHandler.async_save

        async def failing_save(self, path, *args, **kwargs):  # after the state is written
            seen["tmp_dirs"] = [p.name for p in directory.iterdir() if "tmp" in p.name]
            raise OSError("disk full")

        monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", failing_save)
        with pytest.raises(RuntimeError, match="saving checkpoint step 2 in .*ck failed.*disk full.*\\[1\\] are intact"):
            ckpt.save(2, small_state(2.0), {"step": 2})
        assert seen["tmp_dirs"], "the failure should happen mid-save, in orbax's temporary folder"
        monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", original)
        assert ckpt.all_steps() == [1]
    with Checkpointer(directory, keep=1) as ckpt:
        assert ckpt.all_steps() == [1]
        state, meta = ckpt.restore(small_state(0.0))
        np.testing.assert_array_equal(state["w"], 1.0)
        assert meta["step"] == 1
    assert sorted(p.name for p in directory.iterdir()) == ["1"]  # the temporary folder is gone


def test_trainer_reports_corrupt_checkpoint(tmp_path):
    cfg = BASE.replace(max_steps=2, eval_interval=2)
    run(tmp_path, "c", cfg)
    for f in (tmp_path / "c" / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no usable checkpoint in .*checkpoints: step 2: its arrays"):
        run(tmp_path, "c", cfg.replace(max_steps=4))
    assert not (tmp_path / "c" / "checkpoints-corrupt").exists()  # nothing is moved when no step is usable
    with pytest.raises(ValueError, match="has checkpoints .*resume is off"):
        run(tmp_path, "c", cfg, resume=False)


# -- metrics --------------------------------------------------------------------------------------


def test_peak_flops_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(metrics_lib, "measure_matmul_flops", lambda device: calls.append(device) or 1e9)
    assert metrics_lib.peak_flops() == 1e9
    assert metrics_lib.peak_flops() == 1e9
    assert len(calls) == 1
    cache = json.loads((tmp_path / "peak_flops.json").read_text())
    assert list(cache.values()) == [1e9] and jax.__version__ in next(iter(cache))


def test_metrics_file_and_plot(tmp_path):
    metrics_lib.append_metrics(tmp_path, {"step": 1, "train_loss": 2.0, "lr": np.float32(0.5)})
    metrics_lib.append_metrics(tmp_path, {"step": 1, "val_loss": float("nan")})
    with pytest.raises(ValueError, match="must have a 'step'"):
        metrics_lib.append_metrics(tmp_path, {"train_loss": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "trai')  # a torn last line
    assert read_metrics(tmp_path) == [{"step": 1, "train_loss": 2.0, "lr": 0.5}, {"step": 1, "val_loss": None}]
    assert metrics_lib.plot_losses(tmp_path).stat().st_size > 1000
