"""Inter-view fusion: linear attention, OPAM, PMIFM, LDMIC Multi-JCT and Para-JD (tiny config, CPU).

Alignment tests use hand-set weights, not trained ones: the SKM is replaced by the
identity and ``P_q = P_k = gain * I`` so that ``Q = K = gain * X``. With features of
unit norm that are distinct per position, the score matrix of two matching rows is
then diagonal-dominant and the attention is nearly one-hot: that is what OPAM must
turn into an alignment. With random (untrained) weights only shapes, ranges and
invariances are asserted.
"""
import itertools

import pytest
import torch
from torch import nn

from parahydra_ros.model.attention import EfficientAttention, linear_attention
from parahydra_ros.model.configs import JD_FUSIONS, get_config
from parahydra_ros.model.ldmic_fusion import MultiJCT
from parahydra_ros.model.opam import OPAM, ParallaxAttention, ParallaxAttention2D, SelectiveKernel
from parahydra_ros.model.para_jd import ParaJD
from parahydra_ros.model.pmifm import PMIFM, PMIFM_ATTENTIONS

CFG = get_config("tiny")
C = CFG.N  # 32


def _matching(stage: ParallaxAttention, gain: float = 12.0) -> ParallaxAttention:
    """Make ``Q = K = gain * X``: identity SKM, identity projections."""
    stage.skm = nn.Identity()
    with torch.no_grad():
        for proj in (stage.to_q, stage.to_k):
            proj.weight.copy_(gain * torch.eye(C).view(C, C, 1, 1))
            proj.bias.zero_()
    return stage


def _unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True)


def _random_grid(height: int, width: int, seed: int) -> torch.Tensor:
    """``1 x C x height x width`` features of unit norm, random per position."""
    g = torch.Generator().manual_seed(seed)
    return _unit(torch.randn(1, C, height, width, generator=g), dim=1)


def _separable_grid(height: int, width: int, seed: int) -> torch.Tensor:
    """Half the channels code the column, half the row, each with orthonormal codes (norm 1 overall)."""
    g = torch.Generator().manual_seed(seed)
    half = C // 2
    cols = torch.linalg.qr(torch.randn(half, half, generator=g))[0][:, :width]  # half x width
    rows = torch.linalg.qr(torch.randn(half, half, generator=g))[0][:, :height]
    col_part = cols[:, None, :].expand(half, height, width)
    row_part = rows[:, :, None].expand(half, height, width)
    return (torch.cat([col_part, row_part]) / 2 ** 0.5).unsqueeze(0)


def _views(grid: torch.Tensor, height: int, width: int, dy: int, dx: int):
    """Main = the grid's top-left window; side = the window moved by (dy, dx).

    Content at main position (r, i) is at side position (r - dy, i - dx): a stereo
    disparity ``dx`` (and a vertical one ``dy``).
    """
    main = grid[..., :height, :width]
    side = grid[..., dy:dy + height, dx:dx + width]
    return main.contiguous(), side.contiguous()


# ---------------------------------------------------------------------------- linear attention

def test_linear_attention_matches_ldmic_loop():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 8, 20), torch.randn(2, 8, 20), torch.randn(2, 12, 20)
    heads = 2
    outs = []
    for h in range(heads):  # LDMIC's EfficientAttention.forward, head by head
        kh = k[:, h * 4:(h + 1) * 4].softmax(dim=2)
        qh = q[:, h * 4:(h + 1) * 4].softmax(dim=1)
        vh = v[:, h * 6:(h + 1) * 6]
        outs.append((kh @ vh.transpose(1, 2)).transpose(1, 2) @ qh)
    torch.testing.assert_close(linear_attention(q, k, v, heads), torch.cat(outs, dim=1))
    attn = EfficientAttention(C)
    x, y = torch.randn(2, C, 4, 5), torch.randn(2, C, 4, 5)
    assert attn(x, y).shape == x.shape


# ---------------------------------------------------------------------------- OPAM

def test_selective_kernel_shape_and_no_batch_mixing():
    torch.manual_seed(0)
    skm = SelectiveKernel(C, CFG.sk_reduction, CFG.sk_min)
    x = torch.randn(3, C, 6, 7)
    out = skm(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out[1:2], skm(x[1:2]))  # no BatchNorm: samples are independent


def test_opam_identical_views_is_identity():
    torch.manual_seed(0)
    opam = OPAM(C, CFG)
    _matching(opam.hpa), _matching(opam.vpa)
    main = _separable_grid(8, 10, seed=1)
    aligned, consistency = opam(main, main)
    torch.testing.assert_close(aligned, main, atol=1e-3, rtol=0)
    assert consistency.shape == (1, 1, 8, 10)
    assert consistency.min() > 0.99


