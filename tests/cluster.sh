#!/bin/bash
# A two-node Corosync cluster with a corosync-qnetd tie-breaker, on this one machine.
#
#   . tests/cluster.sh; cluster_up; cluster_run node1 CMD...; cluster_cut; ...
#   tests/cluster.sh up|down|status|cut|heal|isolate NODE|run NODE CMD...   (manual use)
#
# Layout: four network namespaces, $CLUSTER_NAME-{node1,node2,qnetd,sw}. The "sw" one
# holds a bridge; each other namespace has one veth port on it (10.77.0.1, .2, .3/24).
# Links are cut on the bridge (nftables, bridge family, forward hook) so that no host
# sees a local error: a cut looks like a pulled cable, not like a refused send.
#
# node1, node2 and qnetd also get a mount namespace each, kept alive by a holder process
# (sleep) and entered with nsenter: tmpfs over /run, /var/lib/corosync, /var/log/corosync
# and /dev/shm. corosync, corosync-qdevice and everything started with cluster_run share
# them. Why: libqb IPC (libcpg, libquorum, corosync-quorumtool) connects through abstract
# unix sockets, which are per network namespace, and then maps files from /dev/shm named
# after the two pids; corosync and qdevice also keep a pid/lock file and a socket under
# /run. With the host's /run the two corosyncs would refuse each other's lock, and a
# killed daemon would leave its /dev/shm files on the host.
#
# Timings (milliseconds) can be set before cluster_up: CLUSTER_TOKEN (totem token),
# CLUSTER_QDEVICE_TIMEOUT and CLUSTER_QDEVICE_SYNC_TIMEOUT (quorum.device.timeout and
# sync_timeout). CLUSTER_QDEVICE_HEURISTICS, a command, becomes the qdevice heuristics
# (mode sync: run on every membership change; on a 1:1 split qnetd prefers the side where
# it succeeds). Logs and configurations are in $CLUSTER_DIR; CLUSTER_KEEP=1 keeps them
# after cluster_down.
#
# Every function returns non-zero after printing "cluster: ..." on stderr.

CLUSTER_NAME=${CLUSTER_NAME:-ftc}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/ringft-cluster-$CLUSTER_NAME}
CLUSTER_TOKEN=${CLUSTER_TOKEN:-1000}
CLUSTER_QDEVICE_TIMEOUT=${CLUSTER_QDEVICE_TIMEOUT:-3000}
CLUSTER_QDEVICE_SYNC_TIMEOUT=${CLUSTER_QDEVICE_SYNC_TIMEOUT:-6000}
CLUSTER_QDEVICE_HEURISTICS=${CLUSTER_QDEVICE_HEURISTICS:-}
CLUSTER_NODES=(node1 node2)

_cluster_err() {
	echo "cluster: $*" >&2
	return 1
}

# _cluster_tail FILE: the end of a log, to say why something did not come up.
_cluster_tail() {
	[ -s "$1" ] || return 0
	echo "---- last lines of $1:" >&2
	tail -n 15 "$1" >&2
	echo "----" >&2
}

_cluster_ns() {
	echo "$CLUSTER_NAME-$1"
}

_cluster_addr() {
	case $1 in
	node1) echo 10.77.0.1 ;;
	node2) echo 10.77.0.2 ;;
	qnetd) echo 10.77.0.3 ;;
	*) _cluster_err "unknown node '$1' (node1, node2 or qnetd)" ;;
	esac
}

_cluster_nodeid() {
	case $1 in
	node1) echo 1 ;;
	node2) echo 2 ;;
	*) _cluster_err "unknown node '$1'" ;;
	esac
}

# The bridge port (in the sw namespace) of a host; names stay under 15 characters.
_cluster_port() {
	echo "$CLUSTER_NAME-$1"
}

_cluster_pidfile() {
	echo "$CLUSTER_DIR/$1/$2.pid"
}

# _cluster_pid_alive PID: running, not a zombie waiting for a parent that is not ours.
_cluster_pid_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

_cluster_alive() {
	local pid
	pid=$(cat "$(_cluster_pidfile "$1" "$2")" 2>/dev/null) || return 1
	_cluster_pid_alive "$pid"
}

