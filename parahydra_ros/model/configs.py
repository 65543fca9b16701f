"""Model configurations: the paper's size, a CPU-sized ``small`` and a ``tiny`` one for tests.

Widths follow ``model-spec.md`` §8. Every configuration keeps every module; only
widths change. The ablation switches of §7 are fields too, so a checkpoint's
config says exactly which variant it holds.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

#: Images are padded to a multiple of this: z lives at 1/64 of the image and
#: Para-EM's checkerboard needs an even latent size.
PAD_MULTIPLE = 64

#: Bounds of a configuration read from a file (a checkpoint), checked before any model is
#: built: one that declared N = M = 4096 would allocate gigabytes first. The paper's
#: widths are 192; these leave room for larger models without absurd ones.
LIMITS: dict[str, tuple[int, int]] = {
    "N": (1, 512), "M": (1, 512), "slices": (1, 64), "local_window": (1, 15), "local_heads": (1, 16),
    "global_heads": (1, 16), "sk_reduction": (1, 256), "sk_min": (1, 512), "sk_groups": (1, 64),
}
MAX_HIDDEN = 2048  # each entry of ep_hidden, channel_ctx_hidden, lrp_hidden
MAX_QUALITIES = 32
MAX_NAME = 64

JD_FUSIONS = ("pmifm", "jct", "attn2d", "hpa_only", "vpa_only", "ldmic", "none")
ENTROPY_MODELS = ("para", "para_wo_pccm", "para_wo_pgcm", "mlicpp", "ldmic_ckbd")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one ParaHydra model (or one of its ablation variants)."""

    name: str
    N: int  # hidden width of the transforms and of the hyper-latent z
    M: int  # latent channels of y
    slices: int = 8  # K channel slices of Para-EM
    ep_hidden: tuple[int, int, int] = (320, 256, 128)  # entropy-parameter network widths
    channel_ctx_hidden: tuple[int, int] = (192, 128)  # PCCM head widths
    lrp_hidden: tuple[int, int] = (224, 128)  # latent residual prediction (off by default)
    local_window: int = 5  # checkerboard-attention window
    local_heads: int = 2
    global_heads: int = 2  # PGCM heads
    sk_reduction: int = 16  # SKM d = max(C / r, L)
    sk_min: int = 32
    sk_groups: int = 1  # groups of the SKM's 3x3 convolutions (SKNet's own default is 32)
    # How OPAM's vertical stage makes the key of the horizontally aligned side:
    # "aligned" runs the SKM on A^h (the spec), "propagated" moves the side's own
    # SKM key through the horizontal attention map (19 % fewer decoder FLOPs).
    opam_vpa_key: str = "aligned"
    # Para-JD's OPAMs add τ·cos(X_m, X_s) of the raw features to their scores (opam.py).
    # Off for checkpoints written before it existed, on in the small and paper presets.
    opam_correlation: bool = False
    # Rate points: one gain vector per quality on y and z (Cui et al. 2021).
    # ``lambdas`` multiply the MSE of [0, 1] images (LDMIC convention).
    lambdas: tuple[float, ...] = (128.0, 384.0, 1152.0, 3456.0)
    # Ablation switches (model-spec §7).
    jd_fusion: str = "pmifm"
    entropy_model: str = "para"
    lrp: bool = False

    def __post_init__(self) -> None:
        if self.M % self.slices:
            raise ValueError(f"M={self.M} is not divisible into {self.slices} slices")
        if self.jd_fusion not in JD_FUSIONS:
            raise ValueError(f"jd_fusion {self.jd_fusion!r} not in {JD_FUSIONS}")
        if self.entropy_model not in ENTROPY_MODELS:
            raise ValueError(f"entropy_model {self.entropy_model!r} not in {ENTROPY_MODELS}")
        if self.opam_vpa_key not in ("aligned", "propagated"):
            raise ValueError(f"opam_vpa_key must be aligned or propagated, got {self.opam_vpa_key!r}")
        if not self.lambdas:
            raise ValueError("a model needs at least one quality level")
        if any(lam <= 0 for lam in self.lambdas) or list(self.lambdas) != sorted(set(self.lambdas)):
            raise ValueError(f"lambdas must be positive and strictly ascending, got {tuple(self.lambdas)}")

    @property
    def slice_channels(self) -> int:
        """Channels per slice, ``c = M / K``."""
        return self.M // self.slices

    @property
    def num_qualities(self) -> int:
        return len(self.lambdas)

    def with_(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (e.g. an ablation switch)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """A configuration read from a file, every field checked (type, :data:`LIMITS`)
        before anything is built; ``ValueError`` names the first bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"config is a {type(data).__name__}, not a mapping of fields")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown config field(s) {', '.join(unknown)}")
        missing = [name for name, f in known.items() if f.default is MISSING and name not in data]
        if missing:
            raise ValueError(f"config lacks {', '.join(missing)}")
        return cls(**{name: _checked_field(name, value, known[name].default) for name, value in data.items()})


def _checked_field(name: str, value: Any, default: Any) -> Any:
    """``value`` of config field ``name`` (its type is the default's; ``N``/``M``: int)."""
    def fail(expected: str) -> ValueError:
        return ValueError(f"config field {name} = {_short(value)} is not {expected}")

    if name in LIMITS:
        low, high = LIMITS[name]
        if type(value) is not int or not low <= value <= high:
            raise fail(f"an integer in {low}..{high}")
        return value
    if isinstance(default, bool):
        if type(value) is not bool:
            raise fail("true or false")
        return value
    if isinstance(default, str) or default is MISSING:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
            raise fail(f"a string of 1..{MAX_NAME} characters")
        return value
    if name == "lambdas":
        if (not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_QUALITIES
                or not all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in value)):
            raise fail(f"a list of 1..{MAX_QUALITIES} positive numbers")
        return tuple(float(v) for v in value)
    if isinstance(default, tuple):
        if (not isinstance(value, (list, tuple)) or len(value) != len(default)
                or not all(type(v) is int and 0 < v <= MAX_HIDDEN for v in value)):
            raise fail(f"a list of {len(default)} integers in 1..{MAX_HIDDEN}")
        return tuple(value)
    raise AssertionError(f"no check for config field {name}")  # a new field needs one


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(name="paper", N=192, M=192, opam_correlation=True),
    # CPU-sized (model-spec §8 with N=48 instead of 64, 4 slices of 32 channels, grouped
    # SKM convolutions and the propagated VPA key). The joint decoder of the spec's N=64
    # needs ~100 GFLOP for three VGA views, 2.4 s on this 2-core machine. Para-EM runs
    # its slices one after another on one thread (model.determinism), so its time grows
    # with K, and PCCM's OPAM count with K²/2: 8 slices cost 0.26 s per VGA view, 4 slices
    # half of it (bench/codec_speed.py). The checkerboard attention's 3×3 window (instead
    # of 5×5) takes its cost per slice from 19 to 8 ms. Every module is kept.
    "small": ModelConfig(
        name="small", N=48, M=128, slices=4, local_window=3,
        ep_hidden=(160, 128, 64), channel_ctx_hidden=(64, 48),
        lrp_hidden=(64, 48), sk_reduction=8, sk_min=16, sk_groups=4, opam_vpa_key="propagated",
        opam_correlation=True,
    ),
    "tiny": ModelConfig(
        name="tiny", N=32, M=64, ep_hidden=(64, 48, 32), channel_ctx_hidden=(32, 16),
        lrp_hidden=(32, 16), sk_reduction=4, sk_min=8,
    ),
}


def get_config(name: str, **changes: Any) -> ModelConfig:
    """A preset by name (``paper``, ``small``, ``tiny``), optionally with switches changed."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(PRESETS)}") from None
    return base.with_(**changes) if changes else base
