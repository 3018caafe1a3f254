"""``zoo bench`` (the suite): its arithmetic against hand-worked cases, and ``--quick`` end to end.

The quick run happens once per module, in a subprocess, as a user would
run it (well under a minute on 2 cores); the tests then check its JSON, CSV,
Markdown and plots. Timings themselves are never asserted, only that they
exist and are positive.
"""

from __future__ import annotations

import csv
import json
import math

import jax
import jax.numpy as jnp
import pytest

from tests.cli_helpers import zoo_cmd
from zoo import registry
from zoo.bench import analysis, suite, suite_report

# ---------------------------------------------------------------------------- analysis: hand-worked cases


def test_layer_params_and_flops_by_hand():
    # LSTM of width 4: 8 matrices of 4x4 and 4 bias vectors of 4
    assert analysis.layer_params("lstm", 4) == 8 * 16 + 4 * 4 == 144
    assert analysis.layer_flops_per_token("lstm", 4, seq_len=100) == 2 * 8 * 16 == 256  # no T term
    assert analysis.layer_flops_per_token("lstm", 4, seq_len=100, train=True) == 768
    # causal attention of width 8 over T=10: projections 2*4*64 = 512; QK^T and AV: query t sees t keys,
    # 55 (query, key) pairs in all, 2 products of 2*8 FLOPs each per pair: 55*32/10 = 176 per token
    assert analysis.layer_flops_per_token("attention_dense", 8, seq_len=10) == 512 + 176
    assert analysis.layer_flops_per_token("attention_blockwise", 8, seq_len=10, train=True) == 3 * 688
    assert analysis.layer_params("mingru_seq", 10) == 2 * 100 + 2 * 10
    assert analysis.layer_params("min_gru_seq", 10) == 220  # the spelling of results stored by zoo 0.1
    with pytest.raises(ValueError, match="layer kind must be one of"):
        analysis.layer_params("transformer", 8)


@pytest.mark.parametrize("kind", sorted(analysis.LAYER_KINDS))
def test_layer_params_formula_matches_the_initialised_layer(kind):
    """The formula against the real module's parameters (an independent count), at two widths."""
    for width in (16, 24):
        spec = {"kind": kind, "width": width, "head_dim": 8, "dtype": "float32"}
        if kind == "attention_cudnn":
            spec["kind"] = "attention_dense"  # same parameters; cuDNN itself needs a GPU
        init, _ = suite._layer_apply(spec)
        shapes = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 4, width)))
        count = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))
        matrices = sum(math.prod(s.shape) for path, s in jax.tree_util.tree_leaves_with_path(shapes)
                       if "kernel" in jax.tree_util.keystr(path))
        assert count == analysis.layer_params(kind, width), kind
        # forward FLOPs = 2 x the matrix weights (each used once per token), plus attention's T term
        t = 7
        extra = 2 * width * (t + 1) if kind.startswith("attention") else 0
        assert analysis.layer_flops_per_token(kind, width, t) == 2 * matrices + extra


def test_analytic_attention_flops_agree_with_xla_cost_analysis():
    """Dense attention has no loop, so XLA's own count should sit just above the matrix products.

    It computes the masked half of QK^T and AV too, which the analytic (useful) count leaves out.
    """
    b, t, w = 2, 64, 32
    init, apply = suite._layer_apply({"kind": "attention_dense", "width": w, "head_dim": 16, "dtype": "float32"})
    x = jnp.ones((b, t, w))
    params = jax.jit(init)(jax.random.key(0), x)
    flops, _ = suite._xla_cost(jax.jit(apply).lower(params, x).compile())
    analytic = b * t * analysis.layer_flops_per_token("attention_dense", w, t)
    masked_half = b * t * (4 * w * t - analysis.causal_attention_flops(w, t))
    assert flops is not None and analytic + masked_half <= flops <= 1.3 * (analytic + masked_half)


def test_matched_width_by_hand():
    # attention of width 256: 4 * 256^2 + 4 * 256 = 263,168 parameters
    target = analysis.layer_params("attention", 256)
    assert target == 263_168
    # LSTM: 8 w^2 + 4 w; w = 176 gives 248,512 (14,656 short), w = 184 gives 271,584 (8,416 over)
    assert registry.matched_width(lambda w: analysis.layer_params("lstm", w), target) == 184
    # minGRU: 2 w^2 + 2 w; w = 360 gives 259,920 (3,248 short), w = 368 gives 271,584 (8,416 over)
    assert registry.matched_width(lambda w: analysis.layer_params("mingru", w), target) == 360
    assert registry.matched_width(lambda w: analysis.layer_params("attention", w), target) == 256


def test_sequential_depth():
    assert analysis.sequential_depth("lstm", 1024) == (1024, "T")
    assert analysis.sequential_depth("mingru_seq", 1024) == (1024, "T")
    assert analysis.sequential_depth("mingru", 1024) == (10, "log2 T")
    assert analysis.sequential_depth("minlstm", 1000) == (10, "log2 T")
    assert analysis.sequential_depth("attention_dense", 16384) == (1, "1")


def test_crossover_of_two_power_laws_is_exact():
    # a = 100 everywhere, b = 10 x: they meet at x = 10, y = 100; log-log interpolation is exact for power laws
    (c,) = analysis.crossovers([1, 4, 16], [100, 100, 100], [10, 40, 160])
    assert c.x == pytest.approx(10) and c.y == pytest.approx(100)
    assert (c.before, c.after, c.between) == ("above", "below", (4, 16))
    # a missing point (OOM) is skipped: the neighbours around it are compared
    (c,) = analysis.crossovers([1, 4, 16], [100, None, 100], [10, 40, 160])
    assert c.x == pytest.approx(10) and c.between == (1, 16)


