"""Does OPAM's horizontal attention find the partner view? Its peaks against true disparity.

On real rectified stereo pairs with ground-truth disparity (``../shared/data``:
Middlebury 2014 "Motorcycle" as bundled in scikit-image, Middlebury "Aloe" from
opencv-doc), each view is coded at one quality, the left view is the main and the
right view the side, and the horizontal parallax attention (HPA) of each of
Para-JD's two fusions (at ŷ, 1/16 of the image, and at Deconv_1's output, 1/4) gives
for every main position a distribution over the side's columns. A fusion that
aligns puts its peak at ``column − disparity / stride``. Reported per pair and level:

* ``within_1``: fraction of positions whose peak is within one column of the truth
  (chance: ~3 / width);
* ``mass_within_1``: attention mass within one column of the truth;
* ``mean_abs_error`` (columns) and the mean disparity of the peaks vs the truth.

    python bench/opam_disparity.py --model parahydra_ros/weights/parahydra_small.pt --quality 3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAIRS = {
    "motorcycle": ("skimage_motorcycle/motorcycle", "left.png", "right.png", "extra/motorcycle_disp.npz"),
    "aloe": ("opencv_aloe/aloe", "left.png", "right.png", "extra/aloeGT.png"),
}
COLUMNS = [("pair", "pair", "s"), ("level", "level", "s"), ("positions", "positions", "d"),
           ("true_disparity", "true disp", ".2f"), ("peak_disparity", "peak disp", ".2f"),
           ("mean_abs_error", "|err| cols", ".2f"), ("within_1", "within 1", ".3f"),
           ("chance_within_1", "chance", ".3f"), ("mass_within_1", "mass within 1", ".3f")]


def read_disparity(path: Path) -> np.ndarray:
    """Disparity in pixels, NaN where unknown (0 or infinite in the files)."""
    disparity = np.load(path)["arr_0"] if path.suffix == ".npz" else cv2.imread(str(path), -1)
    disparity = disparity.astype(np.float32)
    return np.where(np.isfinite(disparity) & (disparity > 0), disparity, np.nan)


def attention_scores(attention: np.ndarray, disparity: np.ndarray, stride: int, image_hw) -> dict:
    """Peaks of an HPA map (rows × W(main) × W(side)) against a full-size disparity map."""
    rows, width = attention.shape[:2]
    small = cv2.resize(np.nan_to_num(disparity, nan=-1.0), (width, rows), interpolation=cv2.INTER_NEAREST)
    valid = small > 0
    valid[int(np.ceil(image_hw[0] / stride)):, :] = False  # padding below and right of the image
    valid[:, int(np.ceil(image_hw[1] / stride)):] = False
    columns = np.broadcast_to(np.arange(width), (rows, width))
    truth = columns - small / stride
    valid &= truth >= 0
    peak = attention.argmax(-1)
    error = np.abs(peak - truth)[valid]
    nearest = np.clip(np.round(truth).astype(int), 0, width - 1)
    r, c = np.nonzero(valid)
    mass = sum(attention[i, j, max(0, nearest[i, j] - 1):nearest[i, j] + 2].sum() for i, j in zip(r, c))
    return {"positions": int(valid.sum()), "true_disparity": float((small[valid] / stride).mean()),
            "peak_disparity": float((columns - peak)[valid].mean()), "mean_abs_error": float(error.mean()),
            "within_1": float((error <= 1).mean()), "chance_within_1": 3.0 / width,
            "mass_within_1": float(mass / max(valid.sum(), 1))}


def measure(model_path: Path | None, quality: int) -> list[dict]:
    import torch

    from parahydra_ros.codec.api import ParaHydraCodec
    from parahydra_ros.codec.images import image_to_tensor, read_image

    codec = ParaHydraCodec.load(model_path)
    model, decoder = codec.model, codec.model.decoder
    rows = []
    for name, (folder, left_name, right_name, truth_name) in PAIRS.items():
        root = DATA / folder
        if not root.is_dir():
            continue
        left, right = read_image(root / left_name), read_image(root / right_name)
        latents = []
        for image in (left, right):
            x = image_to_tensor(image)
            strings = model.compress_view(x, quality)
            latents.append(model.decompress_latent(strings.z, strings.y, tuple(x.shape[-2:]), quality)[0])
        y_hat = torch.cat(latents).unsqueeze(0)
        with torch.inference_mode():
            _, features = decoder(y_hat, return_features=True)
            for level, (fusion, feature, stride) in enumerate(
                    zip((decoder.fusion1, decoder.fusion2), features, (16, 4)), start=1):
                hpa = getattr(getattr(fusion, "aligner", None), "hpa", None)
                if hpa is None:
                    continue
                _, _, attention = hpa(feature[:, 0], feature[:, 1], return_map=True)
                scores = attention_scores(attention[0].float().numpy(), read_disparity(root / truth_name),
                                          stride, left.shape[:2])
                rows.append({"pair": name, "level": f"{level} (1/{stride})", **scores})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: packaged model)")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("out/bench/opam_disparity.json"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not here")
        return 0
    rows = measure(args.model, args.quality)
    print_table(rows, COLUMNS)
    write_json(args.json, {"model": str(args.model or "packaged"), "quality": args.quality, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
