"""Benchmarks of the project (timing, memory, the GPU check); torch and fairseq are imported
only by the code that needs them."""
