"""The community REST API v2.0 over httpx: credential headers on every call, record-range paging,
errors mapped once (`errors.py`).

List Builder has no documented public endpoint; the calls below are the ones the simulator
documents (`ListBuilder/GetLists`, `ListBuilder/GetListMembers?listKey=`), in the API's style:
`StartRecord`/`EndRecord` 1-based and inclusive, answers `{"TotalCount", "Items", ...}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from writeback.adapters.base import ErrorKind
from writeback.adapters.community.config import Config
from writeback.adapters.community.errors import (
    CommunityError,
    from_response,
    from_transport,
)

LISTS = "ListBuilder/GetLists"
MEMBERS = "ListBuilder/GetListMembers"


@dataclass(frozen=True, slots=True)
class CommunityList:
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class Member:
    contact_key: str
    legacy_contact_key: str | None  # = the platform's Remote ID
    email: str | None  # as the community has it, unvalidated


class Client:
    def __init__(self, config: Config, *, transport: httpx.BaseTransport | None = None) -> None:
        headers = {
            "HLIAMKey": config.iam_key.resolve().get_secret_value(),
            "HLPassword": config.password.resolve().get_secret_value(),
            "Accept": "application/json",
        }
        self.page_size = config.page_size
        self._http = httpx.Client(
            base_url=config.api_url + "/", headers=headers, timeout=config.timeout_s, transport=transport
        )

    def lists(self) -> list[CommunityList]:
        return [CommunityList(str(item["ListKey"]), str(item["ListName"])) for item in self._pages(LISTS, {})]

    def members(self, list_key: str) -> list[Member]:
        return [
            Member(str(item["ContactKey"]), _text(item.get("LegacyContactKey")), _text(item.get("EmailAddress")))
            for item in self._pages(MEMBERS, {"listKey": list_key})
        ]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pages(self, endpoint: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        start = 1
        while True:
            body = self._get(endpoint, {**params, "StartRecord": start, "EndRecord": start + self.page_size - 1})
            try:
                items, total, end = body["Items"], int(body["TotalCount"]), int(body["EndRecord"])
            except (KeyError, TypeError, ValueError):
                raise CommunityError(ErrorKind.OUTAGE, "Unreadable", f"{endpoint}: an answer without a page") from None
            yield from items
            if end >= total or not items:
                return
            start = end + 1

    def _get(self, endpoint: str, params: dict[str, Any]) -> Any:
        try:
            response = self._http.get(endpoint, params=params)
        except httpx.HTTPError as exc:
            raise from_transport(endpoint, exc) from None
        if response.status_code != 200:
            raise from_response(endpoint, response)
        try:
            return response.json()
        except ValueError:
            raise CommunityError(ErrorKind.OUTAGE, "Unreadable", f"{endpoint}: an answer that is not JSON") from None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
