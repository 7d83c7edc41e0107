"""Raw frames in: the synthetic microscope, the front end's stages against its truth, and the
daemon decoding `frame` messages (docs/protocol.md §8)."""

import numpy as np
import pytest
from conftest import HANG_GUARD_S

from stream_decoder.data import PlaneTiming
from stream_decoder.data.microscope import Microscope
from stream_decoder.data.simulate import raw_trial, rebuild_mouse
from stream_decoder.frontend import FrontEnd, FrontEndConfig, NoMatch, RoiSet
from stream_decoder.frontend.motion import MotionConfig, MotionCorrector
from stream_decoder.frontend.synthetic import simulator_front_end, simulator_rois, write_extracted_dataset
from stream_decoder.metrics import pearson, video_correlation
from stream_decoder.stream.config import DaemonConfig, FrontEndSection, LogConfig, ModelConfig
from stream_decoder.stream.protocol import FRAME, encode_frame
from stream_decoder.stream.raw_input import write_microscope

DARK = 200.0  # MicroscopeConfig.offset_adu


@pytest.fixture(scope="module")
def microscope(tiny_mouse):
    mouse, truth = rebuild_mouse(tiny_mouse.path)
    return Microscope(mouse), truth


@pytest.fixture(scope="module")
def plane0(microscope, tiny_mouse):
    """Plane 0's raw frames of three training clips in a row."""
    mic, truth = microscope
    return [
        f for trial in tiny_mouse.trials("train")[:3] for f in raw_trial(mic, truth, trial) if f.plane == 0
    ]


# ---- the synthetic microscope ----


def test_raw_frames_are_the_recorded_trial_imaged(microscope, tiny_mouse):
    mic, truth = microscope
    trial = tiny_mouse.trials("train")[0]
    frames = list(raw_trial(mic, truth, trial))
    timing = mic.timing
    phase = truth.trials[trial]["scan_phase_s"]
    period = 1 / timing.volume_rate_hz
    start = -mic.mouse.cfg.preroll_frames / 30  # the grey before the clip is imaged too
    for f in frames[:6]:  # each plane sampled at the trial's scan phase, as its responses were
        volumes = (f.t - start - phase - timing.plane_offsets_s[f.plane]) / period
        assert volumes == pytest.approx(round(volumes), abs=1e-6)
    assert {f.plane for f in frames} == set(range(timing.n_planes))
    assert all(f.image.dtype == np.uint16 and f.image.shape == (512, 512) for f in frames)
    spikes = sum(f.spikes.sum() for f in frames)
    assert spikes > 0 and all(f.dff.shape == f.spikes.shape for f in frames)


# ---- motion correction ----


def test_motion_is_estimated_within_0_2_px_of_the_truth(microscope, plane0):
    mic, _ = microscope
    motion = MotionCorrector(mic.cfg.frame_shape, MotionConfig(), mic.reference_image(0))
    estimated = np.array([(s.dy, s.dx) for s in (motion.step(f.image)[1] for f in plane0)])
    true = np.array([f.shift_px for f in plane0])
    assert np.abs(true).max() > 2  # the brain did move
    assert np.abs(estimated - true).max() < 0.2


def test_an_online_reference_registers_to_the_first_frames_position(microscope, plane0):
    mic, _ = microscope
    # the tiny field is sparse (~100 cells a plane): estimate on the whole frame
    motion = MotionCorrector(mic.cfg.frame_shape, MotionConfig(reference_frames=10, estimate_px=0))
    estimated = np.array([(s.dy, s.dx) for s in (motion.step(f.image)[1] for f in plane0)])
    assert motion.ready
    relative = estimated[10:] - np.array([f.shift_px for f in plane0[10:]])
    # relative to a reference at the first frames' mean position: a constant offset, then 0.2 px
    assert np.abs(relative - np.median(relative, axis=0)).max() < 0.2


