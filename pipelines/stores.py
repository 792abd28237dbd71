"""Where the Chroma index lives (`index.store`): `persistent`, a folder under `run.cache_dir` (one
machine), or `chroma_server`, a `chroma run` server at `index.host:index.port` that a whole team
shares, so a corpus is embedded once by whoever runs first and reused by everyone.

Concurrent builders are safe without a lock on the server: chunk ids and vectors are the same for
everyone with the same content key (the collection name), so two builders upsert identical rows, and
the collection is marked complete only after its last batch. A builder that dies leaves it incomplete
and the next one upserts again. A lock collection would save the duplicate embedding work but could be
left held by a dead builder; duplicate work on a rare race is the cheaper failure."""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.errors import UserError

STORES = ("persistent", "chroma_server")
_settings: dict = {"store": "persistent", "host": None, "port": None}


def configure(index_cfg) -> None:
    """Check `index.store/host/port` (one line naming the setting, before any work) and remember them."""
    store = index_cfg.get("store", "persistent") or "persistent"
    if store not in STORES:
        raise UserError(f"index.store: must be one of {', '.join(STORES)}, got {store!r}")
    host, port = index_cfg.get("host"), index_cfg.get("port")
    if store == "chroma_server":
        if not host:
            raise UserError("index.host: index.store=chroma_server needs the Chroma server's host, e.g. index.host=127.0.0.1")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise UserError(f"index.port: must be a port number (1-65535) for index.store=chroma_server, got {port!r}")
    _settings.update(store=store, host=host, port=port)


def client(path: Path):
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if _settings["store"] == "persistent":
        return chromadb.PersistentClient(path=str(path), settings=settings)
    host, port = _settings["host"], _settings["port"]
    try:
        return chromadb.HttpClient(host=host, port=port, settings=settings)
    except ValueError as err:  # chromadb's "Could not connect to a Chroma server"
        raise UserError(f"index.host/index.port: no Chroma server at {host}:{port} ({err})") from None


def open_collection(path: Path, name: str, attempts: int = 5, space: str = "cosine"):
    """The collection `name`, created if missing. On a server two builders may create it at the same
    moment; the loser's create fails and a retry finds the winner's collection."""
    chroma = client(path)
    for attempt in range(attempts):
        try:
            # embedding_function=None: we always pass vectors; Chroma's default function downloads a model.
            return chroma.get_or_create_collection(
                name, embedding_function=None, configuration={"hnsw": {"space": space}},
                metadata={"complete": False})
        except Exception:  # the losing create surfaces as whatever the HTTP client raises; re-raised below
            if _settings["store"] == "persistent" or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
