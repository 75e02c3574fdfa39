"""The Tekton Task in integrations/tekton, run as Tekton runs a step (Tekton itself cannot run
here): its parameters, workspaces and result paths substituted where the Task uses them, its
array parameter expanded into the script's arguments, its script written to a file and
executed with the step's environment; then its results read back as Chains would read them,
against a live registry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml
from tests.conftest import Server, push_image
from tests.manifests import OCI_INDEX

TASK = Path(__file__).parents[2] / "integrations" / "tekton" / "ocinest-index-create.yaml"
VARIABLE = re.compile(r"\$\((params|results|workspaces|context)\.([A-Za-z0-9_.\-]+?)(\[\*\])?\)")


def load_task() -> dict[str, Any]:
    task: dict[str, Any] = yaml.safe_load(TASK.read_text())
    assert (task["apiVersion"], task["kind"]) == ("tekton.dev/v1", "Task")
    return task


def run_task(
    tmp_path: Path, params: dict[str, str | list[str]], workspaces: dict[str, Path]
) -> dict[str, str]:
    """Run every step; returns the results by name."""
    spec = load_task()["spec"]
    values: dict[str, str | list[str]] = {p["name"]: p.get("default", "") for p in spec["params"]}
    assert set(params) <= set(values), "a parameter the Task does not declare"
    values |= params
    results = tmp_path / "results"
    results.mkdir()
    bound = {w["name"]: str(workspaces.get(w["name"], "")) for w in spec["workspaces"]}
    assert all(w.get("optional") or w["name"] in workspaces for w in spec["workspaces"])

    def resolve(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "params":
            value = values[name]
            assert isinstance(value, str), f"array {name} used as a string"
            return value
        if kind == "results":
            assert name.endswith(".path") and name[:-5] in {r["name"] for r in spec["results"]}
            return str(results / name[:-5])
        if kind == "workspaces":
            assert name.endswith(".path")
            return bound[name[:-5]]
        raise AssertionError(f"unknown variable {match.group(0)}")

    for i, step in enumerate(spec["steps"]):
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path / "home"),
            "OCINEST_KEY_PASSWORD": "",
        }
        env |= {e["name"]: VARIABLE.sub(resolve, e["value"]) for e in step.get("env", [])}
        args: list[str] = []
        for arg in step.get("args", []):
            whole = VARIABLE.fullmatch(arg)
            if whole and whole.group(3):  # "$(params.NAME[*])": the array, one argument each
                array = values[whole.group(2)]
                assert isinstance(array, list)
                args += array
            else:
                args.append(VARIABLE.sub(resolve, arg))
        script = step["script"]
        assert not VARIABLE.search(script), "the script uses a variable: pass it in env"
        path = tmp_path / f"step-{i}"
        path.write_text(script if script.startswith("#!") else "#!/bin/sh\nset -e\n" + script)
        path.chmod(0o755)
        proc = subprocess.run(
            [str(path), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"step {step['name']}: {proc.stderr}"
    return {p.name: p.read_text() for p in results.iterdir()}


def test_pins_kos_image_refs_and_returns_what_chains_reads(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url) as c:
        app1, _ = push_image(c, "ko/build/app1", tag="latest")
        app2, _ = push_image(c, "ko/build/app2", tag="latest")
    source = tmp_path / "source"
    source.mkdir()
    refs = source / "refs.txt"  # as `ko build --image-refs` writes it
    refs.write_text(f"{server.host}/ko/build/app1@{app1}\n{server.host}/ko/build/app2@{app2}\n")
    results = run_task(
        tmp_path,
        {"PARENT": f"{server.host}/ko/build:b1", "IMAGE_REFS": str(refs), "OCINEST_IMAGE": "x"},
        {"source": source},
    )
    r = httpx.get(
        f"{server.url}/v2/ko/build/manifests/b1", headers={"Accept": OCI_INDEX}, timeout=10
    )
    parent = r.headers["Docker-Content-Digest"]
    assert results["IMAGE_URL"] == f"{server.host}/ko/build"
    assert results["IMAGE_DIGEST"] == parent
    assert results["IMAGES"].splitlines() == [
        f"{server.host}/ko/build@{parent}",
        f"{server.host}/ko/build/app1@{app1}",
        f"{server.host}/ko/build/app2@{app2}",
    ]
    # The children are pinned by what ko pushed, at the paths ko chose.
    children = json.loads(r.content)["manifests"]
    assert [c["digest"] for c in children] == [app1, app2]


def test_children_as_an_array_and_every_node_signed(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url) as c:
        push_image(c, "sig/set/api", tag="v1")
        push_image(c, "sig/set/web", tag="v1")
    keys = tmp_path / "keys"
    keys.mkdir()
    env = {**os.environ, "OCINEST_KEY_PASSWORD": ""}
    ocinest = [sys.executable, "-m", "ocinest"]
    subprocess.run([*ocinest, "key", "generate", "--output", str(keys / "k")], env=env, check=True)
    results = run_task(
        tmp_path,
        {
            "PARENT": f"{server.host}/sig/set:r1",
            "CHILDREN": ["api=:v1", "web=:v1"],
            "SIGN_KEY": str(keys / "k.key"),
            "OCINEST_IMAGE": "x",
        },
        {"source": keys},
    )
    assert len(results["IMAGES"].splitlines()) == 3
    ref = f"{results['IMAGE_URL']}@{results['IMAGE_DIGEST']}"
    verified = subprocess.run(
        [*ocinest, "verify", "--recursive", "--key", str(keys / "k.pub"), ref, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
