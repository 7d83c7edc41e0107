"""Where generated data and training outputs live: a cache folder git ignores.

What a run records about its inputs (an artifact's provenance, a bench result) names them with
`portable_path`, so the record says nothing of the machine that wrote it; `local_path` reads it back.
"""

import os
from pathlib import Path

CACHE_MARK = "<cache>"  # stands for cache_dir() in a recorded path


def cache_dir() -> Path:
    """`$STREAM_DECODER_CACHE`, else `.cache/stream_decoder` under the working directory."""
    return Path(os.environ.get("STREAM_DECODER_CACHE", Path.cwd() / ".cache" / "stream_decoder"))


def portable_path(path: str | Path) -> str:
    """`<cache>/...` inside the cache, relative inside the working directory, else absolute (links
    kept: a virtual environment's python is a link, and resolved it is another program): a path
    elsewhere names a place chosen on purpose (a lab's data server), which a reader may share."""
    resolved = Path(path).resolve()
    for root, prefix in ((cache_dir().resolve(), f"{CACHE_MARK}/"), (Path.cwd().resolve(), "")):
        if resolved.is_relative_to(root):
            return prefix + resolved.relative_to(root).as_posix()
    return os.path.abspath(path)


def local_path(recorded: str) -> Path:
    """The path on this machine that `portable_path` recorded (`<cache>` is this machine's cache)."""
    head, sep, rest = recorded.partition("/")
    return cache_dir() / rest if head == CACHE_MARK and sep else Path(recorded)
