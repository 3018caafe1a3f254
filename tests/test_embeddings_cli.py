"""zoo pretrain word2vec|fasttext and zoo embed, end to end in subprocesses on a tiny corpus; one-line errors;
zoo bench embeddings --quick without gensim."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import zoo_cmd
from test_cli_hardening import one_line_error

TINY = ("--preset", "tiny", "--no-progress")


def _corpus(path, n: int = 1200):
    rng = np.random.default_rng(0)
    groups = [["cat", "dog", "mouse"], ["red", "green", "blue"]]
    contexts = [["the", "pet"], ["is", "very"]]
    lines = []
    for _ in range(n):
        g = int(rng.integers(2))
        lines.append(" ".join([rng.choice(contexts[g]), rng.choice(groups[g]), rng.choice(contexts[g])]))
    path.write_text("\n\n".join(lines))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    _corpus(tmp / "tiny.txt")
    for family in ("word2vec", "fasttext"):
        proc = zoo_cmd("pretrain", family, *TINY, "--data", "tiny.txt", "--out", family, cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "done: step" in proc.stdout and "words/s" in proc.stdout
    return tmp


def test_pretrain_writes_a_run_that_load_run_answers(runs):
    import zoo

    for family in ("word2vec", "fasttext"):
        run_dir = runs / family
        assert {"run.json", "tokenizer", "checkpoints", "metrics.jsonl"} <= {p.name for p in run_dir.iterdir()}
        assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["words_per_s"] > 0
        run = zoo.load_run(run_dir)
        assert run.family == family and run.tokenizer.kind == "word"
        assert run.vectors.most_similar("cat", topn=2)[0][0] in ("dog", "mouse")
        assert -1 <= run.vectors.similarity("cat", "dog") <= 1
        assert run.vectors.has_vector("catz") == (family == "fasttext")


def _fails(main, argv, code, *needles, prog="zoo"):
    """``main(argv)`` raises what zoo.cli prints as one line with exit ``code`` (in-process: no JAX start-up)."""
    from zoo.cli import describe_error

    with pytest.raises(Exception) as info:
        main(argv, prog)
    message, got = describe_error(info.value)
    assert got == code and "\n" not in message, (got, message)
    for needle in needles:
        assert needle in message, message


def test_neighbors_analogy_export_eval(runs, tmp_path, capsys, monkeypatch):
    from zoo.commands.embed import analogy_main, eval_main, export_main, neighbors_main
    from zoo.embeddings import load_word2vec_format

    proc = zoo_cmd("embed", "neighbors", "word2vec", "Cat", "--k", "2", cwd=runs)
    assert proc.returncode == 0 and {line.split("\t")[0] for line in proc.stdout.splitlines()} == {"dog", "mouse"}
    monkeypatch.chdir(runs)
    capsys.readouterr()
    analogy_main(["fasttext", "cat", "dog", "red", "--k", "3"])
    assert len(capsys.readouterr().out.splitlines()) == 3
    neighbors_main(["fasttext", "mousez"])  # fastText answers an unseen word
    out = capsys.readouterr()
    assert "character n-grams" in out.err and out.out.strip()
    for binary in ((), ("--binary",)):
        path = tmp_path / f"v{len(binary)}"
        export_main(["fasttext", str(path), *binary])
        assert load_word2vec_format(path, binary=bool(binary)).most_similar("cat", topn=1)[0][0] in ("dog", "mouse")
    (tmp_path / "sim.tsv").write_text("# pairs\ncat\tdog\t9\ncat\tred\t1\nred\tblue\t8\ndog\tgreen\t2\nzzz\tcat\t3\n")
    (tmp_path / "q.txt").write_text(": toy\ncat dog red blue\nred blue cat dog\ncat zzz red blue\n")
    capsys.readouterr()
    eval_main(["fasttext", "--wordsim", str(tmp_path / "sim.tsv"), "--simlex", str(tmp_path / "sim.tsv"),
               "--questions", str(tmp_path / "q.txt"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "wordsim353: Spearman" in out and "over 4/5 pairs" in out
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["analogies"]["total"]["coverage"] == 2 and results["analogies"]["total"]["questions"] == 3
    assert results["misspellings"]["coverage"] == results["misspellings"]["cases"]


def test_bad_input_gives_one_line(runs, monkeypatch):
    from zoo.commands.embed import analogy_main, neighbors_main, pretrain_main

    one_line_error(zoo_cmd("embed", "neighbors", "word2vec", "zebra", cwd=runs), 2, "'zebra' is not in the "
                   "vocabulary", "word2vec")
    monkeypatch.chdir(runs)
    _fails(analogy_main, ["word2vec", "cat", "zebra", "red"], 2, "'zebra'")
    _fails(neighbors_main, ["nowhere", "cat"], 2, "not a zoo run directory")
    for flag in ("--model.window", "--model.negative"):
        _fails(pretrain_main, ["word2vec", *TINY, "--data", "tiny.txt", "--out", "x", flag, "0"], 2, f"{flag} 0")
    (runs / "empty.txt").write_text("  ... !!! \n")
    _fails(pretrain_main, ["word2vec", *TINY, "--data", "empty.txt", "--out", "x"], 2, "no words")
    (runs / "one.txt").write_text("lonely\n")
    _fails(pretrain_main, ["fasttext", *TINY, "--data", "one.txt", "--out", "x"], 2, "1 word(s)")
    _fails(pretrain_main, ["word2vec", *TINY, "--data", "tiny.txt", "--out", "x", "--model.min-count", "100000"], 2,
           "--model.min-count 100000 leaves no word")
    assert not (runs / "x").exists()  # nothing left behind by a run that could not start


def test_bench_quick_runs_without_gensim(tmp_path):
    from zoo.bench.embeddings import EXPERIMENT, render, run
    from zoo.harness.main import parse

    data = run(parse(EXPERIMENT, ["--quick", "--no-gensim"], "zoo bench embeddings"), command="zoo bench embeddings --quick")
    markdown = render(data)
    assert "*word2vec* (CBOW)" in markdown and "| words/s |" in markdown
    assert {r["impl"] for r in data["rows"]} == {"zoo"} and len(data["rows"]) == 4  # 2 seeds x 2 families
