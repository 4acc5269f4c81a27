"""Everything draftflow persists: Parquet corpora, the SQL database, the model registry.

This package never imports Prefect: it is the bottom layer (flows -> tasks -> storage).
"""
