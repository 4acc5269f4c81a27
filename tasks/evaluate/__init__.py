"""Evaluate: every model version measured the same way on the data home's fixed evaluation set.

eval_set.py (the held-out documents and prompts, frozen on first use), bits_per_byte.py (likelihood
comparable across tokenizers), drafts.py (drafts for the fixed prompts and seeds, and their
metrics), promotion.py (promote on bits per byte, guarded by the draft metrics), stage.py.
"""
