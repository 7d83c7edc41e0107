"""Where generated data and training outputs live: a cache folder git ignores."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$STREAM_DECODER_CACHE`, else `.cache/stream_decoder` under the working directory."""
    return Path(os.environ.get("STREAM_DECODER_CACHE", Path.cwd() / ".cache" / "stream_decoder"))
