"""Why a payload cannot be decoded (one ``PayloadError`` per reason), or a model cannot be loaded."""
from __future__ import annotations


class PayloadError(ValueError):
    """A coded view that cannot be decoded; the message says what is wrong."""


class NotAParaHydraPayload(PayloadError):
    """The bytes do not start with the ParaHydra magic."""


class UnsupportedFormatVersion(PayloadError):
    """Written by a newer (or unknown) container format."""


class TruncatedPayload(PayloadError):
    """Shorter than its header declares."""


class CorruptPayload(PayloadError):
    """CRC32 mismatch or a header field outside its limits."""


class ModelMismatch(PayloadError):
    """Coded by other weights, or with a quality the model does not have."""


class SizeMismatch(PayloadError):
    """Views of one group that cannot be decoded together (different sizes)."""


class DesynchronizedDecode(PayloadError):
    """Entropy decoding produced other symbols than the encoder coded."""


class CheckpointError(ValueError):
    """A file that is not a usable ParaHydra checkpoint."""
