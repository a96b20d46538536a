"""`${nuget.index_url}` and `${nuget.index_host}` from `dotnet nuget list source`."""

from __future__ import annotations

import pytest

from harness.derive import ProbeFailed, Prober, ProbeRequest, ProbeResult


def prober(stdout: str, exit_code: int = 0) -> tuple[Prober, list[ProbeRequest]]:
    asked: list[ProbeRequest] = []

    def run(request: ProbeRequest) -> ProbeResult:
        asked.append(request)
        return ProbeResult(exit_code, stdout)

    return Prober(run), asked


def test_the_first_enabled_source_is_the_index_and_the_client_is_asked_itself() -> None:
    listing = ("D https://disabled.example.test/v3/index.json\n"
               "E https://nuget.example.test:8443/v3/index.json\n"
               "E https://second.example.test/v3/index.json\n")  # fmt: skip
    found, asked = prober(listing)
    values = found.values("nuget", "sdk.example.test/dotnet/sdk:8.0")
    assert values == {
        "nuget.index_url": "https://nuget.example.test:8443/v3/index.json",
        "nuget.index_host": "nuget.example.test",
    }
    assert asked[0].command == ("dotnet", "nuget", "list", "source", "--format", "short")


def test_no_enabled_source_fails_the_probe() -> None:
    found, _ = prober("D https://disabled.example.test/v3/index.json\n")
    with pytest.raises(ProbeFailed, match="no enabled source"):
        found.values("nuget", "sdk")
