"""The normalizer names, kept importable from here for older code: the registry's table is
:mod:`un_tools.norm_spec`, and these are read from it."""

from .norm_spec import (  # noqa: F401
    BATCH_STAT_NORM_TYPES, DEFAULT_NORM_TYPE, NORM_TYPES, OFFLINE_NORM_TYPES, UN_DEFAULT_MOMENTUM,
)
