"""Moved to :mod:`un_tools.benchmarks.common` (the tools live apart from the plugin); this name
stays only until the benchmarks still importing it from here import it from there."""

from un_tools.benchmarks.common import *  # noqa: F401,F403
