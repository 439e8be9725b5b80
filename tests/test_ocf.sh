#!/bin/bash
# ocf:ringft:ftd (ocf/ftd), the Pacemaker resource agent, against real ftds
# on loopback, without a cluster (docs/pacemaker.md):
#
#  1. ocf-tester (Debian's resource-agents) on one node of a configuration
#     whose other node never answers: every action and its OCF exit code,
#     promote by `ftctl start` (a cold boot), demote of an unprotected guest,
#     crm_attribute failing because no cluster runs.
#  2. Two instances, nodes a and b of one configuration, driven action by
#     action as Pacemaker would, with crm_attribute/crm_master replaced by a
#     recorder (HA_SBIN_DIR) to check the promotion scores: start both
#     (monitor 0, score 5); promote a (`ftctl start`; monitor 8, score
#     10000) and b protects it by itself (score 1000); demote a (switchover:
#     b runs the guest, its Unpromoted monitor says 0 until promoted, a waits
#     again and b protects it by itself); kill -9 of b (monitor 7), promote a
#     (`ftctl failover`); stop and start b (protected again); a pre-demote
#     notification promoting nobody else: demote a stops the guest although
#     protected, and promote b resumes it from b's checkpoint; one promoting
#     a: demote b hands over; stop b, demote a (unprotected: the guest stops),
#     stop a (monitor 7, score removed). The guest's console across every
#     incarnation that ran or mirrored it joins into one bank stream, every
#     iter exactly once.
#  3. validate-all: a configuration that sets `cluster` (ftd's own failover),
#     --cluster in the options, `role = primary`, a configuration without
#     [node] sections are refused (6), a missing one (5), one ftd
#     --check-config refuses (6, with ftd's message).
#  4. Under Pacemaker, in the namespace cluster of tests/cluster.sh (each
#     node's Pacemaker state in a private tmpfs, the agent as ocf:ringft:ftd,
#     no fencing): a promotable clone; Pacemaker promotes one node (`ftctl
#     start`), the other protects it; kill -9 of that ftd: Pacemaker promotes
#     the other (`ftctl failover`) and restarts this one, which is protected
#     again; the console stream across the three incarnations exactly once;
#     `crm_resource --move` back (switchover); the clone disabled: the guest
#     stops without a hand-over (notify). Skipped where Pacemaker is missing.
# Usage: test_ocf.sh PATH_TO_FTD PATH_TO_FTCTL [PATH_TO_AGENT [all|agent|pacemaker]]
set -u
FTD=$(realpath "${1:?usage: test_ocf.sh FTD FTCTL [AGENT]}")
FTCTL=$(realpath "${2:?usage: test_ocf.sh FTD FTCTL [AGENT]}")
AGENT=$(realpath "${3:-$(dirname "$0")/../ocf/ftd}")
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
require_kvm
skip() {
	[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but $*"
	echo "skipped: $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "not root (the agent keeps its pid file in /run/ftd)"
# ocf-tester runs the agent as nobody too (a permission check): it must be
# reachable by path, which a checkout under a private directory (mktemp -d,
# as CI's clean clone) is not. A copy under $TMP, made traversable.
chmod 711 "$TMP"
mkdir -m 755 "$TMP/agent"
cp "$AGENT" "$TMP/agent/ftd"
chmod 755 "$TMP/agent/ftd"
AGENT=$TMP/agent/ftd
if ! command -v ocf-tester >/dev/null || ! [ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ]; then
	skip "no ocf-tester (Debian resource-agents)"
fi
export OCF_ROOT=/usr/lib/ocf

PORT=$((24000 + RANDOM % 400))
ID=ftdtest$$ # instance names: the agent's pid files are /run/ftd/$ID-*.ocf.pid

# conf FILE PORT_A PORT_B [TOP LINES...]: a configuration for nodes a and b.
conf() {
	local f=$1 pa=$2 pb=$3
	shift 3
	{
		printf '%s\n' "$@"
		printf 'guest = builtin:bank\nmem = 64M\nvcpus = 1\ninterval = 10ms\n'
		printf 'timeout = 1s\nquiet = true\n\n'
		printf '[node a]\naddress = 127.0.0.1:%s\n\n[node b]\naddress = 127.0.0.1:%s\n' "$pa" "$pb"
	} >"$f"
}
CONF=$TMP/vm.conf
conf "$CONF" $PORT $((PORT + 1))

# ra NODE ACTION [VAR=VALUE...]: the agent's ACTION for instance NODE, as
# Pacemaker calls it; its exit code. Every call that may start an ftd gives
# it a console and log of its own (K counts them): con.NODE.K, log.NODE.K
# (an ftd that goes on as a secondary after a switchover keeps its own).
K=0
ra() {
	local n=$1 act=$2
	shift 2
	K=$((K + 1))
	env OCF_RESOURCE_INSTANCE="vm:$n" OCF_RESKEY_config="$CONF" OCF_RESKEY_name="$ID-$n" \
		OCF_RESKEY_node="$n" OCF_RESKEY_socket="$TMP/$n.sock" OCF_RESKEY_ftd="$FTD" \
		OCF_RESKEY_ftctl="$FTCTL" OCF_RESKEY_logfile="$TMP/log.$n.$K" \
		OCF_RESKEY_options="--state-dir $TMP/state.$n --console $TMP/con.$n.$K" \
		OCF_RESKEY_CRM_meta_timeout=20000 HA_SBIN_DIR="$TMP/sbin" "$@" \
		"$AGENT" "$act" >>"$TMP/agent.log" 2>&1
}

# expect NODE ACTION RC [VAR=VALUE...]
expect() {
	local n=$1 act=$2 want=$3 rc
	shift 3
	ra "$n" "$act" "$@"
	rc=$?
	[ $rc -eq "$want" ] ||
		fail "$act of $n: exit $rc, expected $want: $(tail -n 5 "$TMP/agent.log")"
}

# The promotion score recorder: crm_attribute and crm_master as the agent
# calls them (ocf_promotion_score), one line per call.
mkdir -p "$TMP/sbin"
for t in crm_attribute crm_master; do
	# shellcheck disable=SC2016 # expanded by the recorder
	printf '#!/bin/sh\necho "$OCF_RESOURCE_INSTANCE $*" >>%s/scores\n' "$TMP" >"$TMP/sbin/$t"
	chmod +x "$TMP/sbin/$t"
done
# score NODE: the last score set for NODE (a number, or "delete").
score() {
	grep "^vm:$1 " "$TMP/scores" 2>/dev/null | tail -n 1 |
		sed -n -e 's/.* -D\( .*\)\{0,1\}$/delete/p' -e 's/.* -v \([0-9]*\).*/\1/p'
}
expect_score() {
	local got
	got=$(score "$1")
	[ "$got" = "$2" ] || fail "$3: the promotion score of $1 is '$got', expected $2"
}

ctl() { # NODE ARGS...
	local n=$1
	shift
	"$FTCTL" --socket "$TMP/$n.sock" "$@"
}
json_field() { # JSON KEY
	sed -En "s/.*\"$2\":(\"([^\"]*)\"|([0-9a-z]+)).*/\2\3/p" <<<"$1"
}
# until_replica NODE SECONDS: NODE's replica holds a checkpoint.
until_replica() {
	local deadline=$((SECONDS + $(time_limit "$2"))) s
	while :; do
		s=$(ctl "$1" status --json 2>/dev/null)
		[ "$(json_field "$s" role)" = secondary ] && [ "$(json_field "$s" state)" = replicating ] &&
			json_field "$s" checkpoint | grep -q '^[0-9]' && return 0
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}
ftd_pid() { cat "/run/ftd/$ID-$1.ocf.pid" 2>/dev/null; }
# runs NODE: NODE runs the guest and its output moves on.
runs() {
	local o1 o2
	o1=$(json_field "$(ctl "$1" status --json)" console_offset)
	sleep 0.3
	o2=$(json_field "$(ctl "$1" status --json)" console_offset)
	[ "$(json_field "$(ctl "$1" status --json)" role)" = primary ] && [ "${o2:-0}" -gt "${o1:-0}" ]
}
# exactly_once CONSOLE...: "ITERS LOST FORKED NOT_OK" over the complete bank
# lines (one vCPU) of the consoles of one guest, mirrors included: every iter
# from 0 to the last present, each as one line wherever it appears (two
# different lines for one iter: two histories, a rollback).
exactly_once() {
	local f
	for f; do
		cat "$f"
		echo
	done | grep -aE '^bank vcpu=0 iter=[0-9]+ sum=[0-9]+ moves=[0-9]+ (ok|FAIL)$' | sort -u |
		awk '{ split($3, it, "="); n[it[2]]++; if ($NF != "ok") bad++; if (it[2] + 0 > max) max = it[2] + 0 }
		END { for (i = 0; i <= max; i++) if (!(i in n)) lost++; else if (n[i] > 1) forked++
		      printf "%d %d %d %d\n", max + 1, lost, forked, bad }'
}
# forks CONSOLE...: each bank iter with two different lines, every variant with
# the files and line numbers where it appears (what a failure report needs).
forks() {
	grep -anE '^bank vcpu=0 iter=[0-9]+ sum=[0-9]+ moves=[0-9]+ (ok|FAIL)$' "$@" |
		awk '{ split($0, f, ":"); line = substr($0, length(f[1]) + length(f[2]) + 3)
		       split(line, w, " "); it = w[3]; if (!((it, line) in seen)) { seen[it, line] = 1; n[it]++ }
		       where[it, line] = where[it, line] " " f[1] ":" f[2]; lines[it] = lines[it] SUBSEP line }
		     END { for (it in n) if (n[it] > 1) { k = split(lines[it], l, SUBSEP)
		           for (i = 2; i <= k; i++) if (!((it, l[i]) in shown)) { shown[it, l[i]] = 1
		               printf "  %s  <-%s\n", l[i], where[it, l[i]] } } }'
}
# spliced CONSOLE...: bank lines, but the last of a file (a process killed in
# mid-line), that are neither whole nor the start of a whole one anywhere: a
# console cut in mid-line that went on after a gap in the stream without ending
# the line first ("moves=1124" then "48 ok" of a later line).
spliced() {
	awk '{ last[FILENAME] = FNR }
	     /^bank vcpu=0 iter=[0-9]+ sum=[0-9]+ moves=[0-9]+ (ok|FAIL)$/ { whole[$0] = 1; next }
	     /bank/ { cut[++n] = $0; file[n] = FILENAME; line[n] = FNR }
	     END { for (i = 1; i <= n; i++) { if (line[i] == last[file[i]]) continue
	             ok = 0; for (w in whole) if (index(w, cut[i]) == 1) { ok = 1; break }
	             if (!ok) print file[i] ":" line[i] ": " cut[i] } }' "$@"
}

# Whatever happens, every ftd the agent started is stopped.
ocf_cleanup() {
	local n p
	for n in a b t; do
		p=$(ftd_pid $n)
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
		rm -f "/run/ftd/$ID-$n".ocf.{pid,switched,promote}
	done
	cleanup
}
trap ocf_cleanup EXIT

# ---- 4. under Pacemaker --------------------------------------------------------
pacemaker_test() {
	if ! command -v pacemakerd >/dev/null || ! [ -d /var/lib/pacemaker ]; then
		[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but Pacemaker is not installed"
		echo "pacemaker: skipped: not installed (apt-get install pacemaker)"
		return
	fi
	cluster_test ftocf
	# Every node's Pacemaker keeps its state in a private tmpfs, and sees the
	# agent as ocf:ringft:ftd; ftd's socket, console and state go to the
	# node's private /run.
	cat >"$TMP/pm.conf" <<-EOF
		guest = builtin:bank
		mem = 64M
		vcpus = 1
		interval = 10ms
		timeout = 1s
		quiet = true
		insecure = true
		console = /run/ftd/vm.console
		state-dir = /run/ftd/state

		[node node1]
		address = 10.77.0.1:7410

		[node node2]
		address = 10.77.0.2:7410
	EOF
	nv() { printf '<nvpair id="%s" name="%s" value="%s"/>' "$1-$2" "$2" "$3"; }
	cat >"$TMP/cib.xml" <<-EOF
		<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
		<configuration>
		<crm_config><cluster_property_set id="o">
		$(nv o stonith-enabled false) $(nv o dc-deadtime 2s) $(nv o no-quorum-policy stop)
		</cluster_property_set></crm_config>
		<nodes/>
		<resources><clone id="vm-clone"><meta_attributes id="c">
		$(nv c promotable true) $(nv c promoted-max 1) $(nv c clone-max 2) $(nv c notify true)
		</meta_attributes>
		<primitive id="vm" class="ocf" provider="ringft" type="ftd"><instance_attributes id="p">
		$(nv p config "$TMP/pm.conf") $(nv p name vm) $(nv p ftd "$FTD") $(nv p ftctl "$FTCTL") $(nv p logfile /run/ftd/vm.log)
		</instance_attributes><operations>
		<op id="m1" name="monitor" interval="1s" role="Promoted" timeout="20s"/>
		<op id="m2" name="monitor" interval="2s" role="Unpromoted" timeout="20s"/>
		<op id="o1" name="start" interval="0" timeout="60s"/>
		<op id="o2" name="stop" interval="0" timeout="60s"/>
		<op id="o3" name="promote" interval="0" timeout="60s"/>
		<op id="o4" name="demote" interval="0" timeout="90s"/>
		</operations></primitive></clone></resources>
		<constraints/>
		</configuration>
		<status/>
		</cib>
	EOF
	for n in node1 node2; do
		# shellcheck disable=SC2016 # expanded by that sh
		cluster_run $n sh -ec '
			mount -t tmpfs -o mode=0755 pcmk-lib /var/lib/pacemaker
			for d in cib pengine blackbox cores; do
				mkdir /var/lib/pacemaker/$d
				chown hacluster:haclient /var/lib/pacemaker/$d
				chmod 750 /var/lib/pacemaker/$d
			done
			install -o hacluster -g haclient -m 600 "$1" /var/lib/pacemaker/cib/cib.xml
			mount -t tmpfs -o mode=0770 pcmk-log /var/log/pacemaker
			chown hacluster:haclient /var/log/pacemaker
			mount -t tmpfs -o mode=0755 pcmk-ra /usr/lib/ocf/resource.d
			mkdir /usr/lib/ocf/resource.d/ringft
			cp "$2" /usr/lib/ocf/resource.d/ringft/ftd' sh "$TMP/cib.xml" "$AGENT" ||
			fail "$n: cannot prepare Pacemaker's directories"
		cluster_spawn $n env PCMK_logfile="$TMP/pacemaker-$n.log" pacemakerd \
			>"$TMP/pacemakerd-$n.out" 2>&1 </dev/null 9>&-
		disown "$CLUSTER_SPAWNED"
	done
	pm_status() { cluster_run "$1" "$FTCTL" --socket /run/ftd/vm.sock status --json 2>/dev/null; }
	pm_role() { json_field "$(pm_status "$1")" role; }
	pm_console() { cluster_run "$1" cat /run/ftd/vm.console; }
	# pm_wait PRIMARY SECONDS: PRIMARY runs the guest, the other node holds a checkpoint.
	pm_wait() {
		local p=$1 s deadline=$((SECONDS + $(time_limit "$2"))) st
		[ "$p" = node1 ] && s=node2 || s=node1
		while :; do
			st=$(pm_status $s)
			[ "$(pm_role "$p")" = primary ] && [ "$(json_field "$st" state)" = replicating ] &&
				json_field "$st" checkpoint | grep -q '^[0-9]' && return 0
			[ $SECONDS -lt $deadline ] || return 1
			sleep 0.2
		done
	}
	# pm_promoted NODE: crm_mon shows NODE promoted, the other unpromoted,
	# nothing pending but its recurring monitor (within 45 s). On one emulated
	# CPU an Unpromoted monitor (every 2 s) takes about as long as its interval,
	# so crm_mon shows it "(Monitoring)" nearly always (3 runs of 3).
	pm_promoted() {
		local deadline=$((SECONDS + $(time_limit 45))) out
		while :; do
			out=$(cluster_run node1 crm_mon -1 2>/dev/null)
			grep -q "Promoted: \[ $1 \]" <<<"$out" &&
				grep -Eq "Unpromoted: \[ node|Unpromoted node[0-9]+ \(Monitoring\)$" <<<"$out" &&
				return 0
			[ $SECONDS -lt $deadline ] || return 1
			sleep 0.2
		done
	}
	# crm_mon, and what each node's ftd logged last (its log is in the node's /run).
	pm_why() {
		# Instances and failed actions first, in few lines: CI shows a failure's head and tail.
		cluster_run node1 crm_mon -1 2>&1 |
			grep -E 'Promoted|Unpromoted|Started|Stopped|Starting|Stopping|FAILED|pending|error|exit|status' |
			head -n 16
		for n in node1 node2; do
			echo "-- $n: /run/ftd/vm.log"
			cluster_run $n tail -n 8 /run/ftd/vm.log 2>&1 | grep -v 'stats state='
		done
	}
	deadline=$((SECONDS + $(time_limit 90)))
	until [ "$(pm_role node1)" = primary ] || [ "$(pm_role node2)" = primary ]; do
		[ $SECONDS -lt $deadline ] || fail "Pacemaker promoted no node: $(pm_why)"
		sleep 0.5
	done
	P=node1 S=node2
	[ "$(pm_role node2)" = primary ] && P=node2 S=node1
	pm_wait $P 30 || fail "$S never held a checkpoint: $(pm_why)"
	pm_promoted $P || fail "crm_mon does not show $P promoted: $(pm_why)"
	echo "pacemaker: $P runs the guest (ftctl start), $S protects it"
	sleep 1

	# kill -9 of the primary's ftd: its Promoted monitor reports it gone,
	# Pacemaker promotes the other node (ftctl failover) and starts this one
	# again, which the new primary protects by itself.
	pid=$(cluster_run $P cat /run/ftd/vm.ocf.pid)
	t0=$(date +%s%N)
	kill -KILL "$pid"
	size1=$(cluster_run $P stat -c %s /run/ftd/vm.console)
	deadline=$((SECONDS + $(time_limit 30)))
	until [ "$(pm_role $S)" = primary ]; do
		[ $SECONDS -lt $deadline ] || fail "Pacemaker did not promote $S: $(pm_why)"
		sleep 0.05
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
	pm_wait $S 30 || fail "$P was not protecting the guest again: $(pm_why)"
	pm_promoted $S || fail "crm_mon does not show $S promoted: $(pm_why)"
	echo "pacemaker: kill -9 of $P's ftd, $S runs the guest after $ms ms, $P protects it again"
	sleep 1
	# The stream so far: P (booted it, until the kill), S (mirror, then ran
	# it), P again (mirror): every bank line exactly once.
	pm_console $P >"$TMP/pm.$P"
	pm_console $S >"$TMP/pm.$S.1"
	head -c "$size1" "$TMP/pm.$P" >"$TMP/pm.$P.1"
	tail -c +$((size1 + 1)) "$TMP/pm.$P" >"$TMP/pm.$P.2"
	# The killed ftd left its console in mid-line: the restarted one ends that
	# line with a newline of its own before the stream goes on (no bank line
	# runs into another); the stream itself starts after it.
	if [ -n "$(tail -c 1 "$TMP/pm.$P.1")" ]; then
		[ -z "$(head -c 1 "$TMP/pm.$P.2")" ] && [ -s "$TMP/pm.$P.2" ] ||
			fail "$P's restarted ftd did not end the line its killed one left open"
		tail -c +2 "$TMP/pm.$P.2" >"$TMP/pm.$P.2s" && mv "$TMP/pm.$P.2s" "$TMP/pm.$P.2"
	fi
	offsets() { cluster_run "$1" cat /run/ftd/vm.log | sed -n 's/.*committed output from stream offset \([0-9]*\).*/\1/p'; }
	bs=$(offsets $S | head -n 1)
	bp=$(offsets $P | head -n 1)
	[ -n "$bs" ] || fail "no console offset in $S's log"
	[ -n "$bp" ] || fail "no console offset in $P's log"
	why=$(stream_join "$TMP/pm.stream" "$TMP/pm.$P.1:0" "$TMP/pm.$S.1:$bs" "$TMP/pm.$P.2:$bp") ||
		fail "consoles: $why"
	read -r lines lost rep bad <<<"$(bank_tally "$TMP/pm.stream" 1)"
	if [ "$lost" != 0 ] || [ "$rep" != 0 ] || [ "$bad" != 0 ] || [ "$lines" -lt "$(rate_floor 100)" ]; then
		fail "the guest's stream across $P, $S, $P: $lines lines, $lost lost, $rep repeated, $bad not ok"
	fi
	echo "pacemaker: $lines bank lines across the failover, none lost or repeated"

	# A move back (crm_resource --move): demote hands over, promote confirms.
	cluster_run node1 crm_resource --move -r vm-clone --promoted -N $P >/dev/null 2>&1 ||
		fail "crm_resource --move: $(pm_why)"
	pm_wait $P 30 || fail "the guest did not move back to $P: $(pm_why)"
	cluster_run $S cat /run/ftd/vm.log | grep -q "Switchover complete" || fail "$S did not hand over"
	pm_promoted $P || fail "crm_mon does not show $P promoted after the move: $(pm_why)"
	cluster_run node1 crm_resource --clear -r vm-clone >/dev/null 2>&1
	echo "pacemaker: moved back to $P by switchover"

	# Disabled: demote stops the guest (no promotion elsewhere), both stop.
	cluster_run node1 crm_resource -r vm-clone --meta -p target-role -v Stopped >/dev/null 2>&1 ||
		fail "cannot disable the clone"
	deadline=$((SECONDS + $(time_limit 30)))
	while [ -n "$(pm_role node1)$(pm_role node2)" ]; do
		[ $SECONDS -lt $deadline ] || fail "ftd still runs after the clone was disabled: $(pm_why)"
		sleep 0.2
	done
	cluster_run $P cat /run/ftd/vm.log | grep -q "Switchover complete" &&
		fail "disabling the clone handed the guest over"
	echo "pacemaker: disabled, the guest stopped on $P without a hand-over"
	pm_console $P >"$TMP/pm.$P.end"
	pm_console $S >"$TMP/pm.$S.end"
	read -r lines lost forked bad <<<"$(exactly_once "$TMP/pm.$P.end" "$TMP/pm.$S.end")"
	if [ "$lost" != 0 ] || [ "$forked" != 0 ] || [ "$bad" != 0 ]; then
		fail "the guest's output on $P and $S: $lines iters, $lost lost, $forked with two histories, $bad not ok
$(forks "$TMP/pm.$P.end" "$TMP/pm.$S.end")"
	fi
	out=$(spliced "$TMP/pm.$P.end" "$TMP/pm.$S.end")
	[ -z "$out" ] || fail "a console runs a cut line into text from elsewhere in the stream: $out"
	echo "pacemaker: $lines bank iters in all, each exactly once"
}

MODE=${4:-all}
case $MODE in
all | agent) ;;
pacemaker)
	pacemaker_test
	echo "ok"
	exit 0
	;;
