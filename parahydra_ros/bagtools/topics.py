"""Topic names: where ``compress`` puts a camera's latents and where ``decompress`` restores its images.

==========================================  ==========================================  ===================
camera topic (input of ``compress``)        latent topic                                ``decompress`` writes
==========================================  ==========================================  ===================
``/cam0/image_raw`` (``Image``)             ``/cam0/image_raw/parahydra``               ``/cam0/image_raw``
``/cam1/image_raw/compressed``              ``/cam1/image_raw/compressed/parahydra``    ``/cam1/image_raw``
(``CompressedImage``)
recorded from ``encoder_node``              ``/cam2/latent``                            ``/cam2/image_reconstructed``
==========================================  ==========================================  ===================

So a latent topic ``<T>/parahydra`` restores ``<T>``, except that a ``<B>/compressed``
topic restores ``<B>`` (image_transport's raw topic: a ``sensor_msgs/Image`` on a
``…/compressed`` topic would confuse image_transport subscribers) unless ``<B>`` is
already a topic of the bag. Any other latent topic (a live pipeline's recording)
restores ``<namespace>/image_reconstructed``, the decoder node's default name.
``CompressedLatent.camera`` also holds the source topic, for information.
"""
from __future__ import annotations

from collections.abc import Collection

SUFFIX = "/parahydra"
_COMPRESSED = "/compressed"


def latent_topic(camera_topic: str) -> str:
    """The topic ``compress`` writes a camera's ``CompressedLatent`` messages on."""
    return camera_topic.rstrip("/") + SUFFIX


def restored_topic(latent: str, taken: Collection[str] = ()) -> str:
    """The topic ``decompress`` writes a latent topic's images on (``taken``: the bag's other topics)."""
    if latent.endswith(SUFFIX) and len(latent) > len(SUFFIX):
        source = latent[: -len(SUFFIX)]
        if source.endswith(_COMPRESSED) and len(source) > len(_COMPRESSED):
            raw = source[: -len(_COMPRESSED)]
            if raw not in taken:
                return raw
        return source
    parent = latent.rstrip("/").rpartition("/")[0]
    return f"{parent}/image_reconstructed"
