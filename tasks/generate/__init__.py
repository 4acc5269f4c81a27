"""Generate: drafts from a model version for every prompt x sample, into the database (stage.py).

prompts.py (prompt files and the prompts table), sampling.py (the batched KV-cache decode loop with
per-draft seeds), params.py (GenerationParams, SampleSettings), data/ (the shipped prompts).
"""
