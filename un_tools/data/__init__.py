"""Data-preparation pipelines (IWSLT14 De-En, WMT14 En-Fr, Multi30k) in pure Python."""
