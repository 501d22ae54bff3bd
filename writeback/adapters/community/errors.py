"""The community API's failures, mapped once to what a sync reports.

A sync is all or nothing, so every error ends it before the target group is touched; the kind
says what an operator does about it (wait for the community, fix the credentials, look at the
list). Messages name the endpoint and the API's code, never a member or a credential.
"""

from __future__ import annotations

import httpx

from writeback.adapters.base import ErrorKind

LIST_NOT_FOUND = "ListNotFound"


class CommunityError(Exception):
    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.code, self.message = kind, code, message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ListVanished(CommunityError):
    """The list was deleted (or its key changed) while it was being read."""


def from_transport(endpoint: str, exc: httpx.HTTPError) -> CommunityError:
    if isinstance(exc, httpx.TimeoutException):
        return CommunityError(ErrorKind.OUTAGE, "Timeout", f"{endpoint}: the community did not answer in time")
    return CommunityError(ErrorKind.OUTAGE, "Unreachable", f"{endpoint}: the community cannot be reached ({type(exc).__name__})")


def from_response(endpoint: str, response: httpx.Response) -> CommunityError:
    status = response.status_code
    code = _code(response) or f"HTTP{status}"
    if status == 401:
        return CommunityError(
            ErrorKind.CREDENTIALS, code, f"{endpoint}: the community refused the HLIAMKey/HLPassword (401)"
        )
    if status == 404 and code == LIST_NOT_FOUND:
        return ListVanished(ErrorKind.REJECTED, code, f"{endpoint}: the list is no longer in the community (404)")
    if status == 429:
        return CommunityError(ErrorKind.THROTTLED, code, f"{endpoint}: the community asks us to slow down (429)")
    if status >= 500:
        return CommunityError(ErrorKind.OUTAGE, code, f"{endpoint}: the community is unavailable ({status})")
    return CommunityError(ErrorKind.REJECTED, code, f"{endpoint}: the community refused the request ({status})")


def _code(response: httpx.Response) -> str | None:
    """The body's `Code`, when the answer is the API's JSON (an outage page is HTML)."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("Code") if isinstance(body, dict) else None
    return str(code)[:64] if code else None
