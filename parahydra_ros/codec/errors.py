"""Why a payload cannot be decoded (one ``PayloadError`` per reason), or a model cannot be loaded."""
from __future__ import annotations


class PayloadError(ValueError):
    """A coded view that cannot be decoded; the message says what is wrong."""

    @property
    def reason(self) -> str:
        """What is wrong, as one word for diagnostics and logs (``views_error_<reason>``)."""
        return type(self).__name__


class NotAParaHydraPayload(PayloadError):
    """The bytes do not start with the ParaHydra magic."""


class UnsupportedFormatVersion(PayloadError):
    """Written by a newer (or unknown) container format."""


class TruncatedPayload(PayloadError):
    """Shorter than its header declares (its string lengths, or the image size it declares)."""


class ImageTooLarge(PayloadError):
    """Declares more pixels than the decoder accepts (``max_pixels``): refused before any work."""


class CorruptPayload(PayloadError):
    """CRC32 mismatch or a header field outside its limits."""


class ModelMismatch(PayloadError):
    """Coded by other weights, or with a quality the model does not have."""


class MessageMismatch(PayloadError):
    """A field the message repeats from its payload's header says something else than the payload.

    ``reason`` names the field: ``MessageHeightMismatch``, ``MessageModelHashMismatch``, …
    """

    def __init__(self, field: str, in_message: object, in_payload: object) -> None:
        self.field = field
        super().__init__(f"the message says {field} {in_message!r}, its payload {in_payload!r}")

    @property
    def reason(self) -> str:
        return "Message" + "".join(part.capitalize() for part in self.field.split("_")) + "Mismatch"


class DesynchronizedDecode(PayloadError):
    """Entropy decoding produced other symbols than the encoder coded."""


class CheckpointError(ValueError):
    """A file that is not a usable ParaHydra checkpoint."""
