# Shared set-up for bin/egress and bin/test: a Python >= 3.12 venv with the project installed,
# and (when asked) a reachable Docker engine. Sourced, not run. Every step says what it does and,
# when it cannot, exactly what is missing.

EGRESS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EGRESS_VENV="${EGRESS_VENV:-$EGRESS_ROOT/.venv}"

say() { printf 'egress-setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

python_is_new_enough() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null
}

find_python() {
    local candidate
    if [ -n "${EGRESS_PYTHON:-}" ]; then
        python_is_new_enough "$EGRESS_PYTHON" && { echo "$EGRESS_PYTHON"; return; }
        die "EGRESS_PYTHON=$EGRESS_PYTHON is not a Python 3.12 or newer; point it at one or unset it"
    fi
    for candidate in python3.13 python3.12 python3.14 python3; do
        if command -v "$candidate" >/dev/null && python_is_new_enough "$(command -v "$candidate")"; then
            command -v "$candidate"; return
        fi
    done
    # pyenv keeps interpreters that are not on PATH; take the newest 3.12+.
    if command -v pyenv >/dev/null; then
        local version
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -t. -k1,1nr -k2,2nr -k3,3nr); do
            candidate="$(pyenv prefix "$version" 2>/dev/null)/bin/python3"
            python_is_new_enough "$candidate" && { echo "$candidate"; return; }
        done
    fi
    die "no Python 3.12 or newer found (mitmproxy 12 needs one). Install one (apt-get install python3.12, pyenv install 3.12, or uv python install 3.12) or set EGRESS_PYTHON=/path/to/python3.12"
}

ensure_venv() {
    local stamp="$EGRESS_VENV/.egress-installed"
    local want
    want="$(cat "$EGRESS_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
    if [ -x "$EGRESS_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    local python
    python="$(find_python)"
    if [ ! -x "$EGRESS_VENV/bin/python" ]; then
        say "creating $EGRESS_VENV with $python ($("$python" --version 2>&1))"
        "$python" -m venv "$EGRESS_VENV" || die "could not create a venv at $EGRESS_VENV with $python"
    fi
    say "installing the project and its test tools into $EGRESS_VENV"
    "$EGRESS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "$EGRESS_ROOT[test]" || die "pip could not install the project; see the lines above"
    echo "$want" > "$stamp"
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null && apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Install a Debian package for COMMAND when it is missing (as root on Debian), else say why it
# is needed and how to get it: ensure_tool COMMAND PACKAGE WHY
ensure_tool() {
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
        say "installing Debian's $2 ($3)"
        apt_install "$2" || die "apt-get could not install $2; install it and run this again"
    else
        say "$1 is missing ($3): apt-get install $2"
    fi
}

ensure_image_tools() { ensure_tool debootstrap debootstrap "it builds the Debian base image without a registry"; }
ensure_browser() { ensure_tool chromium chromium "the HTML report is checked in a real headless browser"; }

docker_answers() {
    docker info >/dev/null 2>&1 || "$EGRESS_VENV/bin/python" - <<'PY' 2>/dev/null
import docker, sys
try:
    docker.from_env(timeout=5).ping()
except Exception:
    sys.exit(1)
PY
}

ensure_docker() {
    docker_answers && return
    if [ -n "${DOCKER_HOST:-}" ]; then
        die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST"
    fi
    if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then
        die "no Docker engine answers at /var/run/docker.sock. Start one (e.g. 'sudo systemctl start docker'), or add yourself to the docker group, then run this again"
    fi
    if ! command -v dockerd >/dev/null; then
        say "installing Debian's docker.io (no Docker engine on this machine)"
        apt_install docker.io iptables \
            || die "apt-get could not install docker.io; install a Docker engine by hand and run this again"
    fi
    local log=/var/log/egress-dockerd.log
    if pgrep -x dockerd >/dev/null; then
        say "dockerd runs but does not answer yet; waiting for it (log: $log)"
    else
        say "starting dockerd in the background (log: $log)"
        # In a session of its own: a Ctrl-C or kill of the command that started it (its
        # process group) must not stop the engine everyone's containers run on.
        setsid nohup dockerd >>"$log" 2>&1 </dev/null &
    fi
    local waited=0
    until docker_answers; do
        sleep 1
        waited=$((waited + 1))
        if [ "$waited" -ge 60 ]; then
            tail -n 20 "$log" >&2
            die "dockerd did not answer within 60 s; its last log lines are above"
        fi
    done
    say "Docker engine ready after ${waited} s"
}
