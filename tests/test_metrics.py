"""Metrics against values computed independently (by hand, np.corrcoef, scipy)."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from stream_decoder.metrics import frame_correlations, single_trial_correlation, ssim, video_correlation


@pytest.fixture
def videos():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 255, (40, 36, 64))
    recon = np.clip(truth + rng.normal(0, 60, truth.shape), 0, 255)
    return recon, truth


@pytest.fixture
def mask():
    mask = np.zeros((36, 64), dtype=bool)
    mask[8:28, 10:50] = True
    return mask


def test_video_correlation_by_hand():
    truth = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1)
    recon = np.array([2.0, 4.0, 5.0, 9.0]).reshape(4, 1, 1)
    # Means 2.5 and 5; deviations (-1.5,-.5,.5,1.5), (-3,-1,0,4): cov 11, var 5 and 26.
    assert video_correlation(recon, truth, skip=0) == pytest.approx(11 / np.sqrt(5 * 26))


def test_video_correlation_matches_np_corrcoef_on_masked_frames(videos, mask):
    recon, truth = videos
    expected = np.corrcoef(recon[30:][:, mask].ravel(), truth[30:][:, mask].ravel())[0, 1]
    assert video_correlation(recon, truth, mask) == pytest.approx(expected, rel=1e-12)


def test_video_correlation_ignores_skipped_frames_and_outside_mask(videos, mask):
    recon, truth = videos
    spoiled = recon.copy()
    spoiled[:30] = 0
    spoiled[:, ~mask] = 255 - truth[:, ~mask]
    assert video_correlation(spoiled, truth, mask) == video_correlation(recon, truth, mask)
    assert video_correlation(spoiled, truth, skip=0) != pytest.approx(video_correlation(recon, truth, skip=0))


def test_video_correlation_is_one_for_an_affine_copy(videos):
    _, truth = videos
    assert video_correlation(0.5 * truth + 20, truth) == pytest.approx(1.0)
    assert video_correlation(255 - truth, truth) == pytest.approx(-1.0)


def test_constant_video_has_undefined_correlation(videos):
    _, truth = videos
    gray = np.full_like(truth, 127.5)
    assert np.isnan(video_correlation(gray, truth))
    assert np.isnan(frame_correlations(gray, truth)).all()


def test_frame_correlations_match_scipy_pearsonr(videos, mask):
    recon, truth = videos
    got = frame_correlations(recon, truth, mask)
    expected = [stats.pearsonr(r[mask], t[mask]).statistic for r, t in zip(recon, truth, strict=True)]
    assert got.shape == (len(truth),)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_frame_correlations_nan_only_for_flat_frames(videos):
    recon, truth = videos
    recon = recon.copy()
    recon[3] = 7.0
    got = frame_correlations(recon, truth)
    assert np.isnan(got[3])
    assert np.isfinite(np.delete(got, 3)).all()


def _ssim_by_hand(x, y, inside):
    """Wang et al. 2004 with a 7 x 7 uniform window and sample covariance, mean over `inside`."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    wx, wy = sliding_window_view(x, (7, 7)), sliding_window_view(y, (7, 7))
    mx, my = wx.mean(axis=(-1, -2)), wy.mean(axis=(-1, -2))
    vx, vy = wx.var(axis=(-1, -2), ddof=1), wy.var(axis=(-1, -2), ddof=1)
    cov = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).sum(axis=(-1, -2)) / 48
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s[inside[3:-3, 3:-3]].mean()


def test_ssim_matches_a_hand_computation(videos, mask):
    recon, truth = videos
    expected = np.mean([_ssim_by_hand(r, t, mask) for r, t in zip(recon[30:], truth[30:], strict=True)])
    assert ssim(recon, truth, mask) == pytest.approx(expected, rel=1e-9)
    everywhere = np.ones_like(mask)
    expected_all = np.mean([_ssim_by_hand(r, t, everywhere) for r, t in zip(recon, truth, strict=True)])
    assert ssim(recon, truth, skip=0) == pytest.approx(expected_all, rel=1e-9)


def test_ssim_is_one_for_identical_videos_and_lower_for_noisy_ones(videos):
    recon, truth = videos
    assert ssim(truth, truth) == pytest.approx(1.0)
    assert ssim(recon, truth) < 0.9


@pytest.mark.parametrize("metric", [video_correlation, frame_correlations, ssim])
def test_bad_input_is_a_clear_error(metric, videos, mask):
    recon, truth = videos
    with pytest.raises(ValueError, match="differs from truth shape"):
        metric(recon[:, :, :32], truth)
    with pytest.raises(ValueError, match=r"recon must be a video \(T, H, W\)"):
        metric(recon[0], truth)
    with pytest.raises(ValueError, match="mask shape"):
        metric(recon, truth, mask[:, :32])
    with pytest.raises(ValueError, match="boolean"):
        metric(recon, truth, mask.astype(float))
    with pytest.raises(ValueError, match="no pixels"):
        metric(recon, truth, np.zeros_like(mask))
    nan_recon = recon.copy()
    nan_recon[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        metric(nan_recon, truth)


@pytest.mark.parametrize("metric", [video_correlation, ssim])
def test_skipping_every_frame_is_an_error(metric, videos):
    recon, truth = videos
    with pytest.raises(ValueError, match="skip=40 leaves no frames"):
        metric(recon, truth, skip=40)


def test_single_trial_correlation_pools_trials_per_neuron():
    rng = np.random.default_rng(1)
    recorded = [rng.poisson(2.0, (80, 5)).astype(float) for _ in range(3)]
    predicted = [r + rng.normal(0, 2.0, r.shape) for r in recorded]
    predicted[1][:, 4] = 3.0  # a constant prediction in one trial only: still defined overall
    got = single_trial_correlation(predicted, recorded, skip=50)
    p = np.concatenate([x[50:] for x in predicted])
    r = np.concatenate([x[50:] for x in recorded])
    expected = [np.corrcoef(p[:, n], r[:, n])[0, 1] for n in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert (got > 0.3).all()


def test_single_trial_correlation_nan_for_silent_neurons_and_errors_for_bad_input():
    recorded = [np.zeros((60, 2)), np.zeros((60, 2))]
    recorded[0][55, 1] = 1.0
    predicted = [np.random.default_rng(2).random((60, 2)) for _ in range(2)]
    got = single_trial_correlation(predicted, recorded)
    assert np.isnan(got[0]) and np.isfinite(got[1])
    with pytest.raises(ValueError, match="matching non-empty"):
        single_trial_correlation(predicted[:1], recorded)
    with pytest.raises(ValueError, match=r"trial 1: predicted \(60, 3\)"):
        single_trial_correlation([predicted[0], np.zeros((60, 3))], recorded)
    with pytest.raises(ValueError, match="skip=60 leaves none"):
        single_trial_correlation(predicted, recorded, skip=60)
