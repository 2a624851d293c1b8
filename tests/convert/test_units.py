"""Tests of datamodules.convert.units: metres, sky and invalid pixels, disparity, intrinsics."""

from __future__ import annotations

import numpy as np

from datamodules.convert.units import (
    SKY_DEPTH_M,
    disparity_to_depth,
    metric_depth,
    pinhole_intrinsics,
)


def test_metric_depth_marks_sky_and_invalid() -> None:
    raw = np.array([[2.5, 0.0, -1.0], [np.nan, np.inf, 1500.0], [70000.0, 3.0, 4.0]])
    sky = np.zeros((3, 3), dtype=bool)
    sky[2, 2] = True
    depth = metric_depth(raw, sky=sky, sky_beyond_m=1000.0)
    assert depth.dtype == np.float32
    assert depth[0, 0] == 2.5 and depth[2, 1] == 3.0
    assert np.isnan(depth[0, 1]) and np.isnan(depth[0, 2]) and np.isnan(depth[1, 0])
    assert np.isposinf(depth[1, 1]) and np.isposinf(depth[1, 2]) and np.isposinf(depth[2, 2])
    assert np.isposinf(depth[2, 0])
    assert np.isposinf(metric_depth(np.array([70000.0]))[0])  # beyond float16: sky by default
    assert metric_depth(np.array([1500.0]))[0] == 1500.0


def test_pixels_marked_invalid_stay_invalid_even_beyond_the_sky_threshold() -> None:
    raw = np.array([np.inf, 2e4, 5.0, 1e-6, np.nan])
    depth = metric_depth(raw, invalid=np.isinf(raw) | (raw < 1e-5), sky_beyond_m=SKY_DEPTH_M)
    assert np.isnan(depth[0]) and np.isposinf(depth[1]) and depth[2] == 5.0
    assert np.isnan(depth[3]) and np.isnan(depth[4])
    labels = np.array([True, False, False, False, True])
    depth = metric_depth(raw, sky=labels, invalid=np.isinf(raw))
    assert np.isposinf(depth[0]) and np.isposinf(depth[4])  # a sky label wins over invalid
    assert depth[1] == 2e4 and depth[3] == np.float32(1e-6)  # default: sky beyond float16 only
    assert metric_depth(np.array([1e30]), sky_beyond_m=np.inf)[0] == np.float32(1e30)


def test_disparity_gives_metres_with_sky_at_zero_and_invalid_below() -> None:
    disparity = np.array([2.0, 0.0, -0.0, -1.0, np.nan, np.inf, 1e-6], dtype=np.float64)
    depth = disparity_to_depth(disparity, fx=20.0, baseline_m=0.5, sky_beyond_m=SKY_DEPTH_M)
    assert depth.dtype == np.float32 and depth[0] == 5.0  # 20 * 0.5 / 2 m
    assert np.isposinf(depth[1]) and np.isposinf(depth[2]) and np.isposinf(depth[6])  # 10^7 m
    assert np.isnan(depth[3]) and np.isnan(depth[4]) and np.isnan(depth[5])
    float32 = disparity_to_depth(np.array([3.0, 1e-6], np.float32), fx=1000.0, baseline_m=0.065)
    assert float32[0] == np.float32(np.float32(1000.0 * 0.065) / np.float32(3.0))
    assert np.isposinf(float32[1])  # 6.5e7 m is beyond float16: sky by default


def test_pinhole_intrinsics_read_fx_fy_cx_cy() -> None:
    k = np.array([[18.0, 0.0, 7.5], [0.0, 19.0, 5.5], [0.0, 0.0, 1.0]])
    assert pinhole_intrinsics(k) == [18.0, 19.0, 7.5, 5.5]
    assert all(type(v) is float for v in pinhole_intrinsics(k))
