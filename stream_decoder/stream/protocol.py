"""Wire protocol v1 (docs/protocol.md): the only module that knows the bytes on the wire.

Every message is three ZeroMQ frames `[topic, msgpack header, raw little-endian payload]`. Decoding
never copies the payload: the returned array is a view of the received frame. Anything that breaks
the contract raises `Rejected` with one of the stable `REASONS`, which the daemon counts in `stats`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import isfinite

import msgpack
import numpy as np

VERSION = 1
ACTIVITY = b"activity"
FRAME = b"frame"
RECON = b"recon"
STIMULUS = b"stimulus"
INPUT_DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int16": np.dtype("<i2"),
    "uint16": np.dtype("<u2"),
}
FRAME_DTYPES = {"uint16": np.dtype("<u2"), "int16": np.dtype("<i2")}
RECON_DTYPES = {"uint8": np.dtype("u1"), "float32": np.dtype("<f4")}
STIMULUS_DTYPES = RECON_DTYPES  # a screen frame, like a reconstruction: luminance 0-255
# A v1 header is a few hundred bytes; anything this large is not a header.
MAX_HEADER_BYTES = 4096
# Largest payload item: the bound on an activity payload is `n_neurons * MAX_ITEMSIZE`.
MAX_ITEMSIZE = max(d.itemsize for d in INPUT_DTYPES.values())
MAX_FRAME_ITEMSIZE = max(d.itemsize for d in FRAME_DTYPES.values())  # a frame payload: at most H * W * this

# Why a message was rejected; the keys of the daemon's `rejected` counters.
REASONS = (
    "frame_count",  # not exactly three frames
    "topic",  # topic is not the one this socket carries
    "oversized",  # a frame larger than any legal one
    "header",  # header is not a msgpack map
    "version",  # `v` is not 1
    "missing_key",  # a required header key is absent
    "bad_type",  # a header value has the wrong type or an impossible value
    "dtype",  # dtype not allowed
    "payload_length",  # payload bytes != prod(shape) * itemsize
    "neuron_range",  # neurons first .. first+n-1 outside the model
    "non_finite",  # NaN or infinity in the values, the time or the behaviour
    "duplicate",  # seq equal to the last accepted one of the session
    "out_of_order",  # seq below the last accepted one of the session (late or reordered)
    "old_session",  # a message from a session that has already been replaced
    "frame_shape",  # a `frame` whose [H, W] is not the image size of the loaded ROIs (or a
    # `stimulus` not of the screen's size)
    "plane_range",  # a `frame` of a plane the loaded ROIs do not cover
    "reference_mismatch",  # a `frame` that matches the motion reference nowhere within the shift bound
    "bad_pixels",  # a `frame` with a saturated stripe: rows at the detector's ceiling
)


class Rejected(ValueError):
    """A message that breaks the contract; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Activity:
    """One decoded `activity` message; `values` is a read-only view of the received payload."""

    session: str
    seq: int
    t: float  # echoed exactly as received (an int stays an int)
    values: np.ndarray
    first: int = 0
    plane: int = 0
    n_planes: int = 1
    behavior: tuple[float, float] | None = None
    pupil_center: tuple[float, float] | None = None


@dataclass(slots=True)
class Frame:
    """One decoded `frame` message: one plane's raw image, a read-only view of the payload."""

    session: str
    seq: int
    t: float
    image: np.ndarray  # (H, W) uint16 or int16
    plane: int = 0
    n_planes: int = 1
    behavior: tuple[float, float] | None = None
    pupil_center: tuple[float, float] | None = None


@dataclass(slots=True)
class Stimulus:
    """One decoded `stimulus` message: the frame a stimulus program shows from rig time `t` on."""

    session: str
    seq: int
    t: float
    image: np.ndarray  # (H, W) uint8 or float32, luminance 0-255


