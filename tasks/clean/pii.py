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
from bisect import bisect_right
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


# Detection runs in the order scrubbing always did: e-mails, then phones in the text with the e-mails
# replaced, then IPs in the text with both replaced (a placeholder changes what an IP's context or a
# phone's digit groups look like). Spans found in a replaced text are mapped back to the original, so
# `pii_spans` and `scrub_pii` cannot disagree.
_Edits = list[tuple[int, int, int]]  # per placeholder: (start, end) in the replaced text, end in the original


def _replace(text: str, spans: Sequence[tuple[int, int]], placeholder: str) -> tuple[str, _Edits]:
    pieces, edits, last, shift = [], [], 0, 0
    for start, end in spans:
        pieces += [text[last:start], placeholder]
        edits.append((start + shift, start + shift + len(placeholder), end))
        shift += len(placeholder) - (end - start)
        last = end
    return "".join([*pieces, text[last:]]), edits


def _to_original(span: tuple[int, int], edits: _Edits) -> tuple[int, int]:
    """A span of a replaced text that lies outside every placeholder, in the text before replacing."""
    if not edits:
        return span
    starts = [start for start, _, _ in edits]

    def position(char: int) -> int:
        i = bisect_right(starts, char) - 1
        return char if i < 0 else char - edits[i][1] + edits[i][2]

    return position(span[0]), position(span[1] - 1) + 1


def pii_spans(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each e-mail, phone and public IP in the text, sorted: what `scrub_pii`
    replaces, by the same rules; kind is "email", "phone" or "ip"."""
    emails = [match.span() for match in EMAIL.finditer(text)]
    no_emails, email_edits = _replace(text, emails, PLACEHOLDERS["email"])
    phones = phone_spans(no_emails, regions)
    no_phones, phone_edits = _replace(no_emails, phones, PLACEHOLDERS["phone"])
    found = [(*span, "email") for span in emails]
    found += [(*_to_original(span, email_edits), "phone") for span in phones]
    found += [
        (*_to_original(_to_original(match.span(), phone_edits), email_edits), "ip")
        for match in IPV4.finditer(no_phones)
        if _is_public_ip(no_phones, match)
    ]
    return sorted(found)


def scrub_pii(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> tuple[str, Counter[str]]:
    """The text with PII replaced, and how many of each kind were replaced."""
    counts: Counter[str] = Counter()
    pieces, last = [], 0
    for start, end, kind in pii_spans(text, regions):
        pieces += [text[last:start], PLACEHOLDERS[kind]]
        counts[kind] += 1
        last = end
    return "".join([*pieces, text[last:]]), counts
