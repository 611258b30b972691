"""GET a page of a provider's admin API: retried with a backoff when the provider is busy
or failing, one typed error (with its cause) when it cannot be had.

The standard library's urllib, in the caller's thread, as the reports' delivery does: a
few requests a day need no HTTP client library. The admin key is sent in a header and
never appears in an error, a log line or the history.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 60  # seconds for one page: a month of buckets is answered in one or two
BACKOFF = (1.0, 4.0, 15.0, 60.0)  # seconds before each retry of a 429 or a 5xx
MAX_RETRY_AFTER = 300.0  # a Retry-After longer than this is not waited for in one fetch
# The causes of a failed fetch: the `cause` label of llm_reconcile_fetch_failures_total.
CAUSES = ("auth", "rate_limited", "server_error", "unreachable", "rejected", "malformed")


class FetchError(Exception):
    """A page could not be had: `cause` is one of CAUSES; the message names no secret."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


class AdminClient:
    """GET JSON pages of one account's admin API."""

    def __init__(self, base_url: str, headers: dict[str, str], *, backoff=BACKOFF,
                 sleep=time.sleep, timeout: float = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.headers = {**headers, "Accept": "application/json",
                        "User-Agent": "llm-usage-exporter"}
        self.backoff, self.sleep, self.timeout = backoff, sleep, timeout
        self.requests = 0  # pages asked for, retries included

    def get(self, path: str, params: list[tuple[str, str]]) -> dict:
        """The JSON object at `path?params`, after retries; FetchError otherwise."""
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        for attempt in range(len(self.backoff) + 1):
            retry = attempt < len(self.backoff)
            try:
                return self._once(url)
            except urllib.error.HTTPError as e:
                status, wait = e.code, _retry_after(e.headers.get("Retry-After"))
                e.close()
                if status in (401, 403):
                    raise FetchError("auth", f"{path}: {status}: the admin key was refused "
                                     "(not an admin key, revoked, or without the usage "
                                     "permission)") from None
                if status == 429 or status >= 500:
                    cause = "rate_limited" if status == 429 else "server_error"
                    if not retry:
                        raise FetchError(cause, f"{path}: {status} after {attempt} "
                                         "retries") from None
                    self.sleep(min(wait if wait is not None else self.backoff[attempt],
                                   MAX_RETRY_AFTER))
                    continue
                if 300 <= status < 400:
                    raise FetchError("rejected", f"{path}: {status}: a redirect, not followed "
                                     "(the admin key would go with it): check base_url") \
                        from None
                raise FetchError("rejected", f"{path}: {status}: the request was refused "
                                 "(a base_url or an id that is wrong?)") from None
            except (OSError, http.client.HTTPException) as e:  # URLError, TLS, a cut answer
                if not retry:
                    why = getattr(e, "reason", e)
                    raise FetchError("unreachable", f"{path}: cannot be reached: {why}") \
                        from None
                self.sleep(self.backoff[attempt])
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _once(self, url: str) -> dict:
        self.requests += 1
        request = urllib.request.Request(url, headers=self.headers)
        with OPENER.open(request, timeout=self.timeout) as answer:  # 4xx/5xx, 3xx raise
            body = answer.read()
        try:
            page = json.loads(body)
        except ValueError:
            raise FetchError("malformed", f"{urllib.parse.urlsplit(url).path}: the answer "
                             "is not JSON") from None
        if not isinstance(page, dict):
            raise FetchError("malformed", f"{urllib.parse.urlsplit(url).path}: the answer "
                             "is not a JSON object")
        return page


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse a redirect: urllib would send the admin key's header to wherever it points
    (another host, or plain HTTP); the admin APIs answer where they are asked."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx is raised as an HTTPError: "rejected"


OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: the backoff's own wait instead
        return None
