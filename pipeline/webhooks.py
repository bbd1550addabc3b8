"""Signed completion webhooks: a JSON body and an HMAC-SHA256 signature the receiver can check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from pipeline.errors import QuireError

SIGNATURE_HEADER = "X-Quire-Signature"
TIMESTAMP_HEADER = "X-Quire-Timestamp"
# The same on every try of one webhook (pipeline.db.jobs.delivery_id), and in the signed body too:
# a try may reach the receiver and its answer be lost, so a receiver keeps the ids it has acted on.
DELIVERY_HEADER = "X-Quire-Delivery"


class WebhookError(QuireError):
    """The receiver could not be reached or did not answer 2xx; a retry may help."""

    retryable = True


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """'sha256=<hex>' over '<timestamp>.<body>': the timestamp is signed so a replay can be refused."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           tolerance_s: float = 300, now: float | None = None) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def deliver(url: str, payload: dict[str, Any], secret: str, *, timeout: float = 10.0,
            delivery: str | None = None) -> int:
    """POST the payload (named `delivery` in DELIVERY_HEADER); returns the HTTP status or raises
    WebhookError."""
    body = encode(payload)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "quire-webhook/1",
        TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body),
        **({DELIVERY_HEADER: delivery} if delivery else {}),
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        raise WebhookError(f"webhook answered {e.code}", source=url) from e
    except (urllib.error.URLError, OSError) as e:
        raise WebhookError(f"webhook unreachable: {e}", source=url) from e
