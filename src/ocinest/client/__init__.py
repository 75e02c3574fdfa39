"""ocinest's client: an async library for registries and OCI image layouts, and the nested-tree
operations on top (walk, copy, pull, index create, push of files, delete).

It builds on `ocinest.oci` only: never on the registry or its storage.

    async with Client(Options()) as client:
        repo = client.registry("127.0.0.1:5000").repository("myrepo/ko-build")
        tree = await walk(repo, "build-1")
"""

from .base import BlobSource, Fetched, Progress, ProgressEvent, Repository, Stats
from .copy import Copier, CopyResult, resolve_mode
from .errors import (
    AuthError,
    BadReference,
    ClientError,
    DigestMismatch,
    Kind,
    NetworkError,
    NotFound,
    RegistryError,
)
from .layout import LayoutRepository
from .ops import (
    DeleteResult,
    IndexResult,
    PushResult,
    build_index,
    copy,
    create_index,
    delete_tree,
    open_repository,
    pull,
    push_files,
)
from .reference import LayoutRef, Ref, RemoteRef, parse_reference, parse_remote
from .remote import Client, Options, RegistryClient, RemoteRepository
from .tree import Node, read_tree, render, walk

__all__ = [
    "AuthError",
    "BadReference",
    "BlobSource",
    "Client",
    "ClientError",
    "Copier",
    "CopyResult",
    "DeleteResult",
    "DigestMismatch",
    "Fetched",
    "IndexResult",
    "Kind",
    "LayoutRef",
    "LayoutRepository",
    "NetworkError",
    "Node",
    "NotFound",
    "Options",
    "Progress",
    "ProgressEvent",
    "PushResult",
    "Ref",
    "RegistryClient",
    "RegistryError",
    "RemoteRef",
    "RemoteRepository",
    "Repository",
    "Stats",
    "build_index",
    "copy",
    "create_index",
    "delete_tree",
    "open_repository",
    "parse_reference",
    "parse_remote",
    "pull",
    "push_files",
    "read_tree",
    "render",
    "resolve_mode",
    "walk",
]
