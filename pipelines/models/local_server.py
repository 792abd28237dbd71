"""Start llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for a GGUF file shipped inside a
package, once per process, and stop it when the process ends."""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.resources
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipelines import threads
from pipelines.errors import UserError

log = logging.getLogger(__name__)
_servers: dict[tuple, tuple[subprocess.Popen, str]] = {}


def resolve(model_path: str) -> Path:
    """`package:relative/file` names a file inside an installed package; anything else is a path."""
    if ":" in model_path and not Path(model_path).exists():
        package, _, rel = model_path.partition(":")
        try:
            path = Path(str(importlib.resources.files(package))) / rel
        except ModuleNotFoundError:
            raise UserError(f"model.local_server.model_path: package {package!r} is not installed") from None
    else:
        path = Path(model_path)
    if not path.is_file():
        raise UserError(f"model.local_server.model_path: file not found: {path}")
    return path


@functools.cache
def file_identity(model_path: str) -> str:
    """The weights' content, cheaply: size plus a hash of the first and last MiB."""
    path = resolve(model_path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return f"{path.name}:{size}:{digest.hexdigest()[:16]}"


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return "unknown"


def command(path: Path, port: int, n_ctx: int, n_threads: int | None = None, n_batch: int = 512,
            flash_attn: bool = False) -> list[str]:
    """The server's command line. `n_threads` null: the process's share of the cores (pipelines.threads)."""
    n_threads = n_threads or threads.current()
    cmd = [sys.executable, "-m", "pipelines.models.llama_server", "--model", str(path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_batch", str(n_batch), "--n_ubatch", str(n_batch),
           # The server's defaults are 1 thread for generation and 2 for prompts, whatever the machine.
           "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
           # The server defaults to logits_all=True: logits kept for every prompt position, 1.6-2x slower,
           # 3-4x the memory, and a 32k window cannot even start. We never ask for logprobs.
           "--logits_all", "false"]
    if flash_attn:
        cmd += ["--flash_attn", "true"]
    return cmd


def ensure(model_path: str, n_ctx: int, n_threads: int | None = None, flash_attn: bool = False,
           n_batch: int = 512, log_dir: str = ".cache/llama_server", startup_timeout_s: float = 120.0) -> str:
    """Base URL of a running server for this model, starting one if needed."""
    path = resolve(model_path)
    key = (str(path), n_ctx, n_threads, flash_attn, n_batch)
    if key in _servers and _servers[key][0].poll() is None:
        return _servers[key][1]
    port = _free_port()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    log_file = Path(log_dir) / f"server-{port}.log"
    cmd = command(path, port, n_ctx, n_threads, n_batch, flash_attn)
    log.info("starting %s", " ".join(cmd[1:]))
    with log_file.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    atexit.register(_stop, proc)
    base_url = f"http://127.0.0.1:{port}/v1"
    _wait_ready(proc, base_url, log_file, startup_timeout_s)
    log.info("llama.cpp server for %s on %s (log: %s)", path.name, base_url, log_file)
    _servers[key] = (proc, base_url)
    return base_url


def _wait_ready(proc: subprocess.Popen, base_url: str, log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with code {proc.returncode}; see {log_file}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    _stop(proc)
    raise RuntimeError(f"llama.cpp server not ready after {timeout_s:.0f} s; see {log_file}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
