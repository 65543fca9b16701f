"""Alignment loss: teach OPAM to find the partner view's content (PASSRnet's photometric loss).

Measured on the model shipped before issue 12, OPAM's horizontal attention did not
peak at the true disparity of real rectified pairs (3.5 % of latent positions within
one column of it, less than chance), and its fusion gained as much from an unrelated
picture as from the true partner: trained on the rate–distortion loss alone, the
attention had no reason to align. Parallax attention is trained in the stereo
super-resolution work it comes from (PASSRnet, Wang et al. CVPR 2019; iPASSR) with a
photometric loss: the side *image*, moved by the attention maps, must match the main
image. This module adds that loss at each PMIFM of Para-JD::

    s   = stride of the fusion's features (16 at ŷ, 4 at Deconv_1's output)
    I_m = avgpool_s(x_main),  I_s = avgpool_s(x_side)
    L   = mean | OPAM(F_m, F_s) applied to I_s  −  I_m |      (one (main, side) pair per group)

The features are detached: the loss trains only the aligner's queries and keys (SKM
and projections), not the codec's transforms, which the rate–distortion loss owns.
Groups whose side view was replaced by another scene's (the unrelated negatives of
``parahydra train --unrelated-rate``) are left out. Aligners without attention maps
(``jct``, ``ldmic``) get no loss. Not in the paper; ``--align-weight 0`` turns it off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .para_jd import ParaJD
from .pmifm import PMIFM


def alignment_loss(decoder: ParaJD, features: list[Tensor], x: Tensor, pairs: Tensor) -> Tensor:
    """Photometric alignment loss of view 1 aligned to view 0, averaged over fusion levels.

    Args:
        decoder: the joint decoder whose fusions' aligners are trained.
        features: the fusions' inputs, ``B x V x C x h x w`` each (``ParaJD(..., return_features=True)``).
        x: the original views, ``B x V x 3 x H x W`` in [0, 1].
        pairs: ``B`` booleans, ``True`` where views 0 and 1 show the same scene.

    Returns:
        A scalar (0 when no group is a true pair, there is one view, or no aligner applies).
    """
    total = x.new_zeros(())
    if x.shape[1] < 2 or not bool(pairs.any()):
        return total
    x = x[pairs]
    levels = 0
    for fusion, feature in zip((decoder.fusion1, decoder.fusion2), features):
        if not isinstance(fusion, PMIFM) or fusion.attention == "jct":
            continue
        feature = feature[pairs].detach()
        stride = x.shape[-1] // feature.shape[-1]
        images = F.avg_pool2d(x[:, :2].flatten(0, 1), stride).unflatten(0, (x.shape[0], 2))
        aligner = fusion.aligner
        main, side = feature[:, 0], feature[:, 1]
        _, _, warped = aligner.align(aligner.query(main), aligner.key(side), side, extra=images[:, 1])
        total = total + (warped - images[:, 0]).abs().mean()
        levels += 1
    return total / max(levels, 1)

