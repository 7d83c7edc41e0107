"""A trained decoder as one self-describing directory, checked as a whole when loaded.

    config.json   the decoder's config (StudentConfig, or LinearConfig for the linear baseline)
    weights.pt    state_dict (normalisation statistics included), loaded with weights_only=True
    meta.json     format version, model id, kind ("student" or "linear"), neurons (count and unit
                  ids), lookahead, frame shape, data fingerprint, neuron-set identity, creation
                  date, provenance
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

from stream_decoder.atomic import replace_folder_with, write_atomic, write_atomic_with
from stream_decoder.data import MouseDataset, PlaneTiming, input_timing
from stream_decoder.decoder.linear import LinearConfig, LinearDecoder
from stream_decoder.decoder.residual import ResidualConfig, ResidualStudent
from stream_decoder.decoder.streaming import StreamingDecoder
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.provenance import source_version

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
META_FILE = "meta.json"
ONNX_FILE = "model.onnx"
ONNX_MODEL_ID_KEY = "stream_decoder.model_id"  # metadata_props entry tying model.onnx to its weights
# kind -> (config, model): every decoder the runtime serves through the same step graph
DECODERS = {
    "student": (StudentConfig, Student),
    "linear": (LinearConfig, LinearDecoder),
    "residual": (ResidualConfig, ResidualStudent),  # a student correcting the linear baseline
}


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
    kind: str = "student"  # a key of DECODERS; artifacts from before the linear baseline are students
    # data.sensorium.neuron_set_id of the neurons it decodes, which `info` reports so a rig can check
    # it streams that mouse; "" in artifacts from before it (their data_fingerprint still tells)
    neuron_set: str = ""


@dataclass(frozen=True)
class Artifact:
    path: Path
    config: StudentConfig | LinearConfig
    meta: ArtifactMeta
    state_dict: dict[str, torch.Tensor]

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def multi_plane(self) -> bool:
        """Trained on the rig's per-plane timing (sample-and-hold) rather than single-plane 30 Hz input."""
        return self.meta.provenance.get("input_timing", {}).get("n_planes", 1) > 1

    def timing(self, mouse: MouseDataset) -> PlaneTiming:
        """The plane timing it reads `mouse` in: the one it was fitted on (for a recording without
        simulator truth, its recorded plane count and volume rate by cell depth)."""
        recorded = self.meta.provenance.get("input_timing") or {}
        return input_timing(mouse, self.multi_plane, recorded.get("n_planes"), recorded.get("volume_rate_hz"))

    @property
    def evaluation_mask(self) -> np.ndarray | None:
        """(H, W) bool: where it was scored when trained (None: everywhere, or not recorded)."""
        pixels = self.meta.provenance.get("evaluation_mask")
        if pixels is None:
            return None
        mask = np.zeros(self.meta.frame_shape[0] * self.meta.frame_shape[1], bool)
        mask[pixels] = True
        return mask.reshape(self.meta.frame_shape)

    def model(self) -> StreamingDecoder:
        """A fresh decoder of the artifact's kind in eval mode, holding its weights."""
        model = DECODERS[self.meta.kind][1](self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def kind_of(model: StreamingDecoder) -> str:
    for kind, (_, cls) in DECODERS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"{type(model).__name__} is not a decoder an artifact can hold ({', '.join(DECODERS)})")


