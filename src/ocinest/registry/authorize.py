"""Whether a request may do what it asks: the one check behind the API and the web pages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocinest.oci.digest import Digest
from ocinest.registry.auth import IDENTITY
from ocinest.registry.state import registry

PULL, PUSH, DELETE = "pull", "push", "delete"
LOGIN = None  # any valid credentials


async def authorize(
    request: web.Request, route: str, action: str | None, params: dict[str, Any]
) -> None:
    """Allow `action` on the route's repository to the caller already identified in
    `request[IDENTITY]`, or raise the answer that refuses it."""
    reg = registry(request)
    auth = reg.auth
    identity = request[IDENTITY]
    if action is LOGIN:
        auth.require_login(identity, request)
        return
    name = params["name"]
    if auth.can(identity, name, action):
        return
    # Pull on a parent grants pull, by digest, of what its manifests reach in the child: as a
    # blob or as a manifest, as reached (the same bytes may be both), and of the referrers of
    # that content (their manifests, blobs and listing: rule 6).
    reference = params.get("digest") or params.get("reference") or ""
    if route == "referrers":
        route = "manifest"  # the subject's reach decides
    if route in ("blob", "manifest") and action == PULL and Digest.looks_like(reference):
        for ancestor in await reg.meta.reached_through(name, reference, route):
            if auth.can(identity, ancestor, PULL):
                return
    raise auth.deny(identity, request, name, action)
