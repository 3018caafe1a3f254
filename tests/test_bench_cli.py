"""The ``zoo`` command line and ``zoo bench recurrent --quick`` (tiny shapes, no torch).

The benchmark runs once per module, in a subprocess, as a user would run it;
the tests then check its table and its JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zoo_server

ROOT = Path(__file__).resolve().parent.parent
ZOO_ROWS = [
    "zoo SimpleRNNCell", "zoo LSTMCell", "zoo GRUCell",
    "zoo MinGRUCell (associative)", "zoo MinGRUCell (sequential)",
    "zoo MinLSTMCell (associative)", "zoo MinLSTMCell (sequential)",
]
FLAX_ROWS = ["flax.linen SimpleCell", "flax.linen LSTMCell", "flax.linen GRUCell"]


def zoo_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return zoo_server.zoo_cmd(list(args), cwd=ROOT, env=dict(os.environ), timeout=timeout)  # its own process


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = zoo_cli("bench", "recurrent", "--quick", "--no-torch", "--out", str(out))
    return proc, out


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (header and rule excluded)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith(("| implementation", "| ---")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_quick_bench_prints_a_row_per_implementation(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert set(rows) == set(ZOO_ROWS + FLAX_ROWS)
    assert "command: `zoo bench recurrent --quick --no-torch --out" in proc.stdout
    assert "batch 4 × seq 16" in proc.stdout
    assert "--no-torch" in proc.stdout  # the note on skipped torch rows
    # zoo rows of cell types flax has carry a ratio against flax
    for name in ("zoo SimpleRNNCell", "zoo LSTMCell", "zoo GRUCell"):
        assert rows[name][3].endswith("×")


def test_quick_bench_writes_json_with_positive_rates(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "recurrent.json").read_text())
    assert (out / "recurrent.md").read_text().strip() == proc.stdout.strip()
    assert sorted(r["name"] for r in data["rows"]) == sorted(ZOO_ROWS + FLAX_ROWS)
    assert data["config"]["batch"] == 4 and data["tokens_per_call"] == 4 * 16
    for row in data["rows"]:
        for mode in ("fwd", "fwd_bwd"):
            m = row[mode]
            assert m["tokens_per_s"] > 0, (row["name"], mode)
            assert len(m["times_s"]) == 2 and m["min_s"] <= m["median_s"] <= m["max_s"]
            assert m["compile_s"] > 0
    assert data["environment"]["versions"]["jax"]


def test_unknown_subcommand_lists_choices():
    proc = zoo_cli("bench", "nonsense", timeout=60)
    assert proc.returncode != 0
    assert "recurrent" in proc.stderr and "nonsense" in proc.stderr
    proc = zoo_cli("nonsense", timeout=60)
    assert proc.returncode != 0 and "bench" in proc.stderr


def test_help_and_version():
    top = zoo_cli("--help", timeout=60)
    assert top.returncode == 0 and "bench" in top.stdout
    bench = zoo_cli("bench", "recurrent", "--help", timeout=60)
    assert bench.returncode == 0
    for flag in ("--batch", "--seq-len", "--hidden", "--input-size", "--repeats", "--cells", "--no-torch",
                 "--out", "--quick"):
        assert flag in bench.stdout, flag
    version = zoo_cli("--version", timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("zoo ")


def load_script():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "benchmarks" / "recurrent.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_readme_markers_are_replaced_or_missing_is_an_error():
    script = load_script()
    text = f"intro\n{script.START}\nold table\n{script.END}\noutro\n"
    new = script.replace_between_markers(text, "| new |\n")
    assert new == f"intro\n{script.START}\n| new |\n{script.END}\noutro\n"
    assert script.replace_between_markers(new, "| new |") == new
    with pytest.raises(ValueError, match="markers"):
        script.replace_between_markers("no markers here", "x")


def test_torch_is_optional(monkeypatch):
    # neither torch nor transformers is imported just by importing the command line or a benchmark
    code = ("import sys, zoo.cli, zoo.bench.recurrent, zoo.bench.attention, zoo.bench.bert, zoo.bench.suite; "
            "assert not {'torch', 'transformers'} & set(sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
    # without torch, its rows are skipped with a note
    from zoo.bench import recurrent
    from zoo.harness import results

    monkeypatch.setattr(results, "torch_available", lambda: False)
    cfg = recurrent.Config(quick=True, cells=("lstm",), flax=False, progress=False)
    data = recurrent.run(cfg, command="test")
    markdown = recurrent.render(data)
    assert [r["name"] for r in data["rows"]] == ["zoo LSTMCell"]
    assert "torch is not installed" in markdown


def test_update_docs_refuses_missing_markers_and_quick(tmp_path, monkeypatch, capsys):
    script = load_script()
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    monkeypatch.setattr(script, "PAGE", readme)
    assert script.main(["--update-docs"]) == 2  # before running anything
    assert "markers" in capsys.readouterr().err
    readme.write_text(f"{script.START}\n{script.END}\n")
    assert script.main(["--update-docs", "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err
    assert readme.read_text() == f"{script.START}\n{script.END}\n"


def test_published_commands_and_figures_name_no_machine(tmp_path, monkeypatch):
    """_publish: a path outside the repository is shown by its file name; linked figures go to docs/figures/."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _publish

    shown = _publish.portable_command("python benchmarks/x.py", [
        "--data", "/somewhere/else/corpus.txt", f"--out={ROOT}/benchmarks/results", "--quick", "a b"])
    assert shown == "python benchmarks/x.py --data corpus.txt --out=benchmarks/results --quick 'a b'"
    monkeypatch.setattr(_publish, "ROOT", tmp_path)
    monkeypatch.setattr(_publish, "RESULTS", tmp_path / "benchmarks" / "results")
    (tmp_path / "benchmarks" / "results" / "ladder-x").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "ladder-x" / "ladder.png").write_bytes(b"png")
    (tmp_path / "benchmarks" / "results" / "suite-cpu.png").write_bytes(b"png2")
    out = _publish.docs_figures("![a](benchmarks/results/ladder-x/ladder.png) and ![b](benchmarks/results/suite-cpu.png)"
                                " and ![c](missing.png)")
    assert out == "![a](figures/ladder-x.png) and ![b](figures/suite-cpu.png) and ![c](missing.png)"
    assert (tmp_path / "docs" / "figures" / "ladder-x.png").read_bytes() == b"png"
    assert (tmp_path / "docs" / "figures" / "suite-cpu.png").read_bytes() == b"png2"
