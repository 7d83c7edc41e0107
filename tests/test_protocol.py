"""Wire protocol v1: what goes on the wire, what comes back, and every way a message is refused."""

import hashlib
import re
from pathlib import Path

import msgpack
import numpy as np
import pytest

from stream_decoder.data.sensorium import neuron_set_id
from stream_decoder.stream.protocol import (
    CONTROL_COMMANDS,
    FRAME_DTYPES,
    INPUT_DTYPES,
    REASONS,
    ReconHeader,
    Rejected,
    decode_activity,
    decode_frame,
    decode_recon,
    decode_reply,
    decode_request,
    encode_activity,
    encode_frame,
    encode_recon,
    encode_reply,
    encode_request,
)

N = 50


def header(**changes) -> bytes:
    fields = {"v": 1, "session": "s", "seq": 3, "t": 1.5, "dtype": "float32", "shape": [N]}
    fields.update(changes)
    return msgpack.packb({k: v for k, v in fields.items() if v is not ...})


def payload(n=N, dtype="<f4") -> bytes:
    return np.arange(n, dtype=dtype).tobytes()


# docs/protocol.md §2, §3.1
@pytest.mark.parametrize("dtype", sorted(INPUT_DTYPES))
def test_activity_round_trip_without_copy(dtype):
    values = (np.arange(N) * 3).astype(INPUT_DTYPES[dtype])
    frames = [
        bytes(f)
        for f in encode_activity(
            "sess",
            7,
            12.25,
            values,
            first=10,
            plane=1,
            n_planes=3,
            behavior=(0.5, 2.0),
            pupil_center=(30.0, 20.0),
        )
    ]
    msg = decode_activity(frames, n_neurons=100)
    assert (msg.session, msg.seq, msg.t, msg.first, msg.plane, msg.n_planes) == ("sess", 7, 12.25, 10, 1, 3)
    assert msg.behavior == (0.5, 2.0) and msg.pupil_center == (30.0, 20.0)
    np.testing.assert_array_equal(msg.values, values)
    assert msg.values.dtype == INPUT_DTYPES[dtype]
    assert np.shares_memory(msg.values, np.frombuffer(frames[2], np.uint8))  # a view, not a copy


# docs/protocol.md §3.1
def test_activity_defaults_and_time_echoed_as_sent():
    msg = decode_activity([b"activity", header(t=17), payload()], N)
    assert (msg.first, msg.plane, msg.n_planes, msg.behavior, msg.pupil_center) == (0, 0, 1, None, None)
    assert msg.t == 17 and isinstance(msg.t, int)


# docs/protocol.md §2
def test_big_endian_values_go_out_little_endian():
    values = np.arange(5, dtype=">f4")
    frames = encode_activity("s", 0, 0.0, values)
    assert bytes(frames[2]) == np.arange(5, dtype="<f4").tobytes()


