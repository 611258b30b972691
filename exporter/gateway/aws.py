"""Bedrock requests signed again with the gateway's own AWS credentials (SigV4).

A client's SigV4 signature covers the host it signed for, the gateway's, so it cannot be
forwarded to AWS. With `aws_credentials: gateway`, the client's signature headers are
dropped and the request is signed with credentials from AWS's standard chain (environment,
shared profile, web identity in Kubernetes), by botocore's own signer, as boto3 signs. The
client is then named by its managed key, or by the access key id it signed with.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

# What a client's own signature sent, dropped when the gateway signs instead.
SIGNATURE_HEADERS = frozenset((b"authorization", b"x-amz-date", b"x-amz-security-token",
                               b"x-amz-content-sha256"))
_REGION = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")
_SIGNED = ("authorization", "x-amz-date", "x-amz-security-token")


def _never() -> bool:
    return False


class NoCredentials(Exception):
    """No AWS credentials were found for a service that signs with the gateway's."""


def region_of(base_url: str, region: str | None) -> str | None:
    """The region to sign for: the configured one, else the Bedrock endpoint's."""
    if region:
        return region
    found = _REGION.search(base_url)
    return found.group(1) if found else None


class Signer:
    """Sign a service's requests as boto3 signs them, for Bedrock in one region."""

    def __init__(self, region: str, credentials: Any = None):
        import botocore.session  # loaded only where a service signs: a large import
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        self.region, self._auth, self._request = region, SigV4Auth, AWSRequest
        self.credentials = credentials or botocore.session.Session().get_credentials()
        if self.credentials is None:
            raise NoCredentials("no AWS credentials found (environment, shared profile or "
                                "web identity)")

    async def headers(self, method: str, url: str, body: bytes,
                      content_type: str | None) -> bytes:
        """The header lines that sign this request (Authorization, X-Amz-Date and, for
        temporary credentials, X-Amz-Security-Token)."""
        request = self._request(method=method, url=url, data=body,
                                headers={"Content-Type": content_type} if content_type else {})
        if getattr(self.credentials, "refresh_needed", _never)():
            # Temporary credentials near their end (web identity, assumed roles, about
            # hourly): refreshed by a call to AWS, which must not stall the event loop.
            frozen = await asyncio.to_thread(self.credentials.get_frozen_credentials)
        else:
            frozen = self.credentials.get_frozen_credentials()
        self._auth(frozen, "bedrock", self.region).add_auth(request)
        return b"".join(b"%s: %s\r\n" % (name.encode(), request.headers[name].encode())
                        for name in _SIGNED if name in request.headers)