@dataclass(slots=True)
class ReconHeader:
    session: str
    seq: int
    t_newest: float
    seq_newest: int
    t_stim: float
    model: str
    stale: float


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _unpack_map(buf, what: str) -> dict:
    try:
        header = msgpack.unpackb(buf, raw=False)
    except Exception as exc:  # msgpack raises a handful of unrelated types for garbage
        raise Rejected("header", f"{what} is not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise Rejected("header", f"{what} is a msgpack {type(header).__name__}, not a map")
    return header


def _require(header: dict, key: str, check, expected: str):
    try:
        value = header[key]
    except KeyError:
        raise Rejected("missing_key", f"header has no {key!r}") from None
    if not check(value):
        raise Rejected("bad_type", f"{key!r} must be {expected}, got {value!r:.60}")
    return value


def _optional(header: dict, key: str, default, check, expected: str):
    if key not in header:
        return default
    return _require(header, key, check, expected)


def _is_pair(x) -> bool:
    return isinstance(x, list | tuple) and len(x) == 2 and all(_is_number(v) for v in x)


def _check_frames(frames: Sequence, topic: bytes) -> None:
    if len(frames) != 3:
        raise Rejected("frame_count", f"expected 3 frames [topic, header, payload], got {len(frames)}")
    if memoryview(frames[0]) != topic:
        got = bytes(memoryview(frames[0]))[:32]
        raise Rejected("topic", f"expected topic {topic.decode()!r}, got {got!r}")
    if len(memoryview(frames[1])) > MAX_HEADER_BYTES:
        raise Rejected("oversized", f"header of {len(memoryview(frames[1]))} bytes > {MAX_HEADER_BYTES}")


def _check_version(header: dict) -> None:
    v = _require(header, "v", _is_int, "an int")
    if v != VERSION:
        raise Rejected("version", f"protocol version {v} (this end speaks {VERSION})")


@dataclass(slots=True)
class _Common:
    """The header keys every rig message has (docs/protocol.md §3.1, §8.1)."""

    session: str
    seq: int
    t: float
    dtype_name: str
    shape: list
    plane: int
    n_planes: int
    behavior: tuple[float, float] | None
    pupil_center: tuple[float, float] | None


def _common_header(
    frames: Sequence, topic: bytes, max_payload: int, ndim: int, allowed: dict[str, np.dtype]
) -> tuple[_Common, dict]:
    """The common keys checked, and the whole header for the keys of one message kind. A dtype not
    in `allowed` is refused as `dtype` whatever the payload's size; then a payload over
    `max_payload` as `oversized`, before it is looked at."""
    _check_frames(frames, topic)
    header = _unpack_map(memoryview(frames[1]), f"{topic.decode()} header")
    _check_version(header)
    session = _require(header, "session", lambda x: isinstance(x, str), "a str")
    seq = _require(header, "seq", lambda x: _is_int(x) and x >= 0, "an int >= 0")
    t = _require(header, "t", _is_number, "a number")
    dtype_name = _require(header, "dtype", lambda x: isinstance(x, str), "a str")
    if dtype_name not in allowed:
        raise Rejected("dtype", f"dtype {dtype_name!r:.40} not in {sorted(allowed)}")
    payload = memoryview(frames[2])
    if payload.nbytes > max_payload:
        raise Rejected("oversized", f"payload of {payload.nbytes} bytes > {max_payload}")
    shape = _require(
        header,
        "shape",
        lambda x: isinstance(x, list | tuple) and len(x) == ndim and all(_is_int(s) and s > 0 for s in x),
        "[n] with n > 0" if ndim == 1 else "[H, W] with H, W > 0",
    )
    n_planes = _optional(header, "n_planes", 1, lambda x: _is_int(x) and x >= 1, "an int >= 1")
    plane = _optional(
        header, "plane", 0, lambda x: _is_int(x) and 0 <= x < n_planes, f"an int in [0, {n_planes})"
    )
    behavior = _optional(header, "behavior", None, _is_pair, "[pupil, speed]")
    pupil_center = _optional(header, "pupil_center", None, _is_pair, "[x, y]")
    common = _Common(
        session,
        seq,
        t,
        dtype_name,
        list(shape),
        plane,
        n_planes,
        None if behavior is None else tuple(behavior),
        None if pupil_center is None else tuple(pupil_center),
    )
    return common, header


def _payload_values(frames: Sequence, common: _Common, allowed: dict[str, np.dtype]) -> np.ndarray:
    """The payload as a flat read-only array of the header's dtype (one of `allowed`, checked by
    `_common_header`), its length checked."""
    dtype = allowed[common.dtype_name]
    payload = memoryview(frames[2])
    n = int(np.prod(common.shape))
    if payload.nbytes != n * dtype.itemsize:
        raise Rejected(
            "payload_length",
            f"payload {payload.nbytes} bytes, shape {common.shape} {common.dtype_name} needs "
            f"{n * dtype.itemsize}",
        )
    return np.frombuffer(payload, dtype=dtype)


def decode_activity(frames: Sequence, n_neurons: int) -> Activity:
    """Validate and decode an `activity` message for a model of `n_neurons` neurons, without copying."""
    common, header = _common_header(frames, ACTIVITY, n_neurons * MAX_ITEMSIZE, 1, INPUT_DTYPES)
    first = _optional(header, "first", 0, lambda x: _is_int(x) and x >= 0, "an int >= 0")
    values = _payload_values(frames, common, INPUT_DTYPES)
    n = common.shape[0]
    if first + n > n_neurons:
        raise Rejected(
            "neuron_range", f"neurons {first}..{first + n - 1} outside the model's 0..{n_neurons - 1}"
        )
    if not _all_finite(common.t, values, common.behavior, common.pupil_center):
        raise Rejected("non_finite", "NaN or infinity in t, the values or the behaviour")
    return Activity(
        common.session,
        common.seq,
        common.t,
        values,
        first,
        common.plane,
        common.n_planes,
        common.behavior,
        common.pupil_center,
    )


def decode_frame(frames: Sequence, frame_shape: tuple[int, int], n_planes: int) -> Frame:
    """Validate and decode a `frame` message for ROIs drawn on `frame_shape` images of `n_planes`
    planes, without copying."""
    height, width = frame_shape
    max_payload = height * width * MAX_FRAME_ITEMSIZE
    common, _ = _common_header(frames, FRAME, max_payload, 2, FRAME_DTYPES)
    values = _payload_values(frames, common, FRAME_DTYPES)
    if tuple(common.shape) != (height, width):
        raise Rejected(
            "frame_shape", f"frame of shape {common.shape}, the ROIs are drawn on [{height}, {width}]"
        )
    if common.plane >= n_planes:
        raise Rejected("plane_range", f"plane {common.plane}, the ROIs cover planes 0..{n_planes - 1}")
    if not _all_finite(common.t, values, common.behavior, common.pupil_center):
        raise Rejected("non_finite", "NaN or infinity in t or the behaviour")
    return Frame(
        common.session,
        common.seq,
        common.t,
        values.reshape(height, width),
        common.plane,
        common.n_planes,
        common.behavior,
        common.pupil_center,
    )


def decode_stimulus(frames: Sequence, screen_shape: tuple[int, int]) -> Stimulus:
    """Validate and decode a `stimulus` message for a screen of `screen_shape`, without copying."""
    height, width = screen_shape
    max_payload = height * width * max(d.itemsize for d in STIMULUS_DTYPES.values())
    common, _ = _common_header(frames, STIMULUS, max_payload, 2, STIMULUS_DTYPES)
    values = _payload_values(frames, common, STIMULUS_DTYPES)
    if tuple(common.shape) != (height, width):
        raise Rejected("frame_shape", f"stimulus of shape {common.shape}, the screen is [{height}, {width}]")
    if not _all_finite(common.t, values):
        raise Rejected("non_finite", "NaN or infinity in t or the image")
    return Stimulus(common.session, common.seq, common.t, values.reshape(height, width))


def _all_finite(t, values: np.ndarray, *pairs) -> bool:
    # min and max propagate NaN and show an infinity: two reductions, no array allocated.
    if values.dtype.kind == "f" and not (isfinite(values.min()) and isfinite(values.max())):
        return False
    return isfinite(t) and all(p is None or (isfinite(p[0]) and isfinite(p[1])) for p in pairs)


def _rig_header(session, seq, t, dtype_name, shape, plane, n_planes, behavior, pupil_center) -> dict:
    header = {
        "v": VERSION,
        "session": session,
        "seq": int(seq),
        "t": t,
        "dtype": dtype_name,
        "shape": [int(s) for s in shape],
        "plane": int(plane),
        "n_planes": int(n_planes),
    }
    if behavior is not None:
        header["behavior"] = [float(behavior[0]), float(behavior[1])]
    if pupil_center is not None:
        header["pupil_center"] = [float(pupil_center[0]), float(pupil_center[1])]
    return header


def encode_activity(
    session: str,
    seq: int,
    t: float,
    values: np.ndarray,
    *,
    first: int = 0,
    plane: int = 0,
    n_planes: int = 1,
    behavior: Sequence[float] | None = None,
    pupil_center: Sequence[float] | None = None,
) -> list:
    """The three frames of an `activity` message (what a rig sends)."""
    name = _dtype_name(values.dtype, INPUT_DTYPES)
    header = _rig_header(session, seq, t, name, [values.size], plane, n_planes, behavior, pupil_center)
    header["first"] = int(first)
    return [ACTIVITY, msgpack.packb(header), _payload(values, INPUT_DTYPES[name])]


def encode_frame(
    session: str,
    seq: int,
    t: float,
    image: np.ndarray,
    *,
    plane: int = 0,
    n_planes: int = 1,
    behavior: Sequence[float] | None = None,
    pupil_center: Sequence[float] | None = None,
) -> list:
    """The three frames of a `frame` message: one plane's raw image (uint16 or int16, [H, W])."""
    if image.ndim != 2:
        raise ValueError(f"a raw frame is 2-D [H, W], got shape {image.shape}")
    name = _dtype_name(image.dtype, FRAME_DTYPES)
    header = _rig_header(session, seq, t, name, image.shape, plane, n_planes, behavior, pupil_center)
    return [FRAME, msgpack.packb(header), _payload(image, FRAME_DTYPES[name])]


def encode_stimulus(session: str, seq: int, t: float, image: np.ndarray) -> list:
    """The three frames of a `stimulus` message: the screen frame shown from rig time `t` on."""
    if image.ndim != 2:
        raise ValueError(f"a stimulus frame is 2-D [H, W], got shape {image.shape}")
    name = _dtype_name(image.dtype, STIMULUS_DTYPES)
    header = {
        "v": VERSION,
        "session": session,
        "seq": int(seq),
        "t": t,
        "dtype": name,
        "shape": list(image.shape),
    }
    return [STIMULUS, msgpack.packb(header), _payload(image, STIMULUS_DTYPES[name])]


def encode_recon(header: ReconHeader, frame: np.ndarray) -> list:
    """The three frames of a `recon` message (what the daemon publishes)."""
    name = _dtype_name(frame.dtype, RECON_DTYPES)
    if frame.ndim != 2:
        raise ValueError(f"a recon frame is 2-D [H, W], got shape {frame.shape}")
    packed = msgpack.packb(
        {
            "v": VERSION,
            "session": header.session,
            "seq": header.seq,
            "t_newest": header.t_newest,
            "seq_newest": header.seq_newest,
            "t_stim": header.t_stim,
            "model": header.model,
            "stale": header.stale,
            "dtype": name,
            "shape": list(frame.shape),
        }
    )
    return [RECON, packed, _payload(frame, RECON_DTYPES[name])]


def decode_recon(frames: Sequence) -> tuple[np.ndarray, ReconHeader]:
    """Validate and decode a `recon` message: (frame [H, W] view of the payload, header)."""
    _check_frames(frames, RECON)
    header = _unpack_map(memoryview(frames[1]), "recon header")
    _check_version(header)
    fields = ReconHeader(
        session=_require(header, "session", lambda x: isinstance(x, str), "a str"),
        seq=_require(header, "seq", _is_int, "an int"),
        t_newest=_require(header, "t_newest", _is_number, "a number"),
        seq_newest=_require(header, "seq_newest", _is_int, "an int"),
        t_stim=_require(header, "t_stim", _is_number, "a number"),
        model=_require(header, "model", lambda x: isinstance(x, str), "a str"),
        stale=_require(header, "stale", _is_number, "a number"),
    )
    dtype_name = _require(header, "dtype", lambda x: isinstance(x, str), "a str")
    shape = _require(
        header,
        "shape",
        lambda x: isinstance(x, list | tuple) and len(x) == 2 and all(_is_int(s) and s > 0 for s in x),
        "[H, W]",
    )
    dtype = RECON_DTYPES.get(dtype_name)
    if dtype is None:
        raise Rejected("dtype", f"recon dtype {dtype_name!r:.40} not in {sorted(RECON_DTYPES)}")
    payload = memoryview(frames[2])
    if payload.nbytes != shape[0] * shape[1] * dtype.itemsize:
        raise Rejected(
            "payload_length", f"payload {payload.nbytes} bytes does not match {shape} {dtype_name}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape), fields


def _dtype_name(dtype: np.dtype, allowed: dict[str, np.dtype]) -> str:
    for name, wire in allowed.items():
        if dtype.newbyteorder("<") == wire or dtype == wire:
            return name
    raise ValueError(f"dtype {dtype} cannot go on the wire; allowed: {sorted(allowed)}")


def _payload(array: np.ndarray, wire: np.dtype):
    """Array bytes in wire order without a copy when the array already is."""
    return memoryview(np.ascontiguousarray(array, dtype=wire)).cast("B")


# ---- control socket (REP): msgpack map in, msgpack map out ----

CONTROL_COMMANDS = ("ping", "info", "stats", "load")


@dataclass(frozen=True)
class Request:
    """A control request: its command, and for `load` the artifact directory to swap in (§5.5)."""

    cmd: str
    artifact: str | None = None


def encode_request(cmd: str, **fields) -> bytes:
    return msgpack.packb({"cmd": cmd, **fields})


def decode_request(frames: Sequence) -> Request:
    """A control request; `Rejected` if it is not `{"cmd": str}` (with `"artifact": str` for `load`)."""
    if len(frames) != 1:
        raise Rejected("frame_count", f"a control request is one frame, got {len(frames)}")
    if len(memoryview(frames[0])) > MAX_HEADER_BYTES:
        raise Rejected("oversized", f"control request over {MAX_HEADER_BYTES} bytes")
    request = _unpack_map(memoryview(frames[0]), "control request")
    cmd = _require(request, "cmd", lambda x: isinstance(x, str), "a str")
    if cmd != "load":
        return Request(cmd)
    return Request(cmd, _require(request, "artifact", lambda x: isinstance(x, str) and x, "a directory path"))


def encode_reply(reply: dict) -> bytes:
    return msgpack.packb(reply)


def decode_reply(frame) -> dict:
    return _unpack_map(memoryview(frame), "control reply")
