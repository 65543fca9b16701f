"""Training and evaluation data: multi-view groups from folders and from a synthetic rig.

* ``folders``: groups of real views on disk (``ROOT/<group>/<view>.png`` and the InStereo2K,
  Cityscapes and WildTrack layouts with LDMIC's splits).
* ``synthetic``: planar scenes textured with natural photographs, rendered by a camera rig with
  exact parallax, occlusion and per-camera sensor differences.
* ``textures``: where those photographs come from.
* ``bag_groups``: the approximate-time camera groups of a rosbag, to train on a recording.
* ``transforms``: view-aligned crops and flips, tensor conversion, per-batch view-count sampling.
"""
from .bag_groups import BagGroupDataset
from .folders import MultiViewFolderDataset, ViewGroup, discover_groups, read_rgb
from .synthetic import (
    Camera,
    MultiViewSample,
    SensorProfile,
    SyntheticMultiViewDataset,
    SyntheticRig,
    SyntheticSequence,
    TexturedPlane,
    render_view,
)
from .textures import TextureBank, default_texture_dir, find_textures, load_textures
from .transforms import (
    AdaptiveViewBatchSampler,
    Compose,
    CropCityscapesArtefacts,
    MinimalCrop,
    RandomCrop,
    RandomFlip,
    RandomViewSwap,
    ldmic_transform,
    views_to_tensor,
)

__all__ = [
    "AdaptiveViewBatchSampler",
    "BagGroupDataset",
    "Camera",
    "Compose",
    "CropCityscapesArtefacts",
    "MinimalCrop",
    "MultiViewFolderDataset",
    "MultiViewSample",
    "RandomCrop",
    "RandomFlip",
    "RandomViewSwap",
    "SensorProfile",
    "SyntheticMultiViewDataset",
    "SyntheticRig",
    "SyntheticSequence",
    "TextureBank",
    "TexturedPlane",
    "ViewGroup",
    "default_texture_dir",
    "discover_groups",
    "find_textures",
    "ldmic_transform",
    "load_textures",
    "read_rgb",
    "render_view",
    "views_to_tensor",
]
