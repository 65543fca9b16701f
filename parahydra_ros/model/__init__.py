"""ParaHydra's modules, named after the paper: OPAM, PMIFM, Para-JD, Para-EM."""
