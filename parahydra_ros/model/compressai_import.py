"""Import CompressAI's building blocks without running ``compressai/__init__.py``.

``import compressai`` (CompressAI 1.2.8, pinned in requirements.txt) imports every
sub-package: ``compressai.datasets`` pulls in its point-cloud datasets and so
torch_geometric, pandas and sympy, and ``compressai.models`` every published model
(point-cloud ones too). That costs seconds of CPU at every start of every command and
node, thousands of modules for Python to tear down at exit, and torch_geometric's
``torch.jit.script`` FutureWarning printed twice per start (``bench/startup.py``
measures it). ParaHydra uses only ``entropy_models``, ``layers``, ``ops``,
``models.base`` and ``models.utils``.

:func:`install` therefore puts *package stubs* into ``sys.modules`` before the first
``compressai.*`` import (:data:`STUBS`): module objects made from the installed
packages' specs, so they carry the real ``__path__``, whose ``__init__`` is not run.
Python then imports ``compressai.entropy_models`` and the rest from the installed files
as usual — and only what is asked for. A stub gets the few names its ``__init__`` would
have defined and that the imported modules use: for ``compressai``, the entropy-coder
registry (``get_entropy_coder``, … — CompressAI's rANS coder is never used for coding
here, see ``model.entropy_coder``) and ``__version__``; for ``compressai.latent_codecs``,
``LatentCodec`` (``models.base`` imports it; the package's ``__init__`` imports every
latent codec and, through ``compressai.registry``, torch_geometric).

The stubs stay transparent: the first use of any other public name of a stubbed
package (``compressai.zoo``, ``from compressai.models import Cheng2020Anchor``) runs that
package's real ``__init__`` into the stub, so code that wants the whole package still gets
it (and pays for it then). If compressai was imported before this runs (e.g. by a
user's script), nothing is changed.
"""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

_ENTROPY_CODERS = ["ans"]
#: The packages not to initialise, and the names each stub takes from a sub-module.
STUBS: dict[str, dict[str, str]] = {
    "compressai": {"__version__": "compressai.version"},
    "compressai.models": {},
    "compressai.latent_codecs": {"LatentCodec": "compressai.latent_codecs.base"},
}


def install() -> None:
    """Register the stubs unless ``compressai`` is imported already (idempotent)."""
    if "compressai" in sys.modules:
        return
    try:
        for name in STUBS:
            stub = sys.modules[name] = _stub(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, stub)
        package = sys.modules["compressai"]
        package._entropy_coder = _ENTROPY_CODERS[0]
        package.get_entropy_coder = lambda: package._entropy_coder
        package.available_entropy_coders = lambda: list(_ENTROPY_CODERS)
        package.set_entropy_coder = _set_entropy_coder(package)
        for name, exports in STUBS.items():
            sys.modules[name].__getattr__ = _lazy_exports(name, exports)
    except BaseException:
        for name in STUBS:
            sys.modules.pop(name, None)
        raise


def _lazy_exports(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` (PEP 562) for a stub: an export is imported on first use (so
    installing the stubs imports nothing: ``parahydra info`` must not load torch); any other
    public name runs the package's real ``__init__`` into the stub first, so code that wants
    the whole package (``compressai.zoo``, ``from compressai.models import Cheng2020Anchor``)
    still gets it, paying then what this module spares everyone else."""
    initialised = False

    def __getattr__(attribute: str):
        nonlocal initialised
        module = sys.modules[package]
        if attribute in exports:
            value = getattr(importlib.import_module(exports[attribute]), attribute)
        elif attribute.startswith("__") or initialised:
            raise AttributeError(f"module {package!r} has no attribute {attribute!r}")
        elif importlib.util.find_spec(f"{package}.{attribute}") is not None:
            # A sub-module (``from compressai import ans`` asks for the attribute first).
            value = importlib.import_module(f"{package}.{attribute}")
        else:
            initialised = True
            module.__spec__.loader.exec_module(module)
            if attribute not in module.__dict__:
                raise AttributeError(f"module {package!r} has no attribute {attribute!r}")
            value = module.__dict__[attribute]
        setattr(module, attribute, value)
        return value

    return __getattr__


def _stub(name: str) -> ModuleType:
    """The package ``name`` as a module object whose ``__init__`` has not run."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an installed package")
    return importlib.util.module_from_spec(spec)


def _set_entropy_coder(package: ModuleType):
    def set_entropy_coder(entropy_coder: str) -> None:
        if entropy_coder not in _ENTROPY_CODERS:
            raise ValueError(f"Invalid entropy coder {entropy_coder!r}, choose from {_ENTROPY_CODERS}")
        package._entropy_coder = entropy_coder

    return set_entropy_coder
