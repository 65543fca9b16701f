"""ParaHydra's modules, named after the paper: OPAM, PMIFM, Para-JD, Para-EM."""
from .compressai_import import install as _install_compressai_stubs

# Before any module of this package imports compressai: only the parts used are loaded.
_install_compressai_stubs()
