"""The one place a container is created (`engine.containers.create` is called here only; a
test holds that line). `labelled_container` names it `egress-<run>-<role>[-<instance>]`, labels
it for `egress gc` and the tests' leftover check (harness.sandbox.labels), and removes it
however its block ends: normally, on an error, on Ctrl-C or SIGTERM (`harness.interrupt`), even
when Ctrl-C arrives while the engine is still creating it (it is then found by its name).

When the block fails, the error the user sees carries the container's last log lines
(`LOG_TAIL_LINES` lines of at most `LOG_LINE_CHARS` characters): an EnvironmentProblem gets them
in its message, any other error (a bug, an engine error) as a note in its traceback. Only the
innermost container whose log says something is attached (a workload's failure inside the
gateway's block shows the workload's log, not the gateway's too); a site that knows which
container is at fault says so with `with_log_tail`. A user's own mistake (InputError), a missing
image and an interruption get no log: the first two are not the container's doing, the last must
not wait.
"""

from __future__ import annotations

__all__ = [
    "LOG_LINE_CHARS",
    "LOG_TAIL_LINES",
    "container_name",
    "labelled_container",
    "log_tail",
    "with_log_tail",
]

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from docker.errors import APIError, DockerException, NotFound

from harness.errors import EnvironmentProblem, ExpectationFailed, ImageMissing, InputError
from harness.sandbox.labels import labels, safe_name

LOG_TAIL_LINES = 30
LOG_LINE_CHARS = 300
# Set on an error once a container's log is attached to it, so outer blocks add none.
_ATTACHED = "_egress_container_log"

Container = Any  # docker.models.containers.Container, or a test's stand-in
# Errors no container's log explains: the user's own files, a verdict, an image not there.
_NOT_ABOUT_LOGS = (InputError, ExpectationFailed, ImageMissing)


def container_name(run_id: str, role: str, instance: str = "") -> str:
    """`egress-<run>-<role>[-<instance>]`, reduced to what Docker accepts."""
    name = f"egress-{safe_name(run_id)}-{role}"
    return f"{name}-{safe_name(instance)}" if instance else name


@contextmanager
def labelled_container(
    engine,
    image: str,
    *,
    run_id: str,
    role: str,
    instance: str = "",
    what: str | None = None,
    before_remove: Callable[[Container], None] | None = None,
    **options: Any,
) -> Iterator[Container]:
    """A created (not started) container of `image`, named and labelled for `run_id` and
    `role`; `options` go to docker-py's `containers.create` as they are. On leaving the block
    `before_remove(container)` runs first (a graceful stop, keeping its log), then the container
    is removed by force. `what` names it in errors (default: "the <role> container")."""
    name = container_name(run_id, role, instance)
    try:
        container = engine.containers.create(
            image, name=name, labels=labels(run_id, role), **options
        )
    except DockerException:
        raise  # the engine refused: nothing was made (a name conflict is not ours to remove)
    except BaseException:
        # Interrupted, or the engine's answer was lost (a timeout): it may exist all the same.
        _remove_by_name(engine, name)
        raise
    failure: BaseException | None = None
    try:
        yield container
    except BaseException as error:
        failure = error
        if not isinstance(error, KeyboardInterrupt | GeneratorExit):
            with_log_tail(error, container, what or f"the {role} container")
        raise
    finally:
        _remove(container, before_remove, failure)


def log_tail(container: Container, lines: int = LOG_TAIL_LINES, since: float | None = None) -> str:
    """The container's last `lines` log lines, each cut to LOG_LINE_CHARS; "" when it has
    none or the engine cannot say."""
    try:
        raw = container.logs(tail=lines, **({"since": since} if since else {}))
    except DockerException:
        return ""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    kept = [
        line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 1] + "…"
        for line in text.splitlines()[-lines:]
    ]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def with_log_tail(
    error: BaseException, container: Container, what: str, since: float | None = None
) -> BaseException:
    """`error` with `container`'s last log lines attached (see the module docstring), once:
    returned, so a site can `raise with_log_tail(EnvironmentProblem(...), container, ...)`."""
    if isinstance(error, _NOT_ABOUT_LOGS) or getattr(error, _ATTACHED, None):
        return error
    tail = log_tail(container, since=since)
    if not tail:
        return error
    setattr(error, _ATTACHED, getattr(container, "name", what))
    if tail.splitlines()[-1] in str(error):
        return error  # the message already quotes this log
    heading = f"last log lines of {what} ({getattr(container, 'name', '?')}):"
    if isinstance(error, EnvironmentProblem):
        error.args = (f"{error}\n{heading}\n{tail}", *error.args[1:])
    else:
        error.add_note(f"{heading}\n{tail}")
    return error


def _remove(container: Container, before_remove: Callable[[Container], None] | None,
            failure: BaseException | None) -> None:  # fmt: skip
    try:
        if before_remove is not None:
            before_remove(container)
    finally:
        try:
            _remove_now(container)
        except KeyboardInterrupt:
            # A second Ctrl-C while removing: remove it all the same, then stop.
            _remove_now(container)
            raise
        except DockerException as error:
            name = getattr(container, "name", "?")
            if failure is None:
                # The engine's trouble, not a bug: exit 2, with what to run once it answers.
                raise EnvironmentProblem(
                    f"the engine could not remove {name}: {error}; run `egress gc` once "
                    "the engine answers again (it removes every labelled leftover)"
                ) from error
            # The block's own error is what the user needs; this one is said beside it.
            failure.add_note(f"removing {name} failed: {error}")


def _remove_now(container: Container) -> None:
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as error:
        if "already in progress" not in str(error):
            raise


def _remove_by_name(engine, name: str) -> None:
    try:
        _remove_now(engine.containers.get(name))
    except NotFound:
        pass
    except Exception:  # noqa: BLE001, S110 - the error on its way up matters more; gc finds it
        pass
