"""Word embeddings on the command line: ``zoo pretrain word2vec|fasttext`` and ``zoo embed ...``.

    zoo pretrain word2vec --data gcide --out runs/w2v               # gensim's defaults (--preset gensim)
    zoo pretrain fasttext --data book.txt --model.sg True --train.epochs 10
    zoo embed neighbors runs/w2v king --k 10
    zoo embed analogy runs/w2v man king woman                       # man is to king as woman is to ?
    zoo embed eval runs/w2v                                         # WordSim353, SimLex-999, analogies, unseen forms
    zoo embed export runs/w2v vectors.bin --binary                  # gensim's KeyedVectors.load_word2vec_format

Training text is every document of ``--data`` (the LM commands' data
options), split into words by the word tokenizer (:mod:`zoo.data.words`) and
into sentences at blank lines. The run directory is a run like the others
(run.json, tokenizer/, checkpoints/, metrics.jsonl; resumed when run again).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import tyro

from zoo.commands.common import check_out_path, check_same_run, claim_run_dir, load_text_corpus, notice
from zoo.commands.common import process_elapsed_s
from zoo.data.words import prepare_words
from zoo.harness.flags import parse_flags, parse_preset_args
from zoo.models.fasttext import FastTextConfig
from zoo.models.word2vec import Word2VecConfig
from zoo.train.embeddings import EmbeddingTrainConfig

__all__ = ["analogy_main", "eval_main", "export_main", "neighbors_main", "pretrain_main"]


@dataclasses.dataclass(frozen=True)
class _Common:
    out: Path | None = None  # run directory (default: runs/FAMILY-PRESET)
    data: str = "stdlib"  # "gcide", "stdlib", a text file, a directory or glob, or hf:NAME[:CONFIG]; all of it is trained on
    text_column: str = "text"  # the text column of an hf: dataset
    resume: bool = True  # continue the run in --out from its latest checkpoint (--no-resume: refuse to)
    overwrite: bool = False  # start --out afresh, removing the run it holds
    allow_binary: bool = False  # train on --data even where it looks like a binary file
    progress: bool = True  # progress bar
    preset: str = "gensim"  # set by the first-stage parser; listed here for --help


@dataclasses.dataclass(frozen=True)
class Word2VecPretrain(_Common):
    model: Word2VecConfig = Word2VecConfig()
    train: EmbeddingTrainConfig = EmbeddingTrainConfig()


@dataclasses.dataclass(frozen=True)
class FastTextPretrain(_Common):
    model: FastTextConfig = FastTextConfig()
    train: EmbeddingTrainConfig = EmbeddingTrainConfig()


def pretrain_main(argv: Sequence[str], prog: str = "zoo pretrain") -> int:
    """``zoo pretrain word2vec|fasttext [--preset gensim|tiny] [flags]``: train word vectors; see the module docstring."""
    family = next(a for a in argv if not a.startswith("-"))
    cls = FastTextPretrain if family == "fasttext" else Word2VecPretrain
    preset, args = parse_preset_args(argv, prog, family, cls, f"Train {family} word vectors.",
                                     model=lambda p: p.model, train=lambda p: p.train)
    run_dir = (args.out or Path("runs") / f"{family}-{preset.name}").expanduser()
    check_out_path(run_dir)

    import numpy as np  # noqa: PLC0415

    from zoo import data  # noqa: PLC0415
    from zoo.models.fasttext import FastText  # noqa: PLC0415
    from zoo.models.word2vec import Word2Vec  # noqa: PLC0415
    from zoo.run import write_run_json  # noqa: PLC0415
    from zoo.train.embeddings import train_embeddings  # noqa: PLC0415

    # All of the text (no validation split: nothing is evaluated on held-out text, and a split would cut a word).
    corpus = load_text_corpus(args.data, args.text_column, allow_binary=args.allow_binary, prog=prog, val_fraction=0)
    texts = corpus.train + corpus.val
    with claim_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite, prog=prog) as run:
        saved = data.load_tokenizer(run.path / "tokenizer") if run.resuming else None
        try:
            tokenizer, sentences, raw_words = prepare_words(texts, saved, min_count=args.model.min_count,
                                                            max_size=args.model.max_vocab_size)
        except ValueError as e:
            raise ValueError(f"--data {args.data}: {e}".replace("min_count=", "--model.min-count ")) from None
        config = args.model.replace(vocab_size=tokenizer.vocab_size)
        settings = {"data": args.data, "text_column": args.text_column, "tokenizer": "word",
                    "corpus_fingerprint": corpus.info["fingerprint"]}
        if run.resuming:
            check_same_run(run, settings=settings, model=config, train=args.train)
        else:
            tokenizer.save(run_dir / "tokenizer")
            write_run_json(run_dir, family=family, preset=preset.name, model=config, train=args.train,
                           settings=settings, data=args.data, text_column=args.text_column,
                           tokens={"corpus": corpus.info, "words": raw_words, "sentences": len(sentences),
                                   "vocabulary": len(tokenizer.words)})
        print(f"{family}/{preset.name}: corpus {args.data}: {raw_words:,} words in {len(sentences):,} sentences, "
              f"vocabulary {len(tokenizer.words):,} words (min_count {config.min_count}); run directory {run_dir}",
              flush=True)
        model = FastText(config, tokenizer.words) if family == "fasttext" else Word2Vec(config)
        counts = np.concatenate([[0, 0], tokenizer.counts])
        try:
            result = train_embeddings(model, sentences, counts, args.train, raw_words=raw_words, run_dir=run_dir,
                                      progress=args.progress, metadata={"family": family, "preset": preset.name})
        except ValueError as e:
            raise ValueError(f"--data {args.data}: {e}") from None
    loss = result["loss"]
    rate = result["words_per_s"]
    print(f"done: step {result['step']}, loss {loss:.4f} per prediction, " if loss is not None else
          f"done: step {result['step']}, ", end="")
    print(f"{rate:,.0f} words/s, " if rate else "", end="")
    print(f"{process_elapsed_s():.1f} s since the process started", flush=True)
    return 0


# -- zoo embed ------------------------------------------------------------------------


def _vectors(run_dir: Path, prog: str):
    from zoo.run import load_run  # noqa: PLC0415

    run = load_run(run_dir)
    if run.vectors is None:
        raise ValueError(f"{run_dir} is a {run.family} run; zoo embed needs a word2vec or fasttext run "
                         "(zoo pretrain word2vec|fasttext)")
    return run


def _word(text: str) -> str:
    return text.lower().replace("\u2019", "'")


@dataclasses.dataclass(frozen=True)
class NeighborsArgs:
    run_dir: tyro.conf.Positional[Path]
    word: tyro.conf.Positional[str]
    k: int = 10  # how many neighbours


def neighbors_main(argv: Sequence[str], prog: str = "zoo embed neighbors") -> int:
    """``zoo embed neighbors RUN WORD [--k 10]``: the words nearest to WORD (cosine). A word outside the
    vocabulary is an error for word2vec; fastText builds its vector from character n-grams."""
    args = parse_flags(NeighborsArgs, args=list(argv), prog=prog, description=neighbors_main.__doc__)
    if args.k < 1:
        raise ValueError(f"--k {args.k}: expected at least 1")
    run = _vectors(args.run_dir, prog)
    word = _word(args.word)
    if word not in run.vectors and run.vectors.has_vector(word):
        notice(prog, f"{word!r} is not in the vocabulary; its vector is the mean of its character n-grams")
    for neighbour, score in run.vectors.most_similar(word, topn=args.k):
        print(f"{neighbour}\t{score:.4f}")
    return 0


@dataclasses.dataclass(frozen=True)
class AnalogyArgs:
    run_dir: tyro.conf.Positional[Path]
    a: tyro.conf.Positional[str]
    b: tyro.conf.Positional[str]
    c: tyro.conf.Positional[str]
    k: int = 5  # how many answers


def analogy_main(argv: Sequence[str], prog: str = "zoo embed analogy") -> int:
    """``zoo embed analogy RUN A B C [--k 5]``: A is to B as C is to ? (3CosAdd: nearest to B - A + C)."""
    args = parse_flags(AnalogyArgs, args=list(argv), prog=prog, description=analogy_main.__doc__)
    if args.k < 1:
        raise ValueError(f"--k {args.k}: expected at least 1")
    run = _vectors(args.run_dir, prog)
    for answer, score in run.vectors.analogy(_word(args.a), _word(args.b), _word(args.c), topn=args.k):
        print(f"{answer}\t{score:.4f}")
    return 0


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    run_dir: tyro.conf.Positional[Path]
    wordsim: Path | None = None  # WordSim353 file (default: the installed gensim's)
    simlex: Path | None = None  # SimLex-999 file (default: the installed gensim's)
    questions: Path | None = None  # questions-words.txt (default: the installed gensim's)
    json: Path | None = None  # also write every result here


def eval_main(argv: Sequence[str], prog: str = "zoo embed eval") -> int:
    """``zoo embed eval RUN``: Spearman on WordSim353 and SimLex-999, 3CosAdd analogy accuracy by section, with
    coverage, and unseen word forms (inflections, one-edit misspellings) answered by their nearest neighbours.
    The evaluation files are read from an installed gensim unless given."""
    args = parse_flags(EvalArgs, args=list(argv), prog=prog, description=eval_main.__doc__)
    from zoo.data.wordsim import evaluation_file, load_analogies, load_similarity  # noqa: PLC0415
    from zoo.embedding_eval import evaluate_all, inflection_candidates, misspellings  # noqa: PLC0415

    files = {}
    for name, flag, given in (("wordsim353", "--wordsim", args.wordsim), ("simlex999", "--simlex", args.simlex),
                              ("questions-words", "--questions", args.questions)):
        try:
            files[name] = given if given is not None else evaluation_file(name)
        except FileNotFoundError:
            notice(prog, f"no {name} file: pip install gensim (it ships one), or pass {flag} PATH")
    run = _vectors(args.run_dir, prog)
    words = run.tokenizer.words
    results = evaluate_all(
        run.vectors,
        wordsim=load_similarity(files["wordsim353"]) if "wordsim353" in files else None,
        simlex=load_similarity(files["simlex999"]) if "simlex999" in files else None,
        questions=load_analogies(files["questions-words"]) if "questions-words" in files else None,
        inflections=inflection_candidates(words), typos=misspellings(words))
    print(format_results(results, f"{args.run_dir} ({run.family}, step {run.step}, {len(words):,} words)"))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _num(x, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def format_results(results: dict, title: str) -> str:
    """The evaluation as text: one line per measure, the analogy sections below."""
    lines = [title]
    for name in ("wordsim353", "simlex999"):
        if name in results:
            r = results[name]
            lines.append(f"  {name}: Spearman {_num(r['spearman'])} over {r['coverage']}/{r['pairs']} pairs")
    if "analogies" in results:
        a = results["analogies"]
        for part in ("total", "semantic", "syntactic"):
            r = a[part]
            lines.append(f"  analogies {part}: {_num(r['accuracy'], '.2%')} of {r['coverage']}/{r['questions']} "
                         "questions covered (3CosAdd)")
        for name, r in a["sections"].items():
            lines.append(f"    {name}: {_num(r['accuracy'], '.2%')} of {r['coverage']}/{r['questions']}")
    for name in ("unseen_inflections", "misspellings"):
        if name in results:
            r = results[name]
            lines.append(f"  {name.replace('_', ' ')}: hit@1 {_num(r['hit@1'], '.2%')}, hit@10 "
                         f"{_num(r['hit@10'], '.2%')} over {r['coverage']}/{r['cases']} forms with a vector")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ExportArgs:
    run_dir: tyro.conf.Positional[Path]
    file: tyro.conf.Positional[Path]
    binary: bool = False  # word2vec's binary format (default: text)


def export_main(argv: Sequence[str], prog: str = "zoo embed export") -> int:
    """``zoo embed export RUN FILE [--binary]``: the vocabulary's vectors in word2vec's text or binary format,
    as gensim.models.KeyedVectors.load_word2vec_format reads them (fastText: the composed word vectors)."""
    args = parse_flags(ExportArgs, args=list(argv), prog=prog, description=export_main.__doc__)
    if args.file.is_dir():
        raise ValueError(f"FILE {args.file} is a directory; expected a file name")
    run = _vectors(args.run_dir, prog)
    run.vectors.save_word2vec_format(args.file, binary=args.binary)
    print(f"wrote {len(run.vectors):,} vectors of {run.vectors.vector_size} dimensions to {args.file} "
          f"({'binary' if args.binary else 'text'})")
    return 0
