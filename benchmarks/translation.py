"""Train the toy translation model and publish its held-out exact match: the source of docs/cli.md's figure.

    python benchmarks/translation.py                          # toy:number_words, preset toy
    python benchmarks/translation.py --data toy:dates
    python benchmarks/translation.py --update-docs          # ... and refresh docs/cli.md

Runs ``zoo pretrain seq2seq --preset toy --data TASK`` in a subprocess (any
further flags are passed on), measures its wall time from process start to
the end of the held-out evaluation, and reads the exact match from the line
the command prints. With ``--update-docs`` the result replaces the text
between ``<!-- seq2seq-toy:start -->`` and ``<!-- seq2seq-toy:end -->`` in
README.md.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

START, END = "<!-- seq2seq-toy:start -->", "<!-- seq2seq-toy:end -->"
DONE = re.compile(r"done: step (\d+), val loss ([\d.]+), held-out exact match ([\d.]+) on (\d+) pairs \(beam (\d+)\)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/translation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="toy:number_words", help="toy:number_words or toy:dates")
    parser.add_argument("--update-docs", action="store_true", help="write the result into docs/cli.md")
    args, rest = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["zoo", "pretrain", "seq2seq", "--preset", "toy", "--data", args.data, "--out", f"{tmp}/run",
               "--no-progress", *rest]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - start
    print(proc.stdout, end="")
    match = DONE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    step, val_loss, em, pairs, beam = match.groups()
    import jax  # noqa: PLC0415

    from zoo.harness import results  # noqa: PLC0415

    env = results.environment()
    shown = " ".join(shlex.quote(c) for c in cmd if not c.startswith(tmp)).replace("--out ", "")
    body = "\n".join([
        f"Measured by `python benchmarks/translation.py --data {args.data}` on {results.device_line(env)[len('- device: '):]}, "
        f"jax {jax.__version__}, {results.utc_now()}: `{shown}` trained {step} steps in {wall:.0f} s "
        f"(wall, process start to the end of the evaluation) and reached **{float(em):.1%} exact match** on "
        f"{pairs} held-out pairs (beam {beam}), validation loss {float(val_loss):.4f}.",
    ])
    print(body)
    if args.update_docs:
        readme = _publish.ROOT / "docs" / "cli.md"
        readme.write_text(_publish.replace_between_markers(readme.read_text(), body, START, END))
        print(f"updated {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
