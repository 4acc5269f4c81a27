"""Review: everything between a generated draft and an editor's decision, and back into training.

stage.py (check a run's drafts and queue them), checks.py (originality, repetition, PII, blocklist,
length), shards.py (the checks over Dask shards), actions.py (claim, approve, reject, edit, comment),
metrics.py, export.py (approved drafts and preference pairs), feedback.py (approved drafts as a corpus
source), params.py (CheckParams). No HTTP here: the web desk (review/ at the top level) calls these.
"""
