"""Reproducible entropy-parameter computation for cross-machine decoding.

The CDF index of every latent symbol comes from a predicted scale; if the decoder's
float arithmetic differs from the encoder's by one ulp near a scale-table boundary,
the rANS stream desynchronises and the rest of the image decodes to garbage
(``shared/notes/entropy-determinism.md`` measured this between 1 and 2 threads).
Encoder and decoder therefore run the entropy-parameter path — hyper-synthesis,
Para-EM contexts, scale/mean → index — on the CPU, in float32, with ONE intra-op
thread and deterministic algorithms, whatever the process's own thread count or
device. Only Para-JD (after entropy decoding) may run elsewhere. A process-wide
lock keeps concurrent callers (several encoder nodes in one process) from
changing the thread count under each other. The container's latent hash
(``codec.container``) reports a desync that this cannot rule out (e.g. a CPU with
a different instruction set picking other kernels).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def deterministic_entropy_path() -> Iterator[None]:
    """Run the enclosed entropy-parameter computation reproducibly (1 CPU thread)."""
    with _LOCK:
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)
