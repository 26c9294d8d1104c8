"""fairseq models of the plugin (registered on import), and a ``--help`` that shows their flags."""

from . import full_help
from .transformer_un import TransformerUNModel  # noqa: F401

full_help.install()
