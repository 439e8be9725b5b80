#!/bin/bash
# The network of issue 13's tests: a guest's NIC (a TAP device) on each of two
# hosts, bridged into one "switch", so that a failover moves the guest's port
# like it would on a real network.
#
#   . tests/netns.sh; net_up; net_exec client redis-cli -h 10.77.0.2 PING; net_down
#   NET_PREFIX=x tests/netns.sh up|down|show|fdb MAC|cut|heal   (manual use)
#
# Layout (every name below starts with $NET_PREFIX, default ftn<pid>, so runs in
# parallel do not collide; interface names are per namespace):
#
#   $P-sw      bridge br0 (10.77.0.1/24: the guest's gateway), ports p-cl, p-a, p-b
#   $P-cl      the client: eth0 10.77.0.100/24, peer of p-cl
#   $P-a       host A: bridge brg with the persistent TAP $NET_TAP (what
#              `ftd --net tap=$NET_TAP` opens) and uplink (peer of p-a in the
#              switch); repl 10.78.0.1/24, the replication link to B
#   $P-b       host B: the same (peer p-b); repl 10.78.0.2/24
#
# Every bridge: STP off, forward delay 0 (a port forwards as soon as it is up).
# The guest's MAC is learned on p-a or p-b, whichever host's TAP sent it last:
# net_mac_host says which. IPv6 is off in every namespace (no router
# solicitations or MLD reports for the guest to read).
#
# Hosts may be namespaces that exist already (tests/cluster.sh's node1 and
# node2, whose /run and corosync they share): set NET_NS_A and NET_NS_B before
# net_up; then only the interfaces are added to them and removed by net_down,
# and the namespaces are left alone.
#
# The replication link is cut like a pulled cable: a netdev ingress chain on
# each end drops everything that arrives, so neither side sees a local error.
#
# Every function returns non-zero after printing "net: ..." on stderr.

NET_PREFIX=${NET_PREFIX:-ftn$$}
NET_TAP=${NET_TAP:-ftap0}
NET_GUEST_IP=${NET_GUEST_IP:-10.77.0.2}
NET_GATEWAY=${NET_GATEWAY:-10.77.0.1}
NET_CLIENT_IP=${NET_CLIENT_IP:-10.77.0.100}
NET_PREFIXLEN=24
NET_REPL_A=10.78.0.1
NET_REPL_B=10.78.0.2
NET_NS_A=${NET_NS_A:-}
NET_NS_B=${NET_NS_B:-}

_net_err() {
	echo "net: $*" >&2
	return 1
}

# net_ns sw|client|a|b: the namespace's name.
net_ns() {
	case $1 in
	sw) echo "$NET_PREFIX-sw" ;;
	client | cl) echo "$NET_PREFIX-cl" ;;
	a | A) echo "${NET_NS_A:-$NET_PREFIX-a}" ;;
	b | B) echo "${NET_NS_B:-$NET_PREFIX-b}" ;;
	*) _net_err "unknown namespace '$1' (sw, client, a or b)" ;;
	esac
}

# net_port a|b|client: the host's port on the switch bridge.
net_port() {
	case $1 in
	a | A) echo p-a ;;
	b | B) echo p-b ;;
	client | cl) echo p-cl ;;
	*) _net_err "unknown host '$1'" ;;
	esac
}

# net_repl_addr a|b: the host's address on the replication link.
net_repl_addr() {
	case $1 in
	a | A) echo $NET_REPL_A ;;
	b | B) echo $NET_REPL_B ;;
	*) _net_err "unknown host '$1'" ;;
	esac
}

# net_exec NS CMD...: CMD inside sw, client, a or b.
net_exec() {
	local ns
	ns=$(net_ns "$1") || return
	shift
	ip netns exec "$ns" "$@"
}

_net_owned() { # a|b: whether net_up created (and net_down deletes) that namespace
	case $1 in
	a) [ -z "$NET_NS_A" ] ;;
	b) [ -z "$NET_NS_B" ] ;;
	*) return 0 ;;
	esac
}

_net_exists() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$1"
}

