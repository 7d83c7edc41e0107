"""Serving a student artifact: one `Backend` interface, torch / onnxruntime / tensorrt behind it."""

from stream_decoder.runtime.backend import KINDS, Backend, open_backend

__all__ = ["KINDS", "Backend", "open_backend"]
