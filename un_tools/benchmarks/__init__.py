"""The benchmarks and diagnostics, one package; ``scripts/`` holds only their entry points.

- :mod:`.common`: what they share: the one argument-parser parent (``--threads``, ``--repeats``,
  ``--warmup``, ``--out``, ``--smoke``, ``--device``), the one peak-memory reader, interleaved
  timing, the machine description, models built with several norms from one set of weights;
- :mod:`.distributed` (``scripts/benchmark_distributed.py``): the cost of ``--sync-norm-stats``,
  with its workers :mod:`.sync_cost` (one norm call per rank) and :mod:`.update_timer`
  (``fairseq-train`` that records when each update starts);
- :mod:`.norm_batch_stats`, :mod:`.norm_input_stats` (``scripts/norm_*_stats.py``): statistics of
  the norms' inputs in a trained checkpoint.

torch and fairseq are imported by the functions that need them, so that ``--help`` is fast.
"""
