#!/bin/bash
# Provision one Anabranch Vagrant VM (client, gateway or server) with the lab's
# routing, install the host-built .deb on the gateway, and run the lab's checks.
# Addresses arrive in the environment from the Vagrantfile (from lab.py's plan).
set -euo pipefail
ROLE=$1
say() { printf '[provision %s] %s\n' "$ROLE" "$*"; }

# The interface that carries an address (names differ between providers).
dev_of() { ip -o -4 addr show | awk -v ip="$1" '{split($4, a, "/"); if (a[1] == ip) print $2}'; }
nth() { cut -d, -f"$2" <<<"$1"; }
gw_ip() { tr , '\n' <<<"$GATEWAY_V4" | sed -n "s/^$1=//p"; }

for key in net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter; do sysctl -qw "$key=0"; done

case "$ROLE" in
server)
    # Answer each client subnet through the WAN path it came by.
    ip route replace "$(nth "$CLIENT_V4" 1 | cut -d. -f1-3).0/24" via "$(gw_ip wan0)"
    ip route replace "$(nth "$CLIENT_V4" 2 | cut -d. -f1-3).0/24" via "$(gw_ip wan1)"
    sysctl -qw net.mptcp.enabled=1
    ip mptcp limits set subflows 2 add_addr_accepted 2
    say "routes back to both client subnets set"
    ;;
gateway)
    sysctl -qw net.ipv4.ip_forward=1
    # WAN path by source: the second client subnet leaves through wan1.
    ip route replace default via "$(nth "$SERVER_V4" 2)" table 202
    ip rule del from "$(nth "$CLIENT_V4" 2 | cut -d. -f1-3).0/24" table 202 2>/dev/null || true
    ip rule add from "$(nth "$CLIENT_V4" 2 | cut -d. -f1-3).0/24" table 202

    deb=$(ls /vagrant/build/deb/anabranch_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || { echo "no .deb in build/deb/: run \`make deb\` on the host first" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "linux-headers-$(uname -r)" "$deb"

    # The config names the VM's real interface for each of the lab's ports.
    {
        echo "# Written by vagrant/provision.sh from the lab's plan."
        for port in ${WAN_PORTS//,/ }; do printf '[interfaces.%s]\nrole = "wan"\n\n' "$(dev_of "$(gw_ip "$port")")"; done
        for port in ${LAN_PORTS//,/ }; do printf '[interfaces.%s]\nrole = "lan"\n\n' "$(dev_of "$(gw_ip "$port")")"; done
    } > /etc/anabranch/anabranch.toml
    anabranchd --check-config
    systemctl restart anabranchd
    ports=$(sed -n 's/^\[interfaces\.\(.*\)\]$/\1/p' /etc/anabranch/anabranch.toml | paste -sd,)
    /usr/lib/anabranch/venv/bin/python3 /vagrant/tests/lab/checks.py state --ports "$ports" --timeout 180
    say "web UI first password: $(cat /etc/anabranch/webui.initial-password 2>/dev/null || echo '(none)')"
    ;;
client)
    # up0 is the default path; traffic from up1's address leaves through up1.
    ip route replace default via "$(gw_ip lan0)"
    ip route replace default via "$(gw_ip lan1)" table 102
    ip rule del from "$(nth "$CLIENT_V4" 2)" table 102 2>/dev/null || true
    ip rule add from "$(nth "$CLIENT_V4" 2)" table 102
    sysctl -qw net.mptcp.enabled=1
    ip mptcp limits set subflows 2 add_addr_accepted 2
    ip mptcp endpoint flush
    ip mptcp endpoint add "$(nth "$CLIENT_V4" 2)" dev "$(dev_of "$(nth "$CLIENT_V4" 2)")" subflow
    # The minimal boxes may lack them; the checks need both.
    if ! command -v python3 >/dev/null || ! command -v ping >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 iputils-ping
    fi
    python3 /vagrant/tests/lab/checks.py reach --from "$CLIENT_V4" --to "$SERVER_V4"
    ;;
*)
    echo "usage: provision.sh client|gateway|server" >&2
    exit 2
    ;;
esac
