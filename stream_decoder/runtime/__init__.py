"""Serving a student artifact: one `Backend` interface, torch / onnxruntime / tensorrt behind it."""

from stream_decoder.lazy import lazy_exports

_HOMES = {"KINDS": "backend", "Backend": "backend", "open_backend": "backend"}
__all__ = sorted(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
