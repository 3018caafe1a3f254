"""Long-range tasks: each generator's documented answer, recomputed from its inputs; the models; the commands."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from zoo.experiments import tasks
from zoo.data import long_range as dt

B = 64


# -- generators: the documented answer, recomputed from the inputs ------------------------------------


@pytest.mark.parametrize("length", [2, 3, 10, 101])
def test_adding_target_is_the_sum_of_the_two_marked_values(length):
    batch = dt.adding_problem(B, length, seed=1)
    x, y, m = batch.inputs, batch.targets, batch.mask
    assert x.shape == (B, length, 2) and x.dtype == np.float32
    assert y.shape == (B, length) and y.dtype == np.float32
    assert m.shape == (B, length) and m.dtype == bool
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = length // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    assert (m[:, -1]).all() and m.sum() == B  # only the last step is scored
    expected = (values * markers).sum(1)
    np.testing.assert_allclose(y[:, -1], expected, rtol=1e-6)
    assert (y[:, :-1] == 0).all()


def test_adding_trivial_baseline_is_one_sixth():
    batch = dt.adding_problem(20000, 50, seed=3)
    mse = float(np.mean((batch.targets[:, -1] - 1.0) ** 2))
    assert mse == pytest.approx(1 / 6, abs=0.01)
    assert dt.task_spec("adding", 50).baseline == pytest.approx(1 / 6)


@pytest.mark.parametrize("length", [1, 5, 40])
def test_copy_targets_are_the_first_ten_symbols(length):
    batch = dt.copy_memory(B, length, seed=2)
    x, y, m = batch.inputs, batch.targets, batch.mask
    n = length + 20
    assert x.shape == y.shape == m.shape == (B, n) and x.dtype == y.dtype == np.int32
    assert ((x[:, :10] >= 1) & (x[:, :10] <= 8)).all()
    assert (x[:, 10:n - 11] == 0).all()  # T - 1 blanks
    assert (x[:, n - 11] == 9).all()  # the delimiter, then 10 blanks
    assert (x[:, n - 10:] == 0).all()
    assert (m.sum(1) == 10).all() and m[:, -10:].all()
    # independently: the answer is the row's non-blank, non-delimiter inputs, in order
    for row_x, row_y, row_m in zip(x, y, m):
        data = row_x[(row_x != 0) & (row_x != 9)]
        np.testing.assert_array_equal(row_y[row_m], data)
    assert (y[~m] == 0).all()


@pytest.mark.parametrize("length", [8, 9, 64])
def test_selective_copy_targets_are_the_data_tokens_in_order(length):
    batch = dt.selective_copy(B, length, seed=4)
    x, y, m = batch.inputs, batch.targets, batch.mask
    assert x.shape == (B, length + 8) and x.dtype == np.int32
    assert (x[:, length:] == 9).all()  # delimiters
    assert ((x[:, :length] >= 0) & (x[:, :length] <= 8)).all()
    for row_x, row_y, row_m in zip(x, y, m):
        region = row_x[:length]
        data = region[region != 0]
        assert len(data) == 8
        np.testing.assert_array_equal(row_y[row_m], data)
        assert row_m.sum() == 8 and row_m[length:].all()
    if length > 8:  # the data positions vary from row to row
        assert len({tuple(np.flatnonzero(r[:length])) for r in x}) > 1


@pytest.mark.parametrize("length", [8, 9, 100])
def test_recall_target_is_the_value_of_the_query_key(length):
    batch = dt.associative_recall(B, length, seed=5)
    x, y, m = batch.inputs, batch.targets, batch.mask
    assert x.shape == (B, length + 2) and x.dtype == np.int32
    spec = dt.task_spec("recall", length)
    assert spec.vocab_size == 18 and (x < spec.vocab_size).all() and (x >= 0).all()
    assert (x[:, -2] == 17).all()  # the delimiter
    assert (m.sum(1) == 1).all() and m[:, -1].all()
    for row_x, row_y in zip(x, y):
        region = row_x[:length]
        pairs = {}
        for i in range(0, length - 1, 2):
            k, v = region[i], region[i + 1]
            if k:
                assert 1 <= k <= 8 and 9 <= v <= 16 and k not in pairs  # keys are distinct
                pairs[int(k)] = int(v)
            else:
                assert v == 0
        assert len(pairs) == 4
        assert row_y[-1] == pairs[int(row_x[-1])]


@pytest.mark.parametrize("task", dt.TASKS)
def test_seeds_determine_the_batch(task):
    a = dt.make_batch(task, 8, 32, seed=(7, 0, 3))
    b = dt.make_batch(task, 8, 32, seed=(7, 0, 3))
    c = dt.make_batch(task, 8, 32, seed=(7, 0, 4))
    d = dt.make_batch(task, 8, 32, seed=8)
    for f in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.inputs, c.inputs) and not np.array_equal(a.inputs, d.inputs)
    spec = dt.task_spec(task, 32)
    assert a.inputs.shape[:2] == (8, spec.seq_len) == (8, dt.sequence_length(task, 32))
    assert (a.mask.sum(1) == spec.scored_per_example).all()


@pytest.mark.parametrize("call, name", [
    (lambda: dt.adding_problem(0, 10), "batch_size=0"),
    (lambda: dt.adding_problem(4, 1), "length=1"),
    (lambda: dt.adding_problem(4, 10.0), "length=10.0"),
    (lambda: dt.adding_problem(4, 10, seed=-1), "seed=-1"),
    (lambda: dt.copy_memory(4, 0), "length=0"),
    (lambda: dt.copy_memory(4, 5, num_symbols=0), "num_symbols=0"),
    (lambda: dt.copy_memory(4, 5, num_copy=0), "num_copy=0"),
    (lambda: dt.selective_copy(4, 7), "length=7"),
    (lambda: dt.selective_copy(True, 16), "batch_size=True"),
    (lambda: dt.associative_recall(4, 7), "length=7"),
    (lambda: dt.associative_recall(4, 40, num_pairs=10, num_keys=8), "num_keys=8"),
    (lambda: dt.associative_recall(4, 40, num_values=0), "num_values=0"),
    (lambda: dt.make_batch("sorting", 4, 10), "task='sorting'"),
])
def test_bad_arguments_raise_and_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(")):
        call()


# -- the models ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["adding", "recall"])
@pytest.mark.parametrize("model", tasks.MODELS)
def test_param_count_matches_init_and_widths_match_the_gpt(task, model):
    spec = dt.task_spec(task, 16)
    cfg = tasks.model_config(model, spec, features=32, num_layers=2, num_heads=2)
    x = dt.make_batch(task, 2, 16).inputs
    shapes = jax.eval_shape(lambda: tasks.SequenceModel(cfg).init(jax.random.key(0), x))
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == tasks.param_count(cfg)
    gpt = tasks.param_count(tasks.model_config("gpt", spec, 32, 2, 2))
    assert abs(tasks.param_count(cfg) - gpt) / gpt < 0.1
    out = jax.eval_shape(lambda v: tasks.SequenceModel(cfg).apply(v, x), shapes)
    assert out.shape == (2, spec.seq_len, spec.num_outputs) and out.dtype == np.float32


@pytest.mark.parametrize("model", tasks.MODELS)
def test_models_are_causal(model, helpers):
    spec = dt.task_spec("copy", 4)
    cfg = tasks.model_config(model, spec, features=16, num_layers=1, num_heads=2)
    m = tasks.SequenceModel(cfg)
    x = dt.make_batch("copy", 2, 4).inputs
    params = helpers.init_params(m, x)  # random values without compiling the initialisers
    apply = jax.jit(m.apply)
    y1 = np.asarray(apply(params, x))
    x2 = x.copy()
    x2[:, 12:] = 3  # change the tail
    y2 = np.asarray(apply(params, x2))
    np.testing.assert_array_equal(y1[:, :12], y2[:, :12])
    assert not np.allclose(y1[:, 12:], y2[:, 12:])


# -- training ------------------------------------------------------------------------------------------


def test_lstm_learns_the_adding_problem_at_short_length():
    cfg = tasks.RunConfig("adding", model="lstm", length=10, steps=300, batch_size=32, features=16, heads=2,
                          lr=1e-2, eval_size=256)
    r = tasks.run_task(cfg)
    assert r["metric"] == "mse" and r["finite"]
    assert r["value"] < 0.4 * r["baseline"], r  # well below 1/6: it found the markers


# -- the commands --------------------------------------------------------------------------------------


def test_run_main_prints_the_result_line(capsys):
    code = tasks.run_main(["recall", "--model", "rnn", "--length", "16", "--steps", "3", "--batch-size", "4",
                           "--features", "16", "--heads", "2", "--eval-size", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "recall T=16 (L=18) SimpleRNN 2 x " in out and "params" in out
    assert "accuracy" in out and "baseline 12.5%" in out and out.endswith(" s\n")


def test_width_is_the_old_name_of_features(capsys):
    from zoo.harness.main import parse

    spec = dt.task_spec("copy", 4)
    with pytest.warns(DeprecationWarning, match="width= is now called features="):
        old = tasks.model_config("lstm", spec, width=16)
    assert old == tasks.model_config("lstm", spec, features=16)
    for cls, args in ((tasks.SequenceModelConfig, ()), (tasks.RunConfig, ("copy",)), (tasks.SweepConfig, ())):
        with pytest.warns(DeprecationWarning, match="is now called features="):
            assert cls(*args, width=8).features == 8
    assert parse(tasks.RUN, ["copy", "--width", "8"], "zoo tasks run").features == 8
    assert parse(tasks.SWEEP, ["--width=8"], "zoo tasks sweep").features == 8
    err = capsys.readouterr().err.splitlines()
    assert err == ["zoo tasks run: note: --width is now called --features (the old name goes in the next release)",
                   "zoo tasks sweep: note: --width is now called --features (the old name goes in the next release)"]


def test_run_main_rejects_a_bad_length(capsys):
    assert tasks.run_main(["recall", "--length", "4"]) == 2
    assert "length=4" in capsys.readouterr().err


def test_sweep_main_quick_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = tasks.sweep_main(["--quick", "--tasks", "adding", "recall", "--models", "mingru", "gpt",
                             "--steps", "3", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| task | model | params | T=16 | seconds |" in stdout
    assert stdout.count("| adding (mse, lower is better) |") == 3  # baseline + 2 models
    assert "| recall (accuracy, higher is better) | baseline | — | 12.5% | — |" in stdout
    for name in ("tasks.json", "tasks.md", "tasks.png"):
        assert (out / name).stat().st_size > 0
    result = json.loads((out / "tasks.json").read_text())
    assert len(result["rows"]) == 4 and result["budget"]["steps"] == 3
    assert {r["model"] for r in result["rows"]} == {"mingru", "gpt"}
    assert all(r["params"] > 0 and r["seconds"] > 0 for r in result["rows"])
    assert (out / "tasks.md").read_text().startswith("**Long-range tasks")