def test_hpa_recovers_horizontal_shift():
    height, width, dx = 6, 12, 3
    stage = _matching(ParallaxAttention(C, CFG, "h"))
    main, side = _views(_random_grid(height, width + dx, seed=2), height, width, 0, dx)
    aligned, consistency, attn = stage(main, side, return_map=True)
    assert attn.shape == (1, height, width, width)  # [b, row, main column i, side column j]
    interior = torch.arange(dx, width)
    assert torch.equal(attn.argmax(dim=-1)[0][:, interior], (interior - dx).expand(height, -1))
    torch.testing.assert_close(aligned[..., dx:], main[..., dx:], atol=1e-3, rtol=0)
    # occluded columns (no counterpart in the side view) are less consistent
    assert consistency[..., dx:].min() > 0.99
    assert consistency[..., :dx].mean() < consistency[..., dx:].mean()


def test_vpa_recovers_vertical_shift():
    height, width, dy = 12, 6, 2
    stage = _matching(ParallaxAttention(C, CFG, "v"))
    main, side = _views(_random_grid(height + dy, width, seed=3), height, width, dy, 0)
    aligned, consistency, attn = stage(main, side, return_map=True)
    assert attn.shape == (1, width, height, height)  # [b, column, main row i, side row j]
    interior = torch.arange(dy, height)
    assert torch.equal(attn.argmax(dim=-1)[0][:, interior], (interior - dy).expand(width, -1))
    torch.testing.assert_close(aligned[..., dy:, :], main[..., dy:, :], atol=1e-3, rtol=0)
    assert consistency[..., dy:, :].min() > 0.99


def test_opam_recovers_a_2d_shift_through_hpa_then_vpa():
    """HPA aligns the columns (row part of the score is constant along a row), VPA then the rows."""
    height, width, dy, dx = 8, 10, 2, 3
    opam = OPAM(C, CFG)
    _matching(opam.hpa), _matching(opam.vpa)
    main, side = _views(_separable_grid(height + dy, width + dx, seed=4), height, width, dy, dx)
    aligned, consistency = opam(main, side)
    torch.testing.assert_close(aligned[..., dy:, dx:], main[..., dy:, dx:], atol=1e-3, rtol=0)
    assert consistency[..., dy:, dx:].min() > 0.9
    # OPAM without its vertical stage cannot undo the vertical shift
    # the propagated VPA key equals the spec's one when the SKM is the identity
    propagated = OPAM(C, CFG, vpa_key="propagated")
    propagated.hpa, propagated.vpa = opam.hpa, opam.vpa
    torch.testing.assert_close(propagated(main, side), (aligned, consistency), atol=1e-5, rtol=0)
    hpa_only = OPAM(C, CFG, mode="hpa_only")
    hpa_only.hpa = opam.hpa
    assert (hpa_only(main, side)[0][..., dy:, dx:] - main[..., dy:, dx:]).abs().max() > 0.1


@pytest.mark.parametrize("mode", ["opam", "hpa_only", "vpa_only", "attn2d"])
def test_consistency_in_unit_interval(mode):
    torch.manual_seed(0)
    aligner = ParallaxAttention2D(C, CFG) if mode == "attn2d" else OPAM(C, CFG, mode=mode)
    main, side = 3 * torch.randn(2, C, 5, 7), 3 * torch.randn(2, C, 5, 7)
    aligned, consistency = aligner(main, side)
    assert aligned.shape == main.shape and consistency.shape == (2, 1, 5, 7)
    assert consistency.min() >= 0 and consistency.max() <= 1 + 1e-6


# ---------------------------------------------------------------------------- PMIFM

@pytest.mark.parametrize("attention", PMIFM_ATTENTIONS)
def test_pmifm_invariant_to_side_order_and_streaming(attention):
    torch.manual_seed(0)
    pmifm = PMIFM(C, CFG, attention=attention).eval()
    main, sides = torch.randn(2, C, 4, 6), [torch.randn(2, C, 4, 6) for _ in range(3)]
    with torch.no_grad():
        ref, weights = pmifm(main, sides, return_weights=True)
        assert weights.shape == (2, 3, 1, 4, 6)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 1, 4, 6))
        for perm in itertools.permutations(range(3)):
            torch.testing.assert_close(pmifm(main, [sides[p] for p in perm]), ref, atol=1e-5, rtol=0)
        pmifm.pair_budget_bytes = 1  # one side at a time
        torch.testing.assert_close(pmifm(main, sides), ref, atol=1e-5, rtol=0)


def test_pmifm_one_side_weight_is_exactly_one_and_no_side_is_identity():
    torch.manual_seed(0)
    pmifm = PMIFM(C, CFG)
    main, side = torch.randn(1, C, 4, 6), torch.randn(1, C, 4, 6)
    _, weights = pmifm(main, [side], return_weights=True)
    assert torch.equal(weights, torch.ones(1, 1, 1, 4, 6))
    assert pmifm(main, []) is main
    _, weights = pmifm.fuse_views(torch.randn(1, 2, C, 4, 6), return_weights=True)
    assert torch.equal(weights, torch.ones(1, 2, 1, 1, 4, 6))


