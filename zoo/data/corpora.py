"""Text corpora for pretraining: documents split into train and validation.

:func:`load_corpus` turns a spec string into a :class:`Corpus` — two lists of
documents and an ``info`` dict to record with the run. Specs:

``"stdlib"``
    The built-in corpus, on every machine, with no network: the ``.py`` files
    of the running interpreter's standard library
    (``sysconfig.get_paths()["stdlib"]``), without test folders (any path
    component named ``test``/``tests`` or ending in ``_test``/``_tests``, e.g.
    ``test/``, ``idlelib/idle_test/``, ``distutils/tests/``) and without
    ``site-packages``/``dist-packages``. Read as UTF-8 (undecodable bytes
    replaced), one document per file, in sorted path order, split BY FILE:
    every k-th file goes to validation (k ~ 1/val_fraction), so validation is
    spread over the whole library. Its size depends on the Python build
    (CPython 3.11: ~730 files, ~12 MB), so ``info`` records it.

    It is read with plain Python, not ``datasets``: the documents are a few
    hundred small files that fit in memory, and ``load_dataset("text")``
    would only add a copy of them in the Arrow cache and a per-file hashing
    pass (seconds) on every load.

``"gcide"``
    GCIDE, the GNU Collaborative International Dictionary of English, with its
    markup stripped (:mod:`zoo.data.gcide`; Debian's ``dict-gcide`` package,
    GPL-2+, read where it is installed), one document split by characters.

a path: a file, a directory or a glob (``"data/*.txt"``, ``"**"`` recursive)
    Read as ``datasets.load_dataset("text", sample_by="document")`` would, but
    with plain Python: each file is one document (universal newlines,
    undecodable bytes replaced). A
    directory means every non-hidden file under it. One file is split by
    characters, first ``1 - val_fraction`` for training and the rest for
    validation (as nanoGPT's ``shakespeare_char/prepare.py``); several files
    are split by file, as ``"stdlib"``.

``"hf:NAME[:CONFIG]"``
    ``datasets.load_dataset(NAME, CONFIG)``, column ``text_column``: the
    ``train`` split, and ``validation`` (or ``test``) when the dataset has one,
    else every k-th training document. Needs the network the first time,
    then works offline from the Hugging Face cache (``HF_DATASETS_OFFLINE=1``).
    When NAME is a directory written by ``save_to_disk`` it is read with
    ``datasets.load_from_disk``.

Empty documents are dropped. A corpus whose training split ends up empty is
an error, as are a missing path, an empty glob and an unknown column.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPEC_HELP = "expected 'stdlib', 'gcide', 'hf:NAME[:CONFIG]', a file, a directory or a glob"
_EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__"}
_GLOB_CHARS = set("*?[")


@dataclass
class Corpus:
    """Documents for training and validation, and facts to record with the run.

    ``info`` holds ``name``, ``spec``, ``train_documents``, ``val_documents``,
    ``train_characters``, ``val_characters`` and per-source details.

    Examples:
      >>> corpus = zoo.data.Corpus(train=["one document", "another"], val=["held out"], info={"name": "mine"})
      >>> len(corpus.train), len(corpus.val)
      (2, 1)
      >>> len(corpus.fingerprint())                # a hash of the content
      64
    """

    train: list[str]
    val: list[str]
    info: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 of every document, in order, with its split and length (content, not names)."""
        h = hashlib.sha256()
        for split, docs in (("train", self.train), ("val", self.val)):
            h.update(f"{split}:{len(docs)}\0".encode())
            for doc in docs:
                data = doc.encode("utf-8", errors="surrogatepass")
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
        return h.hexdigest()