*) fail "mode '$MODE' is not all, agent or pacemaker" ;;
esac

# ---- 1. ocf-tester ----------------------------------------------------------
conf "$TMP/t.conf" $((PORT + 2)) $((PORT + 3))
ocf-tester -n "vm-$ID" -o config="$TMP/t.conf" -o name="$ID-t" -o node=a \
	-o socket="$TMP/t.sock" -o ftd="$FTD" -o ftctl="$FTCTL" -o logfile="$TMP/log.t" \
	-o options="--state-dir $TMP/state.t --console $TMP/con.t" "$AGENT" >"$TMP/ocf-tester.out" 2>&1 ||
	fail "ocf-tester: $(cat "$TMP/ocf-tester.out")"
grep -q "passed all tests" "$TMP/ocf-tester.out" || fail "ocf-tester: $(cat "$TMP/ocf-tester.out")"
grep -q "bank vcpu=0 iter=" "$TMP/con.t" || fail "ocf-tester: the promoted guest never ran"
echo "ocf-tester: passed all tests"

# ---- 2. two nodes, action by action -------------------------------------------
expect a monitor 7 OCF_RESKEY_CRM_meta_interval=0
expect a start 0
expect a monitor 0
expect_score a 5 "a waiting"
expect b start 0
expect b monitor 0

