"""One-time set-up: the drafts database schema and the Prefect `gpu` concurrency limit.

The fine-tune task carries the `gpu` tag; without a limit on that tag each task call costs ~3x
more in Prefect's bookkeeping, and with one, two trainings never share a GPU.
"""

from __future__ import annotations

from typing import Any

from storage.db import open_database
from storage.errors import hide_password
from storage.settings import Settings

GPU_TAG = "gpu"


def setup_prefect(gpu_slots: int = 1) -> dict[str, Any]:
    """Create (or update) the `gpu` tag concurrency limit on the configured Prefect API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=gpu_slots)  # an upsert by tag
        limit = client.read_concurrency_limit_by_tag(GPU_TAG)
        return {"tag": limit.tag, "concurrency_limit": limit.concurrency_limit, "api": str(client.api_url)}


def setup_all(settings: Settings, gpu_slots: int = 1) -> dict[str, Any]:
    open_database(settings.database_url)  # applies any missing migrations
    return {"database": hide_password(settings.database_url), "gpu_limit": setup_prefect(gpu_slots)}
