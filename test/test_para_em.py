"""Para-EM and its variants: bit-exact coding, rate fidelity, gain, training (model-spec §4, §5, §7, §8).

An untrained entropy model predicts nearly the same scale everywhere and passes a
round trip by luck (``shared/notes/entropy-determinism.md``), so every coding test
here uses a latent derived from a real photograph and entropy-parameter networks
whose output layers are perturbed so the scales spread over the scale table.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from parahydra_ros.model import latent_codec
from parahydra_ros.model.entropy_coder import SymbolEncoder
from parahydra_ros.model.checkerboard import (
    anchor_mask,
    ckbd_anchor,
    merge,
    nonanchor_flat_index,
    squeeze_anchor,
    squeeze_nonanchor,
    unsqueeze_anchor,
    unsqueeze_nonanchor,
)
from parahydra_ros.model.configs import ENTROPY_MODELS, get_config
from parahydra_ros.model.contexts import EntropyParameters, LocalContext, inter_context_heads
from parahydra_ros.model.para_em import build_entropy_model, scale_indexes

REPO = Path(__file__).resolve().parents[1]
VARIANTS = list(ENTROPY_MODELS)


def natural_latent(M: int, height: int = 128, width: int = 256, seed: int = 0):
    """``(y, Φ)`` from a random projection of 16×16 patches of a real photograph."""
    image = np.ascontiguousarray(data.astronaut()[64:64 + height, 128:128 + width])
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5
    patches = F.pixel_unshuffle(x, 16)  # 1×768×h×w, neighbouring latents correlated
    g = torch.Generator().manual_seed(seed)
    n = patches.shape[1]
    y = F.conv2d(patches, torch.randn(M, n, 1, 1, generator=g) / n**0.5) * 12  # symbols ≈ ±15
    phi = F.conv2d(patches, torch.randn(2 * M, n, 3, 3, generator=g) / (9 * n) ** 0.5, padding=1) * 4
    return y, phi


def perturbed_model(variant: str, spread: float, scale_offset: float, **changes):
    """A tiny entropy model whose EP outputs are scaled up (``spread``) and shifted (σ half)."""
    torch.manual_seed(0)
    model = build_entropy_model(get_config("tiny", entropy_model=variant, **changes))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, EntropyParameters):
                last = module.output_layer
                last.weight.mul_(spread)
                last.bias.mul_(spread)
                last.bias[: last.out_channels // 2].add_(scale_offset)
    model.eval()
    model.update(force=True)
    return model


def channel_gain(M: int, spread: float = 1.0, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.exp(spread * (2 * torch.rand(1, M, 1, 1, generator=g) - 1))


# -- checkerboard helpers ----------------------------------------------------------------
def test_checkerboard_squeeze_merge_are_inverse_and_follow_the_convention():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    assert torch.equal(merge(squeeze_anchor(x), squeeze_nonanchor(x)), x)
    mask = anchor_mask(4, 6)
    assert mask[0, 0, 0, 1] == 1 and mask[0, 0, 1, 0] == 1 and mask[0, 0, 0, 0] == 0  # anchor: (r+c) odd
    assert torch.equal(unsqueeze_anchor(squeeze_anchor(x)), x * mask)
    assert torch.equal(unsqueeze_nonanchor(squeeze_nonanchor(x)), x * (1 - mask))
    assert torch.equal(ckbd_anchor(x), x * mask)
    # squeezed C-order: row 0 anchors are columns 1, 3, 5; row 1 anchors are 0, 2, 4
    assert squeeze_anchor(x)[0, 0, :2].flatten().tolist() == [1, 3, 5, 6, 8, 10]
    assert nonanchor_flat_index(2, 4).tolist() == [0, 2, 5, 7]
    with pytest.raises(ValueError):
        squeeze_anchor(torch.zeros(1, 1, 3, 4))


def test_scale_indexes_equal_build_indexes():
    model = perturbed_model("para", 1.0, 0.0)
    gc = model.gaussian_conditional
    table = gc.scale_table
    scales = torch.cat([
        torch.rand(5000) * 300 - 10,
        table, torch.nextafter(table, torch.full_like(table, 1e9)),
        torch.nextafter(table, torch.zeros_like(table)), torch.tensor([0.0, -1.0, 0.11, 1e6]),
    ])
    assert torch.equal(scale_indexes(gc, scales), gc.build_indexes(scales))


def test_inter_context_heads_rule():
    assert [inter_context_heads(k * 24) for k in range(1, 8)] == [1, 1, 2, 3, 3, 4, 4]
    assert inter_context_heads(8) == 1 and inter_context_heads(64) == 2


def _local_context_reference(module: LocalContext, x: torch.Tensor) -> torch.Tensor:
    """MLIC++ ``LocalContext`` semantics at every position (−100 mask), then the non-anchors."""
    b, c, h, w = x.shape
    ws, heads = module.window, module.heads
    t, hd = ws * ws, c // heads
    tokens = module.qkv(module.norm1(x.flatten(2).transpose(1, 2)))
    windows = F.unfold(tokens.transpose(1, 2).reshape(b, 3 * c, h, w), ws, padding=ws // 2)
    q, k, v = windows.reshape(b, 3, heads, hd, t, h * w).permute(1, 0, 5, 2, 4, 3)
    ind = F.unfold(anchor_mask(h, w), ws, padding=ws // 2)[0].t()
    mask = torch.where(ind[:, :, None] * ind[:, None, :] > 0, 0.0, -100.0)
    bias = module.relative_position_table[module.relative_position_index.reshape(-1)]
    bias = bias.reshape(t, t, heads).permute(2, 0, 1)
    attn = (q * module.scale) @ k.transpose(-2, -1) + bias + mask[:, None]
    out = (attn.softmax(-1) @ v).permute(0, 1, 2, 4, 3).reshape(b * h * w, c, ws, ws)
    out = module.proj(module.fusion(out).reshape(b, h * w, 2 * c))
    out = out + module.mlp(module.norm2(out))
    return squeeze_nonanchor(out.transpose(1, 2).reshape(b, 2 * c, h, w))


def test_local_context_is_mlicpp_checkerboard_attention_at_the_non_anchors():
    torch.manual_seed(0)
    module = LocalContext(8, window=5, heads=2)
    with torch.no_grad():
        module.relative_position_table.normal_()
    x = ckbd_anchor(torch.randn(2, 8, 6, 10))
    with torch.no_grad():
        torch.testing.assert_close(module(x), _local_context_reference(module, x), atol=1e-5, rtol=1e-5)
    # The decoded anchors are the context: changing one must change the output.
    base = module(x).detach()
    y = x.clone()
    y[0, :, 2, 3] += torch.randn(8)  # (2+3) odd: an anchor (not a constant: LayerNorm removes those)
    assert not torch.allclose(module(y).detach(), base)


# -- coding --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_is_bit_exact_and_rate_matches_the_likelihood(variant):
    model = perturbed_model(variant, spread=10.0, scale_offset=1.0)  # scales over ~30 table levels
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M)
    gain = channel_gain(cfg.M)
    with torch.inference_mode():
        string, y_hat, symbols = model.compress(y, phi, gain)
        y_dec, symbols_dec = model.decompress(string, phi, gain)
        y_est, _ = model(y, phi, gain)
    assert symbols.dtype == torch.int32 and symbols.shape == y.shape
    assert torch.equal(symbols_dec, symbols)
    assert torch.equal(y_dec, y_hat)
    torch.testing.assert_close(y_est, y_hat, atol=1e-4, rtol=0)
    # ŷ = s/g + μ: the error is at most half a quantisation step (plus LRP's ≤ ½ step).
    bound = 1.0 if getattr(model, "lrp_anchor", None) is not None else 0.5
    assert ((y - y_hat).abs() * gain).max() <= bound + 1e-4

    # Rate fidelity where the scales fit the data (no likelihood-bound outliers).
    model = perturbed_model(variant, spread=4.0, scale_offset=3.5)
    with torch.inference_mode():
        string, _, symbols = model.compress(y, phi, torch.ones_like(gain))
        _, likelihoods = model(y, phi, torch.ones_like(gain))
    estimate = -likelihoods.log2().sum().item()
    actual = 8 * len(string)
    assert likelihoods.shape == y.shape
    assert abs(actual - estimate) <= 0.03 * estimate + 64, (actual, estimate)


def test_bitstream_is_one_ans_stream_in_decode_order(monkeypatch):
    """Slice 0 anchors, slice 0 non-anchors, slice 1 anchors, …; C-order of c×h×(w/2) inside."""
    model = perturbed_model("para", spread=10.0, scale_offset=1.0)
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M, 64, 128)
    gain = channel_gain(cfg.M)
    indexes = []
    original = latent_codec.scale_indexes

    def spy(gc, scales):
        out = original(gc, scales)
        indexes.append(out.reshape(-1))
        return out

    monkeypatch.setattr(latent_codec, "scale_indexes", spy)
    with torch.inference_mode():
        string, _, symbols = model.compress(y, phi, gain)
    c = cfg.slice_channels
    parts = []
    for k in range(cfg.slices):
        for squeeze in (squeeze_anchor, squeeze_nonanchor):
            parts.append(squeeze(symbols)[:, k * c:(k + 1) * c].reshape(-1))
    assert len(indexes) == len(parts) == 2 * cfg.slices
    encoder = SymbolEncoder(latent_codec.cdf_tables(model.gaussian_conditional))
    for symbols_k, indexes_k in zip(parts, indexes):
        encoder.add(symbols_k.numpy(), indexes_k.numpy())
    assert encoder.finish() == string


def test_larger_gain_spends_more_bits_for_a_smaller_error():
    model = perturbed_model("para", spread=4.0, scale_offset=3.5)
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M, 64, 128)
    bits, errors = [], []
    for g in (0.5, 1.0, 2.0):
        with torch.inference_mode():
            string, y_hat, _ = model.compress(y, phi, torch.full((1, cfg.M, 1, 1), g))
        bits.append(8 * len(string))
        errors.append((y - y_hat).pow(2).mean().item())
    assert bits[0] < bits[1] < bits[2], bits
    assert errors[0] > errors[1] > errors[2], errors


def test_lrp_variant_codes_and_trains():
    model = perturbed_model("para", spread=10.0, scale_offset=1.0, lrp=True)
    assert model.lrp_anchor is not None
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M, 64, 128)
    gain = channel_gain(cfg.M)
    with torch.inference_mode():
        string, y_hat, symbols = model.compress(y, phi, gain)
        y_dec, symbols_dec = model.decompress(string, phi, gain)
        y_est, _ = model(y, phi, gain)
    assert torch.equal(symbols_dec, symbols) and torch.equal(y_dec, y_hat)
    torch.testing.assert_close(y_est, y_hat, atol=1e-4, rtol=0)
    # LRP moves ŷ by less than half a quantisation step (0.5·tanh / g).
    assert ((y - y_hat).abs() * gain).max() <= 1.0 + 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_forward_and_backward_with_a_batch(variant):
    torch.manual_seed(0)
    cfg = get_config("tiny", entropy_model=variant)
    model = build_entropy_model(cfg).train()
    y, phi = natural_latent(cfg.M, 64, 128)
    y = torch.cat([y, y.flip(-1)]).requires_grad_(True)
    phi = torch.cat([phi, phi.flip(-1)])
    gain = torch.cat([channel_gain(cfg.M), channel_gain(cfg.M, seed=2)])
    y_hat, likelihoods = model(y, phi, gain)
    assert y_hat.shape == likelihoods.shape == y.shape
    assert torch.isfinite(likelihoods).all() and (likelihoods > 0).all() and (likelihoods <= 1).all()
    loss = -likelihoods.log2().sum() / y.numel() + (y_hat - y.detach()).pow(2).mean()
    loss.backward()
    assert torch.isfinite(y.grad).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # A sample of a batch is coded as it would be alone (nothing depends on the batch).
    model.eval()
    with torch.no_grad():
        batch_hat, _ = model(y, phi, gain)
        single_hat, _ = model(y[1:], phi[1:], gain[1:])
    torch.testing.assert_close(batch_hat[1:], single_hat, atol=1e-4, rtol=0)


def test_interface_errors():
    model = perturbed_model("para", 1.0, 0.0)
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M, 64, 128)
    gain = torch.ones(1, cfg.M, 1, 1)
    with pytest.raises(ValueError, match="batch 1"):
        model.compress(torch.cat([y, y]), torch.cat([phi, phi]), torch.ones(2, cfg.M, 1, 1))
    with pytest.raises(ValueError, match="even"):
        model(y[..., :3, :], phi[..., :3, :], gain)
    with pytest.raises(ValueError, match="2M"):
        model(y, phi[:, 1:], gain)
    fresh = build_entropy_model(cfg)
    with pytest.raises(RuntimeError, match="update"):
        fresh.compress(y, phi, gain)


_DECODE_ELSEWHERE = """
import sys, torch
torch.set_num_threads(2)
from parahydra_ros.model.determinism import deterministic_entropy_path
from parahydra_ros.model.para_em import build_entropy_model
from parahydra_ros.model.configs import get_config
saved = torch.load(sys.argv[1])
model = build_entropy_model(get_config("tiny")).eval()
model.update(force=True)  # sizes the CDF buffers; the loaded ones replace them
model.load_state_dict(saved["state"])
with deterministic_entropy_path():
    y_hat, symbols = model.decompress(saved["string"], saved["phi"], saved["gain"])
torch.save({"y_hat": y_hat, "symbols": symbols}, sys.argv[2])
"""


def test_decoding_in_another_process_with_other_threads_reproduces_the_symbols(tmp_path):
    from parahydra_ros.model.determinism import deterministic_entropy_path

    model = perturbed_model("para", spread=10.0, scale_offset=1.0)
    cfg = get_config("tiny")
    y, phi = natural_latent(cfg.M)
    gain = channel_gain(cfg.M)
    with deterministic_entropy_path():
        string, y_hat, symbols = model.compress(y, phi, gain)
    torch.save({"state": model.state_dict(), "string": string, "phi": phi, "gain": gain}, tmp_path / "in.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _DECODE_ELSEWHERE, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
        check=True, env=env, cwd=REPO, timeout=120,
    )
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["symbols"], symbols)
    assert torch.equal(out["y_hat"], y_hat)
