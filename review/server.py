"""Run the desk with uvicorn (`draftflow desk` calls this)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import uvicorn

from review.app import create_app
from storage.db import close_databases

log = logging.getLogger(__name__)


def serve(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    https_only: bool = False,
    home: Path | None = None,
) -> None:
    """Serve the desk until interrupted.

    Listening beyond this machine without `https_only` sends session cookies in clear text: put the
    desk behind a TLS-terminating proxy and pass `https_only=True` (the cookie is then Secure).
    """
    if not https_only and not _is_loopback(host):
        log.warning(
            "the desk listens on %s without https_only: serve it behind HTTPS and pass https_only=True "
            "so session cookies are never sent in clear text",
            host,
        )
    app = create_app(database_url, https_only=https_only, home=home)
    # proxy_headers: behind a TLS proxy, the scheme and client address come from X-Forwarded-* (trusted from
    # localhost only, uvicorn's default forwarded_allow_ips)
    try:
        uvicorn.run(app, host=host, port=port, proxy_headers=True, log_level="info")
    finally:
        close_databases()  # the connection pool's sockets and SQLite handles go with the server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
