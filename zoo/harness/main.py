"""The one command of every benchmark and experiment: flags, run, Markdown on stdout, files in ``--out``.

A benchmark or experiment module describes itself as an :class:`Experiment`
and its command is ``main(EXPERIMENT, argv, prog)``:

1. the flags are parsed into its config (:func:`zoo.harness.flags.parse_flags`)
   and resolved (``config.resolved()``: a ``ValueError`` is a usage error,
   one line and exit status 2, before anything runs);
2. ``run(config, command=...)`` measures and returns the results, JSON-ready;
3. the report, ``render(results)``, goes to stdout (progress goes to stderr);
4. with the config's ``out`` set, :func:`write` puts ``<stem>.json`` (all
   raw figures), ``<stem>.md`` (the report, its plots linked), ``<stem>.csv``
   and the plots ``<stem><suffix>.png`` there.

``render`` is a function of the stored JSON alone: ``render(json.load(f))``
gives a stored report again (the snapshot tests do that for every result
in ``benchmarks/results/``). Its ``images`` argument is the prefix of the
plot files it links (``""``: beside the report; None: no images, as on a
terminal).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from zoo.harness.flags import parse_flags, renamed_flags
from zoo.harness.results import device_slug, json_text

__all__ = ["Experiment", "parse", "main", "write"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What the harness runs: a benchmark or an experiment.

    Attributes:
      config: the flags, a frozen dataclass with ``resolved()`` (and ``out``
        when it writes files).
      run: ``run(config, command) -> results`` (a JSON-ready dict).
      render: ``render(results, images="") -> Markdown``, from the results alone.
      stem: the results' file stem (``{device}`` in it: the device's slug, ``bert-{device}`` ->
        ``bert-cpu-amd-epyc-2t``), or a function of the results.
      plots: ``plots(results) -> {suffix: matplotlib figure or None}``, saved as ``<stem><suffix>.png``.
      csv: ``csv(results) -> text`` of ``<stem>.csv``.
      description: the ``--help`` text (default: the config's docstring).
      print_images: whether the report printed on stdout links the plots too.
      renamed: old flag -> new flag, accepted with a notice for one release (``{"--width": "--features"}``).
    """

    config: type
    run: Callable[..., dict[str, Any]]
    render: Callable[..., str]
    stem: str | Callable[[dict[str, Any]], str] | None = None
    plots: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    csv: Callable[[dict[str, Any]], str] | None = None
    description: str | None = None
    print_images: bool = False
    renamed: dict[str, str] = dataclasses.field(default_factory=dict)

    def stem_of(self, data: dict[str, Any]) -> str:
        stem = self.stem(data) if callable(self.stem) else self.stem
        return stem.format(device=device_slug(data["environment"])) if "{device}" in stem else stem


def parse(exp: Experiment, argv: Sequence[str], prog: str) -> Any:
    """The experiment's config from the command line (not yet resolved)."""
    return parse_flags(exp.config, args=renamed_flags(argv, prog, exp.renamed), prog=prog,
                       description=exp.description)


def write(exp: Experiment, data: dict[str, Any], out: str | Path, stem: str | None = None) -> list[Path]:
    """``<stem>.json``, ``<stem>.md``, the CSV and the plots of ``data`` in ``out``; the paths written."""
    out, stem = Path(out), dataclasses.replace(exp, stem=stem or exp.stem).stem_of(data)
    out.mkdir(parents=True, exist_ok=True)
    files = {".json": json_text(data), ".md": exp.render(data, images="").rstrip("\n") + "\n"}
    if exp.csv is not None:
        files[".csv"] = exp.csv(data)
    paths = []
    for suffix, text in files.items():
        paths.append(out / f"{stem}{suffix}")
        paths[-1].write_text(text)
    for suffix, fig in (exp.plots(data) if exp.plots else {}).items():
        if fig is not None:
            paths.append(out / f"{stem}{suffix}.png")
            fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    return paths


def main(exp: Experiment, argv: Sequence[str] | None, prog: str) -> int:
    """The command: parse, resolve, run, print the report, write the files; exit status 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(exp, argv, prog)
    try:
        cfg = cfg.resolved()
        data = exp.run(cfg, command=" ".join([prog, *map(shlex.quote, argv)]))
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(exp.render(data, images="" if exp.print_images else None), end="")
    if getattr(cfg, "out", None) is not None:
        for path in write(exp, data, cfg.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
