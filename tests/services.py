"""Real team services on 127.0.0.1 for the integration tests, started once per test session:
PostgreSQL (Debian's package, `initdb` into a temp folder, no system service) behind `mlflow server`,
`chroma run` on a temp path, and a local Ray head. Each fixture skips with the reason when its
binary or package is missing (`make services` installs them).

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user that
Debian's package creates (the commands go through `runuser`)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url}: no answer after {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    """This process only, by its id (never a broad name)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres():
    """A throwaway PostgreSQL cluster with databases `mlflow` and `ledger`; yields its SQLAlchemy URI without
    the database name (trust auth,
    127.0.0.1 only). `+psycopg2`: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
    Its own folder in /tmp: pytest's tmp folders are private to root, which `postgres` cannot enter."""
    pg = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="pipelines-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"

    def run(*args):
        done = subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{Path(str(args[0])).name} failed: {done.stderr[-2000:]}")
    run(pg / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(pg / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
    try:
        for database in ("mlflow", "ledger"):
            run(pg / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", database)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        run(pg / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, folder: Path):
    """`mlflow server` on PostgreSQL, artifacts served through it (`--serve-artifacts`)."""
    port = free_port()
    log = folder / "mlflow-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2"], stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 180, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def chroma_server(folder: Path):
    port = free_port()
    log = folder / "chroma-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "chroma"), "run", "--path", str(folder / "chroma"), "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc, log)
        yield port
    finally:
        stop(proc)


def need_module(name: str, why: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{why}: Python package {name!r} not installed (make services)")


@pytest.fixture(scope="session")
def postgres_uri():
    """postgresql+psycopg2://postgres@127.0.0.1:PORT of a fresh cluster (databases mlflow, ledger)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL not installed (Debian: apt-get install postgresql; make services)")
    need_module("psycopg2", "PostgreSQL")
    with postgres() as uri:
        yield uri


@pytest.fixture(scope="session")
def mlflow_on_postgres(tmp_path_factory, postgres_uri):
    """URL of an `mlflow server` backed by PostgreSQL."""
    with mlflow_server(f"{postgres_uri}/mlflow", tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="session")
def chroma_port(tmp_path_factory):
    if not (BIN / "chroma").exists():
        pytest.skip("the `chroma` command (chromadb package) is not installed")
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as port:
        yield port


@contextlib.contextmanager
def ray_head(folder: Path, cpus: int = 2):
    """A local Ray head with `cpus` worker slots; yields its address. `--block` keeps `ray start` in the
    foreground, so stopping that one process stops the head's processes (no `ray stop`, which would
    stop every Ray process on the machine). Its workers start in `folder`, not in the test's folder,
    as on a real cluster."""
    port = free_port()
    log = folder / "ray-head.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                                 f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
                                 "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    need_module("ray", "the Ray launcher")
    need_module("hydra_plugins.hydra_ray_launcher", "the Ray launcher")
    with ray_head(tmp_path_factory.mktemp("ray-head")) as address:
        yield address
