"""Checkpoints that verify themselves: digests at save, checks at restore, fallback to the newest good step.

Corruption is made the way disks make it: bytes flipped, a file cut short or
lost, inside a step's array data files (orbax's OCDBT ``d/`` files under
``STEP/state``), never in a way the code under test is told about.
"""

import contextlib
import json
import os
import signal
import threading
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts

import zoo
from zoo.data.tokenizers import ByteTokenizer
from zoo.run import write_run_json
from zoo.train import (
    Checkpointer,
    TrainConfig,
    abstract_train_state,
    init_train_state,
    make_mesh,
    read_metrics,
    train,
)
from zoo.train.checkpoint import CheckpointWarning, CorruptCheckpointError, array_digests


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "zoo-cache"))


def state_for(step):
    """A small state whose arrays are big enough (16 KiB) to be stored in data files, not in the index."""
    rng = np.random.default_rng(step)
    return {
        "w": jnp.asarray(rng.normal(size=(64, 64)).astype(np.float32)),
        "b": {"v": jnp.asarray(rng.normal(size=(4096,)).astype(np.float32))},
        "step": jnp.asarray(step, jnp.int32),
    }


def zeros_like_state():
    return jax.tree.map(jnp.zeros_like, state_for(0))


def data_files(step_dir):
    """The array data files of a checkpoint step, largest first."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, f"no data files under {step_dir / 'state'}"
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def stored_values(step_dir):
    """{key: (file, offset, length)} of the values stored out of line in a step's OCDBT database
    (``w/0.0``: the first chunk of array ``w``), from TensorStore's dump of its B-tree."""
    state = step_dir / "state"
    base = ts.KvStore.open(f"file://{state}/").result()
    found = {}

    def walk(node):
        for entry in ts.ocdbt.dump(base, node).result()["entries"]:
            for v in entry.values():
                if isinstance(v, str) and v.startswith("btreenode::"):
                    walk(v)  # an interior node
            if "indirect_value" in entry:  # value:<dir>:<file>:<offset>:<length>
                where, offset, length = entry["indirect_value"].removeprefix("value:").rsplit(":", 2)
                folder, name = where.split(":", 1)
                found[entry["key"].decode()] = (state / folder / name, int(offset), int(length))

    versions = ts.ocdbt.dump(base).result()["versions"]
    walk(versions[-1]["root"]["location"])
    return found


def flip_array_bytes(step_dir, name=None, n=64):
    """Invert ``n`` bytes in the middle of the stored (compressed) data of array ``name`` (orbax's name,
    dots between the keys: ``b.v``; default: the array with the largest chunk stored out of line) in a
    checkpoint step. Returns the array's path as the checkpointer writes it (``b/v``).

    Small values (up to 1 KiB compressed) are inline in the B-tree nodes, which TensorStore checksums;
    the larger ones are in data files without a checksum: those are flipped here.
    """
    values = stored_values(step_dir)
    if name is None:
        name = max(values, key=lambda k: values[k][2]).split("/")[0]
    chunks = {k: v for k, v in values.items() if k.split("/")[0] == name and "/." not in k}
    assert chunks, f"no data stored out of line for {name} under {step_dir}: {sorted(values)}"
    path, offset, length = chunks[min(chunks)]
    assert length > 2 * n
    data = bytearray(path.read_bytes())
    at = offset + length // 2
    data[at:at + n] = bytes(b ^ 0xFF for b in data[at:at + n])
    path.write_bytes(bytes(data))
    return name.replace(".", "/")


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bit-exact (NaN-free states)


def save_steps(directory, steps=(1, 2), keep=3):
    with Checkpointer(directory, keep=keep) as ckpt:
        for s in steps:
            assert ckpt.save(s, state_for(s), {"step": s})


