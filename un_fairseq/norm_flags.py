"""``python -m un_fairseq.norm_flags``: print the normalization flags of the ``transformer_un``
architectures with their help (fairseq's ``--help`` prints before it adds any model flag).

A module of its own, imported by nothing in the plugin, so that running it does not re-run a
module the package has already imported (which Python warns about)."""

from .models.norm_args import main

if __name__ == "__main__":
    raise SystemExit(main())
