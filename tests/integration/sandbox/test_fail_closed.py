"""When mitmdump dies mid-run, the workload reaches nothing: the gateway fails closed."""

from __future__ import annotations

import json
import threading

import pytest

from harness.sandbox import GATEWAY_IMAGE, new_run_id, run_workload, start_gateway

pytestmark = pytest.mark.docker

# Phase 1 reaches the decoy through the firewall (the control); then the test kills mitmdump;
# phase 2 tries the same request, and direct TCP/UDP to the canary. Each attempt is bounded.
WORKLOAD = """
import json, socket, time, urllib.request

def attempt(name, action):
    try:
        print(json.dumps({"phase": PHASE, "probe": name, "ok": True, "detail": str(action())[:120]}),
              flush=True)
    except Exception as error:
        print(json.dumps({"phase": PHASE, "probe": name, "ok": False, "detail": repr(error)[:200]}),
              flush=True)

def http():
    return urllib.request.urlopen("http://allowed.test/", timeout=3).read()

def tcp():
    s = socket.create_connection((CANARY, 8080), timeout=3)
    s.sendall(b"after the gateway died\\n")
    return s.recv(100) or "closed without data"

def udp():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (CANARY, 9999))

PHASE = 1
attempt("http_allowed", http)
print("PHASE 1 DONE", flush=True)
for _ in range(100):
    try:
        open("/proc/self/status")
        time.sleep(0.1)
        with open("/tmp/go") as signal:
            break
    except FileNotFoundError:
        pass
PHASE = 2
attempt("http_allowed", http)
attempt("tcp_canary", tcp)
attempt("udp_canary", udp)
"""


def test_killing_mitmdump_mid_run_leaves_the_workload_with_no_way_out(
    canary_net, tmp_path, addon_root, write_policy
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_policy(run_dir, ["allowed.test"])
    script = WORKLOAD.replace("CANARY", repr(canary_net.canary.ipv4))
    lines: list[str] = []
    killed = threading.Event()
    with start_gateway(
        run_dir=run_dir,
        run_id=new_run_id("failclosed"),
        hosts={"allowed.test": canary_net.decoy.ipv4},
        networks=[canary_net.network],
        addon_root=addon_root,
    ) as gateway:
        workload_name = f"egress-{gateway.run_id}-workload"

        def on_output(line: str) -> None:
            lines.append(line)
            if line == "PHASE 1 DONE":
                # mitmdump is PID 1 of the gateway: it dies, and the container with it.
                sent = gateway.container.exec_run(["sh", "-c", "kill -TERM 1"])
                assert sent.exit_code == 0, sent.output
                gateway.container.wait(timeout=20)
                killed.set()
                workload = gateway.container.client.containers.get(workload_name)
                workload.exec_run(["sh", "-c", "echo go > /tmp/go"])

        result = run_workload(
            gateway,
            image=GATEWAY_IMAGE,
            entrypoint=["python3", "-c"],
            command=[script],
            run_dir=run_dir,
            timeout=90,
            on_output=on_output,
        )
    assert killed.is_set(), lines
    assert result.exit_code == 0, lines
    attempts = {(a["phase"], a["probe"]): a for a in map(json.loads, filter(_is_json, lines))}
    assert attempts[(1, "http_allowed")]["ok"], attempts  # the control: the firewall worked
    for probe in ("http_allowed", "tcp_canary", "udp_canary"):
        assert not attempts[(2, probe)]["ok"], attempts[(2, probe)]
    assert canary_net.canary.events() == []
    decoy_requests = [e for e in canary_net.decoy.events() if e.get("event") == "tcp"]
    assert len(decoy_requests) == 1, decoy_requests  # phase 1's, and nothing after the kill


def _is_json(line: str) -> bool:
    return line.startswith("{")
