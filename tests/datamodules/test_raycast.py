"""Tests of the ray caster: z-depth against analytic geometry, sky, motion, sharp edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datamodules.raycast import Box, Ground, Scene, Sphere, Texture, camera_rotation, render_frame

HEIGHT, WIDTH = 71, 127  # odd sizes: the centre pixel lies on the optical axis
INTRINSICS = (90.0, 90.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)
CENTRE = (HEIGHT // 2, WIDTH // 2)


def plain_texture() -> Texture:
    return Texture(
        colour_a=np.array([0.8, 0.5, 0.3]),
        colour_b=np.array([0.3, 0.2, 0.1]),
        checker_m=0.5,
        noise_m=0.2,
        noise_amplitude=0.2,
        lattice=np.random.default_rng(0).uniform(-1, 1, (32, 32)),
    )


def wall_facing_camera(distance_m: float, yaw: float = 0.0) -> Box:
    """A wide wall whose near face is ``distance_m`` in front of a camera at the origin."""
    thickness = 0.2
    normal = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    return Box(
        plain_texture(),
        centre=(distance_m + thickness / 2) * normal + np.array([0.0, 0.0, 1.5]),
        half_size=np.array([200.0, thickness / 2, 50.0]),
        yaw=yaw,
    )


@pytest.mark.parametrize(("distance_m", "yaw"), [(5.0, 0.0), (37.25, 0.0), (12.5, 2.1)])
def test_fronto_parallel_wall_has_its_distance_as_depth(distance_m: float, yaw: float) -> None:
    scene = Scene([wall_facing_camera(distance_m, yaw)])
    rgb, depth = render_frame(
        scene, np.array([0.0, 0.0, 1.5]), camera_rotation(yaw), INTRINSICS, HEIGHT, WIDTH
    )
    assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
    assert depth.dtype == np.float32
    assert depth[CENTRE] == pytest.approx(distance_m, rel=1e-4)
    np.testing.assert_allclose(depth, distance_m, rtol=1e-5)  # z-depth: constant on the plane


@pytest.mark.parametrize("pitch_down", [0.0, 0.2])
def test_ground_depth_follows_camera_height_over_tangent(pitch_down: float) -> None:
    height_m = 1.6
    scene = Scene([Ground(plain_texture(), extent_m=1e6)])
    position = np.array([3.0, -2.0, height_m])
    _, depth = render_frame(
        scene, position, camera_rotation(0.7, -pitch_down), INTRINSICS, HEIGHT, WIDTH
    )
    fy, cy = INTRINSICS[1], INTRINSICS[3]
    slope = (np.arange(HEIGHT) - cy) / fy  # tangent of the ray angle below the optical axis
    # the ray (x, y, 1) in camera axes descends y cos(p) + sin(p) per metre of z-depth
    descent = slope * math.cos(pitch_down) + math.sin(pitch_down)
    below = descent > 0
    expected = height_m / descent[below]
    np.testing.assert_allclose(depth[below], np.repeat(expected[:, None], WIDTH, 1), rtol=1e-5)
    assert np.isposinf(depth[~below]).all()  # rays at or above the horizon see sky
    assert below.sum() < HEIGHT  # the horizon is in view


def test_ground_ends_at_its_extent() -> None:
    extent_m = 20.0
    scene = Scene([Ground(plain_texture(), extent_m=extent_m)])
    _, depth = render_frame(
        scene, np.array([0.0, 0.0, 1.0]), camera_rotation(0.0), INTRINSICS, HEIGHT, WIDTH
    )
    fx, fy, cx, cy = INTRINSICS
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    with np.errstate(divide="ignore"):
        z_depth = np.where(rows > cy, fy / (rows - cy), np.inf)  # camera 1 m above the ground
    reach = z_depth * np.hypot(1.0, (cols - cx) / fx)  # horizontal distance to the hit
    clear = np.abs(reach - extent_m) > 1e-3
    np.testing.assert_array_equal(np.isfinite(depth)[clear], (reach <= extent_m)[clear])
    assert np.isfinite(depth).any() and np.isposinf(depth[rows > cy]).any()


def test_sphere_on_the_axis_is_at_distance_minus_radius() -> None:
    sphere = Sphere(plain_texture(), centre=np.array([0.0, 8.0, 1.5]), radius=1.25)
    _, depth = render_frame(
        Scene([sphere]), np.array([0.0, 0.0, 1.5]), camera_rotation(0.0), INTRINSICS, HEIGHT, WIDTH
    )
    assert depth[CENTRE] == pytest.approx(8.0 - 1.25, rel=1e-5)
    assert np.isposinf(depth[0, 0])


def test_moving_object_changes_its_pixel_mask_in_the_direction_of_motion() -> None:
    sphere = Sphere(
        plain_texture(),
        centre=np.array([0.0, 8.0, 1.5]),
        radius=1.0,
        velocity=np.array([0.3, 0.0, 0.0]),  # east = image right for a camera facing north
    )
    masks = []
    for frame in (0, 3):
        _, depth = render_frame(
            Scene([sphere]),
            np.array([0.0, 0.0, 1.5]),
            camera_rotation(0.0),
            INTRINSICS,
            HEIGHT,
            WIDTH,
            frame,
        )
        masks.append(np.isfinite(depth))
    assert (masks[0] != masks[1]).sum() > 50
    columns = np.arange(WIDTH)
    centroid = [float((mask * columns).sum() / mask.sum()) for mask in masks]
    assert centroid[1] - centroid[0] == pytest.approx(90.0 * 0.9 / 8.0, rel=0.05)


def test_occlusion_edges_are_sharp() -> None:
    block = Box(
        plain_texture(), centre=np.array([0.0, 4.5, 1.5]), half_size=np.array([0.6, 0.5, 0.6])
    )
    scene = Scene([wall_facing_camera(10.0), block])
    _, depth = render_frame(
        scene, np.array([0.0, 0.0, 1.5]), camera_rotation(0.0), INTRINSICS, HEIGHT, WIDTH
    )
    values = np.unique(depth.round(4))
    np.testing.assert_allclose(values, [4.0, 10.0], rtol=1e-5)  # nothing in between
    assert (depth < 5).sum() == pytest.approx((2 * 0.6 * 90 / 4.0) ** 2, rel=0.1)


def test_shading_differs_between_checker_squares_and_sky_is_blue() -> None:
    scene = Scene([Ground(plain_texture())])
    rgb, depth = render_frame(
        scene, np.array([0.0, 0.0, 1.5]), camera_rotation(0.0), INTRINSICS, HEIGHT, WIDTH
    )
    sky = rgb[np.isposinf(depth)].astype(float)
    assert (sky[:, 2] > sky[:, 0]).all()
    assert rgb[np.isfinite(depth)].std() > 10
