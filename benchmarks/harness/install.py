"""Installing what the benchmarks need when it is missing."""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.common import ROOT, log

MATPLOTLIB_PIN = "matplotlib==3.11.2"
# The rpm scenario's tools (command -> Debian package): nginx is its reference server.
RPM_TOOLS = {"nginx": "nginx", "dnf": "dnf", "rpmbuild": "rpm", "createrepo_c": "createrepo-c"}
# The ui-tree scenario's browser (command -> Debian package).
UI_TOOLS = {"chromium": "chromium", "chromedriver": "chromium-driver"}
# While apt installs, this policy (when there is none) keeps packages from starting their
# services (nginx and docker-registry ship one): the harness starts what it needs itself.
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def ensure_project_python(script: Path) -> None:
    """Run `script` under the interpreter that has ocinest (the repository's .venv when
    there is one)."""
    try:
        import ocinest  # noqa: F401
    except ImportError:
        venv = ROOT / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.executable).resolve() != venv.resolve():
            os.execv(str(venv), [str(venv), str(script.resolve()), *sys.argv[1:]])
        sys.exit("ocinest is not importable: install the project (pip install -e .) first")


def compile_project() -> None:
    """The bytecode of ocinest's modules, as a pip install of the package writes it: the
    processes the scenarios start (the CLI, the servers) then load it, as an installed
    ocinest does, instead of compiling the source at every start where the environment
    says PYTHONDONTWRITEBYTECODE (as an editable install of a checkout may)."""
    import ocinest

    compileall.compile_dir(str(Path(ocinest.__file__).parent), quiet=1)


def ensure_pip(module: str, requirement: str) -> None:
    try:
        __import__(module)
    except ImportError:
        log(f"pip: installing {requirement}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", requirement],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )


def ensure_apt(tools: dict[str, str]) -> list[str]:
    """Install the Debian packages of the missing `tools` (command -> package); returns the
    commands still missing afterwards."""
    missing = {cmd: pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None}
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted(set(missing.values()))
        log(f"apt: installing {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
        own_policy = not POLICY_RC.exists()
        if own_policy:
            POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
            POLICY_RC.chmod(0o755)
        try:
            for attempt in range(3):
                ok = (
                    subprocess.run([*apt, "update", "-q"], env=env, capture_output=True).returncode
                    == 0
                    and subprocess.run(
                        [*apt, "install", "-y", "-q", "--no-install-recommends", *packages],
                        env=env,
                        capture_output=True,
                    ).returncode
                    == 0
                )
                if ok:
                    break
                time.sleep(3 * (attempt + 1))
        finally:
            if own_policy:
                POLICY_RC.unlink(missing_ok=True)
    return [cmd for cmd in tools if shutil.which(cmd) is None]


def copy_command_available() -> bool:
    """Whether this build of ocinest has the recursive-copy client (`ocinest copy`)."""
    probe = subprocess.run(
        [sys.executable, "-m", "ocinest", "copy", "--help"], capture_output=True, timeout=60
    )
    return probe.returncode == 0