@pytest.mark.parametrize("vpa_key", ["aligned", "propagated"])
def test_pmifm_fuse_views_matches_per_view_fusion(vpa_key):
    torch.manual_seed(0)
    pmifm = PMIFM(C, CFG, vpa_key=vpa_key).eval()
    x = torch.randn(2, 4, C, 4, 6)
    with torch.no_grad():
        batched, weights = pmifm.fuse_views(x, return_weights=True)
        assert weights.shape == (2, 4, 3, 1, 4, 6)
        for i in range(4):
            sides = [x[:, (i + d) % 4] for d in range(1, 4)]
            torch.testing.assert_close(batched[:, i], pmifm(x[:, i], sides), atol=1e-5, rtol=0)
        for budget in (1, pmifm.aligner.pair_bytes(4, 6) * 2 * 5):  # 1 pair / 5 pairs per step
            pmifm.pair_budget_bytes = budget
            torch.testing.assert_close(pmifm.fuse_views(x), batched, atol=1e-5, rtol=0)


def test_multi_jct_attends_to_the_mean_of_the_other_views():
    torch.manual_seed(0)
    jct = MultiJCT(C).eval()
    x = torch.randn(1, 3, C, 4, 6)
    with torch.no_grad():
        out = jct(x)
        r = jct.trunk(x[0])
        for i in range(3):
            others = torch.stack([r[j] for j in range(3) if j != i]).mean(dim=0, keepdim=True)
            attended = jct.attention(r[i:i + 1], others)
            expected = x[0, i:i + 1] + jct.refine(torch.cat([attended, r[i:i + 1]], dim=1))
            torch.testing.assert_close(out[0, i:i + 1], expected, atol=1e-5, rtol=0)
    assert jct(x[:, :1]) is not None and torch.equal(jct(x[:, :1]), x[:, :1])


# ---------------------------------------------------------------------------- Para-JD

@pytest.mark.parametrize("fusion", JD_FUSIONS)
def test_para_jd_shapes_for_every_fusion_and_view_count(fusion):
    torch.manual_seed(0)
    jd = ParaJD(CFG.with_(jd_fusion=fusion)).eval()
    with torch.no_grad():
        for views in (1, 2, 3, 6):
            y = torch.randn(2, views, CFG.M, 2, 3)
            x = jd(y)
            assert x.shape == (2, views, 3, 32, 48)
            assert torch.isfinite(x).all()
        # one view = plain single-image decoding
        torch.testing.assert_close(jd(y[:, :1]), jd(y[:, :1], joint=False))


