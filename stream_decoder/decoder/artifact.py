"""A trained student as one self-describing directory, checked as a whole when loaded.

    config.json   StudentConfig
    weights.pt    state_dict (normalisation statistics included), loaded with weights_only=True
    meta.json     format version, model id, neurons (count and unit ids), lookahead, frame shape,
                  data fingerprint, creation date, provenance
    model.onnx    the step graph (`stream-decoder export` writes it; optional for the torch backend)

The model id is a short hash of config and weights, so weights and config that do not belong
together, or a graph exported from other weights, are refused at start-up, not found out later.
"""

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from stream_decoder.decoder.student import Student, StudentConfig

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
META_FILE = "meta.json"
ONNX_FILE = "model.onnx"
ONNX_MODEL_ID_KEY = "stream_decoder.model_id"  # metadata_props entry tying model.onnx to its weights


@dataclass(frozen=True)
class ArtifactMeta:
    format_version: int
    model_id: str
    n_neurons: int
    unit_ids: list[int]
    lookahead: int
    frame_shape: tuple[int, int]
    data_fingerprint: str
    created: str
    provenance: dict = field(default_factory=dict)  # free-form JSON: how it was trained


@dataclass(frozen=True)
class Artifact:
    path: Path
    config: StudentConfig
    meta: ArtifactMeta
    state_dict: dict[str, torch.Tensor]

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    def student(self) -> Student:
        """A fresh Student in eval mode holding the artifact's weights."""
        model = Student(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def model_id(config: StudentConfig, state_dict: dict[str, torch.Tensor]) -> str:
    """12 hex digits of SHA-256 over the config and every tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(json.loads(config.to_json()), sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:12]


def save_artifact(
    directory: str | Path,
    student: Student,
    unit_ids,
    data_fingerprint: str,
    provenance: dict | None = None,
) -> Artifact:
    """Write config, weights and meta; removes a model.onnx left from other weights."""
    directory = Path(directory)
    unit_ids = [int(u) for u in np.asarray(unit_ids).reshape(-1)]
    state_dict = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
    meta = ArtifactMeta(
        format_version=FORMAT_VERSION,
        model_id=model_id(student.cfg, state_dict),
        n_neurons=student.cfg.n_neurons,
        unit_ids=unit_ids,
        lookahead=student.cfg.lookahead,
        frame_shape=student.cfg.frame_shape,
        data_fingerprint=str(data_fingerprint),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        provenance=dict(provenance or {}),
    )
    _check_consistent("save_artifact", student.cfg, meta)
    try:
        meta_text = json.dumps(asdict(meta), indent=2)
    except TypeError as exc:
        raise ValueError(f"save_artifact: provenance must be plain JSON data: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).unlink(missing_ok=True)
    (directory / CONFIG_FILE).write_text(student.cfg.to_json())
    torch.save(state_dict, directory / WEIGHTS_FILE)
    (directory / META_FILE).write_text(meta_text)
    return Artifact(directory, student.cfg, meta, state_dict)


def load_artifact(directory: str | Path, check_onnx: bool = True) -> Artifact:
    """Read and check an artifact directory; any inconsistency is a ValueError naming the file.

    `check_onnx=False` skips model.onnx, for the exporter that is about to replace it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"artifact directory {directory} does not exist")
    for name in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"artifact {directory}: {name} is missing")
    meta = _read_meta(directory / META_FILE)
    try:
        config = StudentConfig.from_json((directory / CONFIG_FILE).read_text())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE}: not a valid StudentConfig: {exc}") from exc
    _check_consistent(f"{directory / META_FILE} (against {CONFIG_FILE})", config, meta)
    state_dict = _read_weights(directory / WEIGHTS_FILE, config)
    if model_id(config, state_dict) != meta.model_id:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} and {directory / CONFIG_FILE} do not hash to the model id "
            f"{meta.model_id} recorded in {directory / META_FILE}: files changed or mixed artifacts"
        )
    if check_onnx and (directory / ONNX_FILE).exists():
        _check_onnx_model_id(directory / ONNX_FILE, meta.model_id)
    return Artifact(directory, config, meta, state_dict)


def _read_meta(path: Path) -> ArtifactMeta:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {raw.get('format_version')!r} is not supported "
            f"(this stream_decoder reads version {FORMAT_VERSION})"
        )
    try:
        meta = ArtifactMeta(**raw)
    except TypeError as exc:
        raise ValueError(f"{path}: fields do not match ArtifactMeta: {exc}") from exc
    return replace(meta, frame_shape=tuple(meta.frame_shape))


def _check_consistent(where: str, config: StudentConfig, meta: ArtifactMeta) -> None:
    """Neuron count, unit ids, lookahead and frame shape tell one story; `where` prefixes errors."""
    if len(meta.unit_ids) != meta.n_neurons:
        raise ValueError(f"{where}: {len(meta.unit_ids)} unit ids for n_neurons = {meta.n_neurons}")
    if len(set(meta.unit_ids)) != len(meta.unit_ids):
        raise ValueError(f"{where}: unit ids are not unique")
    for name in ("n_neurons", "lookahead", "frame_shape"):
        if getattr(meta, name) != getattr(config, name):
            raise ValueError(
                f"{where}: {name} = {getattr(meta, name)} in meta but {getattr(config, name)} in the config"
            )


def _read_weights(path: Path, config: StudentConfig) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled-code files
        raise ValueError(f"{path}: cannot be loaded as plain weights: {exc}") from exc
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors")
    try:
        Student(config).load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model in config.json: {exc}") from exc
    bad = [name for name, tensor in state_dict.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {', '.join(bad)}")
    return state_dict


def _check_onnx_model_id(path: Path, expected: str) -> None:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common public type
        raise ValueError(f"{path}: not a readable ONNX model: {exc}") from exc
    found = {p.key: p.value for p in model.metadata_props}.get(ONNX_MODEL_ID_KEY)
    if found != expected:
        raise ValueError(
            f"{path}: exported from model {found!r}, but the weights are model {expected}; "
            f"re-run `stream-decoder export {path.parent}`"
        )
