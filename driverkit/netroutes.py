"""Where a distro repository URL is really fetched from (`--repo-mirror FROM=TO`).

Plans, manifests and error messages name the distro's own URLs (what a user can look up);
a fleet behind a firewall mirrors those repositories internally, and the mirror.list files
inside them still name the public hosts. So the rewrite happens at the one place every
repository request passes: the transport of the requests session, for every URL, including
those read out of repository metadata and redirects.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from driverkit.targets.base import Mirrors


def routed_url(url: str, routes: tuple[tuple[str, str], ...]) -> str:
    """`url` with the first matching prefix replaced; `routes` come longest prefix first."""
    for prefix, replacement in routes:
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


class _RoutingAdapter(HTTPAdapter):
    def __init__(self, routes: tuple[tuple[str, str], ...]) -> None:
        super().__init__(max_retries=0)
        self._routes = routes

    def send(  # type: ignore[override]  # passes every keyword on unchanged
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if request.url is not None:
            request.url = routed_url(request.url, self._routes)
        return super().send(request, **kwargs)


def repository_session(mirrors: Mirrors) -> requests.Session:
    """A session that fetches through the run's repository mirrors (a plain one without)."""
    session = requests.Session()
    if mirrors.repo_mirrors:
        adapter = _RoutingAdapter(mirrors.repo_mirrors)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session
