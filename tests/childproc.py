"""Run a test's body in a fresh interpreter, for tests that must change what is shared by a whole process (its
descriptor limit, its signal handlers, its environment): in the test process itself, threads that other tests
left running would see the change too, and the test would depend on what ran before it."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


def in_child(body: Callable[..., None], *args: Any, timeout: float = 120.0) -> None:
    """Call ``body(*args)`` (a module-level function) in a spawned child process; its failure, with the child's
    traceback, fails the caller."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_run, args=(send, body, args), name=f"child-{body.__name__}", daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise AssertionError(f"{body.__name__} did not finish within {timeout:.0f} s in its child process")
        failure = receive.recv()
    except EOFError:
        failure = f"the child process died without a word (exit code {child.exitcode})"
    finally:
        if child.is_alive():
            child.join(5)
        if child.is_alive():
            child.kill()
    if failure is not None:
        raise AssertionError(f"{body.__name__}, in a child process:\n{failure}")


def _run(send: Connection, body: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        body(*args)
    except BaseException:
        send.send(traceback.format_exc())
    else:
        send.send(None)
    finally:
        send.close()
