"""Keys never land on disk or in MLflow: they come from the environment (or a git-ignored `.env`
file, read with python-dotenv as the tutorial this project grew from does), a config may only name
the variable, and whatever looks like a key in a URL is masked before it is logged."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from omegaconf import DictConfig, OmegaConf

from pipelines.errors import UserError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUERY_SECRET = re.compile(r"((?:api[_-]?key|key|token|secret|password)=)[^&]+", re.IGNORECASE)
SECRET_FIELDS = ("api_key", "key", "token", "secret", "password")


def load_env_file(path: str | Path = ".env") -> None:
    """Variables from `.env` in the working directory; the real environment wins."""
    from dotenv import load_dotenv

    if Path(path).is_file():
        load_dotenv(path, override=False)


def redact_url(url: str) -> str:
    """`https://user:KEY@host/v1?api_key=KEY` -> `https://***@host/v1?api_key=***`."""
    if not isinstance(url, str) or "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, _QUERY_SECRET.sub(r"\1***", parts.query), parts.fragment))


def secret_values(cfg: DictConfig) -> list[str]:
    """Values a config should never hold: keys typed into it directly, or into a URL."""
    out = []
    for group in ("model", "judge"):
        node = cfg.get(group)
        if not node:
            continue
        out += [str(node[f]) for f in SECRET_FIELDS if node.get(f)]
        name = node.get("api_key_env")
        if name is not None and not _ENV_NAME.fullmatch(str(name)):
            out.append(str(name))  # a key typed where its variable's name belongs
    for url in _strings(OmegaConf.to_container(cfg, resolve=False)):  # base_url, tracking.uri, budget.ledger_uri...
        if "://" in url and redact_url(url) != url:
            parts = urlsplit(url)
            out += [p for p in (parts.password, parts.username) if p]
            out += [m.group(0).split("=", 1)[1] for m in _QUERY_SECRET.finditer(parts.query)]
    return out


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def check(cfg: DictConfig) -> None:
    """One line, naming the setting and never echoing the value, before any work."""
    for group in ("model", "judge"):
        node = cfg.get(group)
        if not node:
            continue
        for field in SECRET_FIELDS:
            if node.get(field):
                raise UserError(f"{group}.{field}: a key must not be in a config or on the command line (it would be "
                                f"written to .hydra/ and MLflow); export it, or put it in a .env file, and name the "
                                f"variable with {group}.api_key_env")
        name = node.get("api_key_env")
        if name is not None and not _ENV_NAME.fullmatch(str(name)):
            raise UserError(f"{group}.api_key_env: must be the NAME of an environment variable (e.g. DEEPSEEK_API_KEY), "
                            f"not the key itself (value not shown)")


def scrub(folders: list[Path], values: list[str]) -> None:
    """Hydra writes the command line to `.hydra/` and `multirun.yaml` before our code runs: mask them."""
    values = [v for v in values if v and len(v) >= 4]
    if not values:
        return
    for folder in folders:
        if not folder.exists():
            continue
        for path in [folder] if folder.is_file() else folder.rglob("*.yaml"):
            text = path.read_text(encoding="utf-8", errors="replace")
            clean = text
            for value in values:
                clean = clean.replace(value, "***")
            if clean != text:
                path.write_text(clean, encoding="utf-8")