# net_can: whether this environment can build the topology at all (root, the
# commands, network namespaces, veth, bridges, TAP devices, nftables netdev).
net_can() {
	local missing=() c ns=$NET_PREFIX-probe ok=0
	[ "$(id -u)" = 0 ] || _net_err "must run as root (network namespaces, TAP devices)" || return
	for c in ip bridge nft; do
		command -v "$c" >/dev/null || missing+=("$c")
	done
	[ ${#missing[@]} = 0 ] ||
		_net_err "missing commands: ${missing[*]} (apt-get install iproute2 nftables)" || return
	[ -c /dev/net/tun ] || _net_err "no /dev/net/tun (TAP devices)" || return
	_net_exists "$ns" && ip netns del "$ns"
	ip netns add "$ns" 2>/dev/null || _net_err "cannot create network namespaces" || return
	if ! ip -n "$ns" link add pa type veth peer name pb 2>/dev/null; then
		_net_err "cannot create veth pairs"
	elif ! ip -n "$ns" link add pbr type bridge 2>/dev/null; then
		_net_err "cannot create bridges"
	elif ! ip -n "$ns" tuntap add ptap mode tap 2>/dev/null; then
		_net_err "cannot create TAP devices"
	elif ! ip netns exec "$ns" nft add table netdev probe 2>/dev/null; then
		_net_err "nftables (netdev family) is not available"
	else
		ok=1
	fi
	ip netns del "$ns" 2>/dev/null
	[ $ok = 1 ]
}

_net_quiet_ns() { # NS: lo up, no IPv6
	ip -n "$1" link set lo up || return
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1
	return 0
}

_net_bridge() { # NS NAME: a bridge, STP off, forward delay 0, up
	ip -n "$1" link add "$2" type bridge stp_state 0 forward_delay 0 || return
	ip -n "$1" link set "$2" up
}

_net_host() { # a|b
	local h=$1 ns sw port
	ns=$(net_ns "$h")
	sw=$(net_ns sw)
	port=$(net_port "$h")
	if _net_owned "$h"; then
		ip netns add "$ns" || return
	else
		_net_exists "$ns" || _net_err "namespace $ns (NET_NS_${h^^}) does not exist" || return
	fi
	_net_quiet_ns "$ns" || return
	# Learning is on by default; ageing stays long enough that only a frame
	# from the other host moves the MAC.
	_net_bridge "$ns" brg || return
	# The host itself must not answer ARP for the guest's network through brg:
	# an adopted namespace may hold one of its addresses (tests/cluster.sh's
	# node2 is 10.77.0.2 on its own eth0, and Linux answers ARP for any local
	# address on any interface by default), and would take the guest's traffic.
	ip netns exec "$ns" sysctl -qw net.ipv4.conf.brg.arp_ignore=1 >/dev/null || return
	ip -n "$ns" tuntap add "$NET_TAP" mode tap || return
	ip -n "$ns" link set "$NET_TAP" master brg up || return
	ip -n "$sw" link add "$port" type veth peer name uplink netns "$ns" || return
	ip -n "$sw" link set "$port" master br0 up || return
	ip -n "$ns" link set uplink master brg up
}

# net_up: build everything (after net_down, so a half-built run from before
# goes). The caller removes it with net_down (e.g. in its EXIT trap).
net_up() {
	local sw cl a b
	net_down || return
	sw=$(net_ns sw)
	cl=$(net_ns client)
	ip netns add "$sw" || return
	_net_quiet_ns "$sw" || return
	_net_bridge "$sw" br0 || return
	ip -n "$sw" addr add "$NET_GATEWAY/$NET_PREFIXLEN" dev br0 || return

	ip netns add "$cl" || return
	_net_quiet_ns "$cl" || return
	ip -n "$sw" link add p-cl type veth peer name eth0 netns "$cl" || return
	ip -n "$sw" link set p-cl master br0 up || return
	ip -n "$cl" addr add "$NET_CLIENT_IP/$NET_PREFIXLEN" dev eth0 || return
	ip -n "$cl" link set eth0 up || return
	ip -n "$cl" route add default via "$NET_GATEWAY" || return

	_net_host a || { _net_err "cannot build host A"; return 1; }
	_net_host b || { _net_err "cannot build host B"; return 1; }

	a=$(net_ns a)
	b=$(net_ns b)
	ip -n "$a" link add repl type veth peer name repl netns "$b" || return
	ip -n "$a" addr add "$NET_REPL_A/$NET_PREFIXLEN" dev repl || return
	ip -n "$b" addr add "$NET_REPL_B/$NET_PREFIXLEN" dev repl || return
	ip -n "$a" link set repl up || return
	ip -n "$b" link set repl up
}

# _net_pids NS...: live processes inside those namespaces.
_net_pids() {
	local ns pid stat
	for ns in "$@"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
			stat=${stat##*) }
			[ "${stat%% *}" != Z ] && echo "$pid"
		done
	done
}

# net_down: stop every process inside the namespaces net_up created (never in
# adopted ones: they belong to whoever made them), delete them, and remove the
# interfaces from adopted ones; idempotent.
net_down() {
	local owned=() h ns pids i rc=0
	owned+=("$(net_ns sw)" "$(net_ns client)")
	for h in a b; do
		ns=$(net_ns "$h")
		if _net_owned "$h"; then
			owned+=("$ns")
		elif _net_exists "$ns"; then
			ip -n "$ns" link del brg 2>/dev/null
			ip -n "$ns" link del "$NET_TAP" 2>/dev/null
			ip -n "$ns" link del uplink 2>/dev/null
			ip -n "$ns" link del repl 2>/dev/null
			ip netns exec "$ns" nft delete table netdev ftnet_cut 2>/dev/null
		fi
	done
	for ((i = 0; i < 50; i++)); do
		pids=$(_net_pids "${owned[@]}")
		[ -z "$pids" ] && break
		# shellcheck disable=SC2086 # a list of pids
		if [ $i -lt 30 ]; then
			[ $i = 0 ] && kill -TERM $pids 2>/dev/null
		else
			kill -KILL $pids 2>/dev/null
		fi
		sleep 0.1
	done
	[ -z "$(_net_pids "${owned[@]}")" ] || { _net_err "processes still alive in ${owned[*]}"; rc=1; }
	for ns in "${owned[@]}"; do
		if _net_exists "$ns"; then
			ip netns del "$ns" || rc=1
		fi
	done
	return $rc
}

# net_fdb_port MAC: the switch port (p-a, p-b, p-cl) that learned MAC, or
# nothing.
net_fdb_port() {
	local mac=${1,,}
	ip netns exec "$(net_ns sw)" bridge fdb show br br0 2>/dev/null |
		awk -v m="$mac" '$1 == m && $2 == "dev" && $0 !~ / permanent/ { print $3; exit }'
}

# net_mac_host MAC: a, b or client (where the switch learned MAC), or none.
net_mac_host() {
	case $(net_fdb_port "$1") in
	p-a) echo a ;;
	p-b) echo b ;;
	p-cl) echo client ;;
	*) echo none ;;
	esac
}

