"""The report of ``zoo bench``: derived figures, Markdown tables, crossovers, CSV and plots.

:func:`derive` turns one worker result into a measurement with its derived
figures (tokens/s, FLOPs per token, achieved FLOP/s and share of the matmul
peak, arithmetic intensity, sequential depth); :func:`render` writes the
tables, from the stored results alone; :func:`crossover_lines` states where
the measured curves cross; :func:`csv_text` and :func:`plots` are the CSV
and the plots (matplotlib, no display needed). Results stored by zoo 0.1
spell the layers ``simple_rnn``, ``min_gru``, ...: they are labelled as
``rnn``, ``mingru``, ... are (:func:`zoo.bench.analysis.canonical`).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from zoo.bench import analysis
from zoo.harness import results
from zoo.harness.results import markdown_table
from zoo.harness.timing import Timing
from zoo.plots import subplots

RESULT_FIELDS = ("status", "error", "estimated", "pid", "peak_rss_kib", "baseline_rss_kib", "device_peak_bytes",
                 "first_call_s", "wall_s", "xla_flops", "xla_bytes")
CSV_FIELDS = ("group", "sweep", "name", "mode", "batch", "seq_len", "width", "params", "depth", "status",
              "tokens_per_s", "median_ms", "min_ms", "max_ms", "compile_s", "peak_mb", "flops_per_token",
              "xla_flops_per_token", "achieved_flops", "peak_fraction", "intensity", "context", "cache_len")
LAYER_LABELS = {
    "rnn": "SimpleRNN (scan)",
    "lstm": "LSTM (scan)",
    "gru": "GRU (scan)",
    "mingru": "minGRU (associative scan)",
    "mingru_seq": "minGRU (scan)",
    "minlstm": "minLSTM (associative scan)",
    "minlstm_seq": "minLSTM (scan)",
    "attention_dense": "attention (dense)",
    "attention_blockwise": "attention (blockwise)",
    "attention_cudnn": "attention (cuDNN)",
}
LM_LABELS = {"gpt": "GPT", "lstm": "LSTM LM"}
DECODE_LABELS = {"gpt_sized": "GPT, cache sized to the context", "gpt_fixed": "GPT, one cache of the largest T",
                 "lstm": "LSTM LM (fixed-size state)"}
PLOTS = ("throughput", "decode", "roofline")


# ----------------------------------------------------------------------------
# derived figures


def _lm_config(family: str, preset: str, seq_len: int):
    from zoo import presets

    config = presets.get(family, preset).model
    return config.replace(block_size=max(seq_len, config.block_size))


def lm_params(family: str, preset: str, seq_len: int | None = None) -> int:
    """Parameters of ``family/preset`` (context ``seq_len``: GPT's position table grows with it)."""
    from zoo.models.gpt import gpt_param_count
    from zoo.models.rnn_lm import rnn_lm_param_count

    config = _lm_config(family, preset, seq_len or 0)
    return gpt_param_count(config) if family == "gpt" else rnn_lm_param_count(config)


def lm_flops_per_token(family: str, preset: str, seq_len: int, *, train: bool) -> int:
    """Analytic FLOPs per token of the LM, forward: 2N (+ the causal attention products of each GPT layer).

    N counts the non-embedding parameters and the tied head (as
    :func:`zoo.models.gpt.gpt_flops_per_token` does); the attention term is
    :func:`zoo.bench.analysis.causal_attention_flops` per layer (useful work:
    PaLM's ``4 d T`` would count the masked half too). Training: 3x forward.
    """
    from zoo.models.gpt import gpt_param_count
    from zoo.models.rnn_lm import rnn_lm_flops_per_token

    config = _lm_config(family, preset, seq_len)
    if family == "gpt":
        forward = 2 * gpt_param_count(config, non_embedding=True)
        forward += config.num_layers * analysis.causal_attention_flops(config.num_heads * config.head_dim, seq_len)
    else:
        forward = rnn_lm_flops_per_token(config) // 3
    return 3 * forward if train else forward


def _name(job: dict[str, Any]) -> str:
    if job["group"] == "layer":
        return job["kind"]
    if job["group"] == "lm":
        return job["family"]
    return job["series"]


def derive(job: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """One measurement: the job, its worker's result, and the figures derived from them."""
    result = job.get("result", {})
    m = {k: v for k, v in job.items() if k != "result"}
    m["name"] = _name(job)
    m.update({k: result.get(k) for k in RESULT_FIELDS})
    m["status"] = result.get("status", "error")
    m["process_wall_s"] = result.get("process_wall_s")
    m["peak_mb"] = _peak_mb(m, env)
    if job["group"] == "decode":
        m["points"] = result.get("points")
        m["compile_s"] = result.get("compile_s")
        return m
    b, t, train = job["batch"], job["seq_len"], job["mode"] == "train"
    tokens = b * t
    if job["group"] == "layer":
        m["params"] = analysis.layer_params(job["kind"], job["width"])
        m["flops_per_token"] = analysis.layer_flops_per_token(job["kind"], job["width"], t, train=train)
        m["depth"], m["depth_formula"] = analysis.sequential_depth(job["kind"], t)
    else:
        m["params"] = lm_params(job["family"], job["preset"], t)
        m["flops_per_token"] = lm_flops_per_token(job["family"], job["preset"], t, train=train)
        m["depth"], m["depth_formula"] = (1, "1") if job["family"] == "gpt" else (t, "T")
    m["timing"] = result.get("timing")
    if m["status"] != "ok" or not m["timing"]:
        return m
    tm = Timing.from_json(m["timing"])
    m["tokens_per_s"] = tm.rate(tokens)
    m["compile_s"] = tm.compile_s
    m["achieved_flops"] = m["flops_per_token"] * m["tokens_per_s"]
    peak = env.get("matmul_peak_flops")
    m["peak_fraction"] = m["achieved_flops"] / peak if peak else None
    m["xla_flops_per_token"] = m["xla_flops"] / tokens if m["xla_flops"] else None
    m["intensity"] = m["xla_flops"] / m["xla_bytes"] if m["xla_flops"] and m["xla_bytes"] else None
    return m


def _peak_mb(m: dict[str, Any], env: dict[str, Any]) -> float | None:
    if env.get("jax_platform") != "cpu" and m.get("device_peak_bytes"):
        return m["device_peak_bytes"] / 2**20
    return m["peak_rss_kib"] / 1024 if m.get("peak_rss_kib") else None


# ----------------------------------------------------------------------------
# selecting series


def series(measurements: Sequence[dict[str, Any]], group: str, sweep: str, name: str, mode: str,
           x_key: str = "seq_len") -> dict[int, dict[str, Any]]:
    """x -> measurement, for one (group, sweep, name, mode)."""
    return {m[x_key]: m for m in measurements
            if m["group"] == group and m.get("sweep") == sweep and m["name"] == name and m.get("mode") == mode}


def _rates(points: dict[int, dict[str, Any]], xs: Sequence[int]) -> list[float | None]:
    return [points[x].get("tokens_per_s") if x in points else None for x in xs]


def _names(measurements, group: str) -> list[str]:
    return list(dict.fromkeys(m["name"] for m in measurements if m["group"] == group))


def _label(group: str, name: str) -> str:
    return LAYER_LABELS.get(analysis.canonical(name), name) if group == "layer" else LM_LABELS.get(name, name)


def crossover_pairs(measurements) -> list[tuple[str, str, str]]:
    """(group, a, b) pairs whose curves over T are compared: each recurrent layer against each attention."""
    layers = _names(measurements, "layer")
    attn = [n for n in layers if n.startswith("attention")]
    pairs = [("layer", a, b) for b in attn for a in layers if not a.startswith("attention")]
    lms = _names(measurements, "lm")
    if "gpt" in lms and "lstm" in lms:
        pairs.append(("lm", "lstm", "gpt"))
    return pairs


def find_crossovers(measurements, xs: Sequence[int]) -> list[dict[str, Any]]:
    """Every compared pair and mode: its crossovers (possibly none) and the T where both ran."""
    out = []
    for group, a, b in crossover_pairs(measurements):
        for mode in ("train", "infer"):
            ra = _rates(series(measurements, group, "seq", a, mode), xs)
            rb = _rates(series(measurements, group, "seq", b, mode), xs)
            both = [x for x, u, v in zip(xs, ra, rb) if u is not None and v is not None]
            if not both:
                continue
            found = analysis.crossovers(xs, ra, rb)
            faster = a if (ra[xs.index(both[0])] >= rb[xs.index(both[0])]) else b
            out.append(dict(group=group, a=a, b=b, mode=mode, measured=both, first_faster=faster,
                            crossovers=[dict(x=c.x, y=c.y, before=c.before, after=c.after, between=c.between)
                                        for c in found]))
    return out


def _short(group: str, name: str) -> str:
    if group == "lm":
        return LM_LABELS.get(name, name)
    return "attention" if name.startswith("attention") else _label(group, name).split(" (")[0]


def crossover_cell(f: dict[str, Any]) -> str:
    """Who is ahead where: ``attention ahead from T ≈ 700`` or ``LSTM ahead at every T (64–16,384)``."""
    a, b = _short(f["group"], f["a"]), _short(f["group"], f["b"])
    if not f["crossovers"]:
        winner = a if f["first_faster"] == f["a"] else b
        lo, hi = f["measured"][0], f["measured"][-1]
        return f"{winner} ahead at every T ({lo:,}–{hi:,})"
    parts = []
    for c in f["crossovers"]:
        ahead = b if c["before"] == "above" else a
        parts.append(f"{ahead} ahead from T ≈ {c['x']:,.0f}")
    return ", then ".join(parts)


def crossover_lines(found: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per compared pair and mode, saying where (or whether) the curves cross."""
    lines = []
    for f in found:
        a, b = _label(f["group"], f["a"]), _label(f["group"], f["b"])
        mode = "training" if f["mode"] == "train" else "inference"
        lines.append(f"{mode}, {a} vs {b}: {crossover_cell(f)}.")
    return lines


def crossover_table(found: Sequence[dict[str, Any]]) -> str:
    """Rows: the recurrent layers (and the LSTM LM); columns: each attention (and GPT) x train / infer."""
    cols = list(dict.fromkeys((f["group"] == "lm", f["b"], f["mode"]) for f in found if f["group"] == "layer"))
    rows = []
    for a in dict.fromkeys(f["a"] for f in found if f["group"] == "layer"):
        cells = [_label("layer", a)]
        for _, b, mode in cols:
            hit = [f for f in found if f["group"] == "layer" and f["a"] == a and f["b"] == b and f["mode"] == mode]
            cells.append(crossover_cell(hit[0]) if hit else "—")
        rows.append(cells)
    headers = ["layer", *[f"{'training' if mode == 'train' else 'inference'} vs {_label('layer', b)}"
                          for _, b, mode in cols]]
    return markdown_table(headers, rows, "l" * (len(cols) + 1)) if rows else ""


# ----------------------------------------------------------------------------
# Markdown


def _rate_cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "—"
    if m["status"] != "ok":
        if m["status"] == "oom":
            return "OOM"
        return m["status"]
    return results.format_rate(m.get("tokens_per_s"))


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 0.1 else f"{ms:.3f}"


def _g(x: float | None, scale: float = 1e9, digits: int = 3) -> str:
    return "—" if x is None else f"{x / scale:.{digits}g}"


def stem(data: dict[str, Any]) -> str:
    """suite-<device>, e.g. suite-cpu-amd-epyc-2t: the stem of the results and of the plots' files."""
    return f"suite-{results.device_slug(data['environment'])}"


def render(data: dict[str, Any], images: str | None = "") -> str:
    """The report: header, the T-sweep tables, crossovers, LMs, batch sweep, decode, roofline, details.

    ``images``: the prefix of the plots (``<stem>-throughput.png``, ...) linked; None links none.
    """
    env, cfg, ms = data["environment"], data["config"], data["measurements"]
    xs = list(cfg["seq_lens"])
    widths = data["layer_widths"]
    lines = results.header(
        "**Sequential scan vs parallel attention** (tokens/s: higher is better)", env,
        f"- dtype: {env['dtype']} compute, float32 parameters"
        + (" (bfloat16: the norm on this accelerator)" if env["dtype"] == "bfloat16" else ""),
        f"- measured in this run: matmul peak {_g(env.get('matmul_peak_flops'))} GFLOP/s "
        f"({env.get('matmul_peak_n')}² {env['dtype']} matmul), memory bandwidth "
        f"{_g(env.get('memory_bandwidth_bytes_per_s'))} GB/s (fused elementwise pass, read + write)",
        f"- layers: width {cfg['width']} attention ({cfg['width'] // cfg['head_dim']} heads of {cfg['head_dim']}), "
        f"{analysis.layer_params('attention', cfg['width']):,} parameters; recurrent widths matched to it; "
        f"T sweep at {cfg['tokens_per_call']:,} tokens per call (batch = {cfg['tokens_per_call']:,} / T)",
        f"- language models: gpt/{cfg['lm_preset']} and lstm/{cfg['lm_preset']}",
        date=data["date"], command=data["command"])
    if data.get("rerendered"):
        r = data["rerendered"]
        lines.append(f"- derived figures recomputed from the stored raw results by `{r['command']}` ({r['date']})")
    lines.append("")
    images = None if images is None else f"{images}{stem(data)}"
    lines += results.image("tokens/s against T", images, "-throughput.png")
    for mode, title in (("train", "training (fwd+bwd)"), ("infer", "inference (fwd)")):
        headers = ["layer", "width", "params", "depth", *[f"T={x:,}" for x in xs]]
        rows = []
        for name in _names(ms, "layer"):
            pts = series(ms, "layer", "seq", name, mode)
            if not pts:
                continue
            any_m = next(iter(pts.values()))
            rows.append([_label("layer", name), str(widths.get(name, any_m.get("width"))),
                         f"{any_m['params']:,}", any_m["depth_formula"], *[_rate_cell(pts.get(x)) for x in xs]])
        if rows:
            lines += [f"Layers, {title} tokens/s:", "", markdown_table(headers, rows, "lrrl" + "r" * len(xs)),
                      ""]
    found = find_crossovers(ms, xs)
    table = crossover_table(found)
    if table:
        lines += ["Crossovers, layers (where the tokens/s curves cross; interpolated on log-log axes between "
                  "neighbouring measured T):", "", table, ""]
    lm_rows = []
    for name in _names(ms, "lm"):
        for mode in ("train", "infer"):
            pts = series(ms, "lm", "seq", name, mode)
            if pts:
                lm_rows.append([f"{_label('lm', name)} {'fwd+bwd' if mode == 'train' else 'fwd'}",
                                f"{lm_params(name, cfg['lm_preset']):,}", *[_rate_cell(pts.get(x)) for x in xs]])
    if lm_rows:
        lines += [
            "Language models, tokens/s (params at the preset's own context; GPT's position table grows with T):",
            "", markdown_table(["model", "params", *[f"T={x:,}" for x in xs]], lm_rows), "",
        ]
        lines += [f"- {line}" for line in crossover_lines([f for f in found if f["group"] == "lm"])] + [""]
    bs = list(cfg["batch_sizes"])
    b_rows = []
    for name in _names(ms, "layer"):
        tr = series(ms, "layer", "batch", name, "train", "batch")
        inf = series(ms, "layer", "batch", name, "infer", "batch")
        if tr or inf:
            b_rows.append([_label("layer", name), *[f"{_rate_cell(tr.get(b))} / {_rate_cell(inf.get(b))}"
                                                     for b in bs]])
    if b_rows:
        lines += [f"Layers over batch size at T={cfg['batch_seq_len']:,}, tokens/s (fwd+bwd / fwd):", "",
                  markdown_table(["layer", *[f"B={b}" for b in bs]], b_rows), ""]
    lines += _decode_section(ms, images)
    lines += _roofline_section(env, ms, images)
    if data["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in data["notes"]] + [""]
    lines += _details(ms, env)
    return "\n".join(lines) + "\n"


def _decode_section(ms, images) -> list[str]:
    dec = [m for m in ms if m["group"] == "decode"]
    if not dec:
        return []
    by_series: dict[str, dict[int, tuple[dict[str, Any], dict[str, Any]]]] = {}
    for m in dec:
        for p in m.get("points") or []:
            by_series.setdefault(m["series"], {})[p["context"]] = (m, p)
    failed = [m for m in dec if m["status"] != "ok"]
    contexts = sorted({c for s in by_series.values() for c in s})
    names = [s for s in DECODE_LABELS if s in by_series]
    rows = []
    for c in contexts:
        cells = [f"{c:,}"]
        for s in names:
            hit = by_series[s].get(c)
            if hit is None:
                cells.append("—")
            else:
                m, p = hit
                tm = Timing.from_json(p["timing"])
                cells.append(f"{_ms(tm.median_s)} (cache {m['cache_len']:,})" if s != "lstm" else _ms(tm.median_s))
        rows.append(cells)
    lines = ["Decoding one token (batch 1), ms per token, against the tokens already in context:", ""]
    lines += results.image("decode latency", images, "-decode.png")
    lines += [markdown_table(["context", *[DECODE_LABELS[s] for s in names]], rows), ""]
    for m in failed:
        lines.append(f"- decode {m['series']} (cache {m['cache_len']:,}): {m['status']}: {m.get('error')}")
    if failed:
        lines.append("")
    return lines


def _roofline_section(env, ms, images) -> list[str]:
    peak, bw = env.get("matmul_peak_flops"), env.get("memory_bandwidth_bytes_per_s")
    if not peak or not bw:
        return []
    ok = [m for m in ms if m.get("peak_fraction") is not None and m.get("sweep") == "seq"]
    lines = [f"Roofline: ridge point {peak / bw:.1f} FLOP/byte (matmul peak / bandwidth). The roof's slope is the "
             "bandwidth of a streaming pass through memory, while XLA's \"bytes accessed\" counts every operand "
             "of every operation, cached or not (and a loop body once): points above the slope are configurations "
             "whose traffic stays in cache, so the figure places each by its XLA intensity rather than bounding it."]
    if ok:
        best = max(ok, key=lambda m: m["peak_fraction"])
        lines[-1] += (f" Best share of the matmul peak: {best['peak_fraction']:.0%} "
                      f"({_label(best['group'], best['name'])}, {best['mode']}, T={best['seq_len']:,}).")
    lines.append("")
    lines += results.image("roofline", images, "-roofline.png")
    return lines


def _details(ms, env) -> list[str]:
    headers = ["model", "mode", "B", "T", "tokens/s", "ms (min–max)", "compile s", "peak MB", "depth",
               "GFLOP/token", "XLA GFLOP/token", "GFLOP/s", "of peak", "FLOP/byte (XLA)"]
    rows = []
    for m in ms:
        if m["group"] == "decode":
            continue
        label = _label(m["group"], m["name"]) + (" (B sweep)" if m.get("sweep") == "batch" else "")
        base = [label, m["mode"], str(m["batch"]), f"{m['seq_len']:,}"]
        if m["status"] != "ok":
            rows.append(base + [_rate_cell(m), m.get("error") or "", *["—"] * 8])
            continue
        tm = Timing.from_json(m["timing"])
        rows.append(base + [
            results.format_rate(m["tokens_per_s"]), results.format_ms(tm), f"{tm.compile_s:.2f}",
            "—" if m["peak_mb"] is None else f"{m['peak_mb']:,.0f}",
            f"{m['depth']:,} ({m['depth_formula']})", _g(m["flops_per_token"], 1e9, 3),
            _g(m.get("xla_flops_per_token"), 1e9, 3), _g(m["achieved_flops"], 1e9, 3),
            "—" if m["peak_fraction"] is None else f"{m['peak_fraction']:.1%}",
            "—" if m.get("intensity") is None else f"{m['intensity']:.1f}",
        ])
    return [
        "<details><summary>Every measurement</summary>", "",
        markdown_table(headers, rows, "llrr" + "r" * (len(headers) - 4)), "",
        "Depth: dependent steps along the sequence (T for a scan, log2 T for an associative scan, 1 for "
        "attention). GFLOP/token: analytic (matrix products only; training = 3 × forward). XLA GFLOP/token: "
        "XLA's cost analysis of the compiled call, which counts a loop body once, so it is far below the "
        "analytic figure for scans. GFLOP/s: analytic FLOPs × tokens/s; of peak: against the matmul peak "
        "measured in this run. Peak MB: the worker process's peak resident memory on CPU (Python and the "
        "runtime included), the device's peak on GPU/TPU.",
        "", "</details>", "",
    ]


# ----------------------------------------------------------------------------
# CSV and plots


def csv_text(data: dict[str, Any]) -> str:
    """One row per measurement (decode: one per context length)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for m in data["measurements"]:
        row = {k: m.get(k) for k in CSV_FIELDS}
        if m["group"] == "decode":
            for p in m.get("points") or [{"context": None, "timing": None}]:
                t = p["timing"]
                w.writerow({**row, "mode": "decode", "context": p["context"], "status": m["status"],
                            "median_ms": t and 1e3 * Timing.from_json(t).median_s,
                            "min_ms": t and 1e3 * min(t["times_s"]), "max_ms": t and 1e3 * max(t["times_s"]),
                            "compile_s": m.get("compile_s")})
            continue
        if m.get("timing"):
            tm = Timing.from_json(m["timing"])
            row.update(median_ms=1e3 * tm.median_s, min_ms=1e3 * tm.min_s, max_ms=1e3 * tm.max_s)
        w.writerow(row)
    return buf.getvalue()


def plots(data: dict[str, Any]) -> dict[str, Any]:
    """The figures, by file suffix: tokens/s against T, decode latency, the roofline (None where no data)."""
    return {"-throughput": _plot_throughput(data), "-decode": _plot_decode(data), "-roofline": _plot_roofline(data)}


def _plot_throughput(data):
    ms, xs = data["measurements"], list(data["config"]["seq_lens"])
    panels = [(g, mode) for g in ("layer", "lm") if _names(ms, g) for mode in ("train", "infer")]
    if not panels:
        return None
    rows = len(panels) // 2
    fig, axes = subplots(rows, 2, figsize=(12, 4.6 * rows), squeeze=False)
    found = data.get("crossovers") or find_crossovers(ms, xs)
    for ax, (group, mode) in zip(axes.flat, panels):
        for name in _names(ms, group):
            pts = series(ms, group, "seq", name, mode)
            got = [(x, pts[x]["tokens_per_s"]) for x in xs if x in pts and pts[x].get("tokens_per_s")]
            if got:
                style = "-" if name.startswith("attention") or name == "gpt" else "--"
                ax.plot(*zip(*got), style, marker="o", ms=3, label=_label(group, name))
        for f in found:
            if f["group"] != group or f["mode"] != mode:
                continue
            if group == "layer" and f["b"] != "attention_blockwise":
                continue  # one attention kernel's crossovers keep the plot readable
            for c in f["crossovers"]:
                ax.plot([c["x"]], [c["y"]], "kx", ms=9, mew=2)
                ax.annotate(f"{c['x']:,.0f}", (c["x"], c["y"]), textcoords="offset points", xytext=(4, 6),
                            fontsize=7)
        what = "layers" if group == "layer" else "language models"
        ax.set_xscale("log", base=2)
        ax.set(yscale="log", xlabel="sequence length T", ylabel="tokens/s",
               title=f"{what}, {'training (fwd+bwd)' if mode == 'train' else 'inference (fwd)'}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    env = data["environment"]
    fig.suptitle(f"zoo bench on {env['jax_platform']} ({env['jax_device_kind']}, {env['cpu']}), {env['dtype']};"
                 " x = crossover with attention (blockwise) / GPT", fontsize=9)
    return fig


def _plot_decode(data):
    dec = [m for m in data["measurements"] if m["group"] == "decode" and m.get("points")]
    if not dec:
        return None
    fig, ax = subplots(figsize=(6.5, 4.2))
    for s, label in DECODE_LABELS.items():
        pts = sorted((p["context"], 1e3 * Timing.from_json(p["timing"]).median_s)
                     for m in dec if m["series"] == s for p in m["points"])
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set(yscale="log", xlabel="tokens already in context", ylabel="ms per generated token (batch 1)",
           title="decode latency against context length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _plot_roofline(data):
    env, ms = data["environment"], data["measurements"]
    peak, bw = env.get("matmul_peak_flops"), env.get("memory_bandwidth_bytes_per_s")
    pts = [m for m in ms if m.get("intensity") and m.get("achieved_flops") and m.get("sweep") == "seq"]
    if not peak or not bw or not pts:
        return None
    import numpy as np

    fig, ax = subplots(figsize=(6.5, 4.2))
    lo = min(min(m["intensity"] for m in pts), peak / bw) / 4
    hi = max(max(m["intensity"] for m in pts), peak / bw) * 4
    grid = np.geomspace(lo, hi, 100)
    ax.plot(grid, [analysis.roofline(i, peak, bw) for i in grid], "k-", lw=1.5, label="roofline (measured)")
    for name in list(dict.fromkeys(m["name"] for m in pts)):
        sel = [m for m in pts if m["name"] == name]
        ax.scatter([m["intensity"] for m in sel], [m["achieved_flops"] for m in sel], s=12,
                   label=_label(sel[0]["group"], name))
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity, FLOP/byte (XLA cost analysis)",
           ylabel="achieved FLOP/s (analytic FLOPs)", title="roofline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return fig