def load_corpus(
    spec: str, *, text_column: str = "text", val_fraction: float = 0.1, allow_binary: bool = False
) -> Corpus:
    """Load the corpus named by ``spec`` (see the module docstring).

    Text that is mostly not text is refused: a document in which more than
    :data:`BINARY_SHARE` of the characters are undecodable bytes (read as
    U+FFFD) or control characters other than whitespace is taken for a binary
    file, and raises ``ValueError`` unless ``allow_binary``. Fewer such
    characters are only counted, in ``info["undecodable_characters"]``.
    ``info["fingerprint"]`` is :meth:`Corpus.fingerprint`.

    Examples:
      >>> from pathlib import Path
      >>> _ = Path("notes.txt").write_text("To be, or not to be, that is the question.\\n" * 10)
      >>> corpus = zoo.data.load_corpus("notes.txt", val_fraction=0.1)
      >>> len(corpus.train[0]), len(corpus.val[0])    # one file: split by characters
      (387, 43)
      >>> corpus.info["train_documents"]
      1
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"corpus spec {spec!r} is empty; {SPEC_HELP}")
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction!r}; expected a number in [0, 1)")
    if spec == "stdlib":
        corpus = _load_stdlib(val_fraction)
    elif spec == "gcide":
        corpus = _load_gcide(val_fraction)
    elif spec.startswith("hf:"):
        corpus = _load_hf(spec, text_column, val_fraction)
    else:
        corpus = _load_files(spec, val_fraction)
    if not corpus.train:
        raise ValueError(f"corpus {spec!r} has no non-empty training documents (found {corpus.info})")
    undecodable, binary = _not_text(corpus.train + corpus.val)
    if binary and not allow_binary:
        raise ValueError(
            f"corpus {spec!r}: {len(binary)} of its {len(corpus.train) + len(corpus.val)} documents look binary "
            f"(the first: {binary[0]:.0%} of its characters are undecodable bytes or control characters); "
            "pass a text file, or allow it explicitly (--allow-binary)"
        )
    corpus.info = {
        "spec": spec,
        **corpus.info,
        "train_documents": len(corpus.train),
        "val_documents": len(corpus.val),
        "train_characters": sum(map(len, corpus.train)),
        "val_characters": sum(map(len, corpus.val)),
        "val_fraction": val_fraction,
        "undecodable_characters": undecodable,
        "fingerprint": corpus.fingerprint(),
    }
    return corpus


# A document is binary when more than this share of its characters are not text: U+FFFD (what an
# undecodable byte becomes) or a control character other than tab, newline, vertical tab, form feed
# and carriage return. Random bytes read as UTF-8 come out about 60% so; English text, 0%.
BINARY_SHARE = 0.3
_CONTROL = np.zeros(256, bool)
_CONTROL[[*range(0x00, 0x09), 0x0E, 0x0F, *range(0x10, 0x20), 0x7F]] = True


def _not_text(docs: list[str]) -> tuple[int, list[float]]:
    """(U+FFFD characters in all ``docs``, the not-text shares of the documents that look binary)."""
    undecodable, binary = 0, []
    for doc in docs:
        if not doc:
            continue
        replaced = doc.count("\ufffd")
        undecodable += replaced
        # Control characters are single bytes below 0x80 in UTF-8, so count them in the bytes.
        data = np.frombuffer(doc.encode("utf-8", errors="surrogatepass"), np.uint8)
        bad = replaced + int(np.count_nonzero(_CONTROL[data]))
        if bad > BINARY_SHARE * len(doc):
            binary.append(bad / len(doc))
    return undecodable, binary


# ---------------------------------------------------------------------------
# Splitting


def val_indices(n: int, val_fraction: float) -> list[int]:
    """Which of ``n`` documents go to validation: evenly spaced, deterministic.

    ``round(n * val_fraction)`` of them (at least 1 when ``n >= 2`` and the
    fraction is positive, and always leaving one for training): with 0.1 that
    is every 10th document, indices 9, 19, 29, ...

    Examples:
      >>> zoo.data.val_indices(10, 0.2)
      [4, 9]
    """
    if n < 2 or val_fraction <= 0:
        return []
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return [(j + 1) * n // n_val - 1 for j in range(n_val)]


def split_documents(docs: list, val_fraction: float) -> tuple[list, list]:
    """(train, val) by whole documents, with :func:`val_indices`.

    Examples:
      >>> train, val = zoo.data.split_documents([f"doc{i}" for i in range(10)], val_fraction=0.2)
      >>> train, val
      (['doc0', 'doc1', 'doc2', 'doc3', 'doc5', 'doc6', 'doc7', 'doc8'], ['doc4', 'doc9'])
    """
    val_set = set(val_indices(len(docs), val_fraction))
    train = [d for i, d in enumerate(docs) if i not in val_set]
    val = [d for i, d in enumerate(docs) if i in val_set]
    return train, val


def split_characters(text: str, val_fraction: float) -> tuple[str, str]:
    """One document: the first ``1 - val_fraction`` of its characters and the rest."""
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


# ---------------------------------------------------------------------------
# The standard library


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _is_test_dir(name: str) -> bool:
    return name in ("test", "tests") or name.endswith(("_test", "_tests"))


def stdlib_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``.py`` files of the standard library, test folders and site-packages excluded.

    Sorted by their path relative to ``root`` (POSIX form), so the order is
    the same on every run and machine layout.

    Examples:
      >>> files = zoo.data.stdlib_files()
      >>> len(files) > 100, all(f.suffix == ".py" for f in files)
      (True, True)
      >>> any("site-packages" in f.parts for f in files)
      False
    """
    root = stdlib_root() if root is None else Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place, so os.walk never enters excluded trees.
        dirnames[:] = [
            d for d in dirnames if d not in _EXCLUDED_DIRS and not _is_test_dir(d) and not d.startswith(".")
        ]
        found.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def stdlib_split(val_fraction: float = 0.1, root=None) -> tuple[list[Path], list[Path]]:
    """(train files, validation files) of the ``"stdlib"`` corpus.

    Examples:
      >>> train, val = zoo.data.stdlib_split(val_fraction=0.1)
      >>> len(val) < len(train), set(train).isdisjoint(val)
      (True, True)
    """
    return split_documents(stdlib_files(root), val_fraction)