def test_a_shift_beyond_the_bound_is_clamped_and_counted(microscope, plane0):
    mic, _ = microscope
    motion = MotionCorrector(
        mic.cfg.frame_shape, MotionConfig(max_shift_fraction=0.02), mic.reference_image(0)
    )
    assert motion.bound == 10
    far = np.roll(plane0[0].image, 9, axis=1)  # 9 px more than the brain's own shift: beyond 10
    assert plane0[0].shift_px[1] + 9 > 10.5
    _, shift = motion.step(far)
    assert shift.at_bound and motion.bound_hits == 1
    assert shift.dx == motion.bound


def test_a_frame_unlike_the_reference_matches_nowhere(microscope, plane0):
    mic, _ = microscope
    motion = MotionCorrector(mic.cfg.frame_shape, MotionConfig(), mic.reference_image(0))
    shutter_closed = np.random.default_rng(0).normal(DARK, 5, mic.cfg.frame_shape).astype(np.uint16)
    with pytest.raises(NoMatch, match="matches the motion reference nowhere"):
        motion.step(shutter_closed)
    with pytest.raises(ValueError, match="motion reference of shape"):
        MotionCorrector(mic.cfg.frame_shape, MotionConfig(), np.zeros((8, 8)))


# ---- extraction and deconvolution ----


def isolated(mic: Microscope, plane: int, spacing_um: float = 24.0, edge_um: float = 40.0) -> np.ndarray:
    """Neurons of `plane` with no other soma within `spacing_um` (four soma radii), and not at
    the image's edge (where the motion moves them in and out of view)."""
    xy = mic.mouse.cortex_xy_um[mic.timing.neurons_of(plane)]
    distance = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(distance, np.inf)
    inside = np.all(np.abs(xy) < mic.mouse.cfg.population.fov_um / 2 - edge_um, axis=1)
    return (distance.min(1) > spacing_um) & inside


def test_extracted_traces_follow_the_true_calcium_of_isolated_cells(microscope, plane0):
    mic, _ = microscope
    plane = simulator_front_end(mic).planes[0]
    dff = []
    for f in plane0:
        registered, _ = plane.motion.step(f.image)
        plane.deconvolver.step(plane.extractor.corrected(*plane.extractor.step(registered)))
        dff.append(plane.deconvolver.dff)
    skip = 40  # the baselines settle
    est, true = np.array(dff)[skip:], np.array([f.dff for f in plane0])[skip:]
    noise = mic.mouse.indicator.noise_dff[mic.timing.neurons_of(0)]
    active = true.std(0) > 4 * noise  # calcium well above the noise of one sample
    chosen = isolated(mic, 0) & active
    assert chosen.sum() >= 20
    assert np.min(pearson(est, true, axis=0)[chosen]) > 0.9


def test_deconvolved_activity_follows_the_true_spikes(microscope, plane0):
    mic, _ = microscope
    fe = simulator_front_end(mic)
    events = np.array([fe.step(0, f.image).values for f in plane0])[40:]
    spikes = np.array([f.spikes for f in plane0])[40:]
    c = pearson(events, spikes, axis=0)[isolated(mic, 0)]
    assert np.nanmedian(c) > 0.6


def test_the_front_end_gives_activity_on_the_datasets_scale(microscope, plane0, tiny_mouse):
    # the decoder was trained on the dataset's responses: the front end must speak the same units
    mic, _ = microscope
    fe = simulator_front_end(mic)
    events = np.array([fe.step(0, f.image).values for f in plane0])[40:]
    neurons = fe.planes[0].neurons
    responses = np.concatenate([tiny_mouse.clip(t).responses for t in tiny_mouse.trials("train")[:3]])
    ratio_mean = np.median(events.mean(0) / np.maximum(responses[:, neurons].mean(0), 1e-3))
    ratio_sd = np.median(events.std(0) / np.maximum(responses[:, neurons].std(0), 1e-3))
    assert 0.5 < ratio_mean < 2 and 0.5 < ratio_sd < 2


