"""rpm: an RPM repository of N small packages. (1) `ocinest rpm push` of the folder into an
empty ocinest, against publishing it to a static web root: createrepo_c, then a copy with
every file fsynced. (2) A stock dnf reading the pushed repository: `dnf makecache`, then
`dnf install` of one package, each time with a fresh cache and root, from ocinest's files view
and from Debian's nginx serving the same files (`ocinest rpm pull` of the pushed repository,
so the same bytes) as a static folder.

The RPMs are built once per run, as subpackages of a few spec files (one rpmbuild each, run in
parallel): one rpmbuild per package would take minutes for 1,000."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from harness.bench import Bench
from harness.common import MiB, log, run_checked
from harness.install import RPM_TOOLS
from harness.results import Row
from harness.rounds import interleave, with_server_cpu
from harness.servers import Server, nginx_server, ocinest_server, serving

REPOSITORY = "bench/rpms"
BUILD_JOBS = 2  # rpmbuild processes at once (the machine has 2 cores)


def package_name(i: int) -> str:
    return f"bench-{i:05d}"


def spec_text(part: int, numbers: range) -> str:
    """A spec whose subpackages are the packages `numbers`, each holding
    /usr/share/NAME/NAME.txt (no dependencies generated)."""
    head = (
        f"Name: bench-part{part}\nVersion: 1.0\nRelease: 1\nSummary: benchmark packages\n"
        "License: MIT\nBuildArch: noarch\n%description\nBenchmark packages.\n%install\n"
    )
    install = "".join(
        f"mkdir -p %{{buildroot}}/usr/share/{n}\necho {n} > %{{buildroot}}/usr/share/{n}/{n}.txt\n"
        for n in map(package_name, numbers)
    )
    packages = "".join(
        f"%package -n {n}\nSummary: benchmark package {n}\nAutoReqProv: no\n"
        f"%description -n {n}\nThe benchmark package {n}.\n"
        f"%files -n {n}\n/usr/share/{n}/{n}.txt\n"
        for n in map(package_name, numbers)
    )
    return head + install + packages


def build_rpms(folder: Path, n: int) -> Path:
    """`n` distinct noarch RPMs (bench-00000 ...) in `folder`/rpms, built by BUILD_JOBS
    rpmbuilds at once."""
    out = folder / "rpms"
    out.mkdir(parents=True)
    parts = [range(j, n, BUILD_JOBS) for j in range(min(BUILD_JOBS, n))]
    builds: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for j, numbers in enumerate(parts):
        top = folder / f"rpmbuild-{j}"
        spec = top / "bench.spec"
        spec.parent.mkdir(parents=True)
        spec.write_text(spec_text(j, numbers))
        argv = ["rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", str(spec)]
        logf = folder / f"rpmbuild-{j}.log"
        with logf.open("wb") as f:
            builds.append((logf, subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)))
    for logf, proc in builds:
        if proc.wait() != 0:
            raise RuntimeError(f"rpmbuild failed ({proc.returncode}): {logf.read_text()[-2000:]}")
    for j in range(len(parts)):
        top = folder / f"rpmbuild-{j}"
        for rpm in (top / "RPMS" / "noarch").glob("*.rpm"):
            rpm.rename(out / rpm.name)
        shutil.rmtree(top)
    built = len(list(out.glob("*.rpm")))
    if built != n:
        raise RuntimeError(f"rpmbuild made {built} RPMs, not {n}")
    return out


def fresh_ocinest(bench: Bench, name: str) -> AbstractContextManager[Server]:
    """An empty ocinest, its data folder removed at the end."""
    data = bench.work / "rpm" / name
    return serving(ocinest_server(f"ocinest-{name}", data, bench.logs), scratch=data)


def timed_push(server: Server, rpms: Path, n: int) -> dict[str, Any]:
    """`ocinest rpm push` of the folder `rpms` to `server`: its seconds, digest and stats."""
    argv = [sys.executable, "-m", "ocinest", "rpm", "push", "--json"]
    start = time.perf_counter()
    out = run_checked([*argv, f"127.0.0.1:{server.port}/{REPOSITORY}:v1", str(rpms)], "rpm push")
    seconds = time.perf_counter() - start
    result = json.loads(out)
    if len(result["packages"]) != n:
        raise RuntimeError(f"rpm push pushed {len(result['packages'])} packages, not {n}")
    return {"push_s": seconds, "digest": result["digest"], "stats": result["stats"]}


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def static_publish(rpms: Path, root: Path) -> float:
    """Seconds to publish the folder `rpms` to the web root `root` (made here) as a static
    server's user would: createrepo_c writes root/repodata, then the RPMs are copied beside
    it, and every file and folder is fsynced (as the registry makes each blob durable)."""
    start = time.perf_counter()
    root.mkdir(parents=True)
    run_checked(
        ["createrepo_c", "--quiet", "--no-database", f"--outputdir={root}", str(rpms)],
        "createrepo_c",
    )
    for rpm in rpms.glob("*.rpm"):
        shutil.copyfile(rpm, root / rpm.name)
    for path in [*root.rglob("*"), root]:
        fsync_path(path)
    return time.perf_counter() - start


def dnf_round(folder: Path, baseurl: str, package: str) -> dict[str, Any]:
    """`dnf makecache`, then `dnf install package`, from the repository at `baseurl` only, with
    a fresh cache and root in `folder` (removed afterwards); the seconds of each."""
    repos = folder / "repos"
    repos.mkdir(parents=True)
    (repos / "bench.repo").write_text(
        f"[bench]\nname=bench\nbaseurl={baseurl}\ngpgcheck=0\nrepo_gpgcheck=0\n"
    )
    dnf = [
        "dnf",
        "-y",
        "-q",
        f"--installroot={folder / 'root'}",
        f"--setopt=reposdir={repos}",
        f"--setopt=cachedir={folder / 'cache'}",
        "--setopt=install_weak_deps=False",
        "--releasever=1",
    ]
    times: dict[str, Any] = {}
    for step, args in (("makecache", ["makecache"]), ("install", ["install", package])):
        start = time.perf_counter()
        run_checked([*dnf, *args], f"dnf {step} from {baseurl}")
        times[f"{step}_s"] = time.perf_counter() - start
    installed = folder / "root" / "usr" / "share" / package / f"{package}.txt"
    if installed.read_text().strip() != package:
        raise RuntimeError(f"dnf did not install {package} from {baseurl}")
    shutil.rmtree(folder)
    times["total_s"] = times["makecache_s"] + times["install_s"]
    return times


def run(bench: Bench) -> None:
    p = bench.p
    missing = [cmd for cmd in RPM_TOOLS if shutil.which(cmd) is None]
    if missing:
        bench.skip("rpm", f"{', '.join(missing)} missing and could not be installed")
        return
    n = p.rpm_count
    folder = bench.work / "rpm"
    start = time.perf_counter()
    rpms = build_rpms(folder, n)
    mib = sum(f.stat().st_size for f in rpms.glob("*.rpm")) / MiB
    log(f"rpm: built {n} RPMs ({mib:.1f} MiB) in {time.perf_counter() - start:.1f}s")
    pushes: list[dict[str, Any]] = []
    publishes: list[float] = []
    with fresh_ocinest(bench, "rpm-0") as oci:  # the one dnf reads from, afterwards
        for r in range(p.rpm_push_rounds):
            if r == 0:
                pushes.append(with_server_cpu(oci, lambda: timed_push(oci, rpms, n)))
            else:
                with fresh_ocinest(bench, f"rpm-{r}") as other:
                    pushes.append(with_server_cpu(other, lambda: timed_push(other, rpms, n)))
            publishes.append(static_publish(rpms, folder / f"static-{r}"))
            shutil.rmtree(folder / f"static-{r}")
            log(
                f"rpm push round {r + 1}: ocinest rpm push {pushes[-1]['push_s']:.2f}s "
                f"(server CPU {pushes[-1]['server_cpu_s']:.1f}s), "
                f"createrepo_c + copy {publishes[-1]:.2f}s"
            )
        digests = {x["digest"] for x in pushes}
        if len(digests) != 1:
            raise RuntimeError(f"the same RPMs pushed as different repositories: {digests}")
        digest = digests.pop()
        root = folder / "nginx-root"
        run_checked(
            [
                *(sys.executable, "-m", "ocinest", "rpm", "pull"),
                f"127.0.0.1:{oci.port}/{REPOSITORY}@{digest}",
                str(root),
            ],
            "rpm pull",
        )
        package = package_name(n // 2)
        nginx = nginx_server("nginx", root, bench.logs, health="/repodata/repomd.xml")
        with serving(nginx):
            urls = {
                oci.label: f"{oci.base}/_ocinest/files/{REPOSITORY}@{digest}/",
                nginx.label: f"{nginx.base}/",
            }
            if not bench.smoke:  # dnf's own files into the page cache, once on each, untimed
                for server in (oci, nginx):
                    dnf_round(folder / "dnf" / f"{server.label}-warm", urls[server.label], package)
            raw = interleave(
                bench,
                "rpm",
                [oci, nginx],
                lambda server, r: with_server_cpu(
                    server,
                    lambda: dnf_round(
                        folder / "dnf" / f"{server.label}-{r}", urls[server.label], package
                    ),
                ),
                lambda x: f"{x['total_s']:.2f}s (makecache {x['makecache_s']:.2f}s)",
                rounds=p.rpm_rounds,
            )
    bench.details["rpm"] = {
        "packages": n,
        "rpm_mib": mib,
        "digest": digest,
        "installed": package,
        "push": pushes,
        "createrepo_c_and_copy_s": publishes,
        "dnf": raw,
    }
    bench.add(
        Row(
            "rpm-push",
            f"ocinest rpm push, {n:,} RPMs ({mib:.1f} MiB), into an empty ocinest vs "
            "createrepo_c + copy (fsynced) to a static root",
            "s",
            False,
            [x["push_s"] for x in pushes],
            publishes,
            base_name="createrepo_c + copy",
        )
    )
    dnf_rows = (
        ("total", f"dnf makecache + install of 1 package, {n:,}-RPM repository: files view", True),
        ("makecache", "  … dnf makecache (fresh cache)", False),
        ("install", "  … dnf install (1 package, fresh root)", False),
    )
    for key, title, goal in dnf_rows:
        bench.add(
            Row(
                f"rpm-dnf-{key}",
                title,
                "s",
                False,
                [x[f"{key}_s"] for x in raw[oci.label]],
                [x[f"{key}_s"] for x in raw[nginx.label]],
                base_name="nginx",
                goal=">= 0.8x nginx" if goal else "",
                min_ratio=0.8 if goal else None,
            )
        )
