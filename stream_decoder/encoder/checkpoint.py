"""Ensemble members on disk: one directory each, nothing in it executes code when loaded.

config.json          the EncoderConfig that builds the model
weights.pt           the EMA weights (a state_dict), what inference and the teacher use
meta.json            neurons per mouse, unit-id hashes, data fingerprints, epochs, history
training_state.pt    raw weights, optimizer state and step, only to resume training

A synthetic mouse's own encoding (`encoder.simulator`) is a member too: its config.json has
"kind": "simulator" and names the mouse folders whose truth rebuilds it; weights.pt holds its readouts.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from stream_decoder.atomic import write_atomic, write_atomic_with
from stream_decoder.encoder.model import Encoder, EncoderConfig

CONFIG, WEIGHTS, META, TRAINING_STATE = "config.json", "weights.pt", "meta.json", "training_state.pt"
SIMULATOR_KIND = "simulator"  # config.json's "kind" of the simulator's encoding; trained members have none


def unit_ids_hash(unit_ids) -> str:
    """Identifies a neuron order: the same neurons in another order are another readout."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(unit_ids).astype(str)).tobytes()).hexdigest()[:16]


def write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


def save_tensors(path: Path, value: dict) -> None:
    write_atomic_with(path, lambda f: torch.save(value, f))


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing; is this an encoder checkpoint directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def load_tensors(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers, never pickled code."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise ValueError(f"{path}: unreadable or not a weights-only checkpoint ({exc})") from None


def load_encoder(path, mice: dict | None = None) -> Encoder:
    """The member in directory `path`, in eval mode with its EMA weights.

    With `mice` ({name: MouseDataset}), every given mouse must have a readout of the same neuron
    count, unit ids and data fingerprint; anything else is a ValueError naming the file.
    """
    path = Path(path)
    config = read_json(path / CONFIG)
    meta = read_json(path / META)
    if mice is not None:
        check_matches_data(meta, path / META, mice)
    if config.get("kind") == SIMULATOR_KIND:
        from stream_decoder.encoder.simulator import load_simulator_member  # imports this module

        model = load_simulator_member(config)
    else:
        model = Encoder(EncoderConfig.from_dict(config), meta["neurons"])
    state = load_tensors(path / WEIGHTS)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path / WEIGHTS}: does not fit {path / CONFIG} and {path / META}: {exc}") from None
    return model.eval()


def member_dirs(path) -> list[Path]:
    """`path` itself if it is a member, else its member subdirectories in order."""
    path = Path(path)
    if (path / CONFIG).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{CONFIG}"))
    if not found:
        raise FileNotFoundError(f"{path}: no encoder checkpoints ({CONFIG}) in it or its subdirectories")
    return found


def load_ensemble(paths, mice: dict | None = None) -> list[Encoder]:
    """Members from an ensemble directory, a member directory, or a list of either."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    return [load_encoder(member, mice) for path in paths for member in member_dirs(path)]


def check_matches_data(meta: dict, file: Path, mice: dict) -> None:
    for name, dataset in mice.items():
        if name not in meta["neurons"]:
            raise ValueError(f"{file}: no readout for mouse {name!r} (has {', '.join(meta['neurons'])})")
        if meta["neurons"][name] != dataset.n_neurons:
            raise ValueError(
                f"{file}: mouse {name!r} has {meta['neurons'][name]} neurons here, "
                f"{dataset.n_neurons} in the data"
            )
        if meta["unit_ids"][name] != unit_ids_hash(dataset.unit_ids):
            raise ValueError(f"{file}: mouse {name!r} was trained on other neurons (unit ids differ)")
        if meta["fingerprints"][name] != dataset.fingerprint():
            raise ValueError(f"{file}: mouse {name!r} was trained on other data (fingerprint differs)")