def test_offline_on_a_stack_and_online_frame_by_frame_agree(microscope, plane0):
    mic, _ = microscope
    stack = np.stack([f.image for f in plane0[:40]])
    offline = simulator_front_end(mic).process_stack(0, stack)
    online_fe = simulator_front_end(mic)
    online = np.array([online_fe.step(0, image).values for image in stack])
    np.testing.assert_allclose(offline, online, rtol=1e-4, atol=1e-3)
    assert offline.shape == (40, online_fe.planes[0].neurons.size)


def test_a_saturated_stripe_or_a_nan_frame_is_refused_and_leaves_no_trace(microscope, plane0):
    from stream_decoder.frontend import BadPixels

    mic, _ = microscope
    images = [f.image for f in plane0[:12]]
    stripe = images[6].copy()
    stripe[200:204] = np.iinfo(np.uint16).max  # four rows at the ceiling: a PMT overload
    clean, faulted = simulator_front_end(mic), simulator_front_end(mic)
    expected = [clean.step(0, image).values for image in images]
    for k, image in enumerate(images):
        if k == 6:
            for bad in (stripe, np.where(np.arange(512)[:, None] == 7, np.nan, image.astype(np.float32))):
                with pytest.raises(BadPixels):
                    faulted.step(0, bad)
        np.testing.assert_array_equal(faulted.step(0, image).values, expected[k])  # baselines untouched
    bright = images[0].copy()
    bright[300, :100] = np.iinfo(np.uint16).max  # a few saturated pixels of a bright cell are data
    clean.step(0, bright)
    low_ceiling = FrontEndConfig(saturation_adu=float(np.median(images[0])))  # a 14-bit digitiser, say
    with pytest.raises(BadPixels, match="saturated at"):
        FrontEnd(simulator_rois(mic), 1.0, low_ceiling).step(0, images[0])


# ---- the daemon ----


@pytest.fixture
def frontend_section(microscope, tmp_path):
    mic, _ = microscope
    write_microscope(mic, tmp_path)
    return FrontEndSection(
        rois=tmp_path / "rois.npz",
        references=tmp_path / "references.npy",
        dark_level=DARK,
        volume_rate_hz=mic.timing.volume_rate_hz,
    )


def raw_message(frame, seq: int, t: float, image: np.ndarray | None = None) -> list:
    image = frame.image if image is None else image
    return encode_frame("raw", seq, t, image, plane=frame.plane, n_planes=3)


def test_the_daemon_decodes_raw_frames_and_counts_bad_ones(
    step_daemon, frontend_section, microscope, tiny_mouse
):
    # docs/protocol.md §5.2, §7, §8
    mic, truth = microscope
    stepped = step_daemon(frontend=frontend_section)
    daemon = stepped.daemon
    info = daemon.reply("info")
    assert info["inputs"] == ["activity", "frame"] and info["frame_input"]["shape"] == [512, 512]
    stepped.attach(stepped.display)
    frames = list(raw_trial(mic, truth, tiny_mouse.trials("train")[0]))[:12]
    sock = stepped.rig.sock
    good = lambda k: raw_message(frames[k], k, 100.0 + frames[k].t)  # noqa: E731
    bad = {
        "frame_shape": encode_frame("raw", 0, 0.0, np.zeros((64, 64), np.uint16)),
        "dtype": [FRAME, good(0)[1].replace(b"uint16", b"uint32"), good(0)[2]],
        "plane_range": encode_frame("raw", 0, 0.0, frames[0].image, plane=5, n_planes=8),
        "non_finite": encode_frame("raw", 0, float("nan"), frames[0].image),
    }
    for k in range(6):
        sock.send_multipart(good(k))
    for message in bad.values():
        sock.send_multipart(message)
    shutter = np.full((512, 512), DARK, np.uint16)
    sock.send_multipart(raw_message(frames[6], 6, 100.0 + frames[6].t, image=shutter))
    for k in range(7, 12):
        sock.send_multipart(good(k))
    stepped.deliver(12 + len(bad))
    stats = daemon.reply("stats")
    assert stats["rejected"] == {**dict.fromkeys(bad, 1), "reference_mismatch": 1}
    assert stats["frontend"]["frames"] == 11 and stats["accepted"] >= 11
    # observable: the front end's own time per frame, and each plane's latest shift and peak
    front = stats["frontend"]
    assert front["cost_ms"]["samples"] == 11 and front["cost_ms"]["p50"] > 0
    for plane in {f.plane for f in frames}:
        last = max(k for k in range(12) if frames[k].plane == plane and k != 6)
        seen = front["shift_px"][str(plane)]
        np.testing.assert_allclose([seen["dy"], seen["dx"]], frames[last].shift_px, atol=0.2)
        assert seen["peak_sd"] >= frontend_section.min_peak_sd
    assert front["weak_registration"] == 0
    assert stats["lost"] == 0  # the shutter frame was in sequence: no gap
    assert stats["emitted"] > 0 and daemon.assembler.session == "raw"
    # every good frame's plane got its values from the front end, in the model's order
    assert np.isfinite(daemon.assembler.activity).all()


