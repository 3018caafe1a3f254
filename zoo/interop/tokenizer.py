"""Tokenizers in and out of a Hugging Face model directory, through the ``tokenizers`` library.

In (:func:`load_hf_tokenizer`), the first of these the directory has:

* ``tokenizer.json`` (the ``tokenizers`` library's own file, what transformers'
  fast tokenizers load): a BPE model becomes :class:`zoo.data.BPETokenizer`,
  a WordPiece model :class:`zoo.data.WordPieceTokenizer`;
* GPT-2's ``vocab.json`` and ``merges.txt``: byte-level BPE built as
  transformers' GPT-2 converter builds it (``add_prefix_space`` from
  ``tokenizer_config.json``, default false), ``<|endoftext|>`` a special token;
* BERT's ``vocab.txt``: WordPiece built as transformers' BERT converter builds
  it (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars`` from
  ``tokenizer_config.json``), [PAD] [UNK] [CLS] [SEP] [MASK] special tokens.

The ids are those of transformers' fast tokenizer on the same files. zoo's
``encode`` adds no special tokens (zoo's data code adds [CLS]/[SEP] itself),
and GPT-2's tokenizer in zoo reads a literal ``<|endoftext|>`` in the text as
text (zoo's rule: only the pipeline inserts document boundaries), where
transformers reads it as the special token.

Out (:func:`export_tokenizer`): a ``tokenizer.json`` that gives the run's ids
for every kind: BPE and WordPiece are the library's own (WordPiece with BERT's
``[CLS] A [SEP]`` post-processor added, so transformers' ``tokenizer(text)``
adds them as for BERT); the byte tokenizer is a byte-level BPE with no merges
whose 256 symbols have their byte's id; the char tokenizer is a BPE with no
merges over the characters, unknown characters to ``<unk>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.data.tokenizers import (CLS, EOT, MASK, PAD, SEP, UNK, WORDPIECE_SPECIALS, WORDPIECE_UNK, BPETokenizer,
                                 Tokenizer, WordPieceTokenizer)

__all__ = ["load_hf_tokenizer", "export_tokenizer", "SAMPLE_TEXT", "check_same_ids"]

# Text on which an exported tokenizer must give the run's ids: ASCII, punctuation, digits, accents,
# CJK and an emoji, newlines and runs of spaces.
SAMPLE_TEXT = ("The quick brown fox jumps over the lazy dog.\nROMEO: Wherefore art thou, 42 times?  "
               "def main(x):\n    return x ** 2  # café, naïve, Straße; 日本語のテキスト 🙂 [MASK] end")


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e


def _gpt2_from_vocab(directory: Path) -> Any:
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
    from tokenizers import decoders, models, pre_tokenizers, processors  # noqa: PLC0415

    prefix_space = bool(_tokenizer_config(directory).get("add_prefix_space", False))
    bpe = models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt"),
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    hf = HFTokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.add_special_tokens([EOT])
    return hf


def _bert_from_vocab(directory: Path) -> Any:
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
    from tokenizers import decoders, models, normalizers, pre_tokenizers  # noqa: PLC0415

    cfg = _tokenizer_config(directory)
    lower = bool(cfg.get("do_lower_case", True))
    hf = HFTokenizer(models.WordPiece.from_file(str(directory / "vocab.txt"), unk_token=WORDPIECE_UNK))
    hf.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(cfg.get("tokenize_chinese_chars", True)),
        strip_accents=cfg.get("strip_accents"), lowercase=lower,
    )
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    hf.add_special_tokens(list(WORDPIECE_SPECIALS))
    _bert_post_processor(hf)
    return hf


def _bert_post_processor(hf: Any) -> None:
    """transformers' BERT template: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` (B's type id 1)."""
    from tokenizers import processors  # noqa: PLC0415

    cls, sep = hf.token_to_id(CLS), hf.token_to_id(SEP)
    hf.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0", pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1", special_tokens=[(CLS, cls), (SEP, sep)])


def load_hf_tokenizer(directory: str | Path, kind: str) -> Tokenizer:
    """The tokenizer of a HF model directory as a zoo tokenizer; ``kind`` is "gpt" or "bert".

    Raises ``FileNotFoundError`` naming the files expected when there is none.

    Examples:
      >>> from pathlib import Path
      >>> text, tokenizer_config = zoo.interop.export_tokenizer(zoo.data.ByteTokenizer())
      >>> Path("hf-dir").mkdir()
      >>> _ = Path("hf-dir/tokenizer.json").write_text(text)
      >>> tok = zoo.interop.load_hf_tokenizer("hf-dir", "gpt")
      >>> tok.kind, tok.encode("hi")
      ('bpe', array([104, 105], dtype=int32))
    """
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415

    directory = Path(directory)
    path = directory / "tokenizer.json"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            model = (json.loads(text).get("model") or {}).get("type")
            hf = HFTokenizer.from_str(text)
        except Exception as e:  # noqa: BLE001 (the Rust library raises its own exception type)
            raise ValueError(f"{path}: not a tokenizers file ({e})") from e
        if model == "WordPiece":
            return WordPieceTokenizer(hf)
        if model == "BPE":
            return BPETokenizer(hf)
        raise ValueError(f"{path}: a {model} tokenizer; zoo reads BPE (GPT-2) and WordPiece (BERT) ones")
    if kind == "gpt" and (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return BPETokenizer(_gpt2_from_vocab(directory))
    if kind == "bert" and (directory / "vocab.txt").is_file():
        return WordPieceTokenizer(_bert_from_vocab(directory))
    files = "vocab.json and merges.txt" if kind == "gpt" else "vocab.txt"
    raise FileNotFoundError(f"{directory}: no tokenizer; expected tokenizer.json, or {files}")


def _byte_level_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable symbol map (``bytes_to_unicode``), which the ByteLevel pre-tokenizer applies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = dict(zip(printable, map(chr, printable), strict=True)), 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return symbols


def _byte_tokenizer() -> Any:
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
    from tokenizers import decoders, models, pre_tokenizers  # noqa: PLC0415

    vocab = {symbol: b for b, symbol in _byte_level_symbols().items()}  # id = the byte
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])  # id 256
    return hf


def _char_tokenizer(chars: list[str]) -> Any:
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
    from tokenizers import decoders, models  # noqa: PLC0415

    vocab = {c: i for i, c in enumerate(chars)}
    vocab[UNK] = len(chars)
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens([EOT])  # id len(chars) + 1
    return hf


def export_tokenizer(tokenizer: Tokenizer) -> tuple[str, dict[str, Any]]:
    """(``tokenizer.json`` text, ``tokenizer_config.json`` dict) giving ``tokenizer``'s ids in transformers.

    The result is checked on :data:`SAMPLE_TEXT`: a ``RuntimeError`` if the ids differ.

    Examples:
      >>> tok = zoo.data.make_tokenizer("char", ["hello world"])
      >>> text, tokenizer_config = zoo.interop.export_tokenizer(tok)   # tokenizer.json, tokenizer_config.json
      >>> import tokenizers
      >>> tokenizers.Tokenizer.from_str(text).encode("hello").ids == tok.encode("hello").tolist()
      True
    """
    from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415

    special: dict[str, str] = {}
    if tokenizer.kind == "byte":
        hf = _byte_tokenizer()
    elif tokenizer.kind == "char":
        hf = _char_tokenizer(tokenizer.chars)
        special["unk_token"] = UNK
    elif tokenizer.kind == "bpe":
        hf = HFTokenizer.from_str(tokenizer.to_json())
    elif tokenizer.kind == "wordpiece":
        hf = HFTokenizer.from_str(tokenizer.to_json())
        _bert_post_processor(hf)
        special.update(unk_token=WORDPIECE_UNK, pad_token=PAD, cls_token=CLS, sep_token=SEP, mask_token=MASK)
    else:
        raise ValueError(f"a {tokenizer.kind} tokenizer has no tokenizer.json form; expected byte, char, bpe or "
                         "wordpiece")
    if tokenizer.kind != "wordpiece":
        special.update(eos_token=EOT, bos_token=EOT)
    check_same_ids(tokenizer, hf)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **special}
    return hf.to_str(pretty=True), config


def check_same_ids(tokenizer: Tokenizer, hf: Any, text: str = SAMPLE_TEXT) -> None:
    """``RuntimeError`` unless the HF tokenizer ``hf`` gives ``tokenizer``'s ids on ``text``."""
    if tokenizer.kind != "wordpiece":
        text = text.replace("[MASK]", "mask")  # a special token only in BERT's vocabulary
    want = tokenizer.encode(text).tolist()
    got = hf.encode(text, add_special_tokens=False).ids
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise RuntimeError(f"the exported {tokenizer.kind} tokenizer gives other ids than the run's on sample text "
                           f"(first difference at token {first}: {got[first:first + 3]} vs {want[first:first + 3]})")
