"""Clean: `corpus/raw` -> `corpus/clean` + `corpus/rejected/clean` (stage.py).

steps.py (the per-document chain and its counters), quality.py (the Gopher, C4 and FineWeb rules),
language.py (py3langid), pii.py (placeholders for e-mails, phones, IPs), dedup.py (exact and MinHash
near dedup), shards.py (the same steps over Dask shards), params.py (CleanParams and thresholds).
"""