def test_a_reference_of_another_size_is_refused_at_start_up(step_daemon, frontend_section):
    np.save(frontend_section.references, np.zeros((3, 256, 256), np.float32))
    with pytest.raises(
        ValueError, match=r"references .*shape \(3, 256, 256\), the ROIs need \(3, 512, 512\)"
    ):
        step_daemon(frontend=frontend_section)


def test_neurons_without_an_roi_are_named_and_held_at_their_training_mean(
    step_daemon, microscope, tmp_path, untrained_artifact, caplog
):
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.frontend.roi_sources import save_npz

    mic, _ = microscope
    rois = simulator_rois(mic)
    rois = RoiSet(rois.frame_shape, rois.n_planes, rois.plane, rois.offsets, rois.pixel, rois.weight,
                  np.where(rois.neuron == 7, -1, rois.neuron))  # fmt: skip
    save_npz(rois, tmp_path / "rois.npz")
    stepped = step_daemon(frontend=FrontEndSection(rois=tmp_path / "rois.npz", volume_rate_hz=7.5))
    mean = load_artifact(untrained_artifact).state_dict["activity_mean"].numpy()
    assert stepped.daemon.raw.unmapped.tolist() == [7]
    assert stepped.daemon.raw.resting[7] == mean[7] and stepped.daemon.raw.resting[8] == 0
    assert any(
        "neurons_without_roi" in r.getMessage() and "count=1" in r.getMessage() for r in caplog.records
    )


def test_replay_raw_to_serve_to_view_decodes_what_the_activity_decodes(
    baseline, microscope, tiny_mouse, tmp_path
):
    """The same clip replayed twice through the daemon serving the linear baseline: as raw frames
    (through the front end) and as the dataset's own activity at the same plane timing."""
    from stream_decoder.display.loopback import Loopback, private_endpoints
    from stream_decoder.display.viewer import MovieSink
    from stream_decoder.rig.replay import RawSource, ReplayOptions, ReplayPlan
    from stream_decoder.runtime import open_backend

    mic, truth = microscope
    write_microscope(mic, tmp_path)
    section = FrontEndSection(
        rois=tmp_path / "rois.npz",
        references=tmp_path / "references.npy",
        volume_rate_hz=7.5,
        dark_level=DARK,
    )
    trials = tiny_mouse.trials("oracle")[:1]
    timing = PlaneTiming.for_mouse(tiny_mouse.path)
    plans = {
        "raw": ReplayPlan(tiny_mouse, trials, timing, raw=RawSource(mic, truth)),
        "activity": ReplayPlan(tiny_mouse, trials, timing),
    }
    decoded = {}
    with private_endpoints() as endpoints:
        cfg = DaemonConfig(ModelConfig(baseline.path), endpoints, log=LogConfig(60.0), frontend=section)
        with Loopback(cfg, open_backend(baseline.path, "onnxruntime"), timeout_s=HANG_GUARD_S) as loop:
            for name, plan in plans.items():
                ticks = 280  # of the clip's 300 ticks: those emitted before its last plane sample
                sink = MovieSink(tmp_path / name, keep=ticks)
                loop.play(plan, ReplayOptions(speed=0, t0=0.0), sink, ticks)
                decoded[name] = {round(t * 30): (r, s) for r, s, t in sink.frames if s is not None}
    common = sorted(set(decoded["raw"]) & set(decoded["activity"]))[30:]
    raw, activity = (np.stack([decoded[k][t][0] for t in common]) for k in ("raw", "activity"))
    stimulus = np.stack([decoded["raw"][t][1] for t in common])
    mask = baseline.evaluation_mask
    between = video_correlation(raw, activity, mask, skip=0)
    assert between > 0.6
    assert video_correlation(raw, stimulus, mask, skip=0) > 0.5 * video_correlation(
        activity, stimulus, mask, skip=0
    )


