"""Synthetic multi-view groups with real parallax, textured with natural photographs.

A scene is a far fronto-parallel background plane plus several planar objects (rectangles and
star-shaped polygons, some slanted) cut out of natural photographs (``textures.TextureBank``).
Each object lives in its own slab of depth (the slabs split inverse depth evenly), so drawing the
planes far to near (painter's algorithm) gives exact occlusions from any camera in front of the
scene. A plane maps texel (s, t) to the world point ``origin + s*axis_u + t*axis_v``; camera
``K[R|t]`` sees it through the plane-induced homography ``K [R axis_u | R axis_v | R origin + t]``,
and ``cv2.warpPerspective`` (bilinear) renders it over the bounding box of its projection,
alpha-blended so outlines are anti-aliased. Ground-truth depth is exact: a plane's inverse depth
is affine in pixel coordinates.

Cameras are pinholes (OpenCV axes: x right, y down, z forward) on a rig: a horizontal row
(stereo) or a grid, ``baseline`` apart, with small mounting rotations and offsets. A sequence
moves the whole rig slowly through the same scene. Each camera has its own sensor: exposure
gain, white balance (colour temperature), gamma, optional slight blur, shot and read noise.

Everything is reproducible from an integer seed; the output also depends on the texture set.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .textures import TextureBank
from .transforms import ViewKey, split_key, views_to_tensor

LAYOUTS = ("horizontal", "grid")


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: world point X projects to ``K (R X + t)``."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """Optical centre in world coordinates."""
        return -self.R.T @ self.t

    @property
    def focal(self) -> float:
        """Horizontal focal length in pixels."""
        return float(self.K[0, 0])

    @cached_property
    def K_inv(self) -> np.ndarray:
        """Inverse of the (upper-triangular) intrinsic matrix."""
        return _inverse_intrinsics(self.K)


def _inverse_intrinsics(K: np.ndarray) -> np.ndarray:
    """Closed-form inverse of ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` (no LAPACK call)."""
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    return np.array([[1 / fx, -skew / (fx * fy), (skew * cy - cx * fy) / (fx * fy)],
                     [0.0, 1 / fy, -cy / fy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class TexturedPlane:
    """A planar patch: texel (s, t) of ``texture`` lies at ``origin + s*axis_u + t*axis_v``.

    ``texture`` is RGBA uint8 (not premultiplied). Alpha cuts the shape out of the photograph;
    a 1-texel border of alpha 0 repeats the edge colours, so the bilinear warp fades the outline
    out without dark fringes.
    """

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    texture: np.ndarray

    @classmethod
    def from_centre(cls, centre: np.ndarray, half_u: np.ndarray, half_v: np.ndarray,
                    texture: np.ndarray) -> TexturedPlane:
        """Plane whose texture, less its border texel, spans ``centre +- half_u +- half_v``."""
        rows, cols = texture.shape[0] - 2, texture.shape[1] - 2
        axis_u, axis_v = 2 * half_u / cols, 2 * half_v / rows
        origin = centre - half_u - half_v - (axis_u + axis_v) / 2
        return cls(origin, axis_u, axis_v, texture)

    @cached_property
    def normal(self) -> np.ndarray:
        """Unit normal, pointing towards the cameras (negative z)."""
        (ux, uy, uz), (vx, vy, vz) = self.axis_u, self.axis_v
        normal = np.array([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx])
        normal /= math.sqrt(normal @ normal)
        return normal if normal[2] < 0 else -normal

    @cached_property
    def texel_corners(self) -> np.ndarray:
        """The texture rectangle's outer corners in texel coordinates, (4, 2)."""
        rows, cols = self.texture.shape[:2]
        return np.array([[-0.5, -0.5], [cols - 0.5, -0.5], [cols - 0.5, rows - 0.5], [-0.5, rows - 0.5]])

    @cached_property
    def corners(self) -> np.ndarray:
        """The texture rectangle's four world corners, (4, 3)."""
        st = self.texel_corners
        return self.origin + st[:, :1] * self.axis_u + st[:, 1:] * self.axis_v

    def homography(self, camera: Camera) -> np.ndarray:
        """3x3 map from texel coordinates to the camera's pixel coordinates."""
        columns = (camera.R @ self.axis_u, camera.R @ self.axis_v, camera.R @ self.origin + camera.t)
        return camera.K @ np.column_stack(columns)

    def inverse_depth_coefficients(self, camera: Camera) -> np.ndarray:
        """(a, b, c) with 1/Z = a*x + b*y + c at pixel (x, y) of the camera."""
        normal = camera.R @ self.normal
        distance = normal @ (camera.R @ self.origin + camera.t)
        return camera.K_inv.T @ normal / distance


@dataclass(frozen=True)
class SensorProfile:
    """One camera's photometric response, applied to a rendered uint8 image.

    ``v = 255 * (x/255 * gain * white_balance) ** gamma`` (clipped), then a Gaussian blur of
    ``blur_sigma`` pixels (0: none), then noise of variance ``read_noise**2 + shot_noise * v``
    (8-bit levels), rounded.
    """

    gain: float
    white_balance: tuple[float, float, float]
    gamma: float
    blur_sigma: float
    read_noise: float
    shot_noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator, blur_probability: float = 0.3) -> SensorProfile:
        """Draw a profile: +-25 % exposure, +-8 % red/blue balance, gamma 0.85-1.15, noise."""
        temperature, tint = rng.uniform(-0.08, 0.08), rng.uniform(-0.02, 0.02)
        blurred = rng.random() < blur_probability
        return cls(
            gain=float(np.exp(rng.uniform(-0.25, 0.25))),
            white_balance=(1.0 + temperature, 1.0 + tint, 1.0 - temperature),
            gamma=float(rng.uniform(0.85, 1.15)),
            blur_sigma=float(rng.uniform(0.3, 0.9)) if blurred else 0.0,
            read_noise=float(rng.uniform(0.5, 2.0)),
            shot_noise=float(rng.uniform(0.0, 0.04)),
        )

    def apply(self, image: np.ndarray, noise: torch.Generator) -> np.ndarray:
        """Turn a rendered HxWx3 uint8 image into this sensor's HxWx3 uint8 image."""
        levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
        curve = np.clip(levels * self.gain * np.asarray(self.white_balance), 0.0, 1.0) ** self.gamma
        out = cv2.LUT(image, np.round(curve * 255.0).astype(np.uint8)[None])
        if self.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), self.blur_sigma)
        sigma = np.sqrt(self.read_noise**2 + self.shot_noise * np.arange(256, dtype=np.float32))
        noisy = torch.randn(out.shape, generator=noise).numpy()
        noisy *= sigma[out]
        noisy += out
        noisy += 0.5
        return np.clip(noisy, 0.0, 255.0, out=noisy).astype(np.uint8)


@dataclass(eq=False)
class MultiViewSample:
    """One rendered group.

    Attributes:
        views: HxWx3 uint8 RGB images, one per camera.
        depths: HxW float32 ground-truth depth (z in the camera frame, metres).
        labels: HxW uint8 index into ``planes`` of the surface seen at each pixel (0: background).
        cameras: the cameras, in view order.
        planes: the scene's planes, far to near (``planes[0]`` is the background).
    """

    views: list[np.ndarray]
    depths: list[np.ndarray]
    labels: list[np.ndarray]
    cameras: list[Camera]
    planes: list[TexturedPlane]


def render_view(planes: Sequence[TexturedPlane], camera: Camera, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render planes ordered far to near into one camera (painter's algorithm).

    Returns:
        (HxWx3 uint8 image, float32 HxW depth, uint8 HxW plane index); a pixel is assigned to a
        plane where that plane's coverage is at least one half. Pixels no plane covers are
        black, with depth ``inf`` and index 0.
    """
    image = np.zeros((height, width, 3), np.uint8)
    depth = np.full((height, width), np.inf, np.float32)
    labels = np.zeros((height, width), np.uint8)
    for index, plane in enumerate(planes):
        if np.any((plane.corners @ camera.R.T + camera.t)[:, 2] <= 0):
            raise ValueError(f"plane {index} reaches behind the camera at {camera.centre}")
        homography = plane.homography(camera)
        corners = cv2.perspectiveTransform(plane.texel_corners[None], homography)[0]
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, (width, height))
        if x0 >= x1 or y0 >= y1:
            continue
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        warped = cv2.warpPerspective(plane.texture, shift @ homography, (int(x1 - x0), int(y1 - y0)),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        coverage = warped[..., 3].astype(np.float32)
        coverage *= 1 / 255
        region = image[y0:y1, x0:x1]
        cv2.blendLinear(warped[..., :3], region, coverage, 1.0 - coverage, dst=region)
        covered = warped[..., 3] >= 128
        a, b, c = plane.inverse_depth_coefficients(camera).astype(np.float32)
        inverse = a * np.arange(x0, x1, dtype=np.float32) + (b * np.arange(y0, y1, dtype=np.float32)
                                                              + c)[:, None]
        np.copyto(depth[y0:y1, x0:x1], np.reciprocal(inverse, out=inverse), where=covered)
        np.copyto(labels[y0:y1, x0:x1], index, where=covered)
    return image, depth, labels


def _rotation(rotation_vector: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (radians)."""
    return cv2.Rodrigues(np.asarray(rotation_vector, np.float64))[0]


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about axis 0 (x), 1 (y) or 2 (z)."""
    return _rotation(np.eye(3)[axis] * angle)


def _cut_out(patch: np.ndarray, rng: np.random.Generator, polygon_probability: float) -> np.ndarray:
    """RGBA texture with a 1-texel transparent border: the (maybe mirrored) patch as a rectangle,
    or a random star-shaped polygon cut out of it."""
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    rows, cols = patch.shape[:2]
    alpha = np.zeros((rows + 2, cols + 2), np.uint8)
    if rng.random() < polygon_probability:
        count = int(rng.integers(3, 9))
        angles = ((np.arange(count) + rng.uniform(-0.3, 0.3, count)) * (2 * np.pi / count)
                  + rng.uniform(0, 2 * np.pi))
        radii = rng.uniform(0.6, 1.0, count)
        unit = np.column_stack((1 + radii * np.cos(angles), 1 + radii * np.sin(angles))) / 2
        points = np.round((unit * (cols - 1, rows - 1) + 1) * 16).astype(np.int32)
        cv2.fillPoly(alpha, [points], 255, lineType=cv2.LINE_AA, shift=4)
    else:
        alpha[1:-1, 1:-1] = 255
    rgba = cv2.copyMakeBorder(cv2.cvtColor(patch, cv2.COLOR_RGB2RGBA), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    rgba[..., 3] = alpha
    return rgba


class SyntheticRig:
    """A multi-camera rig that renders synthetic planar scenes textured with natural photographs.

    Args:
        num_views: cameras on the rig.
        height, width: image size in pixels.
        baseline: spacing of neighbouring cameras in metres, or a (low, high) range drawn per
            scene.
        layout: ``"horizontal"`` (a row: stereo for two views) or ``"grid"`` (ceil(sqrt(V))
            columns, rows of the same spacing).
        hfov_deg: horizontal field of view; focal length ``f = width / (2 tan(hfov / 2))``.
        max_rotation_deg: per-camera mounting rotation, uniform in +-this about each axis.
        position_jitter: per-camera mounting offset, uniform in +-this fraction of the baseline.
        num_objects: (low, high) count of planar objects per scene.
        slanted_fraction: probability that an object is slanted (20-60 degrees, or less when its
            depth slab is thin).
        polygon_fraction: probability that an object is a polygon rather than a rectangle.
        depth_range: (near, far) depths of the objects in metres; the background lies 1.5-3x
            farther than ``far``.
        blur_probability: probability that a camera's sensor slightly blurs.
        motion_per_frame: rig displacement per sequence frame, metres.
        textures: the photographs; default ``TextureBank.default()`` (bundled photographs plus
            the ``fetch_textures.sh`` cache when present).
    """

    def __init__(self, num_views: int = 3, height: int = 256, width: int = 256, *,
                 baseline: float | tuple[float, float] = (0.1, 0.3), layout: str = "horizontal",
                 hfov_deg: float = 60.0, max_rotation_deg: float = 1.0,
                 position_jitter: float = 0.03, num_objects: tuple[int, int] = (3, 8),
                 slanted_fraction: float = 0.4, polygon_fraction: float = 0.3,
                 depth_range: tuple[float, float] = (1.5, 12.0), blur_probability: float = 0.3,
                 motion_per_frame: float = 0.02, textures: TextureBank | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        if num_views < 1 or not 0 < depth_range[0] < depth_range[1]:
            raise ValueError(f"bad rig: num_views={num_views}, depth_range={depth_range}")
        self.num_views = num_views
        self.height = height
        self.width = width
        self.baseline = (baseline, baseline) if isinstance(baseline, (int, float)) else tuple(baseline)
        self.layout = layout
        self.max_rotation = math.radians(max_rotation_deg)
        self.position_jitter = position_jitter
        self.num_objects = num_objects
        self.slanted_fraction = slanted_fraction
        self.polygon_fraction = polygon_fraction
        self.depth_range = depth_range
        self.blur_probability = blur_probability
        self.motion_per_frame = motion_per_frame
        self.textures = textures if textures is not None else TextureBank.default()
        focal = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        self.K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2],
                           [0.0, 0.0, 1.0]])

    def grid_positions(self) -> np.ndarray:
        """Camera positions on the rig in units of the baseline, (V, 3), centred on the origin."""
        if self.layout == "horizontal":
            columns, rows = np.arange(self.num_views, dtype=float), np.zeros(self.num_views)
            columns -= columns.mean()
        else:
            per_row = math.ceil(math.sqrt(self.num_views))
            rows, columns = np.divmod(np.arange(self.num_views, dtype=float), per_row)
            columns -= (per_row - 1) / 2
            rows -= (math.ceil(self.num_views / per_row) - 1) / 2
        return np.column_stack((columns, rows, np.zeros(self.num_views)))

    def sequence(self, seed: int, num_frames: int = 1) -> SyntheticSequence:
        """One scene and the rig's slow path through it, ``num_frames`` frames long."""
        return SyntheticSequence(self, seed, num_frames)

    def render_group(self, seed: int, views: Sequence[int] | None = None) -> MultiViewSample:
        """Render one group (all cameras, or ``views`` in that order) of the scene of ``seed``."""
        return self.sequence(seed).render(0, views)


class SyntheticSequence:
    """One random scene seen by a rig moving slowly along a straight path with a slow turn.

    The world frame is the rig's frame at the middle frame; each object is placed in view of
    the rig at a random frame, so objects are spread along the path. Scene, mounting errors and
    sensor profiles are drawn once from ``seed``; the noise of each (frame, view) has its own
    stream, so rendering a subset of views gives the same images as rendering all of them.
    """

    def __init__(self, rig: SyntheticRig, seed: int, num_frames: int = 1) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.rig = rig
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        self.rig_poses: list[tuple[np.ndarray, np.ndarray]] = []  # (rig-to-world rotation, centre)
        self.cameras = self._camera_path(rng, num_frames)
        self.planes = self._scene(rng)
        self.sensors = [SensorProfile.sample(rng, rig.blur_probability) for _ in range(rig.num_views)]

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[MultiViewSample]:
        return (self.render(frame) for frame in range(len(self)))

    def render(self, frame: int = 0, views: Sequence[int] | None = None) -> MultiViewSample:
        """Render ``frame`` for all cameras, or for ``views`` in that order."""
        views = range(self.rig.num_views) if views is None else views
        sample = MultiViewSample([], [], [], [], self.planes)
        for view in views:
            camera = self.cameras[frame][view]
            image, depth, labels = render_view(self.planes, camera, self.rig.height, self.rig.width)
            noise_seed = np.random.SeedSequence([self.seed, 1, frame, view]).generate_state(1)[0]
            noise = torch.Generator().manual_seed(int(noise_seed))
            sample.views.append(self.sensors[view].apply(image, noise))
            sample.depths.append(depth)
            sample.labels.append(labels)
            sample.cameras.append(camera)
        return sample

    def _camera_path(self, rng: np.random.Generator, num_frames: int) -> list[list[Camera]]:
        """Cameras of every frame: fixed mounting on the rig, rig moving sideways and turning."""
        rig = self.rig
        baseline = rng.uniform(*rig.baseline)
        offsets = (rig.grid_positions() + rng.uniform(-rig.position_jitter, rig.position_jitter,
                                                      (rig.num_views, 3))) * baseline
        mounts = [_rotation(rng.uniform(-rig.max_rotation, rig.max_rotation, 3))
                  for _ in range(rig.num_views)]
        direction = rng.normal(size=3) * (1.0, 0.3, 0.0)
        velocity = rig.motion_per_frame * direction / np.linalg.norm(direction)
        yaw_rate, pitch_rate = np.radians(rng.uniform(-0.15, 0.15)), np.radians(rng.uniform(-0.05, 0.05))
        path = []
        for frame in range(num_frames):
            step = frame - (num_frames - 1) / 2
            rig_rotation = _axis_rotation(1, yaw_rate * step) @ _axis_rotation(0, pitch_rate * step)
            rig_centre = velocity * step
            self.rig_poses.append((rig_rotation, rig_centre))
            cameras = []
            for offset, mount in zip(offsets, mounts):
                to_world = rig_rotation @ mount
                centre = rig_centre + rig_rotation @ offset
                cameras.append(Camera(rig.K, to_world.T, -to_world.T @ centre))
            path.append(cameras)
        return path

    def _scene(self, rng: np.random.Generator) -> list[TexturedPlane]:
        """Background plus objects, far to near; object k owns the k-th slab of inverse depth."""
        rig = self.rig
        near, far = rig.depth_range
        count = int(rng.integers(rig.num_objects[0], rig.num_objects[1] + 1))
        if count > 254:
            raise ValueError(f"at most 254 objects fit the uint8 labels, got {count}")
        inverse_edges = np.linspace(1.0 / near, 1.0 / far, count + 1)
        planes = [self._background(rng, far * rng.uniform(1.5, 3.0))]
        for k in reversed(range(count)):
            planes.append(self._object(rng, 1.0 / inverse_edges[k], 1.0 / inverse_edges[k + 1]))
        return planes

    def _background(self, rng: np.random.Generator, z: float) -> TexturedPlane:
        """Fronto-parallel plane at depth ``z`` covering every camera of every frame."""
        rig = self.rig
        pixels = np.array([[-1.0, -1.0, 1.0], [rig.width, -1.0, 1.0], [-1.0, rig.height, 1.0],
                           [rig.width, rig.height, 1.0]])
        hits = []
        for camera in (cam for frame in self.cameras for cam in frame):
            rays = pixels @ camera.K_inv.T @ camera.R
            hits.append(camera.centre + rays * ((z - camera.centre[2]) / rays[:, 2:]))
        hits = np.concatenate(hits)
        low, high = hits[:, :2].min(axis=0), hits[:, :2].max(axis=0)
        size = (high - low) * rig.K[0, 0] / z
        texture = _cut_out(rig.textures.sample_patch(rng, size[1], size[0]), rng, 0.0)
        half = (high - low) / 2
        return TexturedPlane.from_centre(np.array([*(low + half), z]), np.array([half[0], 0.0, 0.0]),
                                         np.array([0.0, half[1], 0.0]), texture)

    def _object(self, rng: np.random.Generator, z_low: float, z_high: float) -> TexturedPlane:
        """A random rectangle or polygon, maybe slanted, whose depths stay in [z_low, z_high]."""
        rig = self.rig
        focal = rig.K[0, 0]
        half_pixels = min(rig.height, rig.width) * np.exp(rng.uniform(np.log(0.06), np.log(0.3)))
        aspect = np.exp(rng.uniform(-np.log(2.0), np.log(2.0)))
        scale = (z_low + z_high) / 2 / focal
        half_u, half_v = half_pixels * np.sqrt(aspect) * scale, half_pixels / np.sqrt(aspect) * scale
        orientation = _axis_rotation(2, np.radians(rng.uniform(-15.0, 15.0)))
        if rng.random() < rig.slanted_fraction:
            axis, sign = (1 if rng.random() < 0.6 else 0), rng.choice((-1.0, 1.0))
            edge_on = _axis_rotation(axis, np.pi / 2) @ orientation
            reach = half_u * abs(edge_on[2, 0]) + half_v * abs(edge_on[2, 1])
            limit = math.asin(min(1.0, 0.9 * (z_high - z_low) / 2 / reach))
            angle = sign * min(np.radians(rng.uniform(20.0, 60.0)), limit)
            orientation = _axis_rotation(axis, angle) @ orientation
        reach = half_u * abs(orientation[2, 0]) + half_v * abs(orientation[2, 1])
        z = rng.uniform(z_low + reach, z_high - reach)
        pixel = (rng.uniform(-0.1, 1.1) * rig.width, rng.uniform(-0.1, 1.1) * rig.height, 1.0)
        rig_rotation, rig_centre = self.rig_poses[int(rng.integers(len(self.rig_poses)))]
        ray = rig_rotation @ _inverse_intrinsics(rig.K) @ pixel
        centre = rig_centre + ray * (z - rig_centre[2]) / ray[2]
        patch = rig.textures.sample_patch(rng, 2 * half_v * focal / z, 2 * half_u * focal / z)
        return TexturedPlane.from_centre(centre, half_u * orientation[:, 0], half_v * orientation[:, 1],
                                         _cut_out(patch, rng, rig.polygon_fraction))


class SyntheticMultiViewDataset(Dataset):
    """Synthetic groups as (V, 3, H, W) float tensors in [0, 1], rendered on demand.

    Item ``i`` shows scene ``i // frames_per_scene`` at frame ``i % frames_per_scene`` of the
    rig's path through it (``frames_per_scene=1``: independent groups; more: a camera replay
    of slowly moving views). Items are reproducible from ``seed`` and ``i`` in any worker. An
    index may also be a key ``(i, view_ids)`` from ``transforms.AdaptiveViewBatchSampler``.

    Args:
        rig: the rig that renders the groups.
        length: number of items.
        seed: dataset seed; scene seeds derive from it and the scene index.
        frames_per_scene: frames of each scene's sequence.
    """

    def __init__(self, rig: SyntheticRig, length: int, *, seed: int = 0,
                 frames_per_scene: int = 1) -> None:
        self.rig = rig
        self.length = length
        self.seed = seed
        self.frames_per_scene = frames_per_scene

    def __len__(self) -> int:
        return self.length

    def scene_seed(self, scene_index: int) -> int:
        """Seed of a scene, derived from the dataset seed."""
        return int(np.random.SeedSequence([self.seed, scene_index]).generate_state(1)[0])

    def __getitem__(self, key: ViewKey) -> torch.Tensor:
        index, views = split_key(key)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        scene, frame = divmod(index, self.frames_per_scene)
        sample = self.rig.sequence(self.scene_seed(scene), self.frames_per_scene).render(frame, views)
        return views_to_tensor(sample.views)
