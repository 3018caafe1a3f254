"""``zoo export RUN_DIR OUT_DIR``: a run as a Hugging Face model directory (zoo.export_pretrained).

    zoo export runs/quick hf/quick
    python -c "import transformers; transformers.AutoModelForCausalLM.from_pretrained('hf/quick')"

GPT runs become GPT2LMHeadModel, BERT masked LMs BertForMaskedLM, fine-tuned
classifiers BertForSequenceClassification: ``config.json``,
``model.safetensors`` and a ``tokenizer.json`` that gives the run's token ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import tyro

from zoo.harness.flags import parse_flags

__all__ = ["export_main"]


@dataclasses.dataclass(frozen=True)
class ExportArgs:
    run_dir: tyro.conf.Positional[Path]  # a zoo run (or a Hugging Face directory, written anew)
    out_dir: tyro.conf.Positional[Path]  # the directory to write (new or empty)
    overwrite: bool = False  # write into a non-empty OUT_DIR, replacing files of the same names


def export_main(argv: Sequence[str], prog: str = "zoo export") -> int:
    """``zoo export RUN_DIR OUT_DIR``: write a gpt or bert run as a Hugging Face model directory."""
    args = parse_flags(ExportArgs, args=list(argv), prog=prog, description=export_main.__doc__)
    from zoo.pretrained import export_pretrained  # noqa: PLC0415
    from zoo.run import load_run  # noqa: PLC0415

    run = load_run(args.run_dir)
    out = export_pretrained(run, args.out_dir, overwrite=args.overwrite)
    import json  # noqa: PLC0415

    arch = json.loads((out / "config.json").read_text())["architectures"][0]
    auto = {"GPT2LMHeadModel": "AutoModelForCausalLM", "BertForMaskedLM": "AutoModelForMaskedLM",
            "BertForPreTraining": "AutoModelForPreTraining",
            "BertForSequenceClassification": "AutoModelForSequenceClassification",
            "BertForTokenClassification": "AutoModelForTokenClassification"}.get(arch, "AutoModel")
    print(f"{args.run_dir} (step {run.step}, {run.family}) -> {out}: {arch}; config.json, model.safetensors, "
          f"tokenizer.json. In PyTorch: transformers.{auto}.from_pretrained({str(out)!r})", flush=True)
    return 0
