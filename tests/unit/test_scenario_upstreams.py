"""The scenario format's `upstreams:` (simulated sites), the run spec it becomes, the test CA
made for them, and the bundled Kudu scenarios' policies. No Docker."""

from __future__ import annotations

import datetime
import json
import ssl
import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.execute import execute
from harness.export.yaml_form import policy_to_yaml
from harness.policy.decide import Decider
from harness.policy.model import Request
from harness.sandbox.upstreams import make_certificates
from harness.scenario import Upstream, load_scenario
from harness.testing import FakeRuntime

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """\
name: demo
upstreams:
  - name: kudu-site
    image: egress/kudu-sim
    hosts: [MySite.scm.azurewebsites.net., mysite.azurewebsites.net]
  - name: cdn
    image: egress/oryx-cdn-sim
    hosts: [cdn.example.test]
    command: [python3, /opt/upstreams/upstream_server.py, --site, oryx_cdn]
    env: {ORYX_SIM_FLAVORS: bookworm}
workload:
  image: egress/kudu-sim
  command: kudu-sim serve --port 8080
firewall:
  hosts: {other.example.test: 10.9.0.5}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_upstreams_load_with_normalized_hosts_and_their_options(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.upstreams == (
        Upstream(
            "kudu-site",
            "egress/kudu-sim",
            ("mysite.scm.azurewebsites.net", "mysite.azurewebsites.net"),
        ),
        Upstream(
            "cdn",
            "egress/oryx-cdn-sim",
            ("cdn.example.test",),
            ("python3", "/opt/upstreams/upstream_server.py", "--site", "oryx_cdn"),
            (("ORYX_SIM_FLAVORS", "bookworm"),),
        ),
    )


def test_a_scenario_without_upstreams_has_none(tmp_path: Path) -> None:
    text = (
        GOOD.split("workload:")[0].split("upstreams:")[0] + "workload:" + GOOD.split("workload:")[1]
    )
    assert load_scenario(write(tmp_path, text)).upstreams == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "key_path", "words"),
    [
        ("  - name: cdn", "  - name: Cdn_1", 6, "upstreams[1].name", "lower-case letters"),
        ("  - name: cdn", "  - name: kudu-site", 6, "upstreams[1].name", "used twice"),
        ("[cdn.example.test]", "[mysite.azurewebsites.net]", 8, "upstreams[1].hosts[0]",
         "already answered by upstream kudu-site"),
        ("[cdn.example.test]", "['*.example.test']", 8, "upstreams[1].hosts[0]",
         "an upstream answers exact host names"),
        ("[cdn.example.test]", "[other.example.test]", 8, "upstreams[1].hosts[0]",
         "also in firewall.hosts"),
        ("[cdn.example.test]", "[]", 8, "upstreams[1].hosts", "non-empty list"),
        ("    image: egress/oryx-cdn-sim\n", "", 6, "upstreams[1]", "missing required key 'image'"),
        ("    env: {", "    envs: {", 10, "upstreams[1].envs", "did you mean 'env'"),
        ("upstreams:\n", "upstreams: {}\n", 2, "upstreams", "must be a list"),
    ],
)  # fmt: skip
def test_bad_upstream_names_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key_path: str, words: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new)
    if new.startswith("upstreams: {}"):
        text = text.split("  - name: kudu-site")[0] + "workload:" + text.split("workload:")[1]
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert f"{path}:{line}:" in message
    assert key_path in message
    assert words in message


def test_execute_hands_the_upstreams_to_the_sandbox(tmp_path: Path) -> None:
    runtime = FakeRuntime(lambda run: 0)
    scenario = load_scenario(write(tmp_path, GOOD))
    execute(scenario, runtime, run_dir=tmp_path)
    specs = runtime.specs
    assert [upstream.name for upstream in specs[0].upstreams] == ["kudu-site", "cdn"]
    # The firewall's own overrides stay as written: upstream addresses are added at run time.
    assert specs[0].hosts == {"other.example.test": "10.9.0.5"}


def test_upstream_certificates_chain_to_the_test_ca_for_every_host(tmp_path: Path) -> None:
    upstreams = [Upstream("kudu-site", "i", ("a.example.test", "b.example.test"))]
    ca_path = make_certificates(tmp_path, upstreams)
    leaf = tmp_path / "kudu-site"
    assert (leaf / "key.pem").stat().st_mode & 0o077 == 0
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(leaf / "cert.pem", leaf / "key.pem")
    client = ssl.create_default_context(cafile=str(ca_path))
    for host in ("a.example.test", "b.example.test"):
        assert _handshake(client, server, host) is None
    assert "mismatch" in (_handshake(client, server, "c.example.test") or "")


def test_certificates_are_valid_now(tmp_path: Path) -> None:
    from cryptography import x509

    make_certificates(tmp_path, [Upstream("s", "i", ("a.example.test",))])
    cert = x509.load_pem_x509_certificate((tmp_path / "s" / "cert.pem").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> str | None:
    """An in-memory TLS handshake; None when it succeeds, else the client's error."""
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(client_in, client_out, server_hostname=host)
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client_side), ("server", server_side)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:
                if name == "client":
                    return str(error)
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return None
    return "handshake did not finish"


# --- the bundled Kudu scenarios ------------------------------------------------------------


def https(host: str) -> Request:
    return Request("HTTPS", "10.0.2.254", 50347, 443, "203.0.113.80", host)


def test_kudu_allowed_scenario_policy_allows_scm_sites_by_wildcard() -> None:
    scenario = load_scenario(SCENARIOS / "kudu-deploy-allowed.scenario.yaml")
    policy = scenario.firewall.policy
    decision = Decider(policy).decide(https("othersite.scm.azurewebsites.net"))
    assert decision.action == "Allow"
    assert decision.rule is not None and decision.rule.rule == "kudu-scm"
    assert "*.scm.azurewebsites.net" in policy_to_yaml(policy)


def test_kudu_denied_scenario_policy_denies_the_scm_site() -> None:
    scenario = load_scenario(SCENARIOS / "kudu-deploy-denied.scenario.yaml")
    decision = Decider(scenario.firewall.policy).decide(https("mysite.scm.azurewebsites.net"))
    assert decision.action == "Deny"
    assert decision.rule is None


def test_kudu_policy_exported_to_arm_names_the_scm_wildcard() -> None:
    from harness.export import export_policy

    policy = load_scenario(SCENARIOS / "kudu-deploy-allowed.scenario.yaml").firewall.policy
    arm = json.loads(export_policy(policy, "arm"))
    rules = [
        rule
        for resource in arm["resources"]
        for collection in resource["properties"]["ruleCollections"]
        for rule in collection["rules"]
    ]
    assert {rule["name"]: rule["targetFqdns"] for rule in rules} == {
        "kudu-scm": ["*.scm.azurewebsites.net"],
        "app-sites": ["*.azurewebsites.net"],
    }
