"""Pointing real Salesforce clients at the simulator.

simple-salesforce builds every URL as `https://…`: the token URL from `domain`
(`https://{domain}.salesforce.com/services/oauth2/token`) and the data URLs from the
`instance_url` the token response names. The simulator speaks plain HTTP on loopback, so the
client gets a `requests` session that sends each of its requests to the simulator, keeping the
path and query. The recipe is in the package docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import requests


def simple_salesforce_session(sim_url: str) -> requests.Session:
    """A `requests.Session` whose every request goes to `sim_url` (scheme and host:port),
    whatever scheme and host the client put in the URL. Pass it as `Salesforce(session=...)`."""
    import requests  # simple-salesforce's own dependency; only needed when this is used

    target = urlsplit(sim_url)

    class LoopbackSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url if isinstance(url, str) else url.decode())
            url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))
            return super().request(method, url, *args, **kwargs)

    return LoopbackSession()
