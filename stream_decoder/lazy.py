"""A package's names imported on first use, so that importing the package (for its CLI verb, say)
does not load torch or onnx: `stream-decoder --help` stays well under a second."""

import importlib
from collections.abc import Callable


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """The module `__getattr__` of `package`; `homes` maps each name to the submodule defining it."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
