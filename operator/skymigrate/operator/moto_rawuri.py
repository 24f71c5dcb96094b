"""moto's standalone server, with SigV4 signatures checked against the URI the client actually sent.

moto 5 rebuilds the canonical request from werkzeug's re-quoted URL, so any key whose encoding werkzeug
normalises differently from the SDK (unicode, ``+ * [ ] " ' \\ ; ,`` ...) fails with SignatureDoesNotMatch
once IAM auth is on, even from boto3. Real S3 signs the raw path; so do we. Object keys were always
parsed from the raw path, only the signature check was wrong. Run as ``python moto_rawuri.py -H ... -p ...`` (see locals3.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from moto.core import authorization

_original = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def _with_raw_uri(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    raw = getattr(getattr(self, "request", None), "environ", {}).get("RAW_URI")
    if not raw:
        return _original(self, iam_request_cls, resource)
    saved = self.uri
    u = urlsplit(saved)
    self.uri = f"{u.scheme}://{u.netloc}{raw}"
    try:
        return _original(self, iam_request_cls, resource)
    finally:
        self.uri = saved


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _with_raw_uri  # type: ignore[method-assign]

if __name__ == "__main__":
    from moto.server import main

    main()
