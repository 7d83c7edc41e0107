"""Live model swap (docs/protocol.md §5.5), stepped on the fake clock: the frame before and after,
nothing lost, every frame one model's, a bad artifact refused while the running model serves on."""

from concurrent.futures import Future

import numpy as np
import pytest
import torch
from test_daemon import BEHAVIOR, PUPIL, RATE, offline_frames, random_activity, receive

from stream_decoder.decoder.artifact import load_artifact, save_artifact
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.stream.protocol import Rejected, decode_request, encode_request
from stream_decoder.stream.swap import refusal

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def student_artifact(folder, mouse, seed: int, n_neurons: int | None = None, **provenance):
    torch.manual_seed(seed)
    n = n_neurons or mouse.n_neurons
    student = Student(StudentConfig(n_neurons=n, latent=32, lookahead=2))
    unit_ids = mouse.unit_ids[:n]
    neuron_set = mouse.neuron_set() if n == mouse.n_neurons else ""
    return save_artifact(
        folder, student, unit_ids, mouse.fingerprint(), provenance, neuron_set=neuron_set
    ).path


def run_now(job) -> Future:
    """A loader that opens the artifact at once, so the test decides when the loop takes it."""
    future = Future()
    try:
        future.set_result(job())
    except Exception as exc:
        future.set_exception(exc)
    return future


def send(s, activity: np.ndarray, first_seq: int) -> None:
    for k, a in enumerate(activity):
        s.rig.seq = first_seq + k
        s.rig.send(a, (first_seq + k) / RATE, behavior=BEHAVIOR, pupil_center=PUPIL)
    s.deliver(len(activity))


def test_a_swap_between_two_ticks_loses_no_frame_and_labels_each_with_its_model(
    step_daemon, untrained_artifact, tiny_mouse, tmp_path
):
    other = student_artifact(tmp_path / "other", tiny_mouse, seed=1)
    s = step_daemon()
    s.daemon.load = run_now
    s.attach(s.display)
    activity = random_activity(20, tiny_mouse.n_neurons, seed=3)
    s.rig.restart("swap")
    send(s, activity[:8], 0)
    reply = s.daemon.reply("load", str(other))
    assert reply == {"ok": True, "loading": str(other), "model": load_artifact(untrained_artifact).model_id}
    s.daemon.run_once({})  # the loop's next pass takes it
    send(s, activity[8:], 8)
    frames, headers = receive(s.display, 20)
    old, new = load_artifact(untrained_artifact).model_id, load_artifact(other).model_id
    assert [h.model for h in headers] == [old] * 8 + [new] * 12
    assert [h.seq for h in headers] == list(range(20))
    np.testing.assert_allclose(frames[:8], offline_frames(untrained_artifact, activity[:8]), atol=1e-4)
    np.testing.assert_allclose(frames[8:], offline_frames(other, activity[8:]), atol=1e-4)
    info = s.daemon.reply("info")
    (record,) = info["swaps"]
    assert record | {"artifact": None} == {
        "artifact": None,
        "ok": True,
        "model": new,
        "previous": old,
        "tick": 8,
        "session": "swap",
        "error": None,
    }
    assert info["model"] == new and info["loading"] is None


@pytest.mark.parametrize(
    "make, reason",
    [
        (
            lambda tmp, mouse: student_artifact(tmp / "fewer", mouse, 2, n_neurons=mouse.n_neurons - 1),
            "neurons",
        ),
        (lambda tmp, mouse: tmp, "config.json is missing"),
    ],
    ids=["other neuron count", "not an artifact"],
)
def test_a_bad_artifact_is_refused_with_its_reason_and_the_running_model_serves_on(
    step_daemon, untrained_artifact, tiny_mouse, tmp_path, make, reason
):
    s = step_daemon()
    s.daemon.load = run_now
    s.attach(s.display)
    bad = make(tmp_path, tiny_mouse)
    assert s.daemon.reply("load", str(bad))["ok"]
    s.daemon.run_once({})
    s.rig.restart("after")
    send(s, random_activity(3, tiny_mouse.n_neurons), 0)
    _, headers = receive(s.display, 3)
    running = load_artifact(untrained_artifact).model_id
    assert {h.model for h in headers} == {running}
    (record,) = s.daemon.reply("info")["swaps"]
    assert not record["ok"] and reason in record["error"] and record["previous"] == running
    assert s.daemon.stats.control_errors["load_refused"] == 1


def test_a_second_load_while_one_is_opening_is_refused(step_daemon, tiny_mouse, tmp_path):
    s = step_daemon()
    s.daemon.load = lambda job: Future()  # never finishes
    assert s.daemon.reply("load", str(tmp_path / "a"))["ok"]
    s.daemon.run_once({})
    reply = s.daemon.reply("load", str(tmp_path / "b"))
    assert not reply["ok"] and "still loading" in reply["error"]
    assert s.daemon.reply("info")["loading"] == str(tmp_path / "a")


def test_refusal_names_each_mismatch(untrained_artifact, tiny_mouse, tmp_path):
    running = load_artifact(untrained_artifact)
    same = load_artifact(student_artifact(tmp_path / "same", tiny_mouse, seed=4))
    assert refusal(running, same, stream_planes=1) is None
    timed = {"input_timing": {"n_planes": 3, "volume_rate_hz": 7.5}}
    three = load_artifact(student_artifact(tmp_path / "three", tiny_mouse, seed=5, **timed))
    assert "3-plane input, the stream has 1 planes" in refusal(running, three, stream_planes=1)
    assert refusal(running, three, stream_planes=3) is None
    assert refusal(running, three, stream_planes=None) is None  # no session yet: nothing to compare


def test_load_requests_need_an_artifact():
    with pytest.raises(Rejected, match="'artifact'"):
        decode_request([encode_request("load")])
    assert decode_request([encode_request("load", artifact="/a")]).artifact == "/a"
    assert decode_request([encode_request("info")]).artifact is None


def test_swap_command_waits_for_the_outcome_and_refusals_are_one_line(
    start_daemon, tiny_mouse, tmp_path, capsys, stream_endpoints
):
    from stream_decoder.cli import main

    start_daemon()
    control = ["--control", stream_endpoints["control"]]
    other = student_artifact(tmp_path / "other", tiny_mouse, seed=6)
    assert main(["swap", str(other), *control]) == 0
    assert '"ok": true' in capsys.readouterr().out
    fewer = student_artifact(tmp_path / "fewer", tiny_mouse, seed=7, n_neurons=tiny_mouse.n_neurons - 2)
    assert main(["swap", str(fewer), *control]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "neurons" in err[0]
