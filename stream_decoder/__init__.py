"""stream_decoder: live movie reconstruction from mouse visual cortex activity."""

__version__ = "0.1.0"
