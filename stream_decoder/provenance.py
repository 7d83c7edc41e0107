"""Which source made a result: the git commit of this checkout and whether its tree had changes.

Recorded in every artifact's provenance and every bench result, so a number or a model can be
traced to the code that produced it (a dirty tree says the commit alone does not reproduce it).
"""

import os
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 10.0


def source_version(package: Path = PACKAGE) -> dict | None:
    """{"commit": ..., "dirty": ...} of the checkout `package` is tracked in; None for an installed
    package, outside a checkout, or where git is missing or fails."""
    tracked = _git(package, "ls-files", "--error-unmatch", ".")  # a package copied into a repo's venv is not
    commit = _git(package, "rev-parse", "HEAD")
    status = _git(package, "status", "--porcelain")
    if tracked is None or commit is None or status is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # status must not take the index lock
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
