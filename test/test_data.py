"""Tests of parahydra_ros.data: folder layouts and splits, aligned transforms, view-count
sampling, and the synthetic multi-view generator's reproducibility, parallax and photometry."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from parahydra_ros.data import (
    AdaptiveViewBatchSampler,
    CropCityscapesArtefacts,
    MinimalCrop,
    MultiViewFolderDataset,
    RandomCrop,
    RandomFlip,
    RandomViewSwap,
    SyntheticMultiViewDataset,
    SyntheticRig,
    TextureBank,
    default_texture_dir,
    discover_groups,
    find_textures,
    ldmic_transform,
    load_textures,
)
from parahydra_ros.data.training import TrainingBatches


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


@pytest.fixture(scope="module")
def bank() -> TextureBank:
    """scikit-image's bundled photographs only, so results do not depend on a local cache."""
    return TextureBank.from_dirs([])


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _image(seed: int, height: int = 8, width: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- folder layouts

def test_group_folders_sorted_and_loaded(tmp_path: Path) -> None:
    images = {}
    for g, group in enumerate(("b_group", "a_group")):
        for v, view in enumerate(("right", "cam0", "left")):
            images[group, view] = _image(10 * g + v)
            _write(tmp_path / group / f"{view}.png", images[group, view])
    _write(tmp_path / "a_group" / "extra" / "disparity.png", _image(99))
    (tmp_path / "empty").mkdir()

    dataset = MultiViewFolderDataset(tmp_path)
    assert [g.name for g in dataset.groups] == ["a_group", "b_group"]
    assert dataset.groups[0].view_names == ("cam0", "left", "right")
    sample = dataset[1]
    assert sample.shape == (3, 3, 8, 12) and sample.dtype == torch.float32
    expected = torch.from_numpy(images["b_group", "left"]).permute(2, 0, 1).float() / 255
    assert torch.equal(sample[1], expected)

    chosen = MultiViewFolderDataset(tmp_path, views=("right", "cam0"))
    assert torch.equal(chosen[0][0], dataset[0][2])
    assert torch.equal(dataset[(0, [2, 0])], chosen[0])
    with pytest.raises(FileNotFoundError, match="lacks views"):
        MultiViewFolderDataset(tmp_path, views=("top",))


def test_group_of_mixed_sizes_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "g" / "a.png", _image(0))
    _write(tmp_path / "g" / "b.png", _image(1, 9, 12))
    with pytest.raises(ValueError, match="mixes image sizes"):
        MultiViewFolderDataset(tmp_path)[0]


def test_instereo2k_splits(tmp_path: Path) -> None:
    for folder in ("train/part1/000", "train/part1/001", "train/part2/000", "test/007"):
        for view in ("left", "right"):
            _write(tmp_path / folder / f"{view}.png", _image(len(folder)))
    train = discover_groups(tmp_path, "instereo2k", "train")
    test = discover_groups(tmp_path, "instereo2k", "test")
    assert [g.name for g in train] == ["part1/000", "part1/001", "part2/000"]
    assert [g.name for g in test] == ["007"]
    assert test[0].paths == (tmp_path / "test/007/left.png", tmp_path / "test/007/right.png")
    assert MultiViewFolderDataset(tmp_path, layout="instereo2k", split="train")[2].shape == (2, 3, 8, 12)
    training = TrainingBatches(f"folder:{tmp_path}:instereo2k", batch_size=2, crop=8, views=(2, 2),
                               num_qualities=4, validation_groups=1)
    assert training.batch(step=0)[0].shape == (2, 2, 3, 8, 8)  # the train split: no error for the missing split


def test_cityscapes_splits_and_artefact_crop(tmp_path: Path) -> None:
    for split, city, name in (("train", "aachen", "aachen_000000_000019"),
                              ("train", "bonn", "bonn_000001_000019"),
                              ("test", "berlin", "berlin_000002_000019")):
        for side in ("left", "right"):
            _write(tmp_path / f"{side}Img8bit" / split / city / f"{name}_{side}Img8bit.png", _image(1))
    train = discover_groups(tmp_path, "cityscapes", "train")
    assert [g.name for g in train] == ["aachen/aachen_000000_000019", "bonn/bonn_000001_000019"]
    assert train[0].paths[1] == (tmp_path / "rightImg8bit/train/aachen/"
                                 "aachen_000000_000019_rightImg8bit.png")
    assert len(discover_groups(tmp_path, "cityscapes", "test")) == 1

    views = np.zeros((2, 1024, 2048, 3), np.uint8)
    views[:, 64, 128] = 255
    cropped = CropCityscapesArtefacts()(views)
    assert cropped.shape == (2, 704, 1792, 3) and cropped[:, 0, 0].min() == 255
    assert isinstance(ldmic_transform("cityscapes", "test", 2).transforms[0], CropCityscapesArtefacts)


