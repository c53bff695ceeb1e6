"""Secrets out of every text the package writes or prints: the API key, and credentials inside a URL.

A base URL may carry user-info (http://alice:S3CRET@host/v1): httpx then sends it as Basic auth, servers echo
the header back in their errors, and the URL itself lands in run.json, the report README and error
messages. `redact` removes the key, the user-info of any URL, what OPENAI_BASE_URL's user-info encodes to
(the password, `user:password` and its base64) and the token after any `Basic`/`Bearer`; `url` gives a URL
without its user-info. Every writer of a URL or a server message goes through them."""
from __future__ import annotations

import base64
import os
import re
from urllib.parse import unquote, urlsplit

MASK = "<redacted>"
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
_AUTH = re.compile(r"(?i)\b(Basic|Bearer)(\s+)[A-Za-z0-9+/=._~-]{4,}")


def url(u: str) -> str:
    """`u` without the user-info of its authority: http://alice:pw@host/v1 -> http://<redacted>@host/v1."""
    return _USERINFO.sub(f"{MASK}@", u)


def _secrets() -> list[str]:
    """The strings no output may hold: the API key, and OPENAI_BASE_URL's user-info in every form a client
    or server may show it (raw, URL-decoded, the password alone, `user:password` in base64)."""
    out = [os.environ.get("OPENAI_API_KEY") or ""]
    try:
        parts = urlsplit(os.environ.get("OPENAI_BASE_URL") or "")
        user, password = parts.username, parts.password
    except ValueError:
        user = password = None
    if user or password:
        plain = f"{unquote(user or '')}:{unquote(password or '')}"
        out += [plain, unquote(password or ""), password or "", base64.b64encode(plain.encode()).decode()]
    return sorted({s for s in out if len(s) >= 4}, key=len, reverse=True)  # longest first: no partial leftovers


def redact(text: str) -> str:
    """`text` with every secret replaced by <redacted> (module docstring)."""
    for s in _secrets():
        text = text.replace(s, MASK)
    return _AUTH.sub(rf"\1\2{MASK}", url(text))