# cluster_pid HOST DAEMON: the pid of holder, corosync, qdevice or qnetd.
cluster_pid() {
	cat "$(_cluster_pidfile "$1" "$2")" 2>/dev/null ||
		_cluster_err "no $2 recorded for $1"
}

_cluster_need() {
	local missing=() c
	[ "$(id -u)" = 0 ] || _cluster_err "must run as root (network namespaces, nftables)" || return
	for c in ip nft nsenter unshare corosync corosync-qdevice corosync-qnetd \
		corosync-quorumtool; do
		command -v "$c" >/dev/null || missing+=("$c")
	done
	[ ${#missing[@]} = 0 ] ||
		_cluster_err "missing commands: ${missing[*]} (apt-get install iproute2 nftables" \
			"util-linux corosync corosync-qdevice corosync-qnetd)"
}

# cluster_can_namespace: whether this environment can build the cluster at all
# (root, the commands, network namespaces, veth, bridge, nftables bridge family).
cluster_can_namespace() {
	_cluster_need || return
	local ns=$CLUSTER_NAME-probe$$ ok=0
	ip netns add "$ns" 2>/dev/null || _cluster_err "cannot create network namespaces" || return
	if ! ip -n "$ns" link add "$CLUSTER_NAME-pa" type veth peer name "$CLUSTER_NAME-pb" 2>/dev/null; then
		_cluster_err "cannot create veth pairs"
	elif ! ip -n "$ns" link add "$CLUSTER_NAME-pbr" type bridge 2>/dev/null; then
		_cluster_err "cannot create bridges"
	elif ! ip netns exec "$ns" nft add table bridge probe 2>/dev/null; then
		_cluster_err "nftables (bridge family) is not available"
	elif ! ip netns exec "$ns" unshare -m true 2>/dev/null; then
		_cluster_err "cannot create mount namespaces"
	else
		ok=1
	fi
	ip netns del "$ns" 2>/dev/null
	[ $ok = 1 ]
}

_cluster_holder_pid() {
	cat "$(_cluster_pidfile "$1" holder)" 2>/dev/null || _cluster_err "$1 is not up"
}

# cluster_run HOST CMD...: run CMD in HOST's network and mount namespaces, where it sees
# that host's corosync (libcpg, libquorum, corosync-quorumtool).
cluster_run() {
	local pid
	pid=$(_cluster_holder_pid "$1") || return
	shift
	nsenter -t "$pid" -n -m -- "$@"
}

# cluster_spawn HOST CMD...: the same in the background, with the caller's redirections;
# sets CLUSTER_SPAWNED to CMD's pid ("cluster_run ... &" would give a subshell's pid).
cluster_spawn() {
	local pid
	pid=$(_cluster_holder_pid "$1") || return
	shift
	nsenter -t "$pid" -n -m -- "$@" &
	CLUSTER_SPAWNED=$!
}

_cluster_write_conf() {
	local host=$1 file=$CLUSTER_DIR/$1/corosync.conf heuristics=
	if [ -n "$CLUSTER_QDEVICE_HEURISTICS" ]; then
		heuristics="heuristics {
			mode: sync
			exec_ringft: $CLUSTER_QDEVICE_HEURISTICS
		}"
	fi
	cat >"$file" <<EOF
# Written by tests/cluster.sh for $host.
totem {
	version: 2
	cluster_name: $CLUSTER_NAME
	transport: knet
	crypto_cipher: none
	crypto_hash: none
	# Short, so tests are quick; consensus defaults to 1.2 * token.
	token: $CLUSTER_TOKEN
}

nodelist {
	node {
		name: node1
		nodeid: 1
		ring0_addr: $(_cluster_addr node1)
	}
	node {
		name: node2
		nodeid: 2
		ring0_addr: $(_cluster_addr node2)
	}
}

# Two nodes and qnetd's one vote: expected 3, quorum 2. No two_node (it cannot be
# combined with a quorum device, and it would let both halves of a split run).
quorum {
	provider: corosync_votequorum
	device {
		model: net
		votes: 1
		timeout: $CLUSTER_QDEVICE_TIMEOUT
		sync_timeout: $CLUSTER_QDEVICE_SYNC_TIMEOUT
		$heuristics
		net {
			host: $(_cluster_addr qnetd)
			algorithm: ffsplit
			tie_breaker: lowest
			tls: off
		}
	}
}

logging {
	to_stderr: no
	to_syslog: no
	to_logfile: yes
	logfile: $CLUSTER_DIR/$host/corosync.log
	timestamp: hires
}
EOF
}

# _cluster_holder HOST: a process in HOST's network namespace and a new mount namespace
# with private /run, /var/lib/corosync, /var/log/corosync and /dev/shm.
_cluster_holder() {
	local host=$1 ns dir=$CLUSTER_DIR/$1 i
	ns=$(_cluster_ns "$host")
	# The directories must exist to be mounted over (the corosync package makes them).
	mkdir -p /var/lib/corosync /var/log/corosync
	ip netns exec "$ns" unshare --mount --propagation private -- /bin/sh -c '
		set -e
		mount -t tmpfs -o mode=0755,size=16m "ftc-run" /run
		[ -L /var/run ] || mount -t tmpfs -o mode=0755,size=16m "ftc-run" /var/run
		mkdir -p /run/corosync-qdevice /run/corosync-qnetd /run/lock
		mount -t tmpfs -o mode=0755,size=16m "ftc-lib" /var/lib/corosync
		mount -t tmpfs -o mode=0755,size=16m "ftc-log" /var/log/corosync
		mount -t tmpfs -o mode=1777,size=64m "ftc-shm" /dev/shm
		: >"$1"
		exec sleep infinity' holder "$dir/holder.ready" >"$dir/holder.log" 2>&1 &
	echo $! >"$dir/holder.pid"
	for ((i = 0; i < 50; i++)); do
		[ -e "$dir/holder.ready" ] && return 0
		kill -0 "$(cat "$dir/holder.pid")" 2>/dev/null || break
		sleep 0.1
	done
	_cluster_tail "$dir/holder.log"
	_cluster_err "$host: could not set up its mount namespace"
}

# _cluster_start HOST NAME LOG CMD...: start a daemon inside HOST, record its pid.
_cluster_start() {
	local host=$1 name=$2 log=$3
	shift 3
	cluster_spawn "$host" env -u NOTIFY_SOCKET "$@" >"$log" 2>&1 </dev/null || return
	echo "$CLUSTER_SPAWNED" >"$(_cluster_pidfile "$host" "$name")"
}

_cluster_network() {
	local sw host ns port
	sw=$(_cluster_ns sw)
	ip netns add "$sw" || return
	ip -n "$sw" link set lo up
	ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0 || return
	ip -n "$sw" link set br0 up
	for host in node1 node2 qnetd; do
		ns=$(_cluster_ns "$host")
		port=$(_cluster_port "$host")
		ip netns add "$ns" || return
		ip -n "$ns" link set lo up
		ip -n "$sw" link add "$port" type veth peer name eth0 netns "$ns" || return
		ip -n "$sw" link set "$port" master br0 up || return
		ip -n "$ns" addr add "$(_cluster_addr "$host")/24" dev eth0 || return
		ip -n "$ns" link set eth0 up || return
	done
	ip netns exec "$sw" nft -f - <<EOF || _cluster_err "cannot load the nftables table"
table bridge ringft_cluster {
	chain forward {
		type filter hook forward priority 0; policy accept;
	}
}
EOF
}

# cluster_quorate HOST: prints yes or no (no also when corosync does not answer).
cluster_quorate() {
	if cluster_run "$1" corosync-quorumtool -s 2>/dev/null | grep -q '^Quorate: *Yes'; then
		echo yes
	else
		echo no
	fi
}

# cluster_wait_quorate HOST yes|no TIMEOUT_SECONDS
cluster_wait_quorate() {
	local host=$1 want=$2 deadline
	deadline=$(($(date +%s%N) + ${3:-10} * 1000000000))
	while [ "$(cluster_quorate "$host")" != "$want" ]; do
		if [ "$(date +%s%N)" -gt "$deadline" ]; then
			_cluster_err "$host: quorate is not '$want' after ${3:-10} s"
			cluster_run "$host" corosync-quorumtool -s >&2
			return 1
		fi
		sleep 0.05
	done
}

# _cluster_wait_qdevice HOST SECONDS: until the qdevice of HOST casts its vote.
_cluster_wait_qdevice() {
	local host=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		cluster_run "$host" corosync-quorumtool -s 2>/dev/null |
			grep -q '^Total votes: *3' && return 0
		sleep 0.1
	done
	_cluster_tail "$CLUSTER_DIR/$host/qdevice.log"
	cluster_run "$host" corosync-quorumtool -s >&2
	_cluster_err "$host: the quorum device does not cast its vote after $2 s"
}

# cluster_up: build the whole cluster and wait until both nodes are quorate with the
# qdevice's vote. Installs cluster_down as an EXIT trap (after any EXIT trap already set).
cluster_up() {
	local host i
	_cluster_need || return
	cluster_down || return
	mkdir -p "$CLUSTER_DIR"/{node1,node2,qnetd} || return
	_cluster_install_trap
	_cluster_network || { _cluster_err "cannot build the network namespaces"; return 1; }
	for host in node1 node2 qnetd; do
		_cluster_holder "$host" || return
	done

	_cluster_start qnetd qnetd "$CLUSTER_DIR/qnetd/qnetd.log" \
		corosync-qnetd -f -d -s off -l "$(_cluster_addr qnetd)" || return
	for host in "${CLUSTER_NODES[@]}"; do
		_cluster_write_conf "$host"
		_cluster_start "$host" corosync "$CLUSTER_DIR/$host/corosync.out" \
			corosync -f -c "$CLUSTER_DIR/$host/corosync.conf" || return
	done
	# qdevice needs corosync's IPC (cmap, votequorum) at start.
	for host in "${CLUSTER_NODES[@]}"; do
		for ((i = 0; ; i++)); do
			cluster_run "$host" corosync-quorumtool -s >/dev/null 2>&1
			[ $? != 1 ] && break # 1: no answer; 0 or 2: quorate or not
			if ! _cluster_alive "$host" corosync || [ $i -ge 100 ]; then
				_cluster_tail "$CLUSTER_DIR/$host/corosync.out"
				_cluster_tail "$CLUSTER_DIR/$host/corosync.log"
				_cluster_err "$host: corosync did not start"
				return 1
			fi
			sleep 0.1
		done
		_cluster_start "$host" qdevice "$CLUSTER_DIR/$host/qdevice.log" \
			corosync-qdevice -f -d || return
	done
	if ! _cluster_alive qnetd qnetd; then
		_cluster_tail "$CLUSTER_DIR/qnetd/qnetd.log"
		_cluster_err "corosync-qnetd did not start"
		return 1
	fi
	for host in "${CLUSTER_NODES[@]}"; do
		cluster_wait_quorate "$host" yes 30 || return
		_cluster_wait_qdevice "$host" 30 || return
	done
}

# _cluster_pids: every live process in the cluster's network namespaces (daemons, holders,
# whatever cluster_run started). Only those are ever killed: a pid file left by a killed
# run could name somebody else's process by now.
_cluster_pids() {
	local host pid
	for host in node1 node2 qnetd sw; do
		for pid in $(ip netns pids "$(_cluster_ns "$host")" 2>/dev/null); do
			_cluster_pid_alive "$pid" && echo "$pid"
		done
	done
}

# _cluster_kill_all: TERM, KILL after 3 s, until none is left (a daemon may fork while it
# stops).
_cluster_kill_all() {
	local pids i
	for ((i = 0; i < 50; i++)); do
		pids=$(_cluster_pids)
		[ -z "$pids" ] && return 0
		# shellcheck disable=SC2086 # a list of pids
		if [ $i -lt 30 ]; then
			[ $i = 0 ] && kill -TERM $pids 2>/dev/null
		else
			kill -KILL $pids 2>/dev/null
		fi
		sleep 0.1
	done
	_cluster_err "processes still alive after SIGKILL:" $pids
}

# cluster_down: stop everything and delete the namespaces; idempotent.
cluster_down() {
	local host rc=0
	_cluster_kill_all || rc=1
	for host in node1 node2 qnetd sw; do
		if ip netns list | grep -qw "^$(_cluster_ns "$host")"; then
			ip netns del "$(_cluster_ns "$host")" || rc=1
		fi
	done
	if [ -d "$CLUSTER_DIR" ] && [ -z "${CLUSTER_KEEP:-}" ]; then
		rm -rf "$CLUSTER_DIR"
	elif [ -d "$CLUSTER_DIR" ]; then
		rm -f "$CLUSTER_DIR"/*/*.pid
	fi
	return $rc
}

_cluster_exit_trap() {
	local rc=$?
	trap - EXIT
	cluster_down
	if [ -n "${_CLUSTER_PREV_TRAP:-}" ]; then
		eval "$_CLUSTER_PREV_TRAP"
	fi
	exit $rc
}

_cluster_install_trap() {
	local prev
	prev=$(trap -p EXIT)
	case $prev in
	*_cluster_exit_trap*) return 0 ;;
	'') _CLUSTER_PREV_TRAP= ;;
	*)
		# trap -p prints: trap -- 'command' EXIT, quoted for the shell.
		eval "set -- ${prev#trap -- }"
		_CLUSTER_PREV_TRAP=$1
		;;
	esac
	trap _cluster_exit_trap EXIT
	# A signal that kills bash skips the EXIT trap: turn it into an exit.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

_cluster_nft() {
	ip netns exec "$(_cluster_ns sw)" nft "$@" ||
		_cluster_err "nft $* failed (is the cluster up?)"
}

# cluster_cut: drop node1<->node2 traffic, both directions; both still reach qnetd.
cluster_cut() {
	local a b
	a=$(_cluster_addr node1)
	b=$(_cluster_addr node2)
	_cluster_nft add rule bridge ringft_cluster forward ip saddr "$a" ip daddr "$b" drop &&
		_cluster_nft add rule bridge ringft_cluster forward ip saddr "$b" ip daddr "$a" drop
}

# cluster_cut_tcp PORT: drop TCP to and from PORT between the hosts (a replication
# link alone); corosync (UDP) still passes.
cluster_cut_tcp() {
	_cluster_nft add rule bridge ringft_cluster forward tcp dport "$1" drop &&
		_cluster_nft add rule bridge ringft_cluster forward tcp sport "$1" drop
}

# cluster_isolate HOST: drop everything from and to HOST (the other node and qnetd).
cluster_isolate() {
	local port
	_cluster_addr "$1" >/dev/null || return
	port=$(_cluster_port "$1")
	_cluster_nft add rule bridge ringft_cluster forward iifname "$port" drop &&
		_cluster_nft add rule bridge ringft_cluster forward oifname "$port" drop
}

# cluster_heal: remove every cut.
cluster_heal() {
	_cluster_nft flush chain bridge ringft_cluster forward
}

cluster_status() {
	local host
	for host in "${CLUSTER_NODES[@]}"; do
		echo "== $host"
		cluster_run "$host" corosync-quorumtool -s
	done
	echo "== qnetd"
	cluster_run qnetd corosync-qnetd-tool -l
	echo "== cuts"
	ip netns exec "$(_cluster_ns sw)" nft list chain bridge ringft_cluster forward
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	cmd=${1:-}
	shift
	case $cmd in
	up)
		cluster_up || exit 1
		trap - EXIT INT TERM HUP # keep it running for manual use
		echo "cluster up: logs in $CLUSTER_DIR; '$0 down' to stop"
		;;
	down) cluster_down ;;
	status) cluster_status ;;
	cut) cluster_cut ;;
	heal) cluster_heal ;;
	isolate) cluster_isolate "$@" ;;
	quorate) cluster_quorate "$@" ;;
	run) cluster_run "$@" ;;
	*)
		echo "usage: $0 up|down|status|cut|heal|isolate NODE|quorate NODE|run NODE CMD..." >&2
		exit 2
		;;
	esac
fi
