"""Publish the chunked-scan sweep: the only source of docs/chunked_scan.md's numbers.

    python benchmarks/chunked_scan.py            # the sweep; writes docs/chunked_scan.md's table and the JSON
    python benchmarks/chunked_scan.py --quick    # seconds, tiny shapes; prints, writes nothing

The layer is the benchmark suite's matched minGRU layer (``zoo bench``: its
width matched to the parameter count of a causal self-attention layer of
width 256, i.e. 360 units; 16,384 tokens per call, so batch 4 at T = 4096),
in float32, trained: the gradient of the summed outputs with respect to the
parameters and the inputs, as the suite measures it. The variants are the
three ``method`` values of :func:`zoo.linear_recurrence` (chunked at each
``--chunks`` size) and the default (None), plus two rows that bound what
any method can reach (the profile):

* ``projection``: the input projection alone (matmul, bias, layout
  transposes, forward and backward), no gates and no recurrence;
* ``gates, no recurrence``: projection and minGRU's gates, with the states
  replaced by ``a_t h_0 + b_t`` (the same elementwise work, no dependence on
  the previous step).

Method: every variant is compiled ahead of time; then ``--rounds`` rounds each
call every variant once, in an order rotated from round to round, with the
inputs alternating between two pre-generated arrays; each call is bracketed
by ``jax.block_until_ready``. The table gives the median time per call and,
for ratios, the median over rounds of the per-round ratio (each round's
variants ran within seconds of each other, so a load change on the shared
machine hits both sides of a ratio alike). The share of the CPU time that
other processes took during the run is printed with the results.

Writes ``benchmarks/results/chunked_scan-<device>.json`` (every call's time)
and replaces the text between ``<!-- bench:chunked_scan:start -->`` and
``<!-- bench:chunked_scan:end -->`` in docs/chunked_scan.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _publish, also when loaded by path
import _publish  # noqa: E402

ROOT, RESULTS = _publish.ROOT, _publish.RESULTS
DOC = ROOT / "docs" / "chunked_scan.md"
PROG = "python benchmarks/chunked_scan.py"
START, END = _publish.markers("chunked_scan")
TOKENS = 16384  # tokens per call, as the suite's T sweep
ATTENTION_WIDTH = 256  # the suite's default --width: the recurrent layers are matched to this attention layer


def parse(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 16384], help="T values (batch = 16384 / T)")
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512], help="chunk sizes C")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (one call of every variant each)")
    p.add_argument("--cell", choices=["mingru", "minlstm"], default="mingru")
    p.add_argument("--quick", action="store_true", help="T = 256, C in (4, 16), 3 rounds; prints, writes nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.seq_lens, args.chunks, args.rounds = [256], [4, 16], 3
    if args.rounds < 1 or min(args.seq_lens) < 2 or min(args.chunks) < 1:
        p.error("--rounds, --chunks must be >= 1 and --seq-lens >= 2")
    return args


def variants(chunks):
    """name -> linear_recurrence keywords, or a profile row's name -> None."""
    out = {"projection": None, "gates, no recurrence": None, "sequential": dict(method="sequential"),
           "associative": dict(method="associative")}
    out.update({f"chunked C={c}": dict(method="chunked", chunk_size=c) for c in chunks})
    out["default (None)"] = dict(method=None)
    return out


