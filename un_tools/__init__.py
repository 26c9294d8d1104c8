"""Tools of un-fairseq that must start fast and run without fairseq or torch: importing this
package loads neither. The tools read the plugin's facts (the norm registry, folding) from
``un_fairseq`` itself, which imports torch and fairseq, so they import it inside the functions
that need it; file output that is never left half-written is ``un_atomic``.

- :mod:`.data`: data preparation (``scripts/prepare-*.sh``); fairseq runs only as a subprocess;
- :mod:`.reproduce`: the drivers of ``scripts/train.sh``, ``evaluate.sh``, ``reproduce-table*.sh``;
- :mod:`.benchmarks`: every benchmark and diagnostic; torch and fairseq are imported by the
  functions that time or run them.
"""
