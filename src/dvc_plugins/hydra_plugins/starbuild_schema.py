"""Hydra imports every module of `hydra_plugins` before it composes: this one registers starbuild's
typed config schema, so `dvc exp run` (which composes conf/ in DVC's own process, adding
`hydra.plugins_path = src/dvc_plugins` from .dvc/config to sys.path) checks keys and types as
`make params` does. The folder is on no other sys.path: stages and `make params` register the
schema themselves, and only when they compose conf/."""

import starbuild.conf_schema  # noqa: F401
