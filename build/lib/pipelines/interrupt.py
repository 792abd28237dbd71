"""Ctrl-C and SIGTERM: the first stops new calls at once (calls in flight finish, every finished row
is written, the run is closed as KILLED); the second exits immediately."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)
_stop = threading.Event()


def requested() -> bool:
    return _stop.is_set()


def request() -> None:
    _stop.set()


def reset() -> None:
    _stop.clear()


def _handle(signum, frame) -> None:
    if _stop.is_set():
        sys.stderr.write("\nerror: interrupted twice: exiting now (answers so far are in the response cache)\n")
        os._exit(130)
    _stop.set()
    sys.stderr.write(f"\n{signal.Signals(signum).name}: no new calls; finishing those in flight and writing the rows "
                     "(again to quit at once)\n")


def install() -> None:
    """Only from the main thread (signal handlers cannot be set elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)
