"""Ray's token authentication, for a sweep that joins a running cluster (`hydra/launcher=ray`).

In Ray 2.60, `ray start --head` turns token authentication on whenever a token exists on the machine
(~/.ray/auth_token is written by any local `ray.init()`), but `ray.init(address=...)`, which the Ray
launcher calls, only sends the token when RAY_AUTH_MODE=token is set: the sweep then fails with
"InvalidAuthToken". A client in token mode still connects to a head without authentication, so we
turn it on whenever a token is at hand and the user has not chosen a mode.
"""

from __future__ import annotations

import os
from pathlib import Path


def token_available(environ=os.environ) -> bool:
    if environ.get("RAY_AUTH_TOKEN"):
        return True
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


def use_token_if_available(environ=os.environ) -> None:
    if "RAY_AUTH_MODE" not in environ and token_available(environ):
        environ["RAY_AUTH_MODE"] = "token"
