"""Ingest: files, folders and the embedded corpus -> `corpus/raw`, incrementally (stage.py).

sources.py (what a source is, its files and their content hashes), formats.py (one parser per file
format), records.py (what a reader yields: a document or a rejection), stdlib_docs.py (the embedded
default corpus), params.py (IngestOptions).
"""
