"""Pipeline stages: one module per stage, plain typed functions plus a thin Prefect `@task`."""