def test_wildtrack_frame_split_and_cameras(tmp_path: Path) -> None:
    for camera in range(1, 8):
        for frame in ("00000000", "00001995", "00002000", "00002005"):
            _write(tmp_path / "Image_subsets" / f"C{camera}" / f"{frame}.png", _image(camera))
    train = discover_groups(tmp_path, "wildtrack", "train")
    test = discover_groups(tmp_path, "wildtrack", "test")
    assert [g.name for g in train] == ["00000000", "00001995", "00002000"]
    assert [g.name for g in test] == ["00002005"]
    assert test[0].view_names == tuple(f"C{i}" for i in range(1, 8))
    first_three = MultiViewFolderDataset(tmp_path, views=("C1", "C2", "C3"), layout="wildtrack",
                                         split="test")
    assert first_three[0].shape == (3, 3, 8, 12)
    assert torch.equal(first_three[0][2], torch.from_numpy(_image(3)).permute(2, 0, 1) / 255)
    with pytest.raises(ValueError, match="split"):
        discover_groups(tmp_path, "wildtrack")


# --------------------------------------------------------------------------- transforms

def test_crop_and_flip_of_identical_views_stay_identical() -> None:
    torch.manual_seed(0)
    views = np.repeat(_image(5, 40, 50)[None], 3, axis=0)
    transform = ldmic_transform("groups", "train", 3, crop_size=16)
    for _ in range(20):
        out = transform(views)
        assert out.shape == (3, 16, 16, 3)
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_crop_keeps_the_shift_between_views() -> None:
    torch.manual_seed(1)
    base = _image(6, 60, 70)
    dy, dx = 3, 5
    views = np.stack([base[:50, :60], base[dy:dy + 50, dx:dx + 60]])
    crop = RandomCrop((20, 24))
    for _ in range(20):
        out = crop(views)
        # view 1 at (y, x) shows what view 0 shows at (y + dy, x + dx), inside the crop too.
        assert np.array_equal(out[1][:-dy, :-dx], out[0][dy:, dx:])


def test_flips_are_shared_by_all_views() -> None:
    torch.manual_seed(2)
    views = np.stack([_image(7, 10, 10), _image(8, 10, 10)])
    seen = set()
    for _ in range(30):
        out = RandomFlip()(views)
        flips = []
        for view in range(2):
            matches = [(h, v) for h in (0, 1) for v in (0, 1)
                       if np.array_equal(out[view], views[view][::(1 - 2 * v), ::(1 - 2 * h)])]
            flips.append(matches)
        assert flips[0] == flips[1] and len(flips[0]) == 1
        seen.add(flips[0][0])
    assert len(seen) == 4


def test_minimal_crop_and_view_swap() -> None:
    views = np.zeros((2, 860, 1080, 3), np.uint8)
    views[0, 14, 28] = 9  # (860 - 832) / 2 = 14 rows, (1080 - 1024) / 2 = 28 columns cut
    out = MinimalCrop(64)(views)
    assert out.shape == (2, 832, 1024, 3) and out[0, 0, 0, 0] == 9
    pair = np.stack([_image(1), _image(2)])
    assert np.array_equal(RandomViewSwap(p=1.0)(pair), pair[::-1])
    assert np.array_equal(RandomViewSwap(p=0.0)(pair), pair)
    train = ldmic_transform("instereo2k", "train", 2)
    assert isinstance(train.transforms[-1], RandomViewSwap)
    assert isinstance(ldmic_transform("wildtrack", "test", 7).transforms[0], MinimalCrop)