def test_crossovers_none_exact_and_twice():
    assert analysis.crossovers([1, 2, 4], [5, 6, 7], [1, 2, 3]) == []
    (c,) = analysis.crossovers([1, 2, 4], [2, 2, 2], [1, 2, 4])  # equal at x = 2
    assert (c.x, c.y, c.before, c.after) == (2, 2, "above", "below")
    # b overtakes a between 1 and 4 (at 2), then a overtakes b again between 4 and 16 (at 8)
    found = analysis.crossovers([1, 4, 16], [4, 4, 4], [2, 8, 2])
    assert [round(c.x, 6) for c in found] == [2, 8]
    assert [c.before for c in found] == ["above", "below"]
    with pytest.raises(ValueError, match="must increase"):
        analysis.crossovers([4, 1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="one length"):
        analysis.crossovers([1, 2], [1], [1, 1])


def test_crossover_cells_say_who_is_ahead():
    base = dict(group="layer", a="lstm", b="attention_blockwise", mode="train", measured=[64, 16384])
    assert suite_report.crossover_cell({**base, "first_faster": "lstm", "crossovers": [
        dict(x=700.4, y=1.0, before="above", after="below", between=(256, 1024))]}) == "attention ahead from T ≈ 700"
    assert suite_report.crossover_cell({**base, "first_faster": "lstm", "crossovers": []}) == \
        "LSTM ahead at every T (64–16,384)"


def test_roofline():
    assert analysis.roofline(2.0, peak_flops=100.0, bandwidth=10.0) == 20.0  # memory bound
    assert analysis.roofline(50.0, peak_flops=100.0, bandwidth=10.0) == 100.0  # compute bound


def test_bad_flags_are_usage_errors(capsys):
    assert suite.main(["--width", "30", "--head-dim", "16"]) == 2
    assert "--width 30 must be a multiple of --head-dim 16" in capsys.readouterr().err
    assert suite.main(["--seq-lens", "256", "64"]) == 2
    assert "--seq-lens must increase" in capsys.readouterr().err
    assert suite.main(["--lm-preset", "huge"]) == 2
    assert "huge" in capsys.readouterr().err


# ---------------------------------------------------------------------------- --quick end to end


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    proc = zoo_cmd("bench", "--quick", "--no-progress", "--out", str(out), cwd=out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("suite-*.json")
    return proc, out, json.loads(path.read_text()), path.stem


def test_quick_json_has_every_field_with_positive_numbers(quick):
    _, _, data, _ = quick
    env = data["environment"]
    assert env["jax_platform"] == "cpu" and env["dtype"] == "float32"
    assert env["versions"]["jax"] == jax.__version__ and env["versions"]["jaxlib"]
    assert env["cpu"] and env["jax_device_kind"]
    assert env["matmul_peak_flops"] > 1e8 and env["memory_bandwidth_bytes_per_s"] > 1e8
    ms = data["measurements"]
    groups = {(m["group"], m.get("sweep")) for m in ms}
    assert groups == {("layer", "seq"), ("layer", "batch"), ("lm", "seq"), ("decode", None)}
    for m in ms:
        assert m["status"] == "ok", m
        if m["group"] == "decode":
            assert m["compile_s"] > 0 and m["points"]
            assert all(min(p["timing"]["times_s"]) > 0 for p in m["points"])
            continue
        for key in ("tokens_per_s", "compile_s", "peak_mb", "params", "flops_per_token", "achieved_flops",
                    "peak_fraction"):
            assert m[key] > 0, (key, m)
        t = m["seq_len"]
        expected_depth = {"lstm": t, "gpt": 1, "mingru": math.ceil(math.log2(t))}.get(m["name"])
        if expected_depth is None:  # attention layers
            expected_depth = 1 if m["group"] == "layer" else t
        assert m["depth"] == expected_depth, m["name"]
    layer_names = {m["name"] for m in ms if m["group"] == "layer"}
    assert layer_names == {"lstm", "mingru", "attention_dense", "attention_blockwise"}
    assert {m["name"] for m in ms if m["group"] == "lm"} == {"gpt", "lstm"}
    # the widths reported are those run, matched to the attention layer's parameters
    widths = data["layer_widths"]
    assert widths["attention_dense"] == 32
    target = analysis.layer_params("attention", 32)
    assert widths["lstm"] == registry.matched_width(lambda w: analysis.layer_params("lstm", w), target)


def test_quick_writes_markdown_csv_and_plots(quick):
    proc, out, data, stem = quick
    md = (out / f"{stem}.md").read_text()
    for text in ("Layers, training (fwd+bwd) tokens/s", "Layers, inference (fwd) tokens/s", "Crossovers",
                 "Language models, tokens/s", "Decoding one token", "Roofline", "command: `zoo bench --quick"):
        assert text in md and text in proc.stdout, text
    assert f"![tokens/s against T]({stem}-throughput.png)" in md
    for kind in suite_report.PLOTS:
        png = out / f"{stem}-{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = list(csv.DictReader((out / f"{stem}.csv").open()))
    assert set(rows[0]) == set(suite_report.CSV_FIELDS)
    throughput = [r for r in rows if r["mode"] in ("train", "infer")]
    assert len(throughput) == sum(1 for m in data["measurements"] if m["group"] != "decode")
    assert all(float(r["tokens_per_s"]) > 0 for r in throughput)
    decode = [r for r in rows if r["mode"] == "decode"]
    assert len(decode) == sum(len(m["points"]) for m in data["measurements"] if m["group"] == "decode")


def test_bench_group_runs_the_suite_by_default_and_lists_commands(tmp_path):
    proc = zoo_cmd("bench", "--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0
    for name in ("suite", "recurrent", "attention", "bert"):
        assert name in proc.stdout