def test_training_trials_extracted_from_raw_frames_make_a_dataset(microscope, tiny_mouse, tmp_path):
    # what `microscope --training-data` writes: the representation raw frames give, to train on
    from stream_decoder.data import open_mouse

    mic, truth = microscope
    folder = write_extracted_dataset(
        simulator_front_end(mic), mic, truth, tiny_mouse.path, tmp_path, limit=2, progress=False
    )
    extracted = open_mouse(folder)
    assert extracted.neuron_set() == tiny_mouse.neuron_set()
    first, third = tiny_mouse.trials("train")[0], tiny_mouse.trials("train")[2]
    ours, recorded = extracted.clip(first).responses, tiny_mouse.clip(first).responses
    assert ours.shape == recorded.shape and not np.array_equal(ours, recorded)
    assert np.nanmedian(pearson(ours[30:], recorded[30:], axis=0)) > 0.4  # the same spikes, other noise
    np.testing.assert_array_equal(extracted.clip(third).responses, tiny_mouse.clip(third).responses)


def test_an_roi_that_feeds_no_neuron_is_not_extracted_yet_stays_out_of_every_neuropil_ring():
    from stream_decoder.frontend.extraction import ExtractionConfig, Extractor

    shape = (64, 64)

    def disc(cy, cx, r=4):
        y, x = np.mgrid[: shape[0], : shape[1]]
        pixels = np.flatnonzero((y - cy) ** 2 + (x - cx) ** 2 <= r**2)
        return pixels, np.ones(pixels.size, np.float32)

    (p0, w0), (p1, w1), (p2, w2) = disc(20, 20), disc(20, 34), disc(44, 30)
    rois = RoiSet.from_lists(shape, [p0, p1, p2], [w0, w1, w2], neuron=np.array([1, -1, 0]))
    cfg = ExtractionConfig(neuropil_pixels=200)
    skipping = Extractor(rois, 0, cfg)
    every = Extractor(rois, 0, ExtractionConfig(neuropil_pixels=200, extract_unused=True))
    assert skipping.members.tolist() == [0, 2] and skipping.skipped == 1 and every.skipped == 0
    assert skipping.matrix.shape[0] == 4 and every.matrix.shape[0] == 6  # F and Fneu rows per ROI
    assert skipping.matrix.nnz == every.matrix.nnz - (p1.size + every.ring_pixels[1] // cfg.neuropil_bin**2)
    image = np.random.default_rng(0).uniform(100, 200, shape).astype(np.float32)
    image.flat[p1] = 5000.0  # a bright unused cell next to ROI 0: inside no ring, either way
    (f_s, n_s), (f_e, n_e) = skipping.step(image), every.step(image)
    np.testing.assert_allclose(f_s, f_e[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(n_s, n_e[[0, 2]], rtol=1e-6)
    assert n_s.max() < 250  # no ring reads the bright cell


def test_two_overlapping_rois_traces_are_separated_on_a_noise_free_movie():
    from stream_decoder.frontend.extraction import ExtractionConfig, Extractor

    shape = (48, 48)
    y, x = np.mgrid[: shape[0], : shape[1]]
    discs = [np.flatnonzero((y - 24) ** 2 + (x - cx) ** 2 <= 25) for cx in (21, 24)]  # most pixels shared
    rois = RoiSet.from_lists(shape, discs, [np.ones(d.size, np.float32) for d in discs])
    traces = np.random.default_rng(1).gamma(2.0, 50.0, (400, 2)).astype(np.float32)
    movie = np.full((400, shape[0] * shape[1]), 100.0, np.float32)
    for disc, trace in zip(discs, traces.T, strict=True):
        movie[:, disc] += trace[:, None]
    movie = movie.reshape(400, *shape)

    def separation(cfg):
        f, _ = Extractor(rois, 0, cfg).stack(movie)
        return [pearson(f[:, i], traces[:, i]) for i in range(2)]

    assert min(separation(ExtractionConfig(overlap="demix", demix_ridge=0.0))) > 0.99  # each its own light
    assert min(separation(ExtractionConfig(overlap="demix"))) > 0.9  # the default ridge: nearly
    assert min(separation(ExtractionConfig(overlap="exclude"))) > 0.99  # shared pixels left out
    kept = max(separation(ExtractionConfig()))
    assert kept < 0.9  # kept (the default), each trace holds both
    towards_kept = separation(ExtractionConfig(overlap="demix", demix_ridge=1e4))
    assert max(towards_kept) == pytest.approx(kept, abs=1e-3)  # a large ridge: the plain means


def test_the_dff_baseline_ignores_slow_noise_dips_and_follows_bleaching():
    from scipy.signal import lfilter

    from stream_decoder.frontend.deconvolution import DeconvolutionConfig, Deconvolver

    rate, rng = 30.0, np.random.default_rng(0)
    t = np.arange(int(240 * rate)) / rate
    level = np.where(t < 180, 100.0, 80.0)  # the light drops by a fifth at 180 s (bleaching, a z step)
    keep = np.exp(-1 / rate)  # noise slower than a frame (neuropil, small z motion): 1 s, sd 5 %
    slow = lfilter([np.sqrt(1 - keep**2)], [1, -keep], rng.normal(0.0, 5.0, (t.size, 200)), axis=0)
    noisy = level[:, None] + slow + rng.normal(0.0, 5.0, (t.size, 200))

    def baselines(cfg):
        d = Deconvolver(200, 1 / rate, cfg)
        out = []
        for sample in noisy:
            d.step(sample)
            out.append(d.baseline.copy())
        return np.array(out)

    fast = DeconvolutionConfig(baseline_fall_s=2.0, baseline_rise_s=60.0)  # the defaults before
    steady, fast = baselines(DeconvolutionConfig()), baselines(fast)
    quiet = (t > 120) & (t < 180)
    # a 2 s fall chases every dip, a 60 s rise climbs back: the baseline wanders, and dF/F with it
    assert steady[quiet].std(axis=0).mean() < 0.5 * fast[quiet].std(axis=0).mean()
    assert steady[quiet].mean() < 95.0  # under the trace's quiet level
    after = steady[t > 230] / 80.0  # before the drop it sat at ~1.14 of the new level
    assert after.max() < 1.0 and after.min() > 0.85


def test_a_weak_registration_peak_is_counted_and_warned_about_yet_decoded(
    frontend_section, tiny_mouse, caplog
):
    from stream_decoder.frontend.pipeline import PlaneOutput
    from stream_decoder.stream.protocol import Frame
    from stream_decoder.stream.raw_input import WEAK_PEAK, RawInput

    raw = RawInput(frontend_section, tiny_mouse.n_neurons, np.zeros(tiny_mouse.n_neurons), None)
    neurons = raw.frontend.planes[1].neurons
    threshold = frontend_section.min_peak_sd
    peaks = iter([3 * threshold, WEAK_PEAK * threshold * 0.9])  # a clear match, then a weak one
    ones = np.ones(neurons.size, np.float32)
    raw.frontend.step = lambda plane, image: PlaneOutput(
        neurons, ones, 0.25, -1.5, next(peaks), ones, ones, ones
    )
    image = np.zeros(raw.frame_shape, np.uint16)
    with caplog.at_level("WARNING", logger="stream_decoder.stream.raw_input"):
        for seq in range(2):
            parts = raw.parts(Frame("raw", seq, float(seq), image, plane=1, n_planes=3))
            assert sum(p.values.size for p in parts) == neurons.size  # decoded, weak or not
    stats = raw.stats()
    assert stats["weak_registration"] == 1 and stats["frames"] == 2
    assert stats["shift_px"] == {"1": {"dy": 0.25, "dx": -1.5, "peak_sd": WEAK_PEAK * threshold * 0.9}}
    assert sum("weak_registration" in r.getMessage() for r in caplog.records) == 1


def test_the_daemons_front_end_rejects_a_saturated_stripe_as_bad_pixels(frontend_section, tiny_mouse, plane0):
    from stream_decoder.stream.protocol import Frame, Rejected
    from stream_decoder.stream.raw_input import RawInput

    raw = RawInput(frontend_section, tiny_mouse.n_neurons, np.zeros(tiny_mouse.n_neurons), None)
    stripe = plane0[0].image.copy()
    stripe[10:12] = np.iinfo(np.uint16).max
    with pytest.raises(Rejected) as refused:
        raw.parts(Frame("raw", 0, 0.0, stripe, plane=0, n_planes=3))
    assert refused.value.reason == "bad_pixels" and "2 rows (from row 10)" in refused.value.detail
    assert raw.stats()["frames"] == 0


def test_the_recording_holds_each_raw_frames_shift_and_traces(
    step_daemon, frontend_section, microscope, tiny_mouse, tmp_path
):
    from stream_decoder.stream.config import RecorderConfig
    from stream_decoder.stream.recorder import read_recording

    mic, truth = microscope
    recorder = RecorderConfig(dir=tmp_path / "rec", frontend_traces=True)
    stepped = step_daemon(frontend=frontend_section, recorder=recorder)
    frames = list(raw_trial(mic, truth, tiny_mouse.trials("train")[0]))[:9]
    stripe = frames[4].image.copy()
    stripe[:3] = np.iinfo(np.uint16).max
    for k, frame in enumerate(frames):
        image = stripe if k == 4 else None
        stepped.rig.sock.send_multipart(raw_message(frame, k, 100.0 + frame.t, image=image))
    stepped.deliver(len(frames))
    planes = stepped.daemon.raw.frontend.planes
    last = {f.plane: k for k, f in enumerate(frames) if k != 4}  # each plane's last good frame
    dff = {p: planes[p].deconvolver.dff[planes[p].take].astype(np.float32) for p in last}
    shifts = stepped.daemon.reply("stats")["frontend"]["shift_px"]
    stepped.daemon.close()
    recorded = read_recording(recorder.dir).frame
    assert recorded["seq"].tolist() == [k for k in range(len(frames)) if k != 4]  # the stripe: no record
    for i, seq in enumerate(recorded["seq"]):
        np.testing.assert_allclose([recorded["dy"][i], recorded["dx"][i]], frames[seq].shift_px, atol=0.2)
    for plane, k in last.items():
        i = recorded["seq"].tolist().index(k)
        seen = shifts[str(plane)]
        np.testing.assert_allclose(
            [recorded["dy"][i], recorded["peak_sd"][i]], [seen["dy"], seen["peak_sd"]], 1e-6
        )
        f, fneu, recorded_dff = read_recording(recorder.dir).frame_traces(i)
        assert f.size == fneu.size == planes[plane].neurons.size and (f > fneu * 0.7).all()
        np.testing.assert_array_equal(recorded_dff, dff[plane])