expect a promote 0
expect a monitor 8
expect_score a 10000 "a running the guest"
runs a || fail "the guest does not run on a"
# a's ftd protects the guest on b by itself (the other node's address).
until_replica b 20 || fail "b never held a checkpoint: $(ctl b status)"
# A notification (here the one after a's promote) refreshes b's score before
# any monitor of b has seen the replica.
expect_score b 5 "b waiting, before a monitor saw its replica"
expect b notify 0 OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=promote \
	OCF_RESKEY_CRM_meta_notify_promote_uname=nodea
expect_score b 1000 "b holding a replica, after a notification"
expect b monitor 0
expect_score b 1000 "b holding a replica"

# demote a: the guest is handed over to b; a's ftd goes on as b's secondary.
expect a demote 0
expect a monitor 0
expect b monitor 0 OCF_RESKEY_CRM_meta_role=Unpromoted # before Pacemaker's promote
expect b monitor 8
expect b promote 0
expect b monitor 8
expect_score b 10000 "b running the guest after the switchover"
until_replica a 20 || fail "b never protected a: $(ctl a status)"
expect a monitor 0
expect_score a 1000 "a holding a replica"

# kill -9 of b's ftd: b is not running; promote a from its checkpoint.
kill -KILL "$(ftd_pid b)"
sleep 0.2
expect b monitor 7
expect a promote 0
expect a monitor 8
runs a || fail "the guest does not run on a after its promotion"
expect b stop 0
expect_score b delete "b stopped"
expect b monitor 7
expect b start 0
until_replica b 20 || fail "a never protected b again: $(ctl b status)"
expect b monitor 0

