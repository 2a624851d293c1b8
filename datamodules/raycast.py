"""Vectorised ray casting of textured planes, boxes and spheres with exact z-depth (pure numpy).

Every pixel casts one ray through its centre (no anti-aliasing), so occlusion edges are sharp and
the depth is exact: **z-depth in metres**, the distance along the optical axis (not along the
ray), ``+inf`` where the ray hits nothing (sky, also beyond the ground's 400 m radius). Shading:
checker-and-noise textures fixed to each surface (they move with their object), a directional
sun with ambient light, no shadows, and distance fog towards the horizon colour.

Conventions: world frame x east, y north, z up (metres). Camera frame as in OpenCV (x right,
y down, z forward); pixel (row i, column j) is centred at (u, v) = (j, i) and projects with
``intrinsics = (fx, fy, cx, cy)``. Object motion is in metres and radians per frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

GROUND_EXTENT_M = 400.0
FOG_DISTANCE_M = 150.0
_SKY_HORIZON = np.array([0.82, 0.86, 0.92])
_SKY_ZENITH = np.array([0.30, 0.48, 0.80])
_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class Texture:
    """Checker pattern modulated by two octaves of value noise, in surface metres."""

    colour_a: np.ndarray  # (3,) RGB in [0, 1]
    colour_b: np.ndarray  # (3,)
    checker_m: float
    noise_m: float
    noise_amplitude: float
    lattice: np.ndarray  # (G, G) noise values in [-1, 1], tiled

    def colour(self, uv: np.ndarray) -> np.ndarray:
        """Albedo (N, 3) at surface coordinates ``uv`` (N, 2) in metres."""
        cells = np.floor(uv / self.checker_m).astype(np.int64)
        odd = ((cells[:, 0] + cells[:, 1]) & 1).astype(bool)
        base = np.where(odd[:, None], self.colour_a, self.colour_b)
        noise = self._noise(uv / self.noise_m) + 0.5 * self._noise(uv / (0.37 * self.noise_m))
        return base * (1.0 + self.noise_amplitude * noise[:, None])

    def _noise(self, grid_uv: np.ndarray) -> np.ndarray:
        size = self.lattice.shape[0]
        corner = np.floor(grid_uv)
        frac = grid_uv - corner
        frac = frac * frac * (3.0 - 2.0 * frac)  # smoothstep between lattice points
        i0 = corner.astype(np.int64) % size
        i1 = (i0 + 1) % size
        top = self.lattice[i0[:, 0], i0[:, 1]] * (1 - frac[:, 1])
        top += self.lattice[i0[:, 0], i1[:, 1]] * frac[:, 1]
        bottom = self.lattice[i1[:, 0], i0[:, 1]] * (1 - frac[:, 1])
        bottom += self.lattice[i1[:, 0], i1[:, 1]] * frac[:, 1]
        return top * (1 - frac[:, 0]) + bottom * frac[:, 0]


@dataclass(frozen=True, eq=False)
class Ground:
    """Horizontal plane at ``height_m``, visible up to ``extent_m`` from the camera."""

    texture: Texture
    height_m: float = 0.0
    extent_m: float = GROUND_EXTENT_M

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, frame: int) -> np.ndarray:
        """Distance t (N,) along unit rays ``origin + t * dirs`` to the hit, +inf for a miss."""
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.height_m - origin[2]) / dirs[:, 2]
        reach = t * np.hypot(dirs[:, 0], dirs[:, 1])
        return np.where((t > _EPS) & (reach <= self.extent_m), t, np.inf)

    def surface(self, points: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Texture coordinates (N, 2) and unit normals (N, 3) at world ``points`` (N, 3)."""
        return points[:, :2], np.broadcast_to(np.array([0.0, 0.0, 1.0]), points.shape)


