"""The pipeline's stages, one package each; plain typed functions that import and run without Prefect.

    ingest/    sources and formats -> corpus/raw (incremental), the embedded stdlib-docs corpus
    clean/     normalize, language ID, quality rules, PII, exact + near dedup -> corpus/clean
    tokenize/  the run's tokenizer (base model's or a trained BPE), packed train/val blocks
    train/     the training loop, checkpoints, DDP, promotion, the loss-curve report
    generate/  prompts, the batched KV-cache decode loop, drafts into the database
    review/    draft checks, the queue step, editors' actions, metrics, export, feedback

Shared by several stages: `models` (loading a base model and its tokenizer, the device),
`progress` (the progress callback type), `shards` (cutting a dataset into row ranges), `text`
(document ids). In each stage package, `stage.py` holds the entry point the flow calls and
`params.py` the pydantic parameters the CLI and the Prefect UI show. The Prefect `@task` wrappers
of every stage live in `flows/prefect_tasks.py`.
"""
