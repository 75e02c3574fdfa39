"""What a transfer prints while it runs when no terminal reads it (CI, Tekton logs): a line
per manifest placed and per large blob, a line of bytes moved every 10 s; JSON lines with
--progress json; nothing with --quiet. --json is about stdout only."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from ocinest.cli import progress
from ocinest.client import ProgressEvent
from ocinest.oci.digest import Digest
from tests.client.conftest import Cli
from tests.client.helpers import Tree
from tests.conftest import Server


def test_json_events_account_for_every_manifest_and_blob(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli
) -> None:
    src, dst = f"{server.host}/myrepo/ko-build:build-1", f"{second_server.host}/m/kb"
    out = cli("copy", src, dst, "--json", "--progress", "json")
    stats = json.loads(out.stdout)["stats"]
    events = [json.loads(line) for line in out.stderr.splitlines()]
    manifests = Counter(e["outcome"] for e in events if e["event"] == "manifest")
    blobs = Counter(e["outcome"] for e in events if e["event"] == "blob")
    assert manifests == {"pushed": stats["manifests_pushed"]}
    assert stats["manifests_pushed"] == 5  # the root, app1, app2 and its two images
    assert blobs["uploaded"] == stats["blobs_uploaded"] == len(ko_tree.blobs)
    assert blobs["downloaded"] == stats["blobs_downloaded"]
    placed = [e for e in events if e["outcome"] != "downloaded"]
    assert all(e["where"].startswith(f"{second_server.host}/m/kb") for e in placed)


def test_a_large_blob_gets_a_line_and_quiet_says_nothing(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 << 20))
    out = cli("push", f"{server.host}/files/big:v1", str(big))
    digest = Digest.of(big.read_bytes())
    line = f"uploaded {str(digest)[:19]} (2.1 MB) in {server.host}/files/big"
    assert line in out.stderr.splitlines()
    assert any(x.startswith("pushed manifest sha256:") for x in out.stderr.splitlines())
    quiet = cli("push", f"{server.host}/files/big:v2", str(big), "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    # --json changes stdout only: the progress lines stay (the blob is there by now).
    machine = cli("push", f"{server.host}/files/big:v3", str(big), "--json")
    assert json.loads(machine.stdout)["reference"].startswith(f"{server.host}/files/big@")
    assert line.replace("uploaded", "skipped", 1) in machine.stderr.splitlines()


def test_a_line_of_bytes_moved_every_period(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    lines = progress.LogLines()
    digest = Digest.of(b"x")
    for _ in range(25):  # 25 s of 4 MB a second
        clock[0] += 1
        lines(ProgressEvent("advance", digest, 100 << 20, amount=4_000_000))
    assert capsys.readouterr().err.splitlines() == [
        "… 40.0 MB moved in 10 s (4.0 MB/s)",
        "… 80.0 MB moved in 20 s (4.0 MB/s)",
    ]
