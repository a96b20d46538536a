"""SIGTERM unwinds like Ctrl-C. Python's default for SIGTERM ends the process at once, skipping
every `finally`, so a cancelled CI job or a `kill` would leave the run's containers and networks
behind; raised as an exception instead, the sandbox's context managers remove them."""

from __future__ import annotations

__all__ = ["Terminated", "unwind_on_sigterm"]

import signal
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM. A KeyboardInterrupt, so whatever cleans up after Ctrl-C also
    cleans up after it."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def unwind_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in this process, unless someone else handles SIGTERM
    already. Only the main thread can set signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)
