"""Time the README's quick start: the only source of README's quick-start time.

    python benchmarks/quickstart.py                   # 3 runs; prints the times, writes results
    python benchmarks/quickstart.py --update-docs   # ... and puts the median into README.md

Each run is the quick-start command, ``zoo pretrain gpt --preset quickstart``,
in a fresh temporary directory with an empty tokenized-corpus cache (so the
built-in corpus is read and tokenized, as on a first run), timed from
process start to exit; the install is not counted. The runs go one after
another; the machine and the versions are recorded with the times in
``benchmarks/results/quickstart-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

COMMAND = ["zoo", "pretrain", "gpt", "--preset", "quickstart", "--no-progress"]
MARKERS = ("<!-- quickstart:start -->", "<!-- quickstart:end -->")


def time_once() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZOO_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zoo", *COMMAND[1:]], cwd=tmp, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def machine() -> str:
    from zoo.harness.results import cpu_model, num_threads  # noqa: PLC0415

    return f"{cpu_model()}, {num_threads()} CPU threads"


def render(result: dict) -> str:
    """README's quick-start claim, from a stored result."""
    median, runs = result["median_s"], len(result["seconds"])
    return (f"about {median / 60:.1f} minutes ({median:.0f} s, the median of {runs} runs from process start to "
            f"exit on a fresh cache; {result['machine']}; `python benchmarks/quickstart.py`)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/quickstart.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(_publish.UPDATE_DOCS, action="store_true")
    args = parser.parse_args(argv)
    times, load = [], [os.getloadavg()[0]]
    for i in range(args.runs):
        times.append(time_once())
        print(f"run {i + 1}: {times[-1]:.1f} s", flush=True)
    median = statistics.median(times)
    where = machine()
    load.append(os.getloadavg()[0])
    result = {"command": " ".join(COMMAND), "seconds": times, "median_s": median, "machine": where,
              "load_average_1min_before_after": load,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    _publish.RESULTS.mkdir(parents=True, exist_ok=True)
    from zoo.harness.results import cpu_model, device_slug, num_threads  # noqa: PLC0415

    slug = device_slug({"jax_platform": "cpu", "cpu": cpu_model(), "threads": num_threads()})
    path = _publish.RESULTS / f"quickstart-{slug}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    print(text)
    if args.update_docs:
        readme = _publish.README
        readme.write_text(_publish.replace_between_markers(readme.read_text(), text, *MARKERS).replace(
            MARKERS[0] + "\n", MARKERS[0]).replace("\n" + MARKERS[1], MARKERS[1]))
        print(f"updated {readme.relative_to(_publish.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
