"""GCIDE, the GNU Collaborative International Dictionary of English, as plain English text.

A sizeable public English corpus that installs from a package registry and is
not shipped with zoo: Debian's ``dict-gcide`` package (``apt-get install
dict-gcide``) puts the dictionary in dictd's format at
``/usr/share/dictd/gcide.dict.dz`` (gzip-compatible, 13.5 MB, about 40 MB of
text). GCIDE is derived from Webster's Revised Unabridged Dictionary (1913)
and WordNet, and is free software under the GNU General Public License,
version 2 or later (``/usr/share/doc/dict-gcide/copyright``); zoo only reads
it where it is installed.

:func:`gcide_text` strips dictd's markup, leaving the definitions and their
quotations as text:

* source tags in square brackets (``[1913 Webster]``, ``[PJC]``, ``[Obs.]``)
  are removed;
* pronunciations between backslashes (``\\A*buse"\\``) are removed;
* the braces of cross-references (``{Abuse}``) are dropped, the word kept.

Entries stay separated by blank lines, so each paragraph (an entry's
headword line, a sense, a quotation) is one sentence for
:func:`zoo.data.words.split_sentences`. The result has about 4.7 million words in 256,000 paragraphs
by the rules of :func:`zoo.data.words.split_words` (5.4 million
whitespace-separated pieces before the markup is stripped).
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

__all__ = ["GCIDE_PATH", "gcide_text"]

GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
_SOURCE_TAG = re.compile(r"\[[^\]\n]*\]")
_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_BRACES = re.compile(r"[{}]")


def gcide_text(path: str | os.PathLike | None = None) -> str:
    """The dictionary's text with its markup stripped (see the module docstring).

    ``path`` defaults to $ZOO_GCIDE or :data:`GCIDE_PATH`; a missing file is a
    ``FileNotFoundError`` that says how to install it.
    """
    path = Path(path or os.environ.get("ZOO_GCIDE") or GCIDE_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"GCIDE not found at {path}: install Debian's dict-gcide package "
                                "(apt-get install dict-gcide), or set ZOO_GCIDE to its gcide.dict.dz")
    with gzip.open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    text = _SOURCE_TAG.sub(" ", text)
    text = _PRONUNCIATION.sub(" ", text)
    return _BRACES.sub("", text)