def test_adaptive_view_counts_are_bounded_and_shared_within_a_batch(tmp_path: Path) -> None:
    sampler = AdaptiveViewBatchSampler(40, 4, num_views=7, seed=3)
    counts = set()
    for _ in range(5):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 10
        assert sorted(key[0] for batch in batches for key in batch) == list(range(40))
        for batch in batches:
            views = batch[0][1]
            assert all(key[1] == views for key in batch)
            assert 2 <= len(views) <= 7 and len(set(views)) == len(views)
            assert all(0 <= view < 7 for view in views)
            counts.add(len(views))
    assert counts == set(range(2, 8))

    for group in range(6):
        for camera in range(1, 8):
            _write(tmp_path / f"g{group}" / f"C{camera}.png", _image(group * 10 + camera, 20, 24))
    dataset = MultiViewFolderDataset(tmp_path, transform=RandomCrop(16))
    loader = DataLoader(dataset, batch_sampler=AdaptiveViewBatchSampler(6, 3, 7, seed=0))
    for batch, keys in zip(loader, AdaptiveViewBatchSampler(6, 3, 7, seed=0)):
        assert batch.shape == (3, len(keys[0][1]), 3, 16, 16)


# --------------------------------------------------------------------------- textures

def test_textures_are_natural_photographs(bank: TextureBank) -> None:
    paths = find_textures()
    assert len(paths) >= 4 and not any("motorcycle" in path.name for path in paths)
    cache = default_texture_dir()
    images = load_textures(paths, max_side=256)
    if cache.is_dir():
        images += load_textures(find_textures([cache], bundled=False), max_side=256)
    for image in images:
        assert image.ndim == 3 and image.dtype == np.uint8
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        assert grey.std() > 8, "flat image"
        # Natural photographs have detail: a sizeable share of strong local gradients.
        assert np.mean(np.abs(cv2.Laplacian(grey, cv2.CV_32F)) > 4) > 0.02
    patch = bank.sample_patch(np.random.default_rng(0), 50, 80)
    assert 50 <= patch.shape[0] <= 100 and 80 <= patch.shape[1] <= 160


# --------------------------------------------------------------------------- synthetic generator

def test_generator_is_reproducible(bank: TextureBank) -> None:
    rig = SyntheticRig(3, 64, 96, textures=bank)
    first, again = rig.render_group(11), SyntheticRig(3, 64, 96, textures=bank).render_group(11)
    assert all(np.array_equal(a, b) for a, b in zip(first.views, again.views))
    assert all(np.array_equal(a, b) for a, b in zip(first.depths, again.depths))
    other = rig.render_group(12)
    assert not np.array_equal(first.views[0], other.views[0])
    subset = rig.render_group(11, views=[2, 0])
    assert np.array_equal(subset.views[0], first.views[2])
    assert np.array_equal(subset.views[1], first.views[0])
    assert first.views[0].shape == (64, 96, 3) and first.views[0].dtype == np.uint8


def _horizontal_shift(left: np.ndarray, right: np.ndarray, mask: np.ndarray, max_shift: int) -> float:
    """Shift d (sub-pixel) maximising the NCC between left[y, x] and right[y, x - d] over mask."""
    grey_l = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY).astype(np.float64)
    grey_r = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY).astype(np.float64)
    ys, xs = np.nonzero(mask)
    scores = []
    for shift in range(max_shift + 1):
        inside = xs - shift >= 0
        p, q = grey_l[ys[inside], xs[inside]], grey_r[ys[inside], xs[inside] - shift]
        p, q = p - p.mean(), q - q.mean()
        scores.append((p * q).sum() / np.sqrt((p * p).sum() * (q * q).sum()))
    s = np.array(scores)
    best = int(s.argmax())
    if 0 < best < len(s) - 1:
        return best + 0.5 * (s[best - 1] - s[best + 1]) / (s[best - 1] - 2 * s[best] + s[best + 1])
    return float(best)


