"""`pull: missing | always | never` (harness.sandbox.pull) against a fake engine."""

from __future__ import annotations

import pytest
from docker.errors import APIError
from fake_engine import FakeEngine

from harness.errors import ImageMissing
from harness.sandbox.pull import ensure_image


def test_missing_pulls_only_an_image_the_engine_lacks_with_progress():
    engine, lines = FakeEngine(), []
    assert ensure_image(engine, "sdk.example.test/sdk:8.0", progress=lines.append)
    assert engine.pulled == [("sdk.example.test/sdk", "8.0")]
    assert lines[0] == "pulling sdk.example.test/sdk:8.0" and lines[-1].startswith("pulled ")
    ensure_image(engine, "sdk.example.test/sdk:8.0")
    assert len(engine.pulled) == 1


def test_always_pulls_even_a_local_image_and_never_does_not_pull():
    engine = FakeEngine(local={"r.example.test/app:1"})
    ensure_image(engine, "r.example.test/app:1", "always")
    assert engine.pulled == [("r.example.test/app", "1")]
    with pytest.raises(ImageMissing):
        ensure_image(FakeEngine(), "r.example.test/app:2", "never")


def test_the_projects_own_images_are_never_pulled():
    engine = FakeEngine()
    with pytest.raises(ImageMissing, match="egress images build"):
        ensure_image(engine, "egress/python", "always")
    assert engine.pulled == []


@pytest.mark.parametrize(
    "engine",
    [
        FakeEngine(pull_error=APIError("500", explanation="Get \"https://r.example.test/v2/\": dial tcp: "
                                                     "lookup r.example.test: no such host")),
        FakeEngine(pull_answer=[{"error": "Get \"https://r.example.test/v2/\": dial tcp: lookup "
                                     "r.example.test: no such host"}]),
    ],
)  # fmt: skip
def test_a_failed_pull_names_the_image_the_registrys_answer_and_docker_load(engine):
    with pytest.raises(ImageMissing) as raised:
        ensure_image(engine, "r.example.test/app:1", what="the workload image r.example.test/app:1")
    message = str(raised.value)
    assert message.startswith("the workload image r.example.test/app:1 is missing; pulling it failed")
    assert "lookup r.example.test: no such host" in message
    assert "docker load -i image.tar" in message
    assert raised.value.image == "r.example.test/app:1"


def test_a_digest_or_a_registry_port_is_not_taken_for_a_tag():
    engine = FakeEngine()
    ensure_image(engine, "r.example.test:5000/app")
    assert engine.pulled == [("r.example.test:5000/app", "latest")]


def test_a_run_asks_for_each_image_once_as_each_ones_pull_says():
    from types import SimpleNamespace as Spec

    from harness.sandbox.pull import ensure_run_images

    engine = FakeEngine(local={"egress/kudu-sim", "r.example.test/cdn:1"})
    client = Spec(image="egress/kudu-sim", pull="missing")
    spec = Spec(
        image="unused", pull="missing", client=None,
        upstreams=[Spec(name="cdn", image="r.example.test/cdn:1", pull="always")],
        steps=[Spec(name="deploy", image="egress/kudu-sim", pull="missing", client=client),
               Spec(name="build", image="r.example.test/sdk:8.0", pull="missing", client=None),
               Spec(name="again", image="r.example.test/sdk:8.0", pull="always", client=None)],
    )  # fmt: skip
    ensure_run_images(engine, spec, progress=lambda _line: None)
    assert engine.pulled == [("r.example.test/cdn", "1"), ("r.example.test/sdk", "8.0")]
