"""The high-level codec every other part calls: encode one view, decode a group.

    codec = ParaHydraCodec.load()                      # the packaged default model
    payload = codec.encode(image_rgb_uint8, quality=2)  # on each camera, alone
    images = codec.decode([payload_0, payload_1, …])    # at the joint decoder

``encode`` only ever sees one image, so a camera's bytes cannot depend on any other
view; ``decode`` entropy-decodes each view independently (in parallel, one view per
intra-op thread of the process), checks the symbols against the hash the encoder
wrote, then runs Para-JD across the views of the group.

``decode_group`` is the one group-decode policy of the package (the decoder node, the
bag tool, ``parahydra decode`` and the evaluation all call it): a view that cannot be
decoded is reported and the others are decoded; views are fused with the views of the
same padded size (Para-JD needs one size), so a camera of another resolution is
decoded with its own size's views, or alone, never dropped. A payload may be given as
bytes or as the ``CodedView`` a caller already parsed (``container.unpack``), which is
then not parsed again.
"""
from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..model.entropy_coder import EntropyStreamError
from ..model.parahydra import ParaHydra
from . import container
from .checkpoint import ModelIdentity, load_model
from .container import DEFAULT_MAX_PIXELS, CodedView, ViewHeader
from .errors import DesynchronizedDecode, ImageTooLarge, ModelMismatch, PayloadError, TruncatedPayload
from .images import image_to_tensor, padding_for, tensor_to_image


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS at once.

    Coding allocates and frees multi-MB temporaries many times per frame; with glibc's
    defaults each one is mmap'ed and unmapped again (~30 000 page faults per view,
    a quarter of the entropy model's time). Views are entropy-decoded and frames
    encoded on several threads, and glibc would give each thread an arena that keeps
    its own freed memory; one arena keeps the peak of a 6-view VGA decode ~350 MB
    lower at no measurable cost in speed. Process-wide; a no-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_arena_max, 1)