# net_wait_mac_host MAC HOST SECONDS: until the switch learned MAC on HOST's port.
net_wait_mac_host() {
	local deadline=$((SECONDS + $3))
	until [ "$(net_mac_host "$1")" = "$2" ]; do
		[ $SECONDS -lt "$deadline" ] ||
			_net_err "$1 is on '$(net_mac_host "$1")' after $3 s, not on $2" || return
		sleep 0.05
	done
}

# net_repl_cut: drop everything arriving on either end of the replication link.
net_repl_cut() {
	local h
	for h in a b; do
		ip netns exec "$(net_ns "$h")" nft -f - <<EOF || _net_err "cannot cut the link on $h" || return
table netdev ftnet_cut {
	chain in {
		type filter hook ingress device "repl" priority 0; policy drop;
	}
}
EOF
	done
}

# net_repl_heal: undo net_repl_cut (idempotent).
net_repl_heal() {
	local h
	for h in a b; do
		ip netns exec "$(net_ns "$h")" nft delete table netdev ftnet_cut 2>/dev/null
	done
	return 0
}

# net_tap_carrier HOST: 1 while a process has HOST's TAP open, else 0.
net_tap_carrier() {
	ip netns exec "$(net_ns "$1")" cat "/sys/class/net/$NET_TAP/carrier" 2>/dev/null || echo 0
}

