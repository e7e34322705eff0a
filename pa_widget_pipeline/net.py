"""HTTP facts both clients and the registry share: what counts as a loopback host, how to read Retry-After."""

from __future__ import annotations

import email.utils
import ipaddress
import math
import time
from typing import Callable


def is_loopback_host(host: str | None) -> bool:
    """`localhost` or a loopback IP literal. Names under `.localhost` are refused on purpose: whether they
    resolve to loopback depends on the resolver, and plain http sends tokens in the clear."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None, now_wall: Callable[[], float] = time.time) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP date; anything unreadable counts as absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_wall()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
