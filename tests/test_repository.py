"""What is committed names no machine: no home or work directories, no temporary run directories."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A path that only exists on the machine that wrote it: a user's home, this workplace's checkout, a mkdtemp name.
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/home/\w|/Users/\w|/root/|/tmp/tmp\w|[A-Z]:\\Users\\)")


def committed_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            yield name, data.decode("utf-8", errors="replace")


def test_no_machine_paths_in_committed_text():
    found = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for name, text in committed_text_files() if name != "tests/test_repository.py"
             for m in MACHINE_PATH.finditer(text)]
    assert not found, "machine paths in committed files (name the file, not where it lay):\n" + "\n".join(found[:40])


def test_the_check_sees_a_machine_path():
    assert MACHINE_PATH.search("data: /work/shared/data/x.txt") and MACHINE_PATH.search("run /tmp/tmpab12cd/run")
    assert not MACHINE_PATH.search("zoo bench --quick --out /tmp/suite")
