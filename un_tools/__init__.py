"""Tools of un-fairseq that must start fast and run without fairseq or torch: importing this
package loads neither (``un_fairseq``, the plugin, imports fairseq to register its models).

- :mod:`.atomic`: file output that is never left half-written;
- :mod:`.norm_spec`: the norm registry's table (names, classes, options; the plugin reads it);
- :mod:`.data`: data preparation (``scripts/prepare-*.sh``); fairseq runs only as a subprocess;
- :mod:`.reproduce`: the drivers of ``scripts/train.sh``, ``evaluate.sh``, ``reproduce-table*.sh``;
- :mod:`.benchmarks`: every benchmark and diagnostic; torch and fairseq are imported by the
  functions that time or run them.
"""
