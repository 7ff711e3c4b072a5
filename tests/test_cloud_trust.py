"""Cloud removal users can trust: dates of the real scenes, pairs weeks apart, observed pixels kept
exactly (feathered composite), split-conformal intervals, the residual coding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from real_data import SHARED_DATA

from scorerecon.modalities.optical import clouds
from scorerecon.modalities.optical.conformal import (
    IntervalCalibration,
    conformal_quantile,
    distance_groups,
    normalised_scores,
)
from scorerecon.modalities.optical.datasets import CloudCoding

REMOTE = SHARED_DATA / "remote"


@pytest.mark.skipif(not (REMOTE / "s2_ndvi.npy").exists(), reason="no shared S2 NDVI series")
def test_reference_scene_dates_match_the_series_ndvi_exactly():
    scenes = clouds.load_stack(REMOTE / "s2_l1c_reference_scenes.npy")
    ndvi = np.load(REMOTE / "s2_ndvi.npy")[..., 0]
    for scene, index in zip(scenes, clouds.REFERENCE_SERIES_INDEX, strict=True):
        b4, b8 = scene[..., 3].astype(np.float64), scene[..., 7].astype(np.float64)
        mine = (b8 - b4) / (b8 + b4)
        err = np.abs(ndvi - mine).mean(axis=(1, 2))
        assert int(np.argmin(err)) == index and err[index] < 1e-6


def test_date_pairs_are_weeks_apart():
    dates = clouds.reference_dates()
    assert [dates[t] for t in (4, 3, 2)] == [dt.date(2015, 7, 11), dt.date(2015, 8, 30), dt.date(2015, 9, 9)]
    assert clouds.date_pairs(dates, [2, 3, 4], 21) == [(2, 4), (3, 4), (4, 2), (4, 3)]  # never 08-30 <-> 09-09
    assert len(clouds.date_pairs(dates, [2, 3, 4], 0)) == 6


def test_feather_ramps_inside_the_mask_only():
    mask = np.zeros((9, 12), bool)
    mask[2:8, 3:11] = True
    w = clouds.feather(mask, 3)
    assert (w[~mask] == 0).all() and (w[mask] > 0).all() and w.max() == 1.0
    assert w[2, 5] == pytest.approx(1 / 3) and w[3, 5] == pytest.approx(2 / 3) and w[5, 6] == 1.0  # 1, 2, 3 px in
    assert np.array_equal(clouds.feather(mask, 1), mask.astype(float))  # radius 1: a hard composite
    assert (clouds.feather(np.ones((4, 4), bool), 3) == 1).all()  # nothing observed: all estimate


def test_composite_keeps_observed_values_bit_for_bit():
    rng = np.random.default_rng(0)
    observed = rng.random((3, 9, 12)).astype(np.float32) * 0.3 + 0.01  # float32 reflectance
    estimate = rng.random((3, 9, 12))
    mask = np.zeros((9, 12), bool)
    mask[2:8, 3:11] = True
    w = clouds.feather(mask, 3)
    out = clouds.composite(observed, estimate, w)
    assert np.array_equal(out[:, ~mask].astype(np.float32), observed[:, ~mask])
    deep = w == 1
    assert np.array_equal(out[:, deep], estimate[:, deep])
    edge = (w > 0) & (w < 1)
    np.testing.assert_allclose(out[:, edge], (w * estimate + (1 - w) * observed)[:, edge])


def test_conformal_quantile_is_the_finite_sample_rank():
    assert conformal_quantile(np.arange(1, 10), 0.9) == 9  # ceil(10 * 0.9) = 9th smallest of 9
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18  # ceil(20 * 0.9) = 18th of 19
    assert conformal_quantile(np.arange(1, 8), 0.9) == np.inf  # 7 scores cannot certify 90 %


def test_calibrated_interval_covers_on_fresh_exchangeable_data():
    """A posterior std that is 2.5x too small, deeper pixels worse: calibration restores ~90 %."""
    rng = np.random.default_rng(1)
    h, w = 60, 60
    mask = np.zeros((h, w), bool)
    mask[10:50, 5:55] = True
    edges = [2.0, 4.0, 8.0]
    depth = distance_groups(mask, edges)

    def draw():
        std = rng.uniform(0.5, 2.0, (2, h, w))
        true_scale = std * 2.5
        true_scale[:, mask] *= (1 + 0.4 * depth)[None]  # deeper inside the cloud: larger errors
        mean = rng.normal(size=(2, h, w))
        return mean + rng.normal(size=(2, h, w)) * true_scale, mean, std

    scores, groups = [], []
    for _ in range(20):
        ref, mean, std = draw()
        scores.append(normalised_scores(ref, mean, std, mask))
        groups.append(distance_groups(mask, edges))
    cal = IntervalCalibration.fit(np.concatenate(scores, 1), np.concatenate(groups), 0.9, edges, {"samples": 8})
    assert len(cal.q) == 2 and len(cal.q[0]) == 4 and cal.q[0][3] > cal.q[0][0]
    ref, mean, std = draw()
    half = cal.half_width(std, mask)
    assert (half[:, ~mask] == 0).all()
    inside = (np.abs(ref - mean) <= half)[:, mask]
    assert 0.88 <= inside.mean() <= 0.92
    for g in range(4):  # and per depth group
        assert 0.85 <= inside[:, depth == g].mean() <= 0.95
    assert (np.abs(ref - mean) <= 1.645 * std)[:, mask].mean() < 0.6  # the raw interval did not


def test_calibration_file_round_trip_and_settings(tmp_path):
    cal = IntervalCalibration(0.9, [[1.5, 2.0], [1.7, 2.5]], [4.0], 1234, {"samples": 8, "nfe": 10}, "test")
    cal.save(tmp_path / "c.json")
    back = IntervalCalibration.load(tmp_path / "c.json")
    assert back == cal
    assert back.mismatches(samples=8, nfe=10) == [] and back.mismatches(samples=2, nfe=10) == [
        "samples=2 (calibrated for 8)"]
    (tmp_path / "bad.json").write_text("{}")
    from scorerecon.errors import InputError

    with pytest.raises(InputError, match="bad.json"):
        IntervalCalibration.load(tmp_path / "bad.json")


def test_residual_coding_round_trips():
    rng = np.random.default_rng(2)
    lo, hi = np.full(3, 0.02), np.full(3, 0.4)
    coding = CloudCoding(lo, hi, residual_scale=4.0)
    clear, base = rng.uniform(0.05, 0.3, (2, 3, 8, 8))
    x = coding.target(clear, base)
    np.testing.assert_allclose(coding.output(x, base), clear, atol=1e-6)
    assert np.array_equal(coding.target(clear, clear), np.zeros_like(x))  # where the base is right: nothing to add
    assert CloudCoding.from_card({"normalization": coding.to_dict()}).residual_scale == 4.0
    plain = CloudCoding(lo, hi)
    np.testing.assert_allclose(plain.output(plain.target(clear, None), None), clear, atol=1e-6)
