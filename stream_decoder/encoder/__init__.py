"""Dynamic neural encoding model (DwiseNeuro-style) and its ensemble training."""

from stream_decoder.lazy import lazy_exports

_HOMES = {
    "PRESETS": "config",
    "EncoderConfig": "config",
    "TrainConfig": "config",
    "preset": "config",
    "Encoder": "model",
    "load_encoder": "checkpoint",
    "load_ensemble": "checkpoint",
    "member_dirs": "checkpoint",
    "predict_clip": "training",
    "response_correlation": "training",
    "train_ensemble": "training",
}
__all__ = sorted(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
