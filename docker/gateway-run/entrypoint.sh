#!/bin/sh
# The gateway's entrypoint as the harness starts it (design: sandbox.md; docker/README.md).
# Mounted from the checkout at run time like harness/, so changing it rebuilds no image.
# As root it installs the netfilter rules that force every packet of this network namespace
# through the gateway, then drops to the gateway uid for good and execs the firewall's own lean
# mitmproxy master (harness/gateway/master.py) with the arguments it was given. The rules are those
# of docker/gateway/entrypoint.sh, loaded by one iptables-restore and one ip6tables-restore
# (atomic per table; 2 processes instead of 20: ~0.1 s less per start on 2 vCPU). --noflush
# keeps the rules Docker put in this namespace (its embedded DNS on user-defined networks).
# Any failure stops the container before the gateway starts: no rules, no traffic (fail closed).
# The rules load in a background job while the master imports (~0.4 s of Python on 2 vCPU):
# the job writes "ok" or "failed" to fd 3, which the master (harness/gateway/master.py) reads
# before it opens a listener, and it exits 70 on anything but "ok". Ready still means the rules
# are in; nothing listens before.
set -eu

GW_UID="${EGRESS_GATEWAY_UID:?}"
TRANSPARENT_PORT="${EGRESS_TRANSPARENT_PORT:?}"
DNS_PORT="${EGRESS_DNS_PORT:?}"
HOME_DIR=/var/lib/egress-gateway

die() {
    echo "egress-gateway: $*; refusing to start (fail closed)" >&2
    exit 70
}

install_rules() {
    # IPv4. nat: DNS is redirected before the loopback exemption (Docker's embedded resolver,
    # 127.0.0.11, is reached over lo). filter: only loopback, redirected packets, the gateway itself
    # and the replies of TCP connections opened from outside may leave.
    iptables-restore -w --noflush <<RULES || return 1
*nat
:FW_REDIRECT - [0:0]
-A FW_REDIRECT -m owner --uid-owner $GW_UID -j RETURN
-A FW_REDIRECT -p udp --dport 53 -j REDIRECT --to-ports $DNS_PORT
-A FW_REDIRECT -p tcp --dport 53 -j REDIRECT --to-ports $DNS_PORT
-A FW_REDIRECT -o lo -j RETURN
-A FW_REDIRECT -p tcp -j REDIRECT --to-ports $TRANSPARENT_PORT
-I OUTPUT 1 -j FW_REDIRECT
COMMIT
*filter
:FW_EGRESS - [0:0]
-A FW_EGRESS -o lo -j ACCEPT
-A FW_EGRESS -d 127.0.0.1/32 -m conntrack --ctstate DNAT -j ACCEPT
-A FW_EGRESS -m owner --uid-owner $GW_UID -j ACCEPT
-A FW_EGRESS -p tcp -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
-A FW_EGRESS -j DROP
-I OUTPUT 1 -j FW_EGRESS
COMMIT
RULES

    # IPv6: Azure Firewall has no IPv6 egress; nothing but loopback, the gateway and the replies of
    # TCP connections opened from outside leaves.
    ip6tables-restore -w --noflush <<RULES || return 1
*filter
:FW_EGRESS - [0:0]
-A FW_EGRESS -o lo -j ACCEPT
-A FW_EGRESS -m owner --uid-owner $GW_UID -j ACCEPT
-A FW_EGRESS -p tcp -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
-A FW_EGRESS -j DROP
-I OUTPUT 1 -j FW_EGRESS
COMMIT
RULES
    echo "egress-gateway: firewall rules installed; starting the firewall as uid $GW_UID"
}

# fd 3: a pipe (a FIFO opened read-write, so the open does not wait, then unlinked) from the
# rules job to the master.
RULES_PIPE=/run/egress-rules.$$
mkfifo -m 0600 "$RULES_PIPE" || die "cannot make $RULES_PIPE"
exec 3<>"$RULES_PIPE"
rm -f "$RULES_PIPE"
{
    if install_rules; then
        echo ok >&3
    else
        echo "egress-gateway: firewall rules failed (iptables-restore); refusing to start (fail closed)" >&2
        echo failed >&3
    fi
} &
RULES_JOB=$!

# On a user-defined network Docker's embedded resolver forwards queries from inside this
# namespace as root; the rules above would send those back to the gateway, a loop. The harness
# then names the upstream servers itself and the gateway asks them directly.
if [ -n "${EGRESS_UPSTREAM_DNS:-}" ]; then
    {
        for server in $EGRESS_UPSTREAM_DNS; do echo "nameserver $server"; done
        echo "options ndots:0"
    } > /etc/resolv.conf || die "cannot write /etc/resolv.conf"
fi

install -d -m 0700 -o "$GW_UID" -g "$GW_UID" "$HOME_DIR" || die "cannot make $HOME_DIR"

# harness/'s bytecode, compiled as root into the host's cache folder when the harness says it
# is stale (harness/sandbox/bytecode.py: only the modules the gateway imports, ~0.05 CPU-s once
# per change), read by harness/gatewayboot.py; the stamp comes last. It runs before the master,
# not beside it: a gateway removed right after `ready` (tests, benchmarks) would kill a compile
# left running and start it again next time. The gateway uid cannot write that folder; a failed
# compile only costs time (the master compiles from source).
if [ -n "${EGRESS_BYTECODE_BUILD:-}" ] && [ -n "${EGRESS_BYTECODE_DIR:-}" ]; then
    sources=""
    for source in ${EGRESS_BYTECODE_SOURCES:-harness addons}; do sources="$sources /opt/egress/$source"; done
    # shellcheck disable=SC2086 # the list is split on purpose
    { PYTHONPYCACHEPREFIX="$EGRESS_BYTECODE_DIR" /opt/egress/venv/bin/python -m compileall -q \
          $sources >/dev/null \
      && touch -d "@${EGRESS_BYTECODE_STAMP:?}" "$EGRESS_BYTECODE_DIR/compiled" \
      && chown -R "$EGRESS_BYTECODE_BUILD" "$EGRESS_BYTECODE_DIR"; } 3>&- \
      || echo "egress-gateway: could not compile harness/ into $EGRESS_BYTECODE_DIR" >&2
fi
export HOME="$HOME_DIR"
# An older harness/ (a benchmark's --addon-root export) has no gatewayboot and does not read
# fd 3: its master starts once the rules job is done.
MASTER=harness.gatewayboot
if [ ! -f /opt/egress/harness/gatewayboot.py ]; then
    MASTER=harness.gateway.master
    wait "$RULES_JOB" || true
    read -r RULES_STATUS <&3 || RULES_STATUS=failed
    [ "$RULES_STATUS" = ok ] || exit 70
fi
export EGRESS_RULES_FD=3
exec setpriv --reuid="$GW_UID" --regid="$GW_UID" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs \
    -- /opt/egress/venv/bin/python -m "$MASTER" "$@"
