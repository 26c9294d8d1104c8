"""The benchmarks and diagnostics, one package; ``scripts/`` holds only their entry points.

- :mod:`.common`: what they share: the one argument-parser parent (``--threads``, ``--repeats``,
  ``--warmup``, ``--out``, ``--smoke``, ``--device``), the one peak-memory reader, interleaved
  timing, the machine description, models built with several norms from one set of weights;
- :mod:`.distributed` (``scripts/benchmark_distributed.py``): the cost of ``--sync-norm-stats``,
  with its workers :mod:`.sync_cost` (one norm call per rank) and :mod:`.update_timer`
  (``fairseq-train`` that records when each update starts);
- :mod:`.norm_batch_stats`, :mod:`.norm_input_stats` (``scripts/norm_*_stats.py``): statistics of
  the norms' inputs in a trained checkpoint;
- :mod:`.training` (``scripts/benchmark_training.py``, with :mod:`.un1d_emulation` and
  :mod:`.profile_training_step`): the training cost of every normalizer, eager and compiled;
- :mod:`.deploy` (``scripts/benchmark_deploy.py``): fairseq eager, ONNX Runtime fp32/int8 and
  CTranslate2 on trained models; :mod:`.inference` (``scripts/benchmark_inference.py``): eager
  inference with each norm;
- :mod:`.gpu_check` (``scripts/gpu-check.sh``, with :mod:`.gpu_stages` and :mod:`.gpu_fairseq`):
  the one prepared GPU check (norm tests on the device, fp16 training, inference), with a CPU
  ``--quick`` mode that CI runs.

torch and fairseq are imported by the functions that need them, so that ``--help`` is fast.
"""