def build(name, kw, cell_name, width, batch, seq_len):
    """(compiled grad of the summed layer outputs, params, inputs)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import zoo
    from zoo.layers import scan

    cls = {"mingru": zoo.MinGRUCell, "minlstm": zoo.MinLSTMCell}[cell_name]
    rnn = zoo.RNN(cls(features=width, **(kw or {})))
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.standard_normal((batch, seq_len, width), np.float32)) for _ in range(2)]
    params = jax.jit(rnn.init)(jax.random.key(0), xs[0])
    if kw is not None:
        apply = rnn.apply
    else:
        plain = cls(features=width)

        def apply(p, x):
            c = p["params"]["cell"]
            xt = jnp.swapaxes(x, 0, 1)  # (T, B, width): the layout the RNN driver uses
            k = jnp.dot(xt, c["input_kernel"]) + c["bias"]  # (T, B, gates * width)
            if name == "projection":
                y = k.reshape(seq_len, batch, -1, width).sum(axis=2)  # every column reaches the loss
            else:
                log_a, b = plain.terms(k)  # (T, B, width) each, log space (the cells' default)
                y = jnp.exp(log_a) * 0.5 + jnp.exp(b)  # a_t h_0 + b_t with h_0 = 0.5: no recurrence
            return jnp.swapaxes(y, 0, 1)

    grad = jax.jit(jax.grad(lambda p, x: apply(p, x).sum(), argnums=(0, 1)))
    start = time.perf_counter()
    compiled = grad.lower(params, xs[0]).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, xs[1]))  # warm-up
    del scan
    return compiled, params, xs, compile_s


def measure(args):
    import jax

    from zoo.bench import analysis
    from zoo.harness import results as hr

    kind = args.cell
    from zoo import registry

    target = analysis.layer_params("attention", ATTENTION_WIDTH)
    width = registry.matched_width(lambda w: analysis.layer_params(kind, w), target)  # as the suite (360 for minGRU)
    load = hr.OtherLoad()
    results = []
    for seq_len in args.seq_lens:
        batch = max(1, TOKENS // seq_len)
        built = {}
        for name, kw in variants(args.chunks).items():
            print(f"{PROG}: T={seq_len}: compiling {name}", file=sys.stderr, flush=True)
            built[name] = build(name, kw, args.cell, width, batch, seq_len)
        names = list(built)
        times = {n: [] for n in names}
        for r in range(args.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                compiled, params, xs, _ = built[n]
                x = xs[r % 2]
                start = time.perf_counter()
                jax.block_until_ready(compiled(params, x))
                times[n].append(time.perf_counter() - start)
            print(f"{PROG}: T={seq_len}: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        results.append(dict(seq_len=seq_len, batch=batch, width=width, times_s=times,
                            compile_s={n: built[n][3] for n in names}))
    return dict(benchmark="chunked_scan", cell=args.cell, rounds=args.rounds, chunks=args.chunks,
                environment=hr.environment(), other_load=load.fraction(), date=hr.utc_now(),
                results=results)


def _ratio(times, num, den):
    """Median over rounds of times[num] / times[den] (how many times faster den is than num)."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def render(data, command):
    from zoo.harness import results as hr

    env = data["environment"]
    load = data["other_load"]
    lines = [
        f"- machine: {hr.device_line(env)[len('- device: '):]}",
        hr.versions_line(env),
        f"- layer: {data['cell']} of width {data['results'][0]['width']} (the suite's layer matched to a width-256 "
        f"attention layer), float32, training (gradient of the summed outputs wrt parameters and inputs), "
        f"{TOKENS:,} tokens per call",
        f"- method: {data['rounds']} interleaved rounds; median time per call; ratios are medians of per-round ratios",
        f"- other processes used {'?' if load is None else f'{load:.0%}'} of the CPU time during the run",
        f"- date: {data['date']}",
        f"- command: `{command}`",
        "",
    ]
    for res in data["results"]:
        t, b, times = res["seq_len"], res["batch"], res["times_s"]
        lines += [f"**T = {t:,}** (batch {b}):", "",
                  "| variant | ms per call | tokens/s | sequential / this | associative / this | compile s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, ts in times.items():
            med = statistics.median(ts)
            lines.append(f"| {name} | {med * 1e3:,.1f} | {t * b / med:,.0f} | {_ratio(times, 'sequential', name):.2f} | "
                         f"{_ratio(times, 'associative', name):.2f} | {res['compile_s'][name]:.1f} |")
        best = min((n for n in times if n.startswith("chunked")), key=lambda n: statistics.median(times[n]))
        share = lambda n: statistics.median(times[n]) / statistics.median(times["sequential"])
        lines += ["", f"Fastest chunk size: {best}: {_ratio(times, 'sequential', best):.2f}x the sequential form, "
                  f"{_ratio(times, 'associative', best):.2f}x the associative scan. Of the sequential layer's time, "
                  f"the projection alone is {share('projection'):.0%} and projection plus gates "
                  f"{share('gates, no recurrence'):.0%}, so no method can make the layer more than "
                  f"{1 / share('gates, no recurrence'):.2f}x faster than the sequential form without making the "
                  "gates cheaper.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    data = measure(args)
    command = " ".join([PROG, *map(shlex.quote, argv)])
    markdown = render(data, command)
    print(markdown)
    if args.quick:
        return 0
    from zoo.harness import results as hr

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"chunked_scan-{hr.device_slug(data['environment'])}.json"
    path.write_text(json.dumps({**data, "command": command}, indent=1) + "\n")
    DOC.write_text(_publish.replace_between_markers(DOC.read_text(), markdown, START, END))
    print(f"{PROG}: wrote {path.relative_to(ROOT)} and {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
