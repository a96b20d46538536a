"""The container choke point (harness.sandbox.containers) against a fake engine: names, labels,
removal on every way out (Ctrl-C too, even mid-create) and the log tail on a failure."""

from __future__ import annotations

import pytest
from docker.errors import APIError
from fake_engine import FakeEngine

from harness.errors import EnvironmentProblem, ImageMissing, InputError
from harness.interrupt import Terminated
from harness.sandbox.containers import (
    LOG_LINE_CHARS,
    LOG_TAIL_LINES,
    container_name,
    labelled_container,
    with_log_tail,
)
from harness.sandbox.labels import LABEL, ROLE_LABEL, RUN_LABEL


def test_a_container_is_named_for_its_run_and_role_and_labelled():
    engine = FakeEngine()
    with labelled_container(engine, "egress/python", run_id="20261201T000000Z-pip-abc123",
                            role="upstream", instance="kudu site", command=["true"]) as made:  # fmt: skip
        assert made.name == "egress-20261201T000000Z-pip-abc123-upstream-kudu-site"
        assert made.labels == {LABEL: "1", RUN_LABEL: "20261201T000000Z-pip-abc123",
                               ROLE_LABEL: "upstream"}  # fmt: skip
        assert made.options["command"] == ["true"]
        assert made.status == "created"  # created, not started: the caller starts it
    assert engine.names() == []


def test_an_unsafe_run_id_is_reduced_to_what_docker_accepts():
    assert container_name("a run/with:odd*chars", "gateway") == "egress-a-run-with-odd-chars-gateway"


def test_an_error_removes_it_and_the_environment_problem_carries_its_last_log_lines():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="workload", what="the workload") as c,
    ):
        c.start()
        c.log = b"".join(b"line %d\n" % n for n in range(100))
        raise EnvironmentProblem("the workload did not listen")
    message = str(raised.value)
    assert message.startswith("the workload did not listen\n")
    assert "last log lines of the workload (egress-r-workload):" in message
    assert message.endswith("line 99")
    assert "line 69" not in message and f"line {100 - LOG_TAIL_LINES}" in message  # bounded
    assert engine.names() == []


def test_a_long_log_line_is_cut():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="w") as c,
    ):
        c.log = b"x" * 10_000 + b"\n"
        raise EnvironmentProblem("failed")
    (tail_line,) = [line for line in str(raised.value).splitlines() if line.startswith("x")]
    assert len(tail_line) == LOG_LINE_CHARS and tail_line.endswith("…")


def test_a_bug_inside_gets_the_log_as_a_note_and_a_users_mistake_gets_none():
    engine = FakeEngine()
    with (
        pytest.raises(ValueError) as raised,
        labelled_container(engine, "i", run_id="r", role="probe") as c,
    ):
        c.log = b"Traceback: boom\n"
        raise ValueError("unexpected")
    assert str(raised.value) == "unexpected"
    assert raised.value.__notes__ == [("last log lines of the probe container (egress-r-probe):\n"
                                      "Traceback: boom")]  # fmt: skip
    with (
        pytest.raises(InputError) as mistake,
        labelled_container(engine, "i", run_id="r", role="probe") as c,
    ):
        c.log = b"noise\n"
        raise InputError("workdir is not a folder")
    assert str(mistake.value) == "workdir is not a folder"
    with (
        pytest.raises(ImageMissing) as missing,
        labelled_container(engine, "i", run_id="r", role="gateway") as c,
    ):
        c.log = b"egress-harness gateway ready\n"
        raise ImageMissing("egress/python", "egress images build")
    assert "gateway ready" not in str(missing.value)
    assert engine.names() == []


def test_nothing_is_attached_when_the_container_said_nothing():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="w"),
    ):
        raise EnvironmentProblem("failed")
    assert str(raised.value) == "failed"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Terminated])
def test_ctrl_c_removes_it_at_once_without_asking_for_its_log(interrupt):
    engine = FakeEngine()
    with (
        pytest.raises(interrupt),
        labelled_container(engine, "i", run_id="r", role="gateway") as c,
    ):
        c.start()
        raise interrupt
    assert engine.names() == []
    assert ("logs", "egress-r-gateway") not in engine.calls


def test_ctrl_c_while_the_engine_creates_it_still_removes_it_by_name():
    engine = FakeEngine()
    engine.create_interrupts = 1
    with (
        pytest.raises(KeyboardInterrupt),
        labelled_container(engine, "i", run_id="r", role="workload"),
    ):
        pytest.fail("the block must not run")
    assert engine.names() == []
    assert engine.calls[-1] == ("remove", "egress-r-workload")


