"""Reading and writing the weight files of a Hugging Face model directory, without torch.

A directory holds its weights in one of three ways; :func:`read_weights` reads them
in this order of preference:

* ``model.safetensors``: one safetensors file;
* ``model.safetensors.index.json``: shards, ``{"weight_map": {name: file}}``;
* ``pytorch_model.bin``: a pickled torch state dict, read only when torch is
  installed, and then only with ``torch.load(..., weights_only=True)`` (which
  refuses arbitrary pickled objects). Nothing here unpickles otherwise.

Safetensors files are read with the ``safetensors`` package's NumPy reader
(float16 and bfloat16 included: bfloat16 arrays come back as ``ml_dtypes``'
``bfloat16``), as stored; the name tables widen every weight they read to
float32, so a half-precision checkpoint loads into float32 parameters. A truncated or corrupt
file is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["SAFETENSORS", "SAFETENSORS_INDEX", "TORCH_BIN", "read_weights", "write_weights", "weight_files"]

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"


def weight_files(directory: Path) -> str | None:
    """Which of the weight layouts ``directory`` has (the file name), in order of preference; None: none."""
    for name in (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN):
        if (directory / name).is_file():
            return name
    return None


def _read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    out = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if names is None or name in names:
                    out[name] = f.get_tensor(name)
    except SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); the file is truncated or corrupt, "
                         "download or export it again") from e
    return out


def _read_index(directory: Path) -> dict[str, np.ndarray]:
    index_path = directory / SAFETENSORS_INDEX
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index_path}: not a safetensors index (expected JSON with a 'weight_map'): {e}") from e
    by_file: dict[str, set[str]] = {}
    for name, file in weight_map.items():
        by_file.setdefault(file, set()).add(name)
    out = {}
    for file, names in sorted(by_file.items()):
        shard = directory / file
        if not shard.is_file():
            raise FileNotFoundError(f"{index_path} names the shard {file}, which {directory} does not have")
        tensors = _read_safetensors(shard, names)
        missing = sorted(names - tensors.keys())
        if missing:
            raise ValueError(f"{shard}: the index places {missing[:3]} in it, but the shard lacks them")
        out.update(tensors)
    return out


def _read_torch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise ValueError(
            f"{path}: a PyTorch pickle, which zoo reads only with torch installed (pip install torch; it is then "
            "loaded with torch.load(weights_only=True)), or convert it to safetensors (model.safetensors)"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad pickle)
        raise ValueError(f"{path}: torch.load(weights_only=True) could not read it: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got a {type(state).__name__}")
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).numpy()
            for k, v in state.items() if hasattr(v, "detach")}


def read_weights(directory: str | os.PathLike) -> tuple[dict[str, np.ndarray], str]:
    """(tensors by name, NumPy arrays as stored; the file or index read) of a HF model directory.

    The name tables convert the weights they read to float32 (:mod:`zoo.interop.convert`); other tensors
    (buffers such as ``attn.bias``, integers) are left as they are.

    Raises ``FileNotFoundError`` when the directory has no weights, ``ValueError``
    for a file that cannot be read.

    Examples:
      >>> from pathlib import Path
      >>> Path("hf-dir").mkdir()
      >>> path = zoo.interop.write_weights({"wte.weight": np.ones((4, 2), np.float32)}, Path("hf-dir"))
      >>> tensors, source = zoo.interop.read_weights("hf-dir")
      >>> {name: t.shape for name, t in tensors.items()}, Path(source).name
      ({'wte.weight': (4, 2)}, 'model.safetensors')
    """
    directory = Path(directory)
    name = weight_files(directory)
    if name is None:
        raise FileNotFoundError(
            f"{directory}: no weights; expected {SAFETENSORS}, {SAFETENSORS_INDEX} (shards) or {TORCH_BIN}")
    path = directory / name
    if name == SAFETENSORS:
        tensors = _read_safetensors(path)
    elif name == SAFETENSORS_INDEX:
        tensors = _read_index(directory)
    else:
        tensors = _read_torch_bin(path)
    return tensors, name


def write_weights(tensors: dict[str, np.ndarray], directory: Path) -> Path:
    """Write ``directory/model.safetensors`` (float32, metadata format "pt", as transformers expects).

    Examples:
      >>> from pathlib import Path
      >>> Path("out").mkdir()
      >>> tensors = {"h.0.attn.c_attn.weight": np.zeros((8, 24), np.float32)}
      >>> path = zoo.interop.write_weights(tensors, Path("out"))
      >>> path.name
      'model.safetensors'
      >>> import safetensors.numpy
      >>> safetensors.numpy.load_file(path)["h.0.attn.c_attn.weight"].shape
      (8, 24)
    """
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = directory / SAFETENSORS
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
    os.replace(tmp, path)
    return path
