"""Legacy ``--link`` names as containers: ``/parent/alias`` (``docker rm --link``).

moby names a link ``/<parent>/<alias>`` (daemon/links): ``DELETE
/containers/<parent>/<alias>?link=1`` removes that link from the parent (daemon.rmLink:
the parent's /etc/hosts loses the entry when it runs); without ``link`` the name is the
linked container itself, which is removed (GetContainer resolves link names too).
Mixed into :class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio
import dataclasses

from conch.engine.model import Container
from conch.errors import InvalidArgument, NotFound


def link_alias(link: str) -> tuple[str, str]:
    """``name[:alias]`` (or ``/name:/parent/alias``) -> (target name, alias)."""
    name, _, alias = link.lstrip("/").partition(":")
    return name, alias.lstrip("/").rpartition("/")[2] or name


class Links:
    def _link(self, name: str) -> tuple[Container, int]:
        """The parent container and the index of its link called ``/parent/alias``."""
        full = "/" + name.strip("/")
        parent, _, alias = full.rpartition("/")
        if not parent:
            raise InvalidArgument("Conflict, cannot remove the default link name of the container")
        try:
            p = self.get(parent.lstrip("/"))
        except NotFound:
            raise NotFound(f"No such container: {name.strip('/')}") from None
        for i, link in enumerate(p.spec.links):
            if link_alias(link)[1] == alias:
                return p, i
        raise NotFound(f"No such container: {name.strip('/')}")

    def linked(self, name: str) -> Container:
        """The container the link ``/parent/alias`` points to."""
        p, i = self._link(name)
        return self.get(link_alias(p.spec.links[i])[0])

    async def remove_link(self, name: str) -> None:
        p, _ = self._link(name)
        async with self._lock(p.id):
            p, i = self._link(name)
            links = list(p.spec.links)
            del links[i]
            p = self._save(dataclasses.replace(p, spec=dataclasses.replace(p.spec, links=tuple(links))))
            if p.state.running and self.networks is not None:
                from conch.engine.network import netsetup  # injected service, its module

                await asyncio.to_thread(netsetup.drop_link, self.networks, p, i)
