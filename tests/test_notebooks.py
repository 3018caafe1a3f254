"""The notebooks in ``notebooks/``: each one runs top to bottom, and the stored copies were executed.

Execution: every notebook runs with nbclient in a fresh kernel of the interpreter running the tests
(``sys.executable -m ipykernel_launcher``, whatever kernelspecs are installed), with the working
directory ``notebooks/`` (as Jupyter starts it) and ``ZOO_NOTEBOOK_FAST=1``, the notebooks' small-size
switch. A cell that raises fails the test with the cell's source and traceback. Skipped when nbclient or
ipykernel is not installed.

Stored copies: the notebooks are committed executed, with outputs, in their normal (not fast) mode, so
they read well on GitHub. These checks need only the JSON: every code cell ran, in order, none of them
left an error, there are pictures, and no output says ``fast mode: True`` (notebooks that print their
mode say it in their first cell).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # per cell; the fast mode of a whole notebook takes seconds
MAX_STORED_BYTES = 2_000_000  # outputs are PNGs at modest dpi: a notebook stays well below this

ids = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


def _kernel_env() -> dict[str, str]:
    """The test process's environment, in fast mode, with one CPU device (as on a laptop).

    tests/conftest.py asks XLA for several host devices for the sharding tests; a notebook is meant for
    one, so that flag is dropped (the others, e.g. the optimisation level, are kept).
    """
    env = dict(os.environ)
    env["ZOO_NOTEBOOK_FAST"] = "1"
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).split()
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    return env


def _kernel_manager(tmp_path: Path):
    """A kernel manager whose only kernelspec is this interpreter running ipykernel."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "zoo-test-python"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--InteractiveShell.colors=nocolor"],  # plain tracebacks in the test report
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="zoo-test-python", kernel_spec_manager=ksm)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_in_fast_mode(path, tmp_path):
    pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install nbclient ipykernel)")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    # A failing cell raises CellExecutionError, with its traceback. cleanup_kc: shut the kernel down
    # afterwards (nbclient keeps a kernel it was handed alive until the process exits otherwise).
    client.execute(env=_kernel_env(), cleanup_kc=True)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{path.name} produced no output in fast mode"
    assert not [o for o in outputs if o.get("output_type") == "error"]


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stored_notebook_was_executed_in_normal_mode(path):
    assert path.stat().st_size < MAX_STORED_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, f"{path.name} has no code cells"
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: some code cells were never run (execution counts {counts})"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        f"{path.name}: cells were not run once each, top to bottom (execution counts {counts})"
    )
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(code) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: stored error outputs (code cell, error, message): {errors}"
    assert any(c.get("outputs") for c in code), f"{path.name} was stored without outputs"
    pictures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert pictures, f"{path.name} has no pictures in its stored outputs"
    printed = "".join(_text(o) for c in code for o in c.get("outputs", []))
    assert "fast mode: True" not in printed, f"{path.name} was stored from a fast-mode run, not a normal one"