@contextlib.contextmanager
def no_warnings():
    """A CheckpointWarning inside is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        yield


# -- digests -----------------------------------------------------------------------------------


def test_save_records_digests_that_restore_hides(tmp_path):
    save_steps(tmp_path / "ck", steps=(1,))
    raw = json.loads((tmp_path / "ck" / "1" / "metadata" / "metadata").read_text())
    record = raw["integrity"]
    assert record["algorithm"] == "crc32" and set(record["arrays"]) == {"w", "b/v", "step"}
    w = np.asarray(state_for(1)["w"])
    crc = f"{zlib.crc32(w.tobytes()):08x}"
    assert record["arrays"]["w"] == {"shape": [64, 64], "dtype": "float32", "crc32": crc}
    with Checkpointer(tmp_path / "ck") as ckpt, no_warnings():
        state, meta = ckpt.restore(zeros_like_state())
        assert meta == {"step": 1} and ckpt.metadata() == {"step": 1}
        assert_trees_equal(state, state_for(1))
        # A target of another dtype: read as saved (and verified), then cast.
        half = {**zeros_like_state(), "w": jnp.zeros((64, 64), jnp.bfloat16)}
        state, _ = ckpt.restore(half)
        assert state["w"].dtype == jnp.bfloat16
        np.testing.assert_array_equal(state["w"], state_for(1)["w"].astype(jnp.bfloat16))
        with pytest.raises(ValueError, match="metadata key 'integrity' is reserved"):
            ckpt.save(2, state_for(2), {"integrity": 1})


def test_digests_of_sharded_arrays_are_those_of_their_values(tmp_path):
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = make_mesh()
    a = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    tree = {spec: jax.device_put(a, NamedSharding(mesh, PartitionSpec(*spec))) for spec in ((), ("data",))}
    assert not tree[("data",)].sharding.is_fully_replicated
    record = array_digests({"replicated": tree[()], "sharded": tree[("data",)]})
    assert {e["crc32"] for e in record["arrays"].values()} == {f"{zlib.crc32(a.tobytes()):08x}"}
    with Checkpointer(tmp_path / "ck") as ckpt, no_warnings():  # saved sharded, restored and verified sharded
        ckpt.save(1, {"x": tree[("data",)]}, {})
        state, _ = ckpt.restore({"x": tree[("data",)]})
        assert state["x"].sharding == tree[("data",)].sharding
        np.testing.assert_array_equal(state["x"], a)


def test_flipped_bytes_fall_back_to_the_older_step(tmp_path):
    directory = tmp_path / "ck"
    save_steps(directory)
    flip_array_bytes(directory / "2", "w")
    # orbax alone restores the damaged array without complaint: that is the bug.
    raw = ocp.StandardCheckpointer().restore(directory / "2" / "state", zeros_like_state())
    assert not np.array_equal(raw["w"], state_for(2)["w"])
    np.testing.assert_array_equal(raw["b"]["v"], state_for(2)["b"]["v"])

    with Checkpointer(directory) as ckpt:
        with pytest.warns(CheckpointWarning, match=f"checkpoint step 2 in {directory} is corrupt "
                                                   r"\(digest mismatch in w\); using step 1$"):
            state, meta = ckpt.restore(zeros_like_state())
        assert meta == {"step": 1}
        assert_trees_equal(state, state_for(1))
        pattern = f"checkpoint {directory / '2'} could not be restored: digest mismatch in w$"
        with pytest.raises(CorruptCheckpointError, match=pattern):
            ckpt.restore(zeros_like_state(), step=2)  # an explicit step does not fall back
        assert ckpt.all_steps() == [1, 2]  # read only: the damaged step stays where it is
    assert issubclass(CorruptCheckpointError, ValueError)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_lost_data_falls_back_to_the_older_step(tmp_path, damage):
    directory = tmp_path / "ck"
    save_steps(directory)
    for f in data_files(directory / "2"):
        if damage == "truncate":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        else:
            f.unlink()
    with Checkpointer(directory) as ckpt:
        with pytest.warns(CheckpointWarning, match=r"checkpoint step 2 .* is corrupt \(.+\); using step 1$"):
            state, _ = ckpt.restore(zeros_like_state())
        assert_trees_equal(state, state_for(1))


def test_no_good_checkpoint_is_an_error_listing_each(tmp_path):
    directory = tmp_path / "ck"
    save_steps(directory)
    flip_array_bytes(directory / "2", "b.v")
    for f in data_files(directory / "1"):
        f.unlink()
    with Checkpointer(directory) as ckpt, no_warnings():
        pattern = (f"no usable checkpoint in {directory}: step 2: digest mismatch in b/v; "
                   r"step 1: its arrays cannot be read \(.*\)\. Nothing was changed on disk")
        with pytest.raises(ValueError, match=pattern):
            ckpt.restore(zeros_like_state())
        assert ckpt.all_steps() == [1, 2]


def test_another_structure_is_an_error_not_a_fallback(tmp_path):
    directory = tmp_path / "ck"
    save_steps(directory)
    with Checkpointer(directory) as ckpt, no_warnings():
        wrong = {**zeros_like_state(), "w": jnp.zeros((2, 2))}
        pattern = (f"checkpoint {directory / '2'} could not be restored: it was written for a different model "
                   r"or optimizer \(w has shape \(64, 64\) in the checkpoint, expected \(2, 2\)\)")
        with pytest.raises(ValueError, match=pattern):
            ckpt.restore(wrong)
        with pytest.raises(ValueError, match=r"different model or optimizer \(1 expected arrays not saved "
                                             r"\(first: extra\)\)"):
            ckpt.restore({**zeros_like_state(), "extra": jnp.zeros(3)})


def test_checkpoint_without_digests_still_loads(tmp_path):
    """A checkpoint written before digests existed (orbax items state + metadata, no "integrity")."""
    directory = tmp_path / "ck"
    with ocp.CheckpointManager(directory, item_names=("state", "metadata")) as manager:
        for s in (1, 2):
            manager.save(s, args=ocp.args.Composite(state=ocp.args.StandardSave(state_for(s)),
                                                    metadata=ocp.args.JsonSave({"step": s})))
    with Checkpointer(directory) as ckpt, no_warnings():
        state, meta = ckpt.restore(zeros_like_state())
        assert meta == {"step": 2}
        assert_trees_equal(state, state_for(2))
    # Unreadable arrays still fall back (there is no digest to catch flipped bytes).
    for f in data_files(directory / "2"):
        f.unlink()
    with Checkpointer(directory) as ckpt, pytest.warns(CheckpointWarning, match="step 2 .*; using step 1"):
        state, _ = ckpt.restore(zeros_like_state())
        assert_trees_equal(state, state_for(1))


# -- the trainer and load_run --------------------------------------------------------------------

GPT_CONFIG = zoo.GPTConfig(vocab_size=32, block_size=16, num_layers=1, num_heads=2, features=16)
TOKENS = np.tile(np.random.default_rng(0).permutation(30)[:11], 200).astype(np.int32)


def test_resume_skips_a_corrupt_checkpoint_and_moves_it_aside(tmp_path):
    cfg = TrainConfig(batch_size=8, max_steps=12, learning_rate=1e-2, min_learning_rate=1e-3, warmup_steps=0,
                      eval_interval=12, eval_batches=1, log_interval=1, checkpoint_interval=4,
                      keep_checkpoints=2)
    run_dir, directory = tmp_path / "run", tmp_path / "run" / "checkpoints"

    def run():
        return train(zoo.GPT(GPT_CONFIG), GPT_CONFIG, cfg, TOKENS, TOKENS[:500], run_dir, progress=False)

    run()
    losses = {r["step"]: r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r}
    target = abstract_train_state(zoo.GPT(GPT_CONFIG), cfg, model_config=GPT_CONFIG, mesh=make_mesh())
    with Checkpointer(directory) as ckpt:
        assert ckpt.all_steps() == [8, 12]
        original, _ = ckpt.restore(target, step=12)
    damaged = flip_array_bytes(directory / "12")  # e.g. opt_state/1/0/mu/decoder/layers/mlp/wi/kernel

    with pytest.warns(CheckpointWarning, match=f"checkpoint step 12 in {directory} is corrupt "
                                               f"\\(digest mismatch in {damaged}\\); moved it to "
                                               f"{tmp_path / 'run' / 'checkpoints-corrupt' / '12'}; "
                                               "resuming from step 8$"):
        result = run()
    assert result["steps_run"] == 4 and result["step"] == 12
    resumed = {r["step"]: r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r}
    assert resumed == losses  # steps 9..12 again, exactly
    moved = tmp_path / "run" / "checkpoints-corrupt" / "12"
    assert (moved / "state").is_dir() and data_files(moved)  # kept, not deleted
    with Checkpointer(directory) as ckpt, no_warnings():
        assert ckpt.all_steps() == [8, 12]
        again, _ = ckpt.restore(target)  # the new step 12 verifies
    assert_trees_equal(again, original)


def make_run_dir(run_dir, steps_and_states):
    cfg = TrainConfig(batch_size=8, max_steps=30, warmup_steps=0)
    config = GPT_CONFIG.replace(vocab_size=257)
    write_run_json(run_dir, family="gpt", preset="test", model=config, train=cfg)
    ByteTokenizer().save(run_dir / "tokenizer")
    state = init_train_state(zoo.GPT(config), cfg, model_config=config, mesh=make_mesh())
    with Checkpointer(run_dir / "checkpoints") as ckpt:
        for step, edit in steps_and_states:
            ckpt.save(step, edit(state.replace(step=jnp.asarray(step, jnp.int32))), {"step": step})
    return state


def with_nan(state):
    emb = state.params["wte"]["embedding"]
    params = {**state.params, "wte": {"embedding": emb.at[0, :12].set(jnp.nan)}}
    return state.replace(params=params)


def test_load_run_refuses_nonfinite_params_and_falls_back_read_only(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    state = make_run_dir(run_dir, [(15, lambda s: s), (30, with_nan)])
    pattern = (f"{run_dir}: checkpoint step 30 has non-finite parameters "
               r"\(params/wte/embedding: 12 NaN; 1 of \d+ arrays\); .*"
               r"the other saved steps are \[15\]; zoo.load_run\(run_dir, step=N\) loads one$")
    with pytest.raises(ValueError, match=pattern):
        zoo.load_run(run_dir)
    run = zoo.load_run(run_dir, step=15)
    assert run.step == 15
    assert_trees_equal(run.params, state.params)

    # A damaged newest step: load_run warns, uses step 15, and moves nothing.
    damaged = flip_array_bytes(run_dir / "checkpoints" / "30")
    with pytest.warns(CheckpointWarning, match=r"checkpoint step 30 in .*checkpoints is corrupt "
                                               f"\\(digest mismatch in {damaged}\\); using step 15$"):
        run = zoo.load_run(run_dir)
    assert run.step == 15
    assert (run_dir / "checkpoints" / "30").is_dir() and not (run_dir / "checkpoints-corrupt").exists()


def test_ctrl_c_during_a_save_takes_effect_when_the_save_ends(tmp_path, monkeypatch):
    """A SIGINT delivered while Orbax's manager saves (its writers may still run) is held until the save
    is complete: then KeyboardInterrupt, with the step saved whole and the manager usable (CI once saw the
    interrupt's own save collide with the interrupted one: 'Directory not empty')."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, state_for(1), {"step": 1})
        real_save = ckpt._manager.save

        def save_then_ctrl_c(*args, **kwargs):
            saved = real_save(*args, **kwargs)  # Orbax's writers may still be writing: the save is async
            os.kill(os.getpid(), signal.SIGINT)
            return saved

        monkeypatch.setattr(ckpt._manager, "save", save_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(2, state_for(2), {"step": 2})
        monkeypatch.undo()
        assert ckpt.all_steps() == [1, 2]
        restored, metadata = ckpt.restore(zeros_like_state(), 2)
        assert metadata["step"] == 2
        np.testing.assert_array_equal(restored["w"], state_for(2)["w"])
        assert ckpt.save(3, state_for(3), {"step": 3})  # the manager still saves
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
