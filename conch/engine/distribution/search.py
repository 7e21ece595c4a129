"""``GET /images/search``: a real search wherever the registry offers one.

Contract: :func:`search(registries, term, *, limit, filters, credentials)` returns
docker's ``registry.SearchResult`` records as dicts (``star_count``, ``is_official``,
``name``, ``is_automated``, ``description``), already filtered and cut to ``limit``.

Where the search goes (moby ``registry.splitReposSearchTerm``): a term whose first
path part looks like a host (has ``.`` or ``:`` or is ``localhost``) names that
registry and the rest is the query; anything else is Docker Hub's. Docker Hub is asked
its own v1 search endpoint, as dockerd does. Other registries speak only the
Distribution API (v2), which has no search, so conch walks its ``/v2/_catalog`` (what
the CNCF registry, zot and most self-hosted ones serve) and keeps the repositories whose
name contains the query, case-insensitively; names come back registry-qualified
(``localhost:5000/busybox``) so they can be pulled as shown. A registry that serves
neither answers with a clear error naming what was tried: never "page not found".

Validation follows moby ``registry/search.go``: limit 0 means 25; outside [1, 100] is
``limit N is outside the range of [1, 100]``; filters ``is-automated``, ``is-official``
(bools) and ``stars`` (an int) only.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from conch.errors import InvalidArgument, NotFound, Unavailable
from conch.registry.client.auth import ANONYMOUS, Credentials
from conch.registry.client.transport import Registries, raise_for

DEFAULT_LIMIT = 25
HUB_SEARCH = "https://index.docker.io/v1/search"
_FILTERS = ("is-automated", "is-official", "stars")
_CATALOG_PAGE = 1000
_MAX_PAGES = 100


def split_term(term: str) -> tuple[str, str]:
    """(registry domain or "docker.io", remote query) as moby splits a search term."""
    parts = term.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return "docker.io", term
    return parts[0], parts[1]


def _bool_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    raw = values[-1].strip().lower()
    if raw in ("1", "true"):
        return True
    if raw in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={values[-1]}'")


def check_filters(filters: dict[str, list[str]]) -> tuple[bool | None, bool | None, int]:
    for key in filters:
        if key not in _FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    stars = 0
    for raw in filters.get("stars", ()):
        try:
            stars = max(stars, int(raw))
        except ValueError as exc:
            raise InvalidArgument(f"invalid filter 'stars={raw}'") from exc
    return _bool_filter(filters, "is-automated"), _bool_filter(filters, "is-official"), stars


def check_limit(limit: int) -> int:
    limit = limit or DEFAULT_LIMIT
    if limit < 1 or limit > 100:
        raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]")
    return limit


def _result(name: str, *, description: str = "", stars: int = 0, official: bool = False,
            automated: bool = False) -> dict:
    return {"star_count": stars, "is_official": official, "name": name,
            "is_automated": automated, "description": description}


def _keep(r: dict, automated: bool | None, official: bool | None, stars: int) -> bool:
    if automated is not None and bool(r.get("is_automated")) != automated:
        return False
    if official is not None and bool(r.get("is_official")) != official:
        return False
    return int(r.get("star_count") or 0) >= stars


async def search(registries: Registries, term: str, *, limit: int = 0,
                 filters: dict[str, list[str]] | None = None,
                 credentials: Credentials = ANONYMOUS) -> list[dict]:
    filters = filters or {}
    automated, official, stars = check_filters(filters)
    limit = check_limit(limit)
    domain, query = split_term(term)
    async with registries.session() as session:
        if domain == "docker.io":
            found = await _hub(session, query.removeprefix("library/"), limit)
        else:
            found = await _catalog(registries.host(session, domain, credentials), domain, query)
    return [r for r in found if _keep(r, automated, official, stars)][:limit]


async def _hub(session: aiohttp.ClientSession, query: str, limit: int) -> list[dict]:
    url = URL(HUB_SEARCH).with_query(q=query, n=str(limit))
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise Unavailable(f"Unexpected status code {resp.status} from {HUB_SEARCH}")
            doc = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise Unavailable(f'Get "{url}": {exc or type(exc).__name__}') from exc
    return [_result(str(r.get("name", "")), description=str(r.get("description") or ""),
                    stars=int(r.get("star_count") or 0), official=bool(r.get("is_official")),
                    automated=bool(r.get("is_automated")))
            for r in (doc.get("results") or []) if isinstance(r, dict)]


async def _catalog(host, domain: str, query: str) -> list[dict]:
    needle = query.lower()
    names: list[str] = []
    url = None
    for _ in range(_MAX_PAGES):
        resp = await host.request("GET", "_catalog", url=url, params=None if url else {"n": str(_CATALOG_PAGE)},
                                  scopes=("registry:catalog:*",), what=f"search on {domain}")
        try:
            if resp.status in (404, 405):
                raise NotFound(f"registry {domain} offers no search: it serves neither a v1 search "
                               f"nor the /v2/_catalog listing (HTTP {resp.status})")
            await raise_for(resp, f"search on {domain} (GET /v2/_catalog)")
            doc = await resp.json(content_type=None)
            link = resp.headers.get("Link", "")
        finally:
            resp.release()
        names += [n for n in (doc.get("repositories") or []) if isinstance(n, str)]
        if 'rel="next"' not in link:
            break
        url = host.base.join(URL(link.split(";")[0].strip("<> "), encoded=True))
    return [_result(f"{domain}/{n}") for n in sorted(names) if needle in n.lower()]
