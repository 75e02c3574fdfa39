"""What the web UI's tests share (over HTTP and in chromium): a registry with auth on holding
a signed nested tree that one user may pull whole and another through its parent only, and
the links of a page."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx

from tests.authkit import USERS, ec_key, write_htpasswd, write_key
from tests.client.helpers import Tree, build_tree
from tests.conftest import Server, free_port, push_image

POLICY = """
rules:
  - subjects: [alice]
    repositories: ["**"]
    actions: [pull, push]
  - subjects: [bob]
    repositories: ["shared/set"]
    actions: [pull]
"""
PARENT = "shared/set"  # bob may pull this, not its children's repositories
SECRET = "secret/thing"  # only alice may pull this


def secured_server(tmp_path: Path, mode: str) -> tuple[Server, Tree]:
    """A started registry in auth `mode` (basic, token), holding build_tree at PARENT:v1 and an
    image at SECRET:v1 (pushed in basic mode, then restarted in token mode if asked)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    args = ["--policy", str(policy), "--htpasswd", str(write_htpasswd(tmp_path / "pw", USERS))]
    srv = Server(tmp_path / "data", free_port(), args)
    srv.start()
    with httpx.Client(base_url=srv.url, auth=("alice", USERS["alice"]), timeout=30) as alice:
        tree = build_tree(alice, PARENT, "v1")
        push_image(alice, SECRET, "v1")
    if mode == "token":
        srv.stop()
        srv.args += ["--token-key", str(write_key(tmp_path / "token.pem", ec_key()))]
        srv.start()
    return srv, tree


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]
