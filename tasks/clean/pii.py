"""PII scrubbing: e-mail addresses, phone numbers and public IP addresses become placeholders."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w])")
# International or national numbers with separators: +1 415 555 0100, (020) 7946 0958, 555-867-5309.
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>"}


def _is_public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False  # 999.1.1.1 is not an address


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """The text with PII replaced, and how many of each kind were replaced.

    Private, loopback and documentation-range addresses are kept: they identify no one.
    """
    counts: Counter[str] = Counter()

    def replace(kind: str, keep: Callable[[str], bool] | None = None) -> Callable[[re.Match[str]], str]:
        def _sub(match: re.Match[str]) -> str:
            if keep is not None and keep(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return _sub

    text = EMAIL.sub(replace("email"), text)
    text = IPV4.sub(replace("ip", keep=lambda s: not _is_public_ip(s)), text)
    # fewer than 9 digits is a date, a version or a time, not a phone number
    text = PHONE.sub(replace("phone", keep=lambda s: _digits(s) < 9), text)
    return text, counts
