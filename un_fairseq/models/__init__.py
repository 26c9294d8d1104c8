"""fairseq models of the plugin (registered on import)."""

from .transformer_un import TransformerUNModel  # noqa: F401
