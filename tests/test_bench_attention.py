"""``zoo bench attention``: --quick end to end, one process per measurement, OOM and timeout rows.

The benchmark runs in subprocesses, as a user would run it; the tests then
check its tables and its JSON. Each worker process costs a second or two of
start-up, so the runs here are few and tiny.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import zoo_server

from zoo.bench import attention
from zoo.harness import results as harness_results
from zoo.harness import worker

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = harness_results.torch_available()
IMPLS = ["blockwise", "xla", "jax_nn"] + (["torch"] if HAS_TORCH else [])
LABELS = [attention.IMPL_LABELS[i] for i in IMPLS]


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return zoo_server.zoo_cmd(["bench", "attention", *args], cwd=ROOT, env=dict(os.environ), timeout=timeout)


def results(out: Path) -> tuple[dict, str]:
    """The JSON and Markdown that --out received (one attention-<device> pair)."""
    (json_path,) = out.glob("attention-*.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def summary_rows(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, rows keyed by T) of the first Markdown table (the summary)."""
    tables = [block for block in markdown.split("\n\n") if block.startswith("| ")]
    lines = tables[0].splitlines()
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    rows = {split(line)[0]: split(line)[1:] for line in lines[2:]}
    return split(lines[0]), rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = bench("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_quick_prints_a_row_per_length_and_columns_per_implementation(quick_run):
    proc, out = quick_run
    headers, rows = summary_rows(proc.stdout)
    assert set(rows) == {"64", "128"}
    for label in LABELS:
        for column in ("fwd tok/s", "fwd+bwd tok/s", "peak MB fwd+bwd"):
            assert f"{label} {column}" in headers
    assert "blockwise vs jax.nn fwd+bwd" in headers
    assert ("blockwise vs torch sdpa fwd" in headers) == HAS_TORCH
    for cells in rows.values():
        assert all(c not in ("OOM", "error", "timeout") for c in cells), cells
        assert cells[-1].endswith("×")
    assert "command: `zoo bench attention --quick --out" in proc.stdout
    assert "batch 1 × T × 2 heads × 32, float32, causal" in proc.stdout
    assert "bench attention" in proc.stderr  # the progress bar
    _, markdown = results(out)
    assert markdown.strip() == proc.stdout.strip()


def test_quick_json_has_positive_numbers_from_separate_processes(quick_run):
    _, out = quick_run
    data, _ = results(out)
    ms = data["measurements"]
    assert sorted((m["seq_len"], m["impl"], m["mode"]) for m in ms) == sorted(
        (t, impl, mode) for t in (64, 128) for impl in IMPLS for mode in ("fwd", "fwd_bwd")
    )
    for m in ms:
        assert m["status"] == "ok", m
        t = m["timing"]
        assert t["tokens_per_s"] > 0 and m["tokens_per_call"] == m["seq_len"]
        assert len(t["times_s"]) == 2 and t["min_s"] <= t["median_s"] <= t["max_s"]
        assert (t["compile_s"] is None) == (m["impl"] == "torch")
        assert t["compile_s"] is None or t["compile_s"] > 0
        assert 0 < m["baseline_rss_kib"] <= m["peak_rss_kib"]
        assert m["wall_s"] > 0 and m["first_call_s"] > 0
    pids = [m["pid"] for m in ms]
    assert len(set(pids)) == len(pids), "each measurement runs in its own process"
    assert data["parent_pid"] not in pids
    env = data["environment"]
    assert env["versions"]["jax"] and env["threads"] >= 1
    assert env["mem_limit_bytes"] > 0  # the default limit on CPU
    assert ("torch_threads" in env) == HAS_TORCH
    assert data["config"]["batch"] == 1 and data["config"]["seq_lens"] == [64, 128]


def test_out_of_memory_and_estimated_rows_instead_of_a_crash(tmp_path):
    # T=8192 dense logits are 0.5 GiB; under a 2 GiB address-space limit (JAX alone reserves ~1.5)
    # the worker fails to allocate; T=65536 needs 32 GiB of logits: not started at all
    proc = bench(
        "--batch", "1", "--heads", "2", "--head-dim", "32", "--seq-lens", "8192", "65536",
        "--implementations", "xla", "--repeats", "1", "--warmup", "0", "--mem-limit-gb", "2",
        "--no-progress", "--out", str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, rows = summary_rows(proc.stdout)
    assert rows["8,192"] == ["OOM", "OOM", "—"]
    assert rows["65,536"][:2] == ["OOM (estimated 32 GiB > limit)"] * 2
    assert "memory limit per worker (RLIMIT_AS): 2 GiB" in proc.stdout
    data, _ = results(tmp_path)
    worker_ooms = [m for m in data["measurements"] if m["seq_len"] == 8192]
    assert len(worker_ooms) == 2
    for m in worker_ooms:
        assert m["status"] == "oom" and not m["estimated"] and m["pid"] and m["timing"] is None
        assert m["error"]
    for m in data["measurements"]:
        if m["seq_len"] == 65536:
            assert m["status"] == "oom" and m["estimated"] and m["pid"] is None


def test_a_worker_past_its_timeout_is_a_timeout_row():
    proc = bench("--quick", "--seq-lens", "64", "--implementations", "blockwise", "--timeout-s", "0.5",
                 "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, rows = summary_rows(proc.stdout)
    assert rows["64"] == ["timeout", "timeout", "—"]
    assert "no result within 0.5 s" in proc.stdout


def test_worker_failures_are_classified():
    status, message = worker.failure(-signal.SIGKILL, "")
    assert status == "oom" and "SIGKILL" in message
    line = "F1125 env.cc:93] Check failed: Thread creation via pthread_create() failed."
    stderr = f"{line}\n*** Check failure stack trace: ***\n    @     0x7f  std::__invoke_impl<>()\n"
    assert worker.failure(-signal.SIGABRT, stderr) == ("oom", f"killed by SIGABRT: {line}")
    assert worker.failure(1, "Traceback...\nValueError: bad shape\n") == (
        "error", "exit status 1: ValueError: bad shape"
    )
    assert worker.failure(1, "RESOURCE_EXHAUSTED: Out of memory allocating 1 bytes")[0] == "oom"


def test_worker_turns_exceptions_into_results(monkeypatch):
    spec = {"mode": "fwd", "impl": "xla", "batch": 1, "seq_len": 8}

    def fail(exc):
        def measure(_):
            raise exc
        return measure

    def run_worker(spec):  # what the worker process answers
        return worker.run_measurement(spec, attention.measure)

    monkeypatch.setattr(attention, "_measure_jax", fail(MemoryError()))
    out = run_worker(spec)
    assert out["status"] == "oom" and out["peak_rss_kib"] > 0 and out["pid"]
    monkeypatch.setattr(attention, "_measure_jax", fail(RuntimeError("RESOURCE_EXHAUSTED: Out of memory")))
    assert run_worker(spec)["status"] == "oom"
    monkeypatch.setattr(attention, "_measure_jax", fail(ValueError("shapes")))
    assert run_worker(spec) | {"peak_rss_kib": 0, "pid": 0, "wall_s": 0} == {
        "status": "error", "error": "ValueError: shapes", "peak_rss_kib": 0, "pid": 0, "wall_s": 0,
    }


def test_torch_is_optional(monkeypatch):
    # (that importing the benchmark does not import torch is tests/test_bench_cli.py's)
    # without torch, its columns are skipped with a note
    monkeypatch.setattr(harness_results, "torch_available", lambda: False)
    # the workers' answers computed in this process (the processes themselves are quick_run's to test): three
    # process starts less; without the address-space limit, which would stay on this process
    def in_process(target, spec, timeout_s):
        assert target == attention.WORKER
        return worker.run_measurement({k: v for k, v in spec.items() if k != "mem_limit_bytes"}, attention.measure)

    monkeypatch.setattr(worker, "spawn", in_process)
    cfg = attention.Config(quick=True, seq_lens=(64,), implementations=("blockwise", "torch"), progress=False)
    data = attention.run(cfg, command="test")
    markdown = attention.render(data)
    assert {m["impl"] for m in data["measurements"]} == {"blockwise"}
    assert "torch is not installed" in markdown and "torch sdpa" not in markdown


def test_help_and_bad_flags(capsys):
    # (that `zoo bench --help` lists attention is tests/test_bench_suite.py's)
    proc = bench("--help", timeout=60)
    assert proc.returncode == 0
    for flag in ("--batch", "--heads", "--head-dim", "--seq-lens", "--implementations", "--mem-limit-gb",
                 "--timeout-s", "--repeats", "--warmup", "--out", "--quick", "--dtype"):
        assert flag in proc.stdout, flag
    assert attention.main(["--seq-lens", "0"]) == 2  # a usage error, before any worker starts
    assert "--seq-lens" in capsys.readouterr().err


def test_memory_limit_defaults_to_three_quarters_of_ram_on_cpu_only():
    ram = worker.physical_memory_bytes()
    assert ram and ram > 2**28
    limit = worker.default_memory_limit  # of attention.Config().mem_limit_gb, by default None
    assert attention.Config().mem_limit_gb is None
    assert limit(None, "cpu") == int(0.75 * ram)
    assert limit(None, "gpu") is None
    assert limit(1.5, "gpu") == 3 * 2**29
    assert limit(0, "cpu") is None


def load_script():
    spec = importlib.util.spec_from_file_location("attention_script", ROOT / "benchmarks" / "attention.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_publish_script_refuses_missing_markers_and_quick(tmp_path, monkeypatch, capsys):
    script = load_script()
    assert (script.START, script.END) == ("<!-- bench:attention:start -->", "<!-- bench:attention:end -->")
    readme = tmp_path / "README.md"
    readme.write_text("# only the recurrent section\n<!-- bench:recurrent:start -->\n"
                      "<!-- bench:recurrent:end -->\n")
    monkeypatch.setattr(script, "PAGE", readme)
    assert script.main(["--update-docs"]) == 2  # before running anything
    assert "bench:attention:start" in capsys.readouterr().err
    readme.write_text(f"{script.START}\nold\n{script.END}\n")
    assert script.main(["--update-docs", "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err
    assert readme.read_text() == f"{script.START}\nold\n{script.END}\n"
    # the shared replacement keeps the other benchmark's section
    import _publish  # on sys.path once a script is loaded

    other = "<!-- bench:recurrent:start -->\nr\n<!-- bench:recurrent:end -->\n"
    text = f"a\n{script.START}\nold\n{script.END}\n{other}"
    new = _publish.replace_between_markers(text, "| new |", script.START, script.END)
    assert new == text.replace("\nold\n", "\n| new |\n")
