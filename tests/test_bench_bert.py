"""``zoo bench bert``: --quick end to end, the ratio logic, the HF worker, the publishing script.

The benchmark runs in subprocesses, as a user would run it (its workers are
processes too); the tests then check its table and its JSON. Each worker
costs seconds of start-up and compilation, so the runs here are few and tiny.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.bench import bert
from zoo.harness import results as harness_results
from zoo.harness import worker
from zoo.harness.timing import Timing

ROOT = Path(__file__).resolve().parent.parent
HAS_HF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
QUICK_ZOO_ROW = "zoo BERTForMaskedLM, train step (jit, tiny)"


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoo", "bench", "bert", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (header and rule excluded)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith(("| implementation", "| ---")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def results(out: Path) -> tuple[dict, str]:
    (json_path,) = out.glob("bert-*.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def check_zoo_row(row: dict) -> None:
    assert row["status"] == "ok" and row["family"] == "zoo", row
    t = row["timing"]
    assert len(t["times_s"]) == 2 and 0 < t["min_s"] <= t["median_s"] <= t["max_s"]
    assert t["tokens_per_s"] == pytest.approx(4 * 32 / t["median_s"])
    assert t["compile_s"] > 0
    assert row["masked_positions"] == 5  # ceil(0.15 * 32)
    assert row["grad_clip"] == 1.0 and row["weight_decay"] == 0.01
    assert row["peak_rss_kib"] > 0 and row["pid"]


def test_quick_without_torch_end_to_end(tmp_path):
    proc = bench("--quick", "--no-torch", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    assert list(rows) == [QUICK_ZOO_ROW]
    tokens_per_s, ms, ratio, compile_s = rows[QUICK_ZOO_ROW]
    assert float(tokens_per_s.replace(",", "")) > 0 and "(" in ms and ratio == "—" and float(compile_s) > 0
    assert "command: `zoo bench bert --quick --no-torch --out" in proc.stdout
    assert "vocabulary 512, batch 4 × seq 32, 5 masked positions per row" in proc.stdout
    assert "--no-torch" in proc.stdout and "no ratio" in proc.stdout
    assert "bench bert" in proc.stderr  # the progress bar
    data, markdown = results(tmp_path)
    assert markdown.strip() == proc.stdout.strip()
    assert data["benchmark"] == "bert" and data["tokens_per_call"] == 4 * 32
    assert data["config"]["preset"] == "tiny" and data["config"]["rounds"] == 2
    (row,) = data["rows"]
    check_zoo_row(row)
    assert row["pid"] != data["parent_pid"]  # the measurement ran in a worker process
    env = data["environment"]
    assert env["versions"]["jax"] and env["threads"] >= 1 and "torch_threads" not in env
    assert 0 <= env["other_processes_cpu_share"] <= 1


def fake_row(name, family, median_s=None, error=None):
    t = None if median_s is None else Timing((median_s,) * 3, None)
    return bert.Row(name, family, timing=t, error=error)


def test_ratios_are_against_the_first_hf_row_that_ran():
    rows = [fake_row("zoo", "zoo", 0.1), fake_row("hf broken", "hf", error="boom"),
            fake_row("hf sdpa", "hf", 0.3), fake_row("hf eager", "hf", 0.15)]
    baseline = bert.add_ratios(rows)
    assert baseline is rows[2]
    assert [r.vs_hf for r in rows] == [pytest.approx(3.0), None, 1.0, pytest.approx(2.0)]
    notes = bert.summary_notes(rows, baseline)
    assert notes[0] == "Failures: hf broken: boom."
    assert notes[-1] == "zoo / HF = 3.00× against hf sdpa; the target is ≥ 1.5× (met)."
    rows[0].timing = Timing((0.25,), 1.0)
    bert.add_ratios(rows)
    assert "(not met)" in bert.summary_notes(rows, baseline)[-1]
    assert bert.summary_notes(rows, baseline, target=False)[-1] == "zoo / HF = 1.20× against hf sdpa."
    # no HF row that ran: no ratios, no target line
    alone = [fake_row("zoo", "zoo", 0.1), fake_row("hf", "hf", error="no torch")]
    assert bert.add_ratios(alone) is None and [r.vs_hf for r in alone] == [None, None]
    assert bert.summary_notes(alone, None) == ["Failures: hf: no torch."]
    # differing parameter counts are pointed out
    rows[0].info, rows[2].info = {"param_count": 10}, {"param_count": 12}
    assert any("parameter counts differ" in n for n in bert.summary_notes(rows, baseline))


def test_the_table_shows_errors_and_missing_ratios():
    cfg = bert.Config(quick=True).resolved()
    rows = [fake_row(bert.zoo_row_name(cfg), "zoo", 0.02), fake_row("HF x", "hf", error="died")]
    rows[0].timing = Timing((0.02, 0.01, 0.03), 2.5)
    bert.add_ratios(rows)
    env = {"jax_platform": "cpu", "jax_device_kind": "cpu", "cpu": "CPU", "threads": 2,
           "versions": {"jax": "1", "jaxlib": "1", "flax": "1", "torch": None}}
    data = {"environment": env, "date": "today", "command": "zoo bench bert --quick", "notes": ["a note."],
            "config": harness_results.config_json(cfg), "tokens_per_call": cfg.tokens,
            "rows": [r.to_json(cfg.tokens) for r in rows]}
    table = table_rows(bert.render(data))
    assert table[QUICK_ZOO_ROW] == ["6,400", "20.0 (10.0–30.0)", "—", "2.5"]
    assert table["HF x"] == ["—", "error", "—", "—"]


def test_plan_skips_hf_without_torch_or_transformers(monkeypatch):
    assert bert.hf_plan(bert.Config(torch=False))[0] == []
    cfg = bert.Config(hf_attention=("default", "eager", "default"))
    monkeypatch.setattr(harness_results, "package_version", lambda name: None if name == "transformers" else "1.0")
    impls, notes = bert.hf_plan(cfg)
    assert impls == [] and notes == [
        "transformers is not installed: the Hugging Face rows are skipped, and there is no ratio."
    ]
    monkeypatch.setattr(harness_results, "package_version", lambda name: "1.0")
    assert bert.hf_plan(cfg) == (["default", "eager"], [])
    # (that importing the benchmark imports neither torch nor transformers is tests/test_bench_cli.py's)


def test_config_checks_and_round_sizes():
    assert bert.Config(repeats=7, rounds=3).round_sizes() == [3, 2, 2]
    assert bert.Config(quick=True).resolved().round_sizes() == [1, 1]
    for bad in ({"rounds": 30}, {"batch": 0}, {"dropout": 1.0}, {"seq_len": 1024}, {"preset": "nope"},
                {"hf_attention": ()}):
        with pytest.raises(ValueError):
            bert.Config(**bad).resolved()
    assert bert.main(["--rounds", "0"]) == 2  # a usage error, before any worker starts


def test_hf_labels_mark_only_the_masked_positions():
    spec = {"seed": 0, "vocab": 64, "seq_len": 20, "batch": 3, "num_inputs": 2}
    batches = bert.host_batches(spec)
    assert len(batches) == 2 and not np.array_equal(batches[0]["ids"], batches[1]["ids"])
    b = batches[0]
    assert b["ids"].shape == (3, 20) and b["mlm_positions"].shape == (3, 3)
    labels = bert.hf_labels(b)
    assert labels.shape == (3, 20) and labels.dtype == np.int64
    for row in range(3):
        real = b["mlm_weights"][row] > 0
        positions = b["mlm_positions"][row][real]
        assert set(np.flatnonzero(labels[row] != -100)) == set(positions)
        np.testing.assert_array_equal(labels[row, positions], b["mlm_labels"][row][real])


@pytest.mark.skipif(not HAS_HF, reason="torch and transformers are not both installed")
def test_quick_with_hugging_face_end_to_end(tmp_path):
    proc = bench("--quick", "--no-progress", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf_name = "HF BertForMaskedLM (PyTorch, sdpa attention, HF's default)"
    rows = table_rows(proc.stdout)
    assert list(rows) == [QUICK_ZOO_ROW, hf_name]
    assert rows[hf_name][2] == "1.00×" and rows[hf_name][3] == "—"  # the baseline; no compile step
    assert rows[QUICK_ZOO_ROW][2].endswith("×") and rows[QUICK_ZOO_ROW][2] != "—"
    assert "zoo / HF = " in proc.stdout and "the target is" not in proc.stdout  # it is for bert-mini shapes
    assert "torch.set_num_threads" in proc.stdout and "transformers " in proc.stdout
    data, _ = results(tmp_path)
    zoo_row, hf_row = data["rows"]
    check_zoo_row(zoo_row)
    assert hf_row["status"] == "ok" and hf_row["attention"] == "sdpa" and hf_row["fused_adamw"]
    assert hf_row["vs_hf"] == 1.0 and zoo_row["vs_hf"] == pytest.approx(
        hf_row["timing"]["median_s"] / zoo_row["timing"]["median_s"])
    assert hf_row["timing"]["compile_s"] is None and len(hf_row["timing"]["times_s"]) == 2
    assert hf_row["param_count"] == zoo_row["param_count"]  # the same model
    assert hf_row["grad_clip"] == zoo_row["grad_clip"] and hf_row["weight_decay"] == zoo_row["weight_decay"]
    assert hf_row["torch_threads"] == data["environment"]["threads"] == data["environment"]["torch_threads"]
    assert len({zoo_row["pid"], hf_row["pid"], data["parent_pid"]}) == 3


def test_a_worker_that_fails_to_set_up_is_an_error_not_a_hang():
    spec = {"impl": "zoo", "preset": "no-such-preset", "batch": 2, "seq_len": 8, "vocab": 64, "dropout": 0.0,
            "grad_clip": None, "warmup": 0, "num_inputs": 1, "seed": 0, "threads": 1}
    with worker.Worker(bert.WORKER) as w:
        answer = w.request(spec, timeout_s=120)
    assert answer["status"] == "error" and "no-such-preset" in answer["error"]
    assert w.proc.returncode is not None  # it ended when asked to


def load_script():
    spec = importlib.util.spec_from_file_location("bert_script", ROOT / "benchmarks" / "bert.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_publish_script_refuses_missing_markers_and_quick(tmp_path, monkeypatch, capsys):
    script = load_script()
    assert (script.START, script.END) == ("<!-- bench:bert:start -->", "<!-- bench:bert:end -->")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:recurrent:start -->\n<!-- bench:recurrent:end -->\n")
    monkeypatch.setattr(script, "PAGE", readme)
    assert script.main(["--update-docs"]) == 2  # before running anything
    assert "bench:bert:start" in capsys.readouterr().err
    readme.write_text(f"{script.START}\nold\n{script.END}\n")
    assert script.main(["--update-docs", "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err
    assert readme.read_text() == f"{script.START}\nold\n{script.END}\n"
