"""PII scrubbing: e-mail addresses, phone numbers and public IP addresses become placeholders.

Phone numbers are found by `phonenumbers` (Google's libphonenumber rules): a match must be a valid
number of its region (`regions`; a number written with "+" is matched in any), and written like a
phone number, with a "+" or in three or more digit groups. So UUIDs, hashes, version numbers,
netmasks, dates, decimals and long integers are not phones, which a digits-and-separators pattern
could not tell apart. IP addresses are kept unless public (private, loopback and documentation
ranges identify no one), and a dotted quad near a version word ("version 4.2.1.0") is not an IP.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Sequence

from phonenumbers import Leniency, PhoneNumberMatcher

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>"}
DEFAULT_REGIONS = ("US",)
_DIGIT_GROUPS = re.compile(r"\d+")
_VERSION_WORDS = re.compile(r"\bv\s*$|\b(?:version|release|build|upgrade|replaces)\b", re.IGNORECASE)
_VERSION_CONTEXT = 40  # characters before a dotted quad where a version word makes it a version
_MIN_PHONE_DIGITS = 7


def _is_public_ip(text: str, match: re.Match[str]) -> bool:
    if _VERSION_WORDS.search(text[max(0, match.start() - _VERSION_CONTEXT) : match.start()]):
        return False
    try:
        return ipaddress.ip_address(match.group(0)).is_global
    except ValueError:
        return False  # 999.1.1.1 is not an address


def _looks_like_a_phone(raw: str) -> bool:
    return raw.lstrip().startswith("+") or len(_DIGIT_GROUPS.findall(raw)) >= 3


def phone_spans(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> list[tuple[int, int]]:
    """(start, end) of every phone number in the text, sorted, never overlapping."""
    if sum(c.isdigit() for c in text) < _MIN_PHONE_DIGITS:  # the common case, and cheap
        return []
    spans: set[tuple[int, int]] = set()
    for region in regions or ("ZZ",):  # ZZ: no region, "+" numbers only
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            if _looks_like_a_phone(match.raw_string):
                spans.add((match.start, match.end))
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end))
    return kept


def scrub_pii(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> tuple[str, Counter[str]]:
    """The text with PII replaced, and how many of each kind were replaced."""
    counts: Counter[str] = Counter()

    def email(match: re.Match[str]) -> str:
        counts["email"] += 1
        return PLACEHOLDERS["email"]

    text = EMAIL.sub(email, text)
    pieces, last = [], 0
    for start, end in phone_spans(text, regions):
        pieces += [text[last:start], PLACEHOLDERS["phone"]]
        counts["phone"] += 1
        last = end
    text = "".join([*pieces, text[last:]])

    def ip(match: re.Match[str]) -> str:
        if not _is_public_ip(match.string, match):
            return match.group(0)
        counts["ip"] += 1
        return PLACEHOLDERS["ip"]

    return IPV4.sub(ip, text), counts