def test_parallax_matches_focal_times_baseline_over_depth(bank: TextureBank) -> None:
    rig = SyntheticRig(3, 192, 256, baseline=0.2, max_rotation_deg=0.0, position_jitter=0.0,
                       slanted_fraction=0.0, textures=bank)
    kernel = np.ones((7, 7), np.uint8)
    checked = 0
    for seed in range(6):
        group = rig.render_group(seed)
        focal = group.cameras[0].focal
        baseline = group.cameras[1].centre[0] - group.cameras[0].centre[0]
        assert baseline == pytest.approx(0.2)
        background, nearest = 0, len(group.planes) - 1
        # Interior pixels of each plane (away from occlusion boundaries); the background must
        # be seen in both views, nothing is in front of the nearest object.
        masks = {plane: cv2.erode((group.labels[0] == plane).astype(np.uint8), kernel) > 0
                 for plane in (background, nearest)}
        masks[background] &= cv2.erode((group.labels[1] == background).astype(np.uint8), kernel) > 0
        if min(mask.sum() for mask in masks.values()) < 500:
            continue  # the nearest object is (nearly) out of view
        shifts = {}
        for plane, mask in masks.items():
            depth = group.planes[plane].origin[2]
            assert np.allclose(group.depths[0][mask], depth, rtol=1e-4)
            expected = focal * baseline / depth
            shifts[plane] = _horizontal_shift(group.views[0], group.views[1], mask, int(expected) + 5)
            assert shifts[plane] == pytest.approx(expected, abs=1.0)
        assert shifts[background] < shifts[nearest] - 5
        checked += 1
    assert checked >= 3


def test_views_differ_in_exposure_and_noise(bank: TextureBank) -> None:
    # Zero baseline and no mounting error: the geometry is identical, only the sensors differ.
    rig = SyntheticRig(3, 96, 128, baseline=0.0, max_rotation_deg=0.0, position_jitter=0.0,
                       blur_probability=0.0, textures=bank)
    group = rig.render_group(4)
    assert all(np.array_equal(group.depths[0], depth) for depth in group.depths[1:])
    means = np.array([view.reshape(-1, 3).mean(axis=0) for view in group.views])
    ratios = means / means.mean(axis=1, keepdims=True)
    assert np.ptp(means.mean(axis=1)) > 2.0  # exposure/gamma: brightness differs
    assert np.ptp(ratios, axis=0).max() > 0.01  # white balance: colour balance differs
    # Sensor noise: each camera adds its own, independent noise.
    sensors = rig.sequence(4).sensors
    grey = np.full((64, 64, 3), 128, np.uint8)
    flat = [sensor.apply(grey, torch.Generator().manual_seed(view)).astype(np.float32)
            for view, sensor in enumerate(sensors)]
    assert all(0.4 < image.std(axis=(0, 1)).min() <= image.std(axis=(0, 1)).max() < 6.0
               for image in flat)
    residues = [(image - image.mean(axis=(0, 1))).ravel() for image in flat]
    assert abs(np.corrcoef(residues[0], residues[1])[0, 1]) < 0.1


def test_synthetic_dataset_and_sequence(bank: TextureBank) -> None:
    rig = SyntheticRig(4, 48, 64, layout="grid", textures=bank)
    dataset = SyntheticMultiViewDataset(rig, length=6, seed=5, frames_per_scene=3)
    item = dataset[0]
    assert item.shape == (4, 3, 48, 64) and item.dtype == torch.float32
    assert 0.0 <= float(item.min()) and float(item.max()) <= 1.0
    assert torch.equal(dataset[0], item)
    assert torch.equal(dataset[(0, [3, 1])], item[[3, 1]])
    next_frame, next_scene = dataset[1], dataset[3]
    frame_change = float((next_frame - item).abs().mean())
    scene_change = float((next_scene - item).abs().mean())
    assert 0 < frame_change < scene_change

    sequence = rig.sequence(seed=dataset.scene_seed(0), num_frames=3)
    centres = [[camera.centre for camera in frame] for frame in sequence.cameras]
    step = np.linalg.norm(centres[1][0] - centres[0][0])
    assert step == pytest.approx(rig.motion_per_frame, rel=0.05)
    heights = np.array([centre[1] for centre in centres[0]])
    assert abs(heights[2] - heights[0]) > 0.08 and abs(heights[1] - heights[0]) < 0.02  # 2x2 grid

    loader = DataLoader(dataset, batch_sampler=AdaptiveViewBatchSampler(6, 2, 4, seed=1))
    for batch, keys in zip(loader, AdaptiveViewBatchSampler(6, 2, 4, seed=1)):
        assert batch.shape == (2, len(keys[0][1]), 3, 48, 64)
