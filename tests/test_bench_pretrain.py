"""zoo bench pretrain: nanoGPT log parsing and the --quick run end to end."""

import json
import os

import pytest
import zoo_server

from zoo.bench.pretrain import parse_nanogpt_log

LOG = """\
step 0: train loss 4.1676, val loss 4.1649
iter 0: loss 4.1659, time 12000.00ms, mfu -100.00%
iter 1: loss 3.9, time 40.00ms, mfu 0.03%
iter 2: loss 3.8, time 50.00ms, mfu 0.03%
step 2000: train loss 1.7648, val loss 1.8857
iter 2000: loss 1.7, time 30.00ms, mfu 0.03%
107.05 s wall
"""


def test_parse_nanogpt_log():
    got = parse_nanogpt_log(LOG)
    assert got == {"step": 2000, "val_loss": 1.8857, "wall_s": 107.05, "median_ms_per_step": 45.0}
    with pytest.raises(ValueError, match="s wall"):
        parse_nanogpt_log(LOG.replace("107.05 s wall", ""))


def test_quick_run_reports_both(tmp_path):
    log = tmp_path / "nanogpt.log"
    log.write_text(LOG)
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    proc = zoo_server.zoo_cmd(["bench", "pretrain", "--quick", "--nanogpt-log", str(log), "--out", str(tmp_path)],
                              cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(next(tmp_path.glob("pretrain-*.json")).read_text())
    assert data["zoo"]["wall_s"] > 0 and data["zoo"]["val_loss"] > 0 and data["nanogpt"]["wall_s"] == 107.05
    assert "| nanoGPT |" in proc.stdout and "x nanoGPT's" in proc.stdout
