"""The draft checks' parameters: when a draft is held (`flagged`) instead of entering the normal queue."""

from __future__ import annotations

from pydantic import Field

from storage.params import Params


class CheckParams(Params):
    """When a draft is held (`flagged`) instead of entering the normal queue."""

    max_copied_span: int = Field(20, ge=1, description="Flag 'copied' when this many words in a row are in the corpus.")
    max_copied_13gram_share: float = Field(0.3, ge=0, le=1, description="Flag 'copied' above this share.")
    max_repetition: float = Field(0.5, ge=0, le=1, description="Flag 'repetitive' above this repeated 3-gram share.")
    flag_pii: bool = Field(True, description="Flag drafts that contain e-mails, phone numbers or public IPs.")
    blocklist: list[str] = Field(default_factory=list, description="Terms that flag a draft (case-insensitive).")
    min_new_words: int = Field(
        3, ge=0, description="Flag 'too_short' when the model wrote fewer new words than this (the prompt not counted)."
    )
    max_echo_share: float = Field(
        0.8, ge=0, le=1, description="Flag 'echo' when more of the new words' 3-grams than this repeat the prompt."
    )
