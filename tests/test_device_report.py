"""The device report (zoo.bench.device_report) runs whole on the CPU at its --dry-run shapes, in a process
where tyro, datasets and safetensors cannot be imported (the lent GPU machine's image has none of them),
and writes a result per measurement; `zoo bench device-report` reaches the same command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types

import pytest

from zoo.bench import device_report

BLOCKED = ("tyro", "datasets", "safetensors", "torch", "transformers")
RUN = ("import runpy, sys\n"
       f"for name in {BLOCKED!r}:\n"
       "    sys.modules[name] = None  # `import name` raises ImportError\n"
       "sys.argv = ['device_report'] + sys.argv[1:]\n"
       "runpy.run_module('zoo.bench.device_report', run_name='__main__', alter_sys=True)\n")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_report")
    start = time.monotonic()
    # --budget-scale: on a loaded CI machine the dry run's own budgets (sized for an idle one) could skip
    # measurements; budgets running out are tested below, here every measurement must run
    proc = subprocess.run([sys.executable, "-c", RUN, "--out", str(out), "--dry-run", "--budget-scale", "50"],
                          capture_output=True, text=True, timeout=540)
    return out, proc, time.monotonic() - start


def test_dry_run_without_tyro_or_datasets(dry_run):
    """Every part runs; everything measurable on a CPU is ok (cuDNN is skipped: it needs a GPU); the files
    hold every result as it was measured; the wall time is recorded (under a minute on an idle 2-core CPU)."""
    out, proc, wall = dry_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    data = json.loads((out / "report.json").read_text())
    results = data["results"]
    assert {r["part"] for r in results} == set(device_report.PARTS)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == results  # one line per result, written as measured
    by_status = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["name"])
    skipped = by_status.pop("skipped", [])
    assert set(by_status) == {"ok"}, by_status
    assert skipped and all("cudnn" in name for name in skipped), skipped
    crossover = [r for r in results if r["name"].startswith("fastest scan / fastest attention")]
    assert crossover and all(r["scan_over_attention"] > 0 for r in crossover)
    md = (out / "report.md").read_text()
    for part in device_report.PARTS:
        assert f"## {part}" in md
    assert data["meta"]["dry_run"] is True and data["meta"]["wall_s"] > 0, data["meta"]
    assert all(r["item_s"] >= 0 for r in results if r["status"] == "ok")
    print(f"dry run: {wall:.1f} s wall (report's own: {data['meta']['wall_s']} s)")


def test_budget_and_failures_are_results(tmp_path, monkeypatch):
    """A part whose budget is spent records the rest as skipped; an out-of-memory error is 'oom', any other
    exception 'error', and the report goes on."""
    # run_part collects garbage after every item (device memory, on the lent machine); in a test worker
    # that has run other files first, each full collection took ~2 s (12.8 s for this test in a suite run)
    monkeypatch.setattr(device_report, "gc", types.SimpleNamespace(collect=lambda: 0))
    report = device_report.Report(tmp_path, {"device": "test"})

    def oom():
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB")

    def broken():
        raise ValueError("bad shape\nsecond line")

    device_report.run_part(report, "decode", 60.0, [("a", oom), ("b", broken), ("c", lambda: {"x": 1.5})])
    derived = lambda: {"y": 2}
    derived.derived = True  # computed from earlier rows: never skipped
    device_report.run_part(report, "gpt2_train", -1.0, [("d", lambda: {}), ("e", derived)])
    got = [(r["name"], r["status"]) for r in report.results]
    assert got == [("a", "oom"), ("b", "error"), ("c", "ok"), ("d", "skipped"), ("e", "ok")]
    assert report.results[1]["error"] == "ValueError: bad shape"
    assert json.loads((tmp_path / "report.json").read_text())["results"] == report.results
    assert "| d | skipped |" in (tmp_path / "report.md").read_text()


def test_reference_attention_agrees_with_zoo():
    """The float64 NumPy reference the device is checked against agrees with zoo's dense attention on the CPU."""
    import numpy as np
    import zoo

    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 9, 4, 8)).astype(np.float32)
    k, v = (rng.standard_normal((2, 9, 2, 8)).astype(np.float32) for _ in range(2))
    lengths = np.array([9, 4], np.int32)
    got = zoo.dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=lengths)
    np.testing.assert_allclose(got, device_report.attention_reference(q, k, v, lengths), atol=1e-5)


def test_cli_reaches_the_report(capsys):
    """`zoo bench device-report --help` is the report's own argparse help (no tyro involved)."""
    from zoo import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "device-report", "--help"])
    assert exit_.value.code == 0
    assert "--dry-run" in capsys.readouterr().out