def test_an_engine_refusal_removes_nothing_of_anyone_else():
    engine = FakeEngine()
    other = engine.containers.create("i", name="egress-r-gateway", labels={})
    with (
        pytest.raises(APIError, match="already in use"),
        labelled_container(engine, "i", run_id="r", role="gateway"),
    ):
        pytest.fail("the block must not run")
    assert engine.containers.made == [other]


def test_a_second_ctrl_c_while_removing_still_removes_it():
    engine = FakeEngine()
    with pytest.raises(KeyboardInterrupt), labelled_container(engine, "i", run_id="r", role="w"):
        engine.remove_failures = [KeyboardInterrupt()]
    assert engine.names() == []


def test_before_remove_runs_first_and_its_failure_still_removes():
    engine = FakeEngine()
    order = []
    with labelled_container(engine, "i", run_id="r", role="w",
                            before_remove=lambda c: order.append(c.name)):  # fmt: skip
        pass
    assert order == ["egress-r-w"] and engine.names() == []

    def stops_badly(container):
        raise KeyboardInterrupt  # Ctrl-C during a graceful stop

    with (
        pytest.raises(KeyboardInterrupt),
        labelled_container(engine, "i", run_id="r", role="w", before_remove=stops_badly),
    ):
        pass
    assert engine.names() == []


def test_a_failed_removal_does_not_hide_the_blocks_own_error():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem, match="^the real problem") as raised,
        labelled_container(engine, "i", run_id="r", role="w"),
    ):
        engine.remove_failures = [APIError("500 engine busy")]
        raise EnvironmentProblem("the real problem")
    assert "removing egress-r-w failed: 500 engine busy" in raised.value.__notes__[0]
    engine.remove_failures = [APIError("500 engine busy")]
    with (
        pytest.raises(EnvironmentProblem, match=r"could not remove egress-r2-w: 500 engine busy; "
                                                r"run `egress gc`"),
        labelled_container(engine, "i", run_id="r2", role="w"),
    ):  # fmt: skip
        pass


def test_a_removal_already_in_progress_or_done_is_fine():
    engine = FakeEngine()
    with labelled_container(engine, "i", run_id="r", role="w") as c:
        c.remove()  # the engine removed it already (auto-removal, gc)
    engine.remove_failures = [APIError("removal of container x is already in progress")]
    with labelled_container(engine, "i", run_id="r2", role="w"):
        pass


def test_only_the_innermost_container_that_logged_is_attached():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="gateway") as gateway,
    ):
        gateway.log = b"gateway says\n"
        with labelled_container(engine, "i", run_id="r", role="workload") as workload:
            workload.log = b"npm error 500\n"
            with labelled_container(engine, "i", run_id="r", role="probe"):
                raise EnvironmentProblem("the workload did not accept")
    message = str(raised.value)
    assert "npm error 500" in message and "gateway says" not in message
    assert message.count("last log lines") == 1
    assert engine.names() == []


def test_with_log_tail_names_the_container_at_fault_and_the_choke_point_adds_no_second():
    engine = FakeEngine()
    first = engine.containers.create("i", name="egress-r-upstream-a", labels={})
    first.log = b"port 443 in use\n"
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="upstream", instance="b") as last,
    ):
        last.log = b"listening\n"
        raise with_log_tail(EnvironmentProblem("upstream a stopped"), first, "upstream a")
    message = str(raised.value)
    assert "last log lines of upstream a (egress-r-upstream-a):\nport 443 in use" in message
    assert "listening" not in message


def test_a_message_that_already_quotes_the_log_is_left_alone():
    engine = FakeEngine()
    with (
        pytest.raises(EnvironmentProblem) as raised,
        labelled_container(engine, "i", run_id="r", role="build") as c,
    ):
        c.log = b"ERROR: no matching distribution\n"
        raise EnvironmentProblem("pip failed:\nERROR: no matching distribution\nretry")
    assert str(raised.value) == "pip failed:\nERROR: no matching distribution\nretry"


def test_a_lost_answer_to_create_removes_what_the_engine_made_and_keeps_the_error():
    import requests

    engine = FakeEngine()
    made = engine.containers.create

    def times_out(image, **options):
        made(image, **options)
        raise requests.exceptions.ReadTimeout("engine did not answer in 60 s")

    engine.containers.create = times_out  # type: ignore[method-assign]
    with (
        pytest.raises(requests.exceptions.ReadTimeout),
        labelled_container(engine, "i", run_id="r", role="gateway"),
    ):
        pytest.fail("the block must not run")
    assert engine.names() == []