def _read(path: Path) -> str:
    # newline=None: universal newlines, as the "text" loader of datasets.
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _load_stdlib(val_fraction: float) -> Corpus:
    root = stdlib_root()
    train_files, val_files = stdlib_split(val_fraction, root)
    if not train_files:
        raise ValueError(f"corpus 'stdlib': found no .py files under {str(root)!r}")
    train = [t for t in map(_read, train_files) if t]
    val = [t for t in map(_read, val_files) if t]
    info = {
        "name": "stdlib",
        "root": str(root),
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "train_files": len(train_files),
        "val_files": len(val_files),
    }
    return Corpus(train, val, info)


def _load_gcide(val_fraction: float) -> Corpus:
    from .gcide import GCIDE_PATH, gcide_text  # noqa: PLC0415

    train, val = split_characters(gcide_text(), val_fraction)
    return Corpus([train], [val] if val else [], {"name": "gcide", "source": str(GCIDE_PATH), "split": "characters"})


# ---------------------------------------------------------------------------
# Local files


def resolve_files(spec: str) -> list[Path]:
    """The files named by a path, directory or glob spec, sorted; ValueError if none."""
    expanded = os.path.expanduser(spec)
    if _GLOB_CHARS & set(expanded):
        paths = [Path(p) for p in glob.glob(expanded, recursive=True)]
        files = sorted(p for p in paths if p.is_file())
        if not files:
            raise ValueError(
                f"corpus spec {spec!r}: the glob matched {len(paths)} paths and no files; {SPEC_HELP}"
            )
        return files
    path = Path(expanded)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            files.extend(Path(dirpath, f) for f in filenames if not f.startswith("."))
        if not files:
            raise ValueError(f"corpus spec {spec!r}: the directory has no (non-hidden) files; {SPEC_HELP}")
        return sorted(files, key=lambda p: p.relative_to(path).as_posix())
    raise ValueError(f"corpus spec {spec!r}: no such file or directory; {SPEC_HELP}")


def _read_documents(files: dict[str, list[Path]]) -> dict[str, list[str]]:
    """``{split: files}`` -> ``{split: documents}``, one document per file, in file order.

    What ``datasets.load_dataset("text", sample_by="document")`` reads (a text-mode ``open`` with
    universal newlines, undecodable bytes replaced), read directly: the documents end up in a Python
    list either way, and the library only added its import, an Arrow copy and a hashing pass (about
    two seconds of every command on a small file).
    """
    return {split: [_read(f) for f in fs] for split, fs in files.items()}


def _load_files(spec: str, val_fraction: float) -> Corpus:
    files = resolve_files(spec)
    info = {"name": os.path.basename(spec.rstrip("/\\")) or spec, "files": len(files)}
    if len(files) == 1:
        (text,) = _read_documents({"train": files})["train"]
        train_text, val_text = split_characters(text, val_fraction)
        train, val = [train_text], [val_text]
        info["split"] = "characters"
    else:
        train_files, val_files = split_documents(files, val_fraction)
        docs = _read_documents({"train": train_files, "validation": val_files})
        train, val = docs["train"], docs["validation"]
        info.update(split="files", train_files=len(train_files), val_files=len(val_files))
    return Corpus([t for t in train if t], [t for t in val if t], info)


# ---------------------------------------------------------------------------
# Hugging Face datasets


def _column(ds, spec: str, split: str, text_column: str) -> list[str]:
    if text_column not in ds.column_names:
        raise ValueError(
            f"corpus {spec!r}: split {split!r} has no column {text_column!r}; its columns are "
            f"{ds.column_names} (pass text_column=...)"
        )
    feature = ds.features[text_column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise ValueError(f"corpus {spec!r}: column {text_column!r} holds {feature}, expected strings")
    return [t for t in ds.select_columns([text_column]).to_dict()[text_column] if t]


def _load_hf(spec: str, text_column: str, val_fraction: float) -> Corpus:
    import datasets

    from .hub import is_saved_dataset, load_hub_dataset, parse_spec

    name, config = parse_spec(spec)
    saved = is_saved_dataset(name)
    dsd = load_hub_dataset(spec)
    if isinstance(dsd, datasets.Dataset):  # a single split saved with save_to_disk
        dsd = datasets.DatasetDict({"train": dsd})
    splits = list(dsd)
    if "train" not in dsd:
        raise ValueError(f"corpus {spec!r} has no 'train' split; its splits are {splits}")
    train = _column(dsd["train"], spec, "train", text_column)
    val_split = next((s for s in ("validation", "valid", "val", "test") if s in dsd), None)
    if val_split is not None:
        val = _column(dsd[val_split], spec, val_split, text_column)
    else:
        train, val = split_documents(train, val_fraction)
    info = {
        "name": name if not config else f"{name}:{config}",
        "source": "load_from_disk" if saved else "load_dataset",
        "val_split": val_split or "every k-th train document (val_fraction)",
    }
    return Corpus(train, val, info)
