"""Reproducible entropy-parameter computation for cross-machine decoding.

The CDF index of every latent symbol comes from a predicted scale; if the decoder's
float arithmetic differs from the encoder's by one ulp near a scale-table boundary,
the ANS stream desynchronises and the rest of the image decodes to garbage
(``shared/notes/entropy-determinism.md`` measured this between 1 and 2 threads).
Encoder and decoder therefore run the entropy-parameter path — hyper-synthesis,
Para-EM contexts, scale/mean → index — on the CPU, in float32, with ONE intra-op
thread and deterministic algorithms, whatever the process's own thread count or
device. Only Para-JD (after entropy decoding) may run elsewhere.

The thread count is set for the calling thread only (PyTorch's OpenMP backend keeps
it per thread), so several threads may each run one view's entropy path at the same
time — the joint decoder entropy-decodes the views of a group in parallel that way —
without changing the thread count of the others. The container's latent hash
(``codec.container``) reports a desync that this cannot rule out (e.g. a CPU with
a different instruction set picking other kernels).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_DETERMINISTIC_LOCK = threading.Lock()
_deterministic_users = 0
_deterministic_before = 0


@contextmanager
def _deterministic_algorithms() -> Iterator[None]:
    """Deterministic algorithms (a process-wide switch) while any thread needs them.

    ``set_deterministic_debug_mode("error")`` is ``use_deterministic_algorithms(True)``
    for eager ops without its import of ``torch._inductor`` (and so ``torch._dynamo``):
    seconds of CPU on the first coded view of a process, for a compiler not used here.
    The previous mode (off, warn or error) is restored.
    """
    global _deterministic_users, _deterministic_before
    with _DETERMINISTIC_LOCK:
        if _deterministic_users == 0:
            _deterministic_before = torch.get_deterministic_debug_mode()
            torch.set_deterministic_debug_mode("error")
        _deterministic_users += 1
    try:
        yield
    finally:
        with _DETERMINISTIC_LOCK:
            _deterministic_users -= 1
            if _deterministic_users == 0:
                torch.set_deterministic_debug_mode(_deterministic_before)


@contextmanager
def deterministic_entropy_path() -> Iterator[None]:
    """Run the enclosed entropy-parameter computation reproducibly (1 CPU thread).

    Thread-safe: only the calling thread's intra-op thread count changes.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _deterministic_algorithms(), torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(threads)
