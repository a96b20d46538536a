#!/bin/sh
# The gateway's entrypoint (design: sandbox.md). As root it installs the netfilter rules that force
# every packet of this network namespace through mitmdump, then drops to the gateway uid for good
# and execs mitmdump with the arguments it was given. Any failure stops the container before
# mitmdump starts: a gateway without its rules must never carry traffic (fail closed).
set -eu

GW_UID="${EGRESS_GATEWAY_UID:?}"
TRANSPARENT_PORT="${EGRESS_TRANSPARENT_PORT:?}"
DNS_PORT="${EGRESS_DNS_PORT:?}"
HOME_DIR=/var/lib/egress-gateway

die() {
    echo "egress-gateway: $*; refusing to start (fail closed)" >&2
    exit 70
}

rule() {
    "$@" || die "firewall rule failed: $*"
}

# IPv4, nat: redirect every TCP connection and every DNS query that is not the gateway's own.
# DNS is redirected before the loopback exemption: Docker's embedded resolver (127.0.0.11 on
# user-defined networks) is reached over lo, and a query sent there must not skip the firewall.
rule iptables -w -t nat -N FW_REDIRECT
rule iptables -w -t nat -A FW_REDIRECT -m owner --uid-owner "$GW_UID" -j RETURN
rule iptables -w -t nat -A FW_REDIRECT -p udp --dport 53 -j REDIRECT --to-ports "$DNS_PORT"
rule iptables -w -t nat -A FW_REDIRECT -p tcp --dport 53 -j REDIRECT --to-ports "$DNS_PORT"
rule iptables -w -t nat -A FW_REDIRECT -o lo -j RETURN
rule iptables -w -t nat -A FW_REDIRECT -p tcp -j REDIRECT --to-ports "$TRANSPARENT_PORT"
rule iptables -w -t nat -I OUTPUT 1 -j FW_REDIRECT

# IPv4, filter: only loopback, redirected packets, the gateway itself and the replies of TCP
# connections opened from outside (a deploy client's) may leave. The DNAT rule is needed because
# after REDIRECT the filter hook still sees the original out-interface. A reply is in conntrack's
# REPLY direction of a connection whose first packet came in; everything a workload opens itself
# is in the ORIGINAL direction (redirected above, or dropped here). Reply packets never pass the
# nat table (it sees only a connection's first packet), so they are not redirected either.
rule iptables -w -N FW_EGRESS
rule iptables -w -A FW_EGRESS -o lo -j ACCEPT
rule iptables -w -A FW_EGRESS -d 127.0.0.1/32 -m conntrack --ctstate DNAT -j ACCEPT
rule iptables -w -A FW_EGRESS -m owner --uid-owner "$GW_UID" -j ACCEPT
rule iptables -w -A FW_EGRESS -p tcp -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
rule iptables -w -A FW_EGRESS -j DROP
rule iptables -w -I OUTPUT 1 -j FW_EGRESS

# IPv6: Azure Firewall has no IPv6 egress; nothing but loopback, the gateway and the replies of
# TCP connections opened from outside leaves.
rule ip6tables -w -N FW_EGRESS
rule ip6tables -w -A FW_EGRESS -o lo -j ACCEPT
rule ip6tables -w -A FW_EGRESS -m owner --uid-owner "$GW_UID" -j ACCEPT
rule ip6tables -w -A FW_EGRESS -p tcp -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
rule ip6tables -w -A FW_EGRESS -j DROP
rule ip6tables -w -I OUTPUT 1 -j FW_EGRESS

# On a user-defined network Docker's embedded resolver (127.0.0.11) forwards queries from inside
# this namespace as root; the rules above would send those back to mitmdump, a loop. The harness
# then names the upstream servers itself and the gateway asks them directly.
if [ -n "${EGRESS_UPSTREAM_DNS:-}" ]; then
    {
        for server in $EGRESS_UPSTREAM_DNS; do echo "nameserver $server"; done
        echo "options ndots:0"
    } > /etc/resolv.conf || die "cannot write /etc/resolv.conf"
fi

rule install -d -m 0700 -o "$GW_UID" -g "$GW_UID" "$HOME_DIR"
echo "egress-gateway: firewall rules installed; starting mitmdump as uid $GW_UID"

export HOME="$HOME_DIR"
exec setpriv --reuid="$GW_UID" --regid="$GW_UID" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs \
    -- /opt/egress/venv/bin/mitmdump "$@"
