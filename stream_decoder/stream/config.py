"""The daemon's rig config (TOML), validated completely at start-up so a typo fails before imaging does.

Relative paths in the file are relative to the file's folder. Every endpoint is configurable; the
defaults are loopback-only, and anything reaching beyond the host needs `allow_remote = true`.
"""

import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from stream_decoder.runtime.backend import KINDS, check_options
from stream_decoder.stream.protocol import RECON_DTYPES

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


@dataclass(frozen=True)
class ModelConfig:
    artifact: Path
    backend: str = "onnxruntime"
    # [model.options]: the chosen backend's own keyword options (runtime.backend.OPTIONS), checked
    # again whenever the backend changes (serve --backend)
    options: dict = field(default_factory=dict)
    threads: int | None = None  # deprecated: [model.options] threads; ignored by other backends, as before

    def __post_init__(self):
        if self.backend not in KINDS:
            raise ValueError(f"[model] backend {self.backend!r} is not one of {KINDS}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"[model] threads must be >= 1, got {self.threads}")
        if self.threads is not None and "threads" in self.options:
            raise ValueError(
                "[model] threads and [model.options] threads are both set; keep [model.options] threads"
            )
        try:
            check_options(self.backend, self.options)
        except ValueError as exc:
            raise ValueError(f"[model.options] {exc}") from None

    def backend_options(self) -> dict:
        """Keyword options for `open_backend`: [model.options], and the deprecated [model] threads
        where it always applied (onnxruntime)."""
        if self.threads is not None and self.backend == "onnxruntime":
            return {"threads": self.threads, **self.options}
        return dict(self.options)


@dataclass(frozen=True)
class EndpointsConfig:
    activity: str = "tcp://127.0.0.1:5555"  # the rig's PUB; the daemon's SUB connects to it
    activity_bind: bool = False  # bind the SUB instead (rigs that connect their PUB)
    recon: str = "tcp://127.0.0.1:5556"  # PUB, binds
    control: str = "tcp://127.0.0.1:5557"  # REP, binds
    allow_remote: bool = False  # the explicit setting that lets a socket reach beyond this host

    def __post_init__(self):
        for name in ("activity", "recon", "control"):
            check_endpoint(getattr(self, name), f"[endpoints] {name}", self.allow_remote)


@dataclass(frozen=True)
class StreamConfig:
    rate_hz: float = 30.0  # display rate; also the multi-plane emission grid
    output_dtype: str = "float32"  # recon payload: float32 (exact) or uint8 (0-255, 4x smaller)
    recv_hwm: int = 10_000  # activity messages queued before ZeroMQ drops (bursts of 10x rate fit)
    send_hwm: int = 300  # recon frames queued per subscriber before that subscriber loses frames
    # Largest frame a socket accepts at the transport; larger ones cost the sender its connection.
    # 0: four times the largest legal activity payload of the loaded model.
    max_message_bytes: int = 0
    max_catchup_ticks: int = 30  # multi-plane: ticks emitted at most when rig time jumps ahead
    # Prefetch the model this long before the next message is due (from the recent arrival rate),
    # so its step starts from warm caches; 0: off.
    prefetch_ms: float = 2.0

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"[stream] rate_hz must be > 0, got {self.rate_hz}")
        if self.output_dtype not in RECON_DTYPES:
            raise ValueError(
                f"[stream] output_dtype {self.output_dtype!r} is not one of {sorted(RECON_DTYPES)}"
            )
        for name in ("recv_hwm", "send_hwm", "max_message_bytes", "prefetch_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"[stream] {name} must be >= 0, got {getattr(self, name)}")
        if self.max_catchup_ticks < 1:
            raise ValueError(f"[stream] max_catchup_ticks must be >= 1, got {self.max_catchup_ticks}")


@dataclass(frozen=True)
class SecurityConfig:
    curve: bool = False  # CurveZMQ on every socket, the daemon as server
    server_secret_key: Path | None = None  # zmq.auth certificate with the daemon's key pair (.key_secret)
    client_keys_dir: Path | None = None  # folder of allowed clients' public certificates (*.key)

    def __post_init__(self):
        if not self.curve:
            return
        if self.server_secret_key is None or self.client_keys_dir is None:
            raise ValueError("[security] curve = true needs server_secret_key and client_keys_dir")
        if not self.server_secret_key.is_file():
            raise FileNotFoundError(f"[security] server_secret_key: no file {self.server_secret_key}")
        if not self.client_keys_dir.is_dir():
            raise FileNotFoundError(f"[security] client_keys_dir: no folder {self.client_keys_dir}")
        if not any(self.client_keys_dir.glob("*.key")):
            raise ValueError(
                f"[security] client_keys_dir {self.client_keys_dir} holds no public *.key certificate"
            )


@dataclass(frozen=True)
class RecorderConfig:
    dir: Path | None = None  # where sessions are recorded; unset: no recording
    chunk_seconds: float = 1.0  # at most this much is lost if the daemon is killed with SIGKILL
    # With a [frontend]: each raw frame's F, Fneu and dF/F too (its shift is always recorded)
    frontend_traces: bool = False

    def __post_init__(self):
        if not self.chunk_seconds > 0:
            raise ValueError(f"[recorder] chunk_seconds must be > 0, got {self.chunk_seconds}")


@dataclass(frozen=True)
class RealtimeConfig:
    """How the operating system schedules the daemon: the tail of the latency is set here."""

    priority: int = 0  # 1-99: SCHED_FIFO at this priority (needs CAP_SYS_NICE); 0: normal scheduling
    cpus: tuple[int, ...] = ()  # pin the daemon (and its threads) to these cores; empty: any core
    lock_memory: bool = False  # mlockall: no page faults mid-session (needs RLIMIT_MEMLOCK headroom)

    def __post_init__(self):
        object.__setattr__(self, "cpus", tuple(self.cpus))
        if not 0 <= self.priority <= 99:
            raise ValueError(f"[realtime] priority must be 0 (off) or 1-99 (SCHED_FIFO), got {self.priority}")
        unknown = sorted(set(self.cpus) - os.sched_getaffinity(0))
        if unknown:
            raise ValueError(
                f"[realtime] cpus {unknown} are not cores this process may run on "
                f"({sorted(os.sched_getaffinity(0))})"
            )


@dataclass(frozen=True)
class FrontEndSection:
    """[frontend]: raw `frame` messages in (docs/protocol.md §8). Unset `rois`: activity only.

    Plain fields here (the config stays cheap to import): the paths and the rate are checked at
    load; the other ranges when the daemon builds `frontend.FrontEndConfig` from them at start-up."""

    rois: Path | None = None  # an .npz, a suite2p output folder or an .nwb file (docs/internals.md, ROIs)
    references: Path | None = (
        None  # .npy (planes, H, W) motion references; unset: built from the first frames
    )
    volume_rate_hz: float | None = None  # frames per second of each plane; unset: the model's input timing
    dark_level: float = 0.0  # detector output with no light, ADU (ScanImage's channel offset)
    neuropil_coefficient: float = 0.7
    max_shift_fraction: float = 0.1
    reference_frames: int = 30
    min_peak_sd: float = 8.0
    estimate_px: int = 256  # shift from the frame's central square this wide; 0: the whole frame
    tau_decay_s: float = 0.8
    spike_dff: float = 0.25
    event_threshold_sd: float = 1.0
    baseline_fall_s: float = 10.0  # the dF/F baseline follows a fall of F over this long
    baseline_rise_s: float = 300.0  # ...and a rise over this long (it stays under the transients)
    fft_workers: int = 1
    extract_unused: bool = False  # also extract ROIs that feed no model neuron (default: skipped)
    overlap: str = "keep"  # pixels ROIs share: "keep", "demix" (least squares) or "exclude" (suite2p)
    demix_ridge: float = 0.1  # demix's ridge, relative to each footprint's energy: 0 plain least squares
    saturation_adu: float | None = None  # the detector's ceiling; unset: the frame dtype's largest value

    def __post_init__(self):
        if self.rois is not None and not self.rois.exists():
            raise FileNotFoundError(f"[frontend] rois: no file or folder {self.rois}")
        if self.references is not None and not self.references.is_file():
            raise FileNotFoundError(f"[frontend] references: no file {self.references}")
        if self.volume_rate_hz is not None and not self.volume_rate_hz > 0:
            raise ValueError(f"[frontend] volume_rate_hz must be > 0, got {self.volume_rate_hz}")
        if self.saturation_adu is not None and not self.saturation_adu > 0:
            raise ValueError(f"[frontend] saturation_adu must be > 0 ADU, got {self.saturation_adu}")


@dataclass(frozen=True)
class LogConfig:
    interval_s: float = 10.0  # each kind of problem is logged at most once per interval; stats every interval

    def __post_init__(self):
        if not self.interval_s > 0:
            raise ValueError(f"[log] interval_s must be > 0, got {self.interval_s}")


@dataclass(frozen=True)
class DaemonConfig:
    model: ModelConfig
    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    frontend: FrontEndSection = field(default_factory=FrontEndSection)
    log: LogConfig = field(default_factory=LogConfig)


def load_config(path: Path, **overrides) -> DaemonConfig:
    """Read and validate a rig config; `overrides` replace whole sections (e.g. from the command line)."""
    path = Path(path)
    table = _read_toml(path, "rig config")
    try:
        config = _build(DaemonConfig, table, "", path.parent)
        return replace(config, **overrides)
    except (ValueError, FileNotFoundError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _read_toml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def load_frontend(path: Path) -> FrontEndSection:
    """The [frontend] section of a TOML file (`serve --frontend`), validated as in a rig config; its
    `rois` must be set, since without them the daemon would take no raw frames."""
    path = Path(path)
    table = _read_toml(path, "front-end config")
    if set(table) != {"frontend"}:
        raise ValueError(f"{path}: expected only a [frontend] table, got {sorted(table)}")
    try:
        section = _build(FrontEndSection, table["frontend"], "frontend", path.parent)
    except (ValueError, FileNotFoundError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if section.rois is None:
        raise ValueError(f"{path}: [frontend] rois is unset: name the ROIs the raw frames are extracted with")
    return section


def check_endpoint(endpoint: str, what: str, allow_remote: bool) -> None:
    """A ZeroMQ endpoint we can use; a non-loopback TCP address only when remote access is allowed."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise ValueError(f"{what} {endpoint!r} is not a tcp://, ipc:// or inproc:// endpoint")
    if scheme != "tcp":
        return
    _, colon, port = rest.rpartition(":")
    if not colon or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"{what} {endpoint!r} needs a port 1-65535 (or * to bind any free port)")
    if not allow_remote and reaches_beyond_host(endpoint):
        raise ValueError(
            f"{what} {endpoint!r} reaches beyond this host; set [endpoints] allow_remote = true "
            "to allow it (and consider [security] curve = true)"
        )


def reaches_beyond_host(endpoint: str) -> bool:
    """A TCP endpoint on an address other than loopback (ipc and inproc stay on this host)."""
    scheme, _, rest = endpoint.partition("://")
    return scheme == "tcp" and not _is_loopback(rest.rpartition(":")[0].strip("[]"))


def config_warnings(cfg: DaemonConfig) -> list[str]:
    """What the daemon logs at start-up about a valid config that is risky or out of date, a line each."""
    warnings = []
    names = ("activity", "recon", "control")
    exposed = [name for name in names if reaches_beyond_host(getattr(cfg.endpoints, name))]
    if exposed and not cfg.security.curve:
        warnings.append(
            f"[endpoints] {', '.join(exposed)} reach beyond this host without encryption or authentication: "
            "anyone on the network can read, or inject, what crosses them; set [security] curve = true "
            "(deploy/README.md, Security)"
        )
    if cfg.model.threads is not None:
        backend = cfg.model.backend
        ignored = "" if backend == "onnxruntime" else f" and ignored by the {backend} backend"
        warnings.append(f"[model] threads is deprecated{ignored}: set [model.options] threads (onnxruntime)")
    return warnings


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _build(cls, table, section: str, base: Path):
    """Instantiate a config dataclass from a TOML table, naming any unknown, missing or mistyped key."""
    where = f"[{section}]" if section else "the top level"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known: {known}")
    missing = [f.name for f in fields(cls) if f.name not in table and _required(f)]
    if missing:
        raise ValueError(f"{where} is missing required key(s) {missing}")
    kwargs = {
        name: _value(hints[name], value, f"{where} {name}" if section else f"[{name}]", name, base)
        for name, value in table.items()
    }
    return cls(**kwargs)


def _required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _value(hint, value, where: str, name: str, base: Path):
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return _build(hint, value, name, base)
    if hint is dict:  # a free table, checked by its owner (ModelConfig's options)
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list of {item.__name__}, got {value!r}")
        return tuple(_value(item, v, f"{where} item", name, base) for v in value)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if option is Path and isinstance(value, str) and value:
            return base / Path(value).expanduser()
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ValueError(f"{where} must be {expected}, got {value!r}")