def model_id(config: StudentConfig | LinearConfig, state_dict: dict[str, torch.Tensor]) -> str:
    """12 hex digits of SHA-256 over the config and every tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(json.loads(config.to_json()), sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:12]


def save_artifact(
    directory: str | Path,
    model: StreamingDecoder,
    unit_ids,
    data_fingerprint: str,
    provenance: dict | None = None,
    neuron_set: str = "",
) -> Artifact:
    """Write config, weights and meta as one new folder renamed into place, so a crash leaves the
    previous artifact or none, never part of one. It replaces the folder's model.onnx, engines and
    the rest made from other weights; `provenance` gains the source (git commit) that made it."""
    directory = Path(directory)
    unit_ids = [int(u) for u in np.asarray(unit_ids).reshape(-1)]
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = ArtifactMeta(
        format_version=FORMAT_VERSION,
        model_id=model_id(model.cfg, state_dict),
        n_neurons=model.cfg.n_neurons,
        unit_ids=unit_ids,
        lookahead=model.cfg.lookahead,
        frame_shape=model.cfg.frame_shape,
        data_fingerprint=str(data_fingerprint),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        provenance={**(provenance or {}), "source": source_version()},
        kind=kind_of(model),
        neuron_set=str(neuron_set),
    )
    _check_consistent("save_artifact", model.cfg, meta)
    try:
        meta_text = json.dumps(asdict(meta), indent=2)
    except TypeError as exc:
        raise ValueError(f"save_artifact: provenance must be plain JSON data: {exc}") from exc
    _check_replaceable(directory)

    def fill(folder: Path) -> None:
        write_atomic(folder / CONFIG_FILE, model.cfg.to_json())
        write_atomic_with(folder / WEIGHTS_FILE, lambda f: torch.save(state_dict, f))
        write_atomic(folder / META_FILE, meta_text)

    replace_folder_with(directory, fill)
    return Artifact(directory, model.cfg, meta, state_dict)


def _check_replaceable(directory: Path) -> None:
    """Saving replaces the whole folder: refuse one holding anything but an artifact's own files
    (config, weights, meta, and model.* that export and the backends write)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"save_artifact: {directory} is a file, not an artifact folder")
    own = {CONFIG_FILE, WEIGHTS_FILE, META_FILE}
    foreign = sorted(
        p.name
        for p in (directory.iterdir() if directory.is_dir() else ())
        if not (p.is_file() and (p.name in own or p.name.startswith("model.")))
    )
    if foreign:
        raise ValueError(
            f"save_artifact: {directory} holds files that are not an artifact's ({', '.join(foreign)}); "
            "save to a new or empty folder"
        )


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
    config_class = DECODERS[meta.kind][0]
    try:
        config = config_class.from_json((directory / CONFIG_FILE).read_text())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE}: not a valid {config_class.__name__}: {exc}") from exc
    _check_consistent(f"{directory / META_FILE} (against {CONFIG_FILE})", config, meta)
    state_dict = _read_weights(directory / WEIGHTS_FILE, meta.kind, config)
    if model_id(config, state_dict) != meta.model_id:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} and {directory / CONFIG_FILE} do not hash to the model id "
            f"{meta.model_id} recorded in {directory / META_FILE}: files changed or mixed artifacts"
        )
    if check_onnx and (directory / ONNX_FILE).exists():
        check_onnx_model_id(directory / ONNX_FILE, meta.model_id)
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
    if meta.kind not in DECODERS:
        raise ValueError(f"{path}: kind {meta.kind!r} is not one of {', '.join(DECODERS)}")
    return replace(meta, frame_shape=tuple(meta.frame_shape))


def _check_consistent(where: str, config: StudentConfig | LinearConfig, meta: ArtifactMeta) -> None:
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


def _read_weights(path: Path, kind: str, config: StudentConfig | LinearConfig) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled-code files
        raise ValueError(f"{path}: cannot be loaded as plain weights: {exc}") from exc
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors")
    try:
        DECODERS[kind][1](config).load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model in config.json: {exc}") from exc
    bad = [name for name, tensor in state_dict.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {', '.join(bad)}")
    return state_dict


def check_onnx_model_id(path: Path, expected: str, export_flags: str = "") -> None:
    """Refuse an ONNX file stamped with another model id; `export_flags` (" --int8-read-in") are
    those of the export that writes this file, for the hint."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common public type
        raise ValueError(f"{path}: not a readable ONNX model: {exc}") from exc
    found = {p.key: p.value for p in model.metadata_props}.get(ONNX_MODEL_ID_KEY)
    if found != expected:
        raise ValueError(
            f"{path}: exported from model {found!r}, but the weights are model {expected}; "
            f"re-run `stream-decoder export {path.parent}{export_flags}`"
        )
