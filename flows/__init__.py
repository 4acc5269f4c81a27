"""Prefect flows that chain the stages, their parameter models, and the `draftflow` CLI."""
