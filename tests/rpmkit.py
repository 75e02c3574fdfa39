"""RPMs for tests: tiny noarch packages built with rpmbuild, signed with a throw-away key."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (bash .ci/run installs it)"
    return path


def build_rpm(
    out: Path, name: str, version: str, release: str = "1", *, summary: str = "A test package"
) -> Path:
    """A noarch RPM holding /usr/share/<name>/<name>.txt (its version inside)."""
    top = out.parent / f".rpmbuild-{name}-{version}-{release}"
    spec = top / f"{name}.spec"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        f"Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: {summary}\n"
        "License: MIT\nBuildArch: noarch\n%description\nA package for tests.\n"
        f"%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n"
        f"echo {version}-{release} > %{{buildroot}}/usr/share/{name}/{name}.txt\n"
        f"%files\n/usr/share/{name}/{name}.txt\n"
    )
    subprocess.run(
        [_tool("rpmbuild"), "--define", f"_topdir {top}", "-bb", str(spec)],
        check=True,
        capture_output=True,
    )
    built = top / "RPMS" / "noarch" / f"{name}-{version}-{release}.noarch.rpm"
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(built, out / built.name))


class Signer:
    """A GPG key of its own (no passphrase), and rpmsign with it; `close` stops its agent.

    Its GnuPG home is a short folder of its own in /tmp: gpg-agent's socket lives there, and a
    Unix socket's path may not pass 108 bytes, which a test's temporary folder can."""

    NAME = "ocinest test <test@ocinest.invalid>"

    def __init__(self, out: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="gpg-"))
        self.env = {**os.environ, "GNUPGHOME": str(self.home)}
        subprocess.run(
            [
                _tool("gpg"),
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                self.NAME,
                "rsa2048",
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
            env=self.env,
        )
        out.mkdir(parents=True, exist_ok=True)
        self.public_key = out / "key.asc"
        exported = subprocess.run(
            [_tool("gpg"), "--batch", "--armor", "--export", self.NAME],
            check=True,
            capture_output=True,
            env=self.env,
        )
        self.public_key.write_bytes(exported.stdout)

    def sign(self, *rpms: Path) -> None:
        subprocess.run(
            [
                _tool("rpmsign"),
                "--define",
                f"__gpg {_tool('gpg')}",
                "--define",
                f"_gpg_name {self.NAME}",
                "--addsign",
                *map(str, rpms),
            ],
            check=True,
            capture_output=True,
            env=self.env,
        )

    def close(self) -> None:
        subprocess.run([_tool("gpgconf"), "--kill", "gpg-agent"], env=self.env, capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
