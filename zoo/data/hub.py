"""``hf:NAME[:CONFIG]`` data specs: a Hugging Face dataset, from the local cache first, fast when offline.

``datasets.load_dataset`` asks the Hub before it looks at its cache, and
without a network it retries for about half a minute, then raises a long
``ConnectionError``. :func:`load_hub_dataset` instead

1. reads a folder written by ``save_to_disk`` when NAME is one;
2. tries the cache in offline mode (no network traffic at all);
3. only if the dataset is not cached, checks in at most
   :data:`PROBE_SECONDS` whether the Hub can be reached, and downloads it
   when it can; when it cannot, raises a one-line ``ValueError`` that says so.

With ``HF_HUB_OFFLINE=1`` (or ``HF_DATASETS_OFFLINE=1``) set, step 3 is an
error straight away.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

__all__ = ["PROBE_SECONDS", "hub_reachable", "load_hub_dataset", "parse_spec"]

PROBE_SECONDS = 3.0
_SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")  # what save_to_disk writes


def parse_spec(spec: str, what: str = "corpus") -> tuple[str, str | None]:
    """``"hf:NAME[:CONFIG]"`` -> (NAME, CONFIG or None); ValueError when NAME is empty."""
    name, _, config = spec[len("hf:"):].partition(":")
    if not name:
        raise ValueError(f"{what} spec {spec!r} names no dataset; expected 'hf:NAME' or 'hf:NAME:CONFIG'")
    return name, config or None


def is_saved_dataset(name: str) -> bool:
    return os.path.isdir(name) and any(os.path.exists(os.path.join(name, f)) for f in _SAVED_MARKERS)


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hub (``HF_ENDPOINT``, default huggingface.co:443) opens within ``timeout``.

    The name lookup runs in a thread too, since a resolver without a network
    can hang for longer than the socket timeout.
    """
    from urllib.parse import urlparse  # noqa: PLC0415

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok = []

    def connect():
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
            ok.append(True)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


@contextlib.contextmanager
def _offline():
    """Offline mode for the ``with`` block (the flags are module constants read at import time)."""
    import datasets  # noqa: PLC0415
    from huggingface_hub import constants  # noqa: PLC0415

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def load_hub_dataset(spec: str, what: str = "corpus", **kwargs: Any):
    """``datasets.load_from_disk(NAME)`` or ``datasets.load_dataset(NAME, CONFIG, **kwargs)``, cache first.

    Raises ``ValueError`` (one line) when the dataset is neither saved, nor
    cached, nor downloadable now, or does not exist on the Hub.
    """
    import datasets  # noqa: PLC0415

    name, config = parse_spec(spec, what)
    if is_saved_dataset(name):
        ds = datasets.load_from_disk(name)
        split = kwargs.get("split")
        return ds[split] if split is not None and isinstance(ds, datasets.DatasetDict) else ds
    try:
        with _offline():
            return datasets.load_dataset(name, config, **kwargs)
    except (OSError, ValueError) as e:  # ConnectionError (not cached), FileNotFoundError, DatasetNotFoundError
        cached_error = e
    if datasets.config.HF_HUB_OFFLINE:
        raise ValueError(f"{what} {spec!r}: not in the local Hugging Face cache, and offline mode is on "
                         f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); {_brief(cached_error)}") from cached_error
    if not hub_reachable():
        raise ValueError(
            f"{what} {spec!r}: not in the local Hugging Face cache, and the Hub cannot be reached (offline?); "
            "download it once with a network, or pass a local file or a folder written by save_to_disk"
        ) from cached_error
    try:
        return datasets.load_dataset(name, config, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {spec!r}: could not load {name!r} from the Hub ({_brief(e)})") from e


def _brief(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__