def symbols_hash(symbols: torch.Tensor) -> str:
    """16 hex digits identifying the quantised latent symbols of one view."""
    data = symbols.to(torch.int32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class DecodedGroup:
    """The result of decoding a group: images of the views that decoded, errors of the rest."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    errors: dict[int, PayloadError] = field(default_factory=dict)


class ParaHydraCodec:
    """A loaded ParaHydra model with the encode / decode API.

    ``max_pixels`` bounds the work one payload can cause: a view whose header declares
    more pixels (height × width) is refused with ``ImageTooLarge`` before anything is
    decoded or allocated (default 4096×4096; set it to the largest camera a decoder
    serves).
    """

    def __init__(self, model: ParaHydra, identity: ModelIdentity, device: str = "cpu",
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        keep_freed_memory()
        self.model = model.eval().requires_grad_(False)
        self.identity = identity
        self.max_pixels = max_pixels
        self.device = resolve_device(device)
        self.model.to_devices(encoder=self.device, decoder=self.device)

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "cpu",
             max_pixels: int = DEFAULT_MAX_PIXELS) -> "ParaHydraCodec":
        """Load a checkpoint (``None``: the packaged default model); a bad file raises
        ``CheckpointError`` naming it and what is wrong."""
        model, identity, _ = load_model(checkpoint)
        return cls(model, identity, device, max_pixels=max_pixels)

    @property
    def num_qualities(self) -> int:
        return self.model.cfg.num_qualities

    # -- encoder side --------------------------------------------------------------------
    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """Code ONE uint8 image (H×W×3 RGB or H×W mono) at ``quality`` into a container."""
        self._check_quality(quality)
        height, width = image.shape[:2]
        pad_bottom, pad_right = padding_for(height, width)
        strings = self.model.compress_view(image_to_tensor(image), quality)
        header = ViewHeader(
            model_name=self.identity.name, model_hash=self.identity.hash, quality=quality,
            height=height, width=width, pad_bottom=pad_bottom, pad_right=pad_right,
            mono=image.ndim == 2 or image.shape[2] == 1, symbols_hash=symbols_hash(strings.y_symbols),
        )
        return container.pack(CodedView(header, strings.z, strings.y))

    # -- decoder side --------------------------------------------------------------------
    def check(self, payload: bytes | CodedView) -> CodedView:
        """Parse a payload (unless it is parsed already) and check that this model can
        decode it, within ``max_pixels``, from strings long enough for its declared size."""
        view = payload if isinstance(payload, CodedView) else container.unpack(payload)
        h = view.header
        if h.height * h.width > self.max_pixels:
            raise ImageTooLarge(
                f"declares a {h.width}x{h.height} image ({h.height * h.width:,} pixels), more than "
                f"this decoder's max_pixels ({self.max_pixels:,})")
        if (h.model_name, h.model_hash) != (self.identity.name, self.identity.hash):
            raise ModelMismatch(
                f"coded by model {h.model_name} ({h.model_hash}), this decoder holds "
                f"{self.identity.name} ({self.identity.hash})")
        self._check_quality(h.quality)
        least = self.model.min_z_bytes(h.padded_hw)
        if len(view.z) < least:
            raise TruncatedPayload(
                f"z string of {len(view.z)} bytes is shorter than any {h.width}x{h.height} view's can be "
                f"(at least {least} bytes with this model): the header declares a larger image "
                "than the payload holds")
        return view

    def decode(self, payloads: Sequence[bytes | CodedView], joint: bool = True) -> list[np.ndarray]:
        """Decode the views of one instant; raises the first view's ``PayloadError``."""
        group = self.decode_group(payloads, joint=joint)
        for index, error in sorted(group.errors.items()):
            raise type(error)(f"view {index}: {error}") from error
        return [group.images[i] for i in range(len(payloads))]

    def decode_group(self, payloads: Sequence[bytes | CodedView], joint: bool = True) -> DecodedGroup:
        """Decode what can be decoded: bad views are reported, the others decoded jointly.

        Para-JD fuses views of one padded size: the views are decoded jointly with the
        other views of their size (in index order), a view whose size no other view
        has is decoded alone. Every view that decodes is returned.
        """
        group = DecodedGroup()
        by_size: dict[tuple[int, int], dict[int, tuple[torch.Tensor, ViewHeader]]] = {}
        for index, result in enumerate(self._decode_latents(payloads)):
            if isinstance(result, PayloadError):
                group.errors[index] = result
            else:
                by_size.setdefault(result[1].padded_hw, {})[index] = result
        for latents in by_size.values():
            x_hat = self.model.synthesize(torch.cat([y_hat for y_hat, _ in latents.values()]), joint=joint)
            for row, (index, (_, h)) in enumerate(latents.items()):
                group.images[index] = tensor_to_image(x_hat[row], h.height, h.width, h.mono)
        return group

    def _decode_latents(self, payloads: Sequence[bytes | CodedView]) -> list:
        """Each payload's ``(ŷ, header)`` or its ``PayloadError``, views decoded in parallel.

        Entropy decoding runs on one thread per view (``model.determinism``), so up to
        ``torch.get_num_threads()`` views are decoded at once.
        """
        workers = min(len(payloads), torch.get_num_threads())
        if workers <= 1:
            return [self._try_decode_latent(p) for p in payloads]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="entropy-decode") as pool:
            return list(pool.map(self._try_decode_latent, payloads))

    def _try_decode_latent(self, payload: bytes | CodedView):
        try:
            return self._decode_latent(self.check(payload))
        except PayloadError as error:
            return error

    def _decode_latent(self, view: CodedView) -> tuple[torch.Tensor, ViewHeader]:
        h = view.header
        try:
            y_hat, symbols = self.model.decompress_latent(view.z, view.y, h.padded_hw, h.quality)
        except EntropyStreamError as error:  # the strings do not hold the declared latent
            raise DesynchronizedDecode(f"entropy decoding failed: {error}") from None
        except (RuntimeError, ValueError, IndexError) as error:
            raise DesynchronizedDecode(f"entropy decoding failed: {error}") from error
        if symbols_hash(symbols) != h.symbols_hash:
            raise DesynchronizedDecode(
                "decoded latent symbols differ from the encoder's (entropy-model desync: "
                "different weights or non-reproducible arithmetic)")
        return y_hat, h

    def _check_quality(self, quality: int) -> None:
        if not 0 <= quality < self.num_qualities:
            raise ModelMismatch(f"quality {quality} outside this model's 0..{self.num_qualities - 1}")


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (error when absent) or ``auto`` (cuda if available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)
