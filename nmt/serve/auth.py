"""Optional API keys: read once at start-up, compared in constant time.

Keys come from a file (one per line; blank lines and `#` comments skipped) and/or an environment
variable (keys separated by commas), never from the command line, where `ps` would show them to
every user of the machine. A client sends one as `Authorization: Bearer KEY` or `X-API-Key: KEY`.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Mapping, Optional

from nmt.errors import NmtError

KEYS_VARIABLE = "NMT_SERVE_API_KEYS"


def load_api_keys(path: Optional[Path], environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The keys of the file and of NMT_SERVE_API_KEYS; an unreadable or keyless file is an error
    (a server that was meant to need keys must not start open)."""
    keys: list[str] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or "not UTF-8 text"
            raise NmtError(f"cannot read the API key file {path}: {reason}") from None
        file_keys = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not file_keys:
            raise NmtError(f"the API key file {path} holds no key: write one key per line")
        keys += file_keys
    keys += [key.strip() for key in environ.get(KEYS_VARIABLE, "").split(",") if key.strip()]
    short = [key for key in keys if len(key) < 16]
    if short:
        raise NmtError(f"an API key of {len(short[0])} characters is too easy to guess: use at least 16 "
                       f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return tuple(keys)


def presented_key(headers: Mapping[str, str]) -> Optional[str]:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def key_is_valid(presented: Optional[str], keys: tuple[str, ...]) -> bool:
    """True when `presented` is one of `keys`. Every key is compared, each in constant time, so the
    time taken says nothing about how much of a key matched, or which."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8"))
    return found