BAD = {
    "frame_count": [b"activity", header()],
    "topic": [b"activityX", header(), payload()],
    "oversized": [b"activity", header(), payload(N * 2 + 1, "<f4")],
    "header": [b"activity", b"\xc1\xff not msgpack", payload()],
    "version": [b"activity", header(v=2), payload()],
    "missing_key": [b"activity", header(session=...), payload()],
    "bad_type": [b"activity", header(seq=-1), payload()],
    "dtype": [b"activity", header(dtype="float64"), payload()],
    "payload_length": [b"activity", header(), payload(N - 1)],
    "neuron_range": [b"activity", header(first=N // 2), payload()],
    "non_finite": [b"activity", header(), np.full(N, np.nan, "<f4").tobytes()],
}


# docs/protocol.md §7
@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_contract_break_is_rejected_under_its_reason(reason):
    assert reason in REASONS
    with pytest.raises(Rejected) as caught:
        decode_activity(BAD[reason], N)
    assert caught.value.reason == reason


# docs/protocol.md §3.1, §7 bad_type
@pytest.mark.parametrize(
    "changes",
    [
        {"t": "now"},
        {"t": True},
        {"session": 5},
        {"shape": [N, 1]},
        {"shape": [0]},
        {"first": -1},
        {"n_planes": 0},
        {"plane": 2, "n_planes": 2},
        {"behavior": [1.0]},
        {"pupil_center": "xy"},
    ],
)
def test_mistyped_or_impossible_keys_are_bad_type(changes):
    with pytest.raises(Rejected) as caught:
        decode_activity([b"activity", header(**changes), payload()], N)
    assert caught.value.reason == "bad_type"


# docs/protocol.md §2, §7
def test_header_must_be_a_map_and_not_huge():
    with pytest.raises(Rejected, match="not a map") as caught:
        decode_activity([b"activity", msgpack.packb([1, 2]), payload()], N)
    assert caught.value.reason == "header"
    with pytest.raises(Rejected) as caught:
        decode_activity([b"activity", header(pad="x" * 5000), payload()], N)
    assert caught.value.reason == "oversized"


# docs/protocol.md §3.2, §7 non_finite
@pytest.mark.parametrize("where", ["t", "behavior", "pupil_center"])
def test_non_finite_time_or_behaviour_is_rejected(where):
    changes = {"t": float("inf")} if where == "t" else {where: [1.0, float("nan")]}
    with pytest.raises(Rejected) as caught:
        decode_activity([b"activity", header(**changes), payload()], N)
    assert caught.value.reason == "non_finite"


# docs/protocol.md §3.2
def test_integer_payloads_are_never_non_finite():
    frames = [b"activity", header(dtype="uint16"), np.full(N, 65535, "<u2").tobytes()]
    assert decode_activity(frames, N).values.max() == 65535


H, W, PLANES = 6, 8, 2  # the image size and plane count of the loaded ROIs (not square: [W, H] is wrong)


def frame_header(**changes) -> bytes:
    fields = {"v": 1, "session": "s", "seq": 3, "t": 1.5, "dtype": "uint16", "shape": [H, W]}
    fields.update(changes)
    return msgpack.packb({k: v for k, v in fields.items() if v is not ...})


def image_bytes(n=H * W, dtype="<u2") -> bytes:
    return np.arange(n, dtype=dtype).tobytes()


# docs/protocol.md §8.1, §8.2
@pytest.mark.parametrize("dtype", sorted(FRAME_DTYPES))
def test_frame_round_trip_without_copy(dtype):
    image = (np.arange(H * W).reshape(H, W) * 700 - 9000).astype(FRAME_DTYPES[dtype])
    frames = [
        bytes(f)
        for f in encode_frame(
            "sess", 7, 12.25, image, plane=1, n_planes=3, behavior=(0.5, 2.0), pupil_center=(30.0, 20.0)
        )
    ]
    msg = decode_frame(frames, (H, W), n_planes=PLANES)
    assert (msg.session, msg.seq, msg.t, msg.plane, msg.n_planes) == ("sess", 7, 12.25, 1, 3)
    assert msg.behavior == (0.5, 2.0) and msg.pupil_center == (30.0, 20.0)
    assert msg.image.shape == (H, W) and msg.image.dtype == FRAME_DTYPES[dtype]
    np.testing.assert_array_equal(msg.image, image)
    assert np.shares_memory(msg.image, np.frombuffer(frames[2], np.uint8))  # a view, not a copy
    assert not msg.image.flags.writeable


# docs/protocol.md §8.1
def test_frame_defaults_and_big_endian_images_go_out_little_endian():
    msg = decode_frame([b"frame", frame_header(), image_bytes()], (H, W), n_planes=1)
    assert (msg.plane, msg.n_planes, msg.behavior, msg.pupil_center) == (0, 1, None, None)
    image = np.arange(H * W, dtype=">u2").reshape(H, W)
    assert bytes(encode_frame("s", 0, 0.0, image)[2]) == image_bytes()


BAD_FRAMES = {
    "wrong topic": ([b"activity", frame_header(), image_bytes()], "topic"),
    "transposed": ([b"frame", frame_header(shape=[W, H]), image_bytes()], "frame_shape"),
    "smaller": ([b"frame", frame_header(shape=[H - 1, W]), image_bytes((H - 1) * W)], "frame_shape"),
    "1-D shape": ([b"frame", frame_header(shape=[H * W]), image_bytes()], "bad_type"),
    "float32": ([b"frame", frame_header(dtype="float32"), image_bytes()], "dtype"),
    "a whole float32 frame": ([b"frame", frame_header(dtype="float32"), image_bytes(dtype="<f4")], "dtype"),
    "short payload": ([b"frame", frame_header(), image_bytes(H * W - 1)], "payload_length"),
    "plane of no ROI": ([b"frame", frame_header(plane=PLANES, n_planes=3), image_bytes()], "plane_range"),
    "plane >= n_planes": ([b"frame", frame_header(plane=3, n_planes=3), image_bytes()], "bad_type"),
    "NaN t": ([b"frame", frame_header(t=float("nan")), image_bytes()], "non_finite"),
    "NaN behaviour": ([b"frame", frame_header(behavior=[1.0, float("nan")]), image_bytes()], "non_finite"),
    "oversized": ([b"frame", frame_header(), image_bytes(H * W + 1)], "oversized"),
}


# docs/protocol.md §7, §8.1, §8.2
@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_each_bad_frame_is_rejected_under_its_reason(case):
    frames, reason = BAD_FRAMES[case]
    assert reason in REASONS
    with pytest.raises(Rejected) as caught:
        decode_frame(frames, (H, W), n_planes=PLANES)
    assert caught.value.reason == reason


# docs/protocol.md §8.1
def test_encoding_a_frame_refuses_what_the_contract_does_not_allow():
    with pytest.raises(ValueError, match="2-D"):
        encode_frame("s", 0, 0.0, np.zeros(H * W, np.uint16))
    with pytest.raises(ValueError, match="float32"):
        encode_frame("s", 0, 0.0, np.zeros((H, W), np.float32))


# docs/protocol.md §4
def test_recon_round_trip_float_and_uint8():
    head = ReconHeader("s", 4, 10.0, 9, 9.7333, "abc123", 0.25)
    for frame in (
        np.random.default_rng(0).random((36, 64), dtype=np.float32) * 255,
        np.arange(36 * 64, dtype=np.uint8).reshape(36, 64),
    ):
        decoded, fields = decode_recon([bytes(f) for f in encode_recon(head, frame)])
        np.testing.assert_array_equal(decoded, frame)
        assert fields == head


# docs/protocol.md §4
def test_recon_wire_header_has_every_contract_key():
    frames = encode_recon(ReconHeader("s", 0, 1.0, 0, 0.9, "m", 0.0), np.zeros((36, 64), np.float32))
    assert frames[0] == b"recon"
    keys = set(msgpack.unpackb(frames[1]))
    assert keys == {
        "v",
        "session",
        "seq",
        "t_newest",
        "seq_newest",
        "t_stim",
        "model",
        "stale",
        "dtype",
        "shape",
    }
    assert len(frames[2]) == 36 * 64 * 4


# docs/protocol.md §4, §7
def test_recon_with_wrong_payload_is_rejected():
    frames = [
        bytes(f)
        for f in encode_recon(ReconHeader("s", 0, 1.0, 0, 0.9, "m", 0.0), np.zeros((36, 64), np.float32))
    ]
    with pytest.raises(Rejected) as caught:
        decode_recon([*frames[:2], frames[2][:-4]])
    assert caught.value.reason == "payload_length"


# docs/protocol.md §3.1, §4
def test_encoding_refuses_dtypes_the_contract_does_not_allow():
    with pytest.raises(ValueError, match="float64"):
        encode_activity("s", 0, 0.0, np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        encode_recon(ReconHeader("s", 0, 1.0, 0, 0.9, "m", 0.0), np.zeros(5, np.float32))


# docs/protocol.md §5.1
def test_control_messages():
    assert decode_request([encode_request("stats")]).cmd == "stats"
    assert decode_reply(encode_reply({"ok": True, "version": 1})) == {"ok": True, "version": 1}
    for bad, reason in [
        ([b"\xc1"], "header"),
        ([msgpack.packb({"cmd": 3})], "bad_type"),
        ([msgpack.packb({})], "missing_key"),
        ([b"a", b"b"], "frame_count"),
    ]:
        with pytest.raises(Rejected) as caught:
            decode_request(bad)
        assert caught.value.reason == reason


PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def documented_keys(section: str) -> list[str]:
    """The first-column names (`key`) of the table in `docs/protocol.md` section `section` ("3.1", "7")."""
    text = PROTOCOL_DOC.read_text()
    start = re.search(rf"^(## {section}\. |{re.escape(section)}\. )", text, re.M)
    assert start, f"docs/protocol.md has no section {section}"
    end = re.search(r"^(## \d+\. |\d+\.\d+\. )", text[start.end() :], re.M)
    body = text[start.end() : start.end() + end.start() if end else None]
    rows = re.findall(r"^\| (`[^|]+`) \|", body, re.M)
    return [name.strip("`") for row in rows for name in row.split(", ")]


def test_the_protocol_doc_names_every_key_reason_and_command_the_code_has():
    # docs/protocol.md §3.1, §4, §5.1, §7, §8.1: the doc is the contract: nothing on the wire is missing
    activity = msgpack.unpackb(
        encode_activity("s", 0, 0.0, np.zeros(2, np.float32), behavior=(0, 0), pupil_center=(0, 0))[1]
    )
    assert set(activity) == set(documented_keys("3.1"))
    frame = msgpack.unpackb(
        encode_frame("s", 0, 0.0, np.zeros((2, 2), np.uint16), behavior=(0, 0), pupil_center=(0, 0))[1]
    )
    assert set(frame) == set(documented_keys("8.1"))
    recon = msgpack.unpackb(
        encode_recon(ReconHeader("s", 0, 1.0, 0, 0.9, "m", 0.0), np.zeros((2, 2), "f4"))[1]
    )
    assert set(recon) == set(documented_keys("4"))
    assert documented_keys("7") == list(REASONS)
    section_5_1 = PROTOCOL_DOC.read_text().split("5.1. ")[1].split("5.2. ")[0]
    assert all(f'{{"cmd": "{cmd}"' in section_5_1 for cmd in CONTROL_COMMANDS)


def test_the_neuron_set_identity_is_the_documented_hash(tiny_mouse):
    # docs/protocol.md §5.3: what a rig computes from its own cell table, in any language
    ids = tiny_mouse.unit_ids.astype("<i8")
    xyz = np.ascontiguousarray(tiny_mouse.cell_motor_coordinates, dtype="<f4")
    digest = hashlib.sha256(b"neuron-set-v1" + ids.tobytes() + xyz.tobytes()).hexdigest()[:16]
    assert (
        tiny_mouse.neuron_set() == digest == neuron_set_id(list(tiny_mouse.unit_ids), xyz.astype(np.float64))
    )
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        neuron_set_id(ids, xyz[:-1])