@dataclass(frozen=True, eq=False)
class Box:
    """Box turned by ``yaw`` about the vertical, moving by ``velocity`` (m/frame)."""

    texture: Texture
    centre: np.ndarray  # (3,) metres at frame 0
    half_size: np.ndarray  # (3,) metres
    yaw: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw_rate: float = 0.0  # rad/frame

    def pose(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Centre (3,) and box-to-world rotation (3, 3) at ``frame``."""
        return self.centre + frame * self.velocity, _rot_z(self.yaw + frame * self.yaw_rate)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, frame: int) -> np.ndarray:
        """Distance (N,) along unit rays to the first hit (slab test), +inf for a miss."""
        centre, rotation = self.pose(frame)
        t = np.full(len(dirs), np.inf)
        _, leave_bound = _sphere_roots(origin, dirs, centre, float(np.linalg.norm(self.half_size)))
        candidates = np.flatnonzero(leave_bound > _EPS)  # rays through the bounding sphere
        local_origin = ((origin - centre) @ rotation)[:, None]  # world -> box frame, (3, 1)
        local_dirs = rotation.T @ dirs[candidates].T  # (M, 3) -> (3, M)
        half = self.half_size[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - local_origin) / local_dirs
            t2 = (half - local_origin) / local_dirs
        entry, leave = np.fmin(t1, t2), np.fmax(t1, t2)
        near = np.fmax(np.fmax(entry[0], entry[1]), entry[2])
        far = np.fmin(np.fmin(leave[0], leave[1]), leave[2])
        t[candidates] = np.where((near <= far) & (near > _EPS), near, np.inf)
        return t

    def surface(self, points: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (N, 2) and face normals (N, 3); the texture moves with the box."""
        centre, rotation = self.pose(frame)
        local = (points - centre) @ rotation
        axis = np.argmax(np.abs(local) / self.half_size, axis=1)
        normals = np.zeros_like(local)
        rows = np.arange(len(local))
        normals[rows, axis] = np.sign(local[rows, axis])
        in_face = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # the two axes spanning the face
        return np.take_along_axis(local, in_face, axis=1), normals @ rotation.T


@dataclass(frozen=True, eq=False)
class Sphere:
    """Sphere moving by ``velocity`` (m/frame)."""

    texture: Texture
    centre: np.ndarray  # (3,) metres at frame 0
    radius: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, frame: int) -> np.ndarray:
        """Distance (N,) along unit rays to the entry point, +inf for a miss."""
        entry, _ = _sphere_roots(origin, dirs, self.centre + frame * self.velocity, self.radius)
        return np.where(entry > _EPS, entry, np.inf)

    def surface(self, points: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude coordinates in metres (N, 2) and outward normals (N, 3)."""
        normals = (points - (self.centre + frame * self.velocity)) / self.radius
        longitude = np.arctan2(normals[:, 1], normals[:, 0])
        colatitude = np.arccos(np.clip(normals[:, 2], -1.0, 1.0))
        return self.radius * np.stack([longitude, colatitude], axis=1), normals


Primitive = Ground | Box | Sphere


def _sphere_roots(
    origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances (N,) along unit rays to a sphere; NaN where a ray misses it."""
    offset = origin - centre
    half_b = dirs @ offset  # unit directions: the quadratic's leading coefficient is 1
    with np.errstate(invalid="ignore"):
        root = np.sqrt(half_b**2 - (offset @ offset - radius**2))
    return -half_b - root, root - half_b


@dataclass(frozen=True, eq=False)
class Scene:
    """Primitives lit by a directional sun (unit vector towards the sun) under a sky."""

    primitives: list[Primitive]
    sun: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.4, 0.866]))


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation (3, 3) for OpenCV camera axes.

    At zero angles the camera looks north (+y) with the image top towards +z. Positive yaw
    turns left, positive pitch looks up, positive roll turns the image clockwise.
    """
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # columns: x, y, z
    cp, sp, cr, sr = math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    pitch_x = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    roll_z = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return _rot_z(yaw) @ level @ pitch_x @ roll_z


@functools.lru_cache(maxsize=8)
def pixel_rays(
    intrinsics: tuple[float, float, float, float], height: int, width: int
) -> np.ndarray:
    """Unit camera-frame ray directions (H*W, 3); the z component converts distance to z-depth.

    Cached per camera; the returned array is read-only.
    """
    fx, fy, cx, cy = intrinsics
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rays = np.stack([(cols - cx) / fx, (rows - cy) / fy, np.ones((height, width))], axis=-1)
    rays = rays.reshape(-1, 3)  # (H, W, 3) -> (H*W, 3)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    rays.flags.writeable = False
    return rays


def render_frame(
    scene: Scene,
    position: np.ndarray,
    rotation: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    height: int,
    width: int,
    frame: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one frame.

    Args:
        scene: What to render.
        position: Camera centre (3,) in world metres.
        rotation: Camera-to-world rotation (3, 3), OpenCV camera axes.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels.
        height: Image height in pixels.
        width: Image width in pixels.
        frame: Frame index, for moving objects.

    Returns:
        RGB (H, W, 3) uint8 and z-depth (H, W) float32 in metres, +inf where nothing is hit.
    """
    camera_rays = pixel_rays(tuple(map(float, intrinsics)), height, width)  # (H*W, 3), unit
    dirs = camera_rays @ rotation.T  # world frame
    distance = np.full(len(dirs), np.inf)  # metres along each ray
    owner = np.full(len(dirs), len(scene.primitives))  # index of the primitive hit; P = sky
    for index, primitive in enumerate(scene.primitives):
        t = primitive.intersect(position, dirs, frame)
        closer = t < distance
        np.copyto(distance, t, where=closer)
        np.copyto(owner, index, where=closer)
    order = np.argsort(owner, kind="stable")  # pixels grouped by what they see
    counts = np.bincount(owner, minlength=len(scene.primitives) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    rgb = np.empty((len(dirs), 3))
    for index, primitive in enumerate(scene.primitives):
        mine = order[starts[index] : starts[index + 1]]
        if mine.size == 0:
            continue
        points = position + distance[mine, None] * dirs[mine]
        uv, normals = primitive.surface(points, frame)
        light = 0.35 + 0.65 * np.clip(normals @ scene.sun, 0.0, None)
        fog = 1.0 - np.exp(-distance[mine, None] / FOG_DISTANCE_M)
        lit = primitive.texture.colour(uv) * light[:, None]
        rgb[mine] = lit * (1.0 - fog) + _SKY_HORIZON * fog
    sky = order[starts[-2] :]
    elevation = np.clip(dirs[sky, 2], 0.0, 1.0)[:, None]
    rgb[sky] = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * np.sqrt(elevation)
    rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(height, width, 3)
    z_depth = distance * camera_rays[:, 2]  # along the optical axis; inf stays inf
    return rgb, z_depth.astype(np.float32).reshape(height, width)