# A pre-demote notification that promotes no other node (the clone being
# disabled): demote stops the guest although it is protected. b keeps the
# last checkpoint, and promoting b resumes the guest from it.
notify() { # NODE TYPE OPERATION PROMOTED_NODES
	expect "$1" notify 0 OCF_RESKEY_CRM_meta_notify_type="$2" OCF_RESKEY_CRM_meta_notify_operation="$3" \
		OCF_RESKEY_CRM_meta_notify_promote_uname="$4" OCF_RESKEY_CRM_meta_on_node="node$1"
}
notify a pre demote ""
expect a demote 0 OCF_RESKEY_CRM_meta_on_node=nodea
notify a post demote ""
grep -q "demote stops the guest" "$TMP/agent.log" || fail "demote without a promotion elsewhere did not stop the guest"
expect a monitor 0
expect b monitor 0
[ "$(json_field "$(ctl b status --json)" role)" = secondary ] ||
	fail "demote without a promotion elsewhere handed the guest over"
expect_score b 1000 "b holding the stopped guest's last checkpoint"
expect b promote 0
expect b monitor 8
until_replica a 20 || fail "b never protected a: $(ctl a status)"

# Pre-demote naming a: demote b hands over to a; then stop b, and demote a
# (unprotected) stops the guest.
notify b pre demote "nodea"
expect b demote 0 OCF_RESKEY_CRM_meta_on_node=nodeb
notify b post demote "nodea"
cat "$TMP"/log.b.* | grep -q "Switchover complete" || fail "demote b did not hand the guest over"
expect a promote 0
expect a monitor 8
expect b stop 0
expect b monitor 7
expect a demote 0
expect a monitor 0
expect_score a 5 "a waiting after demote"
expect a stop 0
expect a monitor 7
[ -z "$(ftd_pid a)$(ftd_pid b)" ] || fail "a pid file is left"

