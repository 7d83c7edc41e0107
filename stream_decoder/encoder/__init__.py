"""Dynamic neural encoding model (DwiseNeuro-style) and its ensemble training."""

from stream_decoder.encoder.checkpoint import load_encoder, load_ensemble, member_dirs
from stream_decoder.encoder.model import PRESETS, Encoder, EncoderConfig, preset
from stream_decoder.encoder.training import TrainConfig, predict_clip, response_correlation, train_ensemble

__all__ = [
    "PRESETS",
    "Encoder",
    "EncoderConfig",
    "TrainConfig",
    "load_encoder",
    "load_ensemble",
    "member_dirs",
    "predict_clip",
    "preset",
    "response_correlation",
    "train_ensemble",
]