# net_standin_up HOST MAC / net_standin_down HOST: a stand-in for the guest
# (to check the topology and clients without ftd): the guest's IP and MAC on
# HOST's bridge, so a server bound to the guest's address inside HOST answers
# clients like the guest would. The bridge says so to the switch at once (a
# frame to the gateway), as a promoted ftd's announce does.
net_standin_up() {
	local ns
	ns=$(net_ns "$1") || return
	ip -n "$ns" link set brg address "$2" || return
	ip -n "$ns" addr add "$NET_GUEST_IP/$NET_PREFIXLEN" dev brg || return
	ip netns exec "$ns" timeout 2 bash -c "exec 3<>/dev/tcp/$NET_GATEWAY/9" 2>/dev/null
	return 0
}
net_standin_down() {
	local ns
	ns=$(net_ns "$1") || return
	ip -n "$ns" addr flush dev brg
	# A locally administered MAC of its own, so the guest's is no longer here.
	ip -n "$ns" link set brg address "02:00:00:00:00:0${2:-1}"
}

# net_announce_watch MAC / net_announce_count a|b [rarp|arp]: RARP (default)
# or ARP frames from MAC counted on each host's switch port from now on
# (nftables, bridge family, before the bridge learns): a promoted ftd's
# announce (RARP) shows on b.
net_announce_watch() {
	ip netns exec "$(net_ns sw)" nft delete table bridge ftnet_ann 2>/dev/null
	ip netns exec "$(net_ns sw)" nft -f - <<EOF
table bridge ftnet_ann {
	counter rarp_a {}
	counter rarp_b {}
	counter arp_a {}
	counter arp_b {}
	chain pre {
		type filter hook prerouting priority -200; policy accept;
		iifname "p-a" ether saddr $1 ether type 0x8035 counter name "rarp_a"
		iifname "p-b" ether saddr $1 ether type 0x8035 counter name "rarp_b"
		iifname "p-a" ether saddr $1 ether type arp counter name "arp_a"
		iifname "p-b" ether saddr $1 ether type arp counter name "arp_b"
	}
}
EOF
}
net_announce_count() {
	ip netns exec "$(net_ns sw)" nft list counter bridge ftnet_ann "${2:-rarp}_${1,,}" 2>/dev/null |
		sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

# net_show: the namespaces, their links and addresses, the switch's fdb.
net_show() {
	local h ns
	for h in sw client a b; do
		ns=$(net_ns "$h")
		echo "== $h ($ns)"
		ip -n "$ns" -br addr 2>/dev/null
		ip -n "$ns" -br link 2>/dev/null | grep -v '^lo '
	done
	echo "== switch fdb (learned)"
	ip netns exec "$(net_ns sw)" bridge fdb show br br0 2>/dev/null | grep -v permanent
	echo "== replication link cut"
	for h in a b; do
		ip netns exec "$(net_ns "$h")" nft list table netdev ftnet_cut >/dev/null 2>&1 && echo "$h: cut"
	done
	return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	# Manual use keeps one name between commands.
	[ "$NET_PREFIX" = "ftn$$" ] && NET_PREFIX=ftnet
	cmd=${1:-}
	shift
	case $cmd in
	up) net_can && net_up && echo "up: prefix $NET_PREFIX; 'NET_PREFIX=$NET_PREFIX $0 down' removes it" ;;
	down) net_down ;;
	show) net_show ;;
	fdb) net_mac_host "$@" ;;
	cut) net_repl_cut ;;
	heal) net_repl_heal ;;
	exec) net_exec "$@" ;;
	*)
		echo "usage: [NET_PREFIX=P] $0 up|down|show|fdb MAC|cut|heal|exec NS CMD..." >&2
		exit 2
		;;
	esac
fi