# The guest's output, in every console of every ftd that ran or mirrored it
# (an ftd goes on as a secondary after a switchover, in the same console):
# each bank iter exactly once, wherever it appears the same line.
read -r lines lost forked bad <<<"$(exactly_once "$TMP"/con.[ab].*)"
if [ "$lost" != 0 ] || [ "$forked" != 0 ] || [ "$bad" != 0 ] || [ "$lines" -lt 50 ]; then
	fail "the guest's output on a and b: $lines iters, $lost lost, $forked with two histories, $bad not ok
$(forks "$TMP"/con.[ab].*)"
fi
out=$(spliced "$TMP"/con.[ab].*)
[ -z "$out" ] || fail "a console runs a cut line into text from elsewhere in the stream: $out"
echo "two nodes: $lines bank iters across 2 switchovers, a kill -9 and a stop, each exactly once"

# ---- 3. validate-all ----------------------------------------------------------
expect a validate-all 0
conf "$TMP/cluster.conf" $PORT $((PORT + 1)) "cluster = vm1"
expect a validate-all 6 OCF_RESKEY_config="$TMP/cluster.conf"
grep -q "sets cluster" "$TMP/agent.log" || fail "no reason given for the cluster refusal"
conf "$TMP/primary.conf" $PORT $((PORT + 1)) "role = primary"
expect a validate-all 6 OCF_RESKEY_config="$TMP/primary.conf"
printf 'role = secondary\nlisten = 127.0.0.1:%s\nmem = 64M\n' $PORT >"$TMP/legacy.conf"
expect a validate-all 6 OCF_RESKEY_config="$TMP/legacy.conf"
expect a validate-all 6 OCF_RESKEY_options="--cluster vm1"
expect a validate-all 5 OCF_RESKEY_config="$TMP/missing.conf"
expect a monitor 7 OCF_RESKEY_config="$TMP/missing.conf" OCF_RESKEY_CRM_meta_interval=0
conf "$TMP/bad.conf" $PORT $((PORT + 1)) "mem = 65M"
expect a validate-all 6 OCF_RESKEY_config="$TMP/bad.conf"
grep -q "check-config.*mem" "$TMP/agent.log" || fail "ftd's message is not in the refusal"
echo "validate-all: cluster, role = primary, no [node] sections, missing and invalid configurations refused"
[ "$MODE" = all ] && pacemaker_test
echo "ok"
