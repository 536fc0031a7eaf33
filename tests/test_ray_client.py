"""`--ray-address ray://host:port` (Ray Client) against a cluster started as the README shows
(`ray start --head`): Ray Data cannot stream in a client process, so the executor runs each dataset
in a cluster-side actor and pulls its rows. The outputs are the local executor's bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED_PROMPTS

pytest.importorskip("ray", reason="the Ray executor tests need the extra: pip install 'direct-data[ray]'")

ROOT = Path(__file__).resolve().parents[1]
FILES = [str(SHARED_PROMPTS / "phycobench.jsonl")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client_address():
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_bin is None:
        pytest.skip("the `ray` command is not installed")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port, client = _free_port(), _free_port()
    # a short folder of its own: Ray's socket paths under it must fit AF_UNIX's 107 bytes, which a
    # pytest-xdist worker's tmp_path (…/popen-gw0/rayhead0/session_…/sockets/plasma_store) does not
    tmp = Path(tempfile.mkdtemp(prefix="ddray-"))
    start = [ray_bin, "start", "--head", f"--port={port}", f"--ray-client-server-port={client}", "--num-cpus=4",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"]
    try:  # the head and its folder go, whether or not it came up
        r = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
        address = f"ray://127.0.0.1:{client}"
        _wait_for_client_server(address, env)
        yield address
    finally:
        _stop_head(str(tmp), port)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_client_server(address: str, env: dict, attempts: int = 6) -> None:
    """`ray start` returns before the Ray Client server accepts sessions on a loaded machine: wait
    until a client can connect (a few seconds), so the test measures the executor, not start-up."""
    probe = f"import ray; ray.init({address!r}, log_to_driver=False); ray.shutdown()"
    for _ in range(attempts):
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            return
        time.sleep(5)
    raise AssertionError(f"the Ray Client server at {address} never accepted a session: {(r.stdout + r.stderr)[-1500:]}")


def _stop_head(temp_dir: str, port: int) -> None:
    """Kill this head's processes (and their children) only: `ray stop` would take every Ray cluster
    of the user on this machine with it."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(d.name)] = (ppid, cmd)
    doomed = {p for p, (_, cmd) in procs.items() if temp_dir in cmd or f":{port} " in cmd + " "}
    while True:
        more = {p for p, (pp, _) in procs.items() if pp in doomed and p not in doomed}
        if not more:
            break
        doomed |= more
    for p in doomed:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "direct_data.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _shards(folder: Path) -> dict[str, bytes]:
    m = json.loads((folder / "manifest.json").read_text())
    names = [s["path"] for t in m["shards"].values() for s in t] + [f["path"] for f in m.get("files", [])]
    return {n: (folder / n).read_bytes() for n in sorted(names) if n != "README.md"}


def test_partition_and_perturb_through_ray_client_write_the_local_bytes(client_address, tmp_path):
    # the client handshake starts a server process per session: on 2 busy cores (the other xdist
    # worker runs a vLLM engine) Ray's 5 + 10 + 15 s of retries ran out once; and once a session's server
    # process failed to start (RayExecutor retries that)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "DIRECT_DATA_CACHE": str(tmp_path / "cache"),
           "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "30"}
    common = ["--k", "4", "--embed-chunk", "32"]
    printed = {}
    for name, extra in (("local", []), ("client", ["--executor", "ray", "--ray-address", client_address, "--ray-actors", "2"])):
        r = _cli("partition", *FILES, *common, "--cache-dir", str(tmp_path / f"cache-{name}"), "--out", str(tmp_path / f"part-{name}"), *extra, env=env)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        r = _cli("perturb", str(tmp_path / f"part-{name}"), "--axis", "kinematics", "--axis", "forces", "--backend", "rules",
                 "--validator", "lexicon", "--chunk-prompts", "40", "--out", str(tmp_path / f"neg-{name}"), *extra, env=env)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        printed[name] = r.stdout
    for stage in ("part", "neg"):
        loc, cli = _shards(tmp_path / f"{stage}-local"), _shards(tmp_path / f"{stage}-client")
        assert loc == cli and loc
    # the client run really went through Ray: its run record and its card name the executor
    assert f'"executor": "ray", "ray_address": "{client_address}"' in printed["client"]
    assert '"executor": "local"' in printed["local"]
    assert "units ran on the `ray` executor" in (tmp_path / "neg-client" / "README.md").read_text()