def test_para_jd_none_fusion_decodes_each_view_alone():
    torch.manual_seed(0)
    jd = ParaJD(CFG.with_(jd_fusion="none")).eval()
    y = torch.randn(1, 3, CFG.M, 2, 3)
    with torch.no_grad():
        together = jd(y)
        alone = torch.cat([jd(y[:, i:i + 1]) for i in range(3)], dim=1)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_para_jd_separate_decoding_skips_fusion_with_the_same_weights():
    torch.manual_seed(0)
    cfg = CFG.with_(jd_fusion="pmifm")
    jd, sep = ParaJD(cfg).eval(), ParaJD(cfg.with_(jd_fusion="none")).eval()
    sep.load_state_dict(jd.state_dict(), strict=False)
    y = torch.randn(1, 3, CFG.M, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(jd(y, joint=False), sep(y), atol=1e-6, rtol=0)
        torch.testing.assert_close(jd(y), sep(y), atol=1e-6, rtol=0)  # gates start closed
        jd.gates.fill_(1.0)
        assert (jd(y) - jd(y, joint=False)).abs().max() > 1e-4  # joint decoding does use the other views


@pytest.mark.parametrize("fusion", ["pmifm", "ldmic"])
def test_para_jd_view_without_sides_keeps_the_refinement(fusion):
    """A view decoded alone runs each fusion's refinement with itself as the fused feature, so
    joint decoding gains only what the side views carry, not extra decoder capacity."""
    torch.manual_seed(0)
    jd = ParaJD(CFG.with_(jd_fusion=fusion)).eval()
    y = torch.randn(1, 3, CFG.M, 2, 3)
    with torch.no_grad():
        jd.gates.fill_(1.0)
        alone = jd(y, joint=False)
        for i in range(3):  # joint=False is each view decoded as a group of one
            torch.testing.assert_close(jd(y[:, i:i + 1])[:, 0], alone[:, i], atol=1e-5, rtol=0)
        flat = y.flatten(0, 1)
        u = jd.fusion1.refine_alone(flat)
        v = jd.fusion2.refine_alone(jd.deconv1(u))
        torch.testing.assert_close(alone.flatten(0, 1), jd.deconv2(v), atol=1e-5, rtol=0)
        # the refinement is not the identity: skipping it changes the image
        plain = jd.deconv2(jd.deconv1(flat))
        assert (alone.flatten(0, 1) - plain).abs().max() > 1e-3


def test_para_jd_backward_reaches_opam():
    torch.manual_seed(0)
    jd = ParaJD(CFG)
    y = torch.randn(1, 3, CFG.M, 2, 3, requires_grad=True)
    jd(y).square().mean().backward()
    assert jd.gates.grad.abs().min() > 0  # closed gates still learn to open
    jd.zero_grad()
    with torch.no_grad():
        jd.gates.fill_(0.5)
    jd(y).square().mean().backward()
    for fusion in (jd.fusion1, jd.fusion2):
        opam = fusion.aligner
        for param in (opam.hpa.skm.branch3[0].weight, opam.hpa.to_q.weight, opam.hpa.to_k.weight,
                      opam.vpa.skm.select.weight, opam.vpa.to_k.weight):
            assert param.grad is not None and param.grad.abs().sum() > 0
    assert y.grad.abs().sum() > 0


@pytest.mark.parametrize("vpa_key", ["aligned", "propagated"])
def test_opam_moves_extra_channels_with_the_same_maps(vpa_key):
    torch.manual_seed(0)
    opam = OPAM(CFG.N, CFG, vpa_key=vpa_key).eval()
    main, side = torch.randn(2, CFG.N, 4, 6), torch.randn(2, CFG.N, 4, 6)
    with torch.no_grad():
        query, key = opam.query(main), opam.key(side)
        aligned, consistency = opam.align(query, key, side)
        aligned2, consistency2, moved = opam.align(query, key, side, extra=side[:, :3])
    torch.testing.assert_close(aligned2, aligned)
    torch.testing.assert_close(consistency2, consistency)
    torch.testing.assert_close(moved, aligned[:, :3])  # the extra channels follow the same maps


def test_alignment_loss_trains_only_the_aligners_and_learns_a_shift():
    from parahydra_ros.model.alignment import alignment_loss

    torch.manual_seed(0)
    jd = ParaJD(CFG)
    image = nn.functional.interpolate(torch.rand(2, 3, 8, 16), size=(64, 128), mode="bilinear")
    x = torch.stack([image, image.roll(16, dims=-1)], dim=1)  # view 1: one latent column to the right
    lift1, lift2 = nn.Conv2d(3, CFG.M, 1), nn.Conv2d(3, CFG.N, 1)
    features = [lift1(nn.functional.avg_pool2d(x.flatten(0, 1), 16)).unflatten(0, (2, 2)).detach(),
                lift2(nn.functional.avg_pool2d(x.flatten(0, 1), 4)).unflatten(0, (2, 2)).detach()]
    pairs = torch.ones(2, dtype=torch.bool)
    assert float(alignment_loss(jd, features, x, torch.zeros(2, dtype=torch.bool))) == 0.0
    loss = alignment_loss(jd, features, x, pairs)
    loss.backward()
    grads = {name for name, p in jd.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(".aligner." in name for name in grads)  # the codec's transforms are untouched
    optimizer = torch.optim.Adam([p for n, p in jd.named_parameters() if ".aligner." in n], lr=3e-3)
    first = float(loss)
    for _ in range(30):
        optimizer.zero_grad()
        loss = alignment_loss(jd, features, x, pairs)
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.8 * first


def test_opam_correlation_term_finds_a_disparity_before_training():
    """The raw-feature cosine in the scores (cfg.opam_correlation) aligns an untrained
    attention; the learnt projections alone do not."""
    torch.manual_seed(0)
    main = torch.randn(1, CFG.N, 4, 24)
    side = main.roll(-3, dims=-1)  # the side holds main column i at column i - 3
    hits = {}
    for correlation in (False, True):
        torch.manual_seed(1)
        hpa = ParallaxAttention(CFG.N, CFG, "h", correlation=correlation).eval()
        with torch.no_grad():
            _, _, attention = hpa(main, side, return_map=True)
        peaks = attention[0].argmax(-1)[:, 3:]  # rows x columns with a match inside the side
        hits[correlation] = float((peaks == torch.arange(24)[3:] - 3).float().mean())
    assert hits[True] > 0.9 and hits[False] < 0.5


def test_para_jd_uses_the_correlation_term_only_when_configured():
    assert ParaJD(CFG).fusion1.aligner.hpa.log_correlation_gain is None
    jd = ParaJD(CFG.with_(opam_correlation=True))
    assert jd.fusion1.aligner.hpa.log_correlation_gain is not None
    assert jd.fusion2.aligner.vpa.log_correlation_gain is not None
