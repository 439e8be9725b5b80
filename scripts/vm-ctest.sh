#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs `ctest --output-on-failure -j1 ARGS...` in scripts/kvm-vm.sh, from the
# current build directory.
#
#   scripts/vm-ctest.sh [CTEST-ARG...]
#
# When the emulated machine itself dies (kvm-vm.sh exits 125: its own kernel
# panicked, which it did about once in 20 minutes of tests on two emulated
# CPUs, see kvm-vm.sh), the tests that had not finished run in a new one, up to
# FT_KVM_VM_RETRY more machines (default 3), and only while each machine
# finishes at least one test. A test that finished is not run again there.
# FT_KVM_VM_RETRY=0 turns it off.
#
# The emulated machine also failed tests that pass on hardware, on two CPUs:
# a built-in guest's triple fault (test_ftd's case once in about 260 runs,
# test_ocf in 3 of 10; kvm-vm.sh says why it has one CPU now), a kv guest
# that never answered its client, a TLS primary that exited 1. So the tests
# that failed, in any machine, run once more together in a new machine
# (FT_KVM_VM_RERUN=0: not).
# The run passes only if each passes there; every first failure's output
# stays in the log above, and the last lines name the tests that passed only
# on the rerun. FT_KVM_VM_RUNNER replaces kvm-vm.sh (tests/test_vm_ctest.sh).
#
# Shards: where this machine has the CPUs and memory for more than one
# emulated machine (each has one CPU), the tests are split into
# FT_KVM_VM_SHARDS groups (default: 2 with at least 2 CPUs and 20 GiB, else
# 1) of about equal emulated run time (tests/vm-seconds.txt: each test's
# seconds in CI's last run; 60 for one not listed), and each group runs as
# above, retries and rerun included, in machines of its own beside the
# others', with FT_KVM_VM_MEM (default: what leaves 4 GiB to this machine,
# at most 16G) each. The first group's output comes as it runs, the others'
# after it; the run passes only if every group passes. FT_KVM_VM_CTEST
# replaces the ctest that lists the tests (tests/test_vm_ctest.sh).
#
# A CI log may keep only its head and tail: so the run ends with the last
# lines each failed test printed (FT_KVM_VM_EXCERPT of them, default 25), in
# any machine and group, also of the tests that passed on their rerun.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
runner=${FT_KVM_VM_RUNNER:-$here/kvm-vm.sh}
retries=${FT_KVM_VM_RETRY:-3}
rerun=${FT_KVM_VM_RERUN:-1}
lister=${FT_KVM_VM_CTEST:-ctest}
seconds=${FT_KVM_VM_SECONDS:-$here/../tests/vm-seconds.txt}
excerpt_lines=${FT_KVM_VM_EXCERPT:-25}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Where the failures' last lines go: the caller's file (a group's, which the
# groups' run prints at its end), else our own, printed at our end.
summary=${FT_KVM_VM_SUMMARY:-}
shards=${FT_KVM_VM_SHARDS:-}
# Neither reaches the machines (kvm-vm.sh passes every FT_* on), where a
# test of this script runs it again: a group's summary file is ours alone.
unset FT_KVM_VM_SUMMARY FT_KVM_VM_SHARDS
own_summary=0
if [ -z "$summary" ]; then
	summary=$(mktemp)
	own_summary=1
	trap 'rm -f "$log" "$summary"' EXIT
fi

# excerpt LOG: for each test that failed in LOG, its result line and the last
# lines of the output ctest printed after it.
excerpt() {
	awk -v keep="$excerpt_lines" '
		function flush(    i, s) {
			if (name == "") return
			s = n > keep ? n - keep : 0
			print "---- " result (s ? " (its last " keep " lines of " n ")" : "")
			for (i = s; i < n; i++) print "  " buf[i]
			name = ""; n = 0
		}
		/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: / {
			flush()
			if ($0 ~ /\*\*\*/) { name = $4; result = $0; sub(/^ +/, "", result) }
			next
		}
		/^ +Start +[0-9]+: / || /% tests passed, / || /^\[ *[0-9]+\.[0-9]+\] / { flush(); next }
		name != "" { buf[n++] = $0 }
		END { flush() }' "$1"
}
# finish RC: prints the failures' last lines (if the summary is ours) and exits RC.
finish() {
	if [ "$own_summary" = 1 ] && [ -s "$summary" ]; then
		echo "vm-ctest: the last lines each failed test printed (the whole output is above):" >&2
		cat "$summary" >&2
	fi
	exit "$1"
}

if [ -z "$shards" ]; then
	shards=1
	if [ "$(nproc)" -ge 2 ] && [ "$(awk '/^MemTotal:/ { print int($2 / 1048576) }' /proc/meminfo)" -ge 20 ]; then
		shards=2
	fi
fi
case $shards in
'' | *[!0-9]* | 0) echo "vm-ctest: FT_KVM_VM_SHARDS must be a count of 1 or more, not '$shards'" >&2; exit 2 ;;
esac

# The groups: the tests ctest would run, longest first, each to the group
# with the least time so far. Each group runs this script again, as one.
if [ "$shards" -gt 1 ]; then
	names=$("$lister" -N "$@" | sed -n 's/^ *Test *#[0-9]*: *\([A-Za-z0-9_.-]*\)$/\1/p')
	if [ "$(echo "$names" | grep -c .)" -lt 2 ]; then
		shards=1
	fi
fi
if [ "$shards" -gt 1 ]; then
	if [ -z "${FT_KVM_VM_MEM:-}" ]; then
		gib=$((($(awk '/^MemTotal:/ { print int($2 / 1048576) }' /proc/meminfo) - 4) / shards))
		[ "$gib" -gt 16 ] && gib=16
		[ "$gib" -lt 2 ] && gib=2
		export FT_KVM_VM_MEM=${gib}G
	fi
	declare -a group=() total=()
	for ((i = 0; i < shards; i++)); do group[i]='' total[i]=0; done
	while read -r cost name; do
		best=0
		for ((i = 1; i < shards; i++)); do
			[ "${total[i]}" -lt "${total[best]}" ] && best=$i
		done
		group[best]+="${group[best]:+|}$name"
		total[best]=$((total[best] + cost))
	done < <(for n in $names; do
		c=$(awk -v n="$n" '$1 == n { print int($2); exit }' "$seconds" 2>/dev/null)
		echo "${c:-60} $n"
	done | sort -k1,1nr -k2,2)
	dir=$(mktemp -d)
	trap 'rm -rf "$dir" "$log" "$summary"' EXIT
	pids=()
	for ((i = 0; i < shards; i++)); do
		[ -n "${group[i]}" ] || continue
		echo "vm-ctest: group $((i + 1)) of $shards (about ${total[i]} s emulated, $FT_KVM_VM_MEM): ${group[i]//|/ }" >&2
		if [ "$i" = 0 ]; then
			FT_KVM_VM_SHARDS=1 FT_KVM_VM_SUMMARY=$dir/sum.$i \
				"$here/vm-ctest.sh" "$@" -R "^(${group[i]})\$" &
		else
			FT_KVM_VM_SHARDS=1 FT_KVM_VM_SUMMARY=$dir/sum.$i \
				"$here/vm-ctest.sh" "$@" -R "^(${group[i]})\$" >"$dir/out.$i" 2>&1 &
		fi
		pids[i]=$!
		sleep 1 # the machines start one by one anyway (kvm-vm.sh's lock)
	done
	rc=0 bad=''
	for i in "${!pids[@]}"; do
		wait "${pids[i]}"
		r=$?
		if [ "$i" != 0 ]; then
			echo "vm-ctest: ---- group $((i + 1)) of $shards ----" >&2
			cat "$dir/out.$i"
		fi
		if [ "$r" != 0 ]; then
			bad+=" $((i + 1)) (exit $r)"
			# A failed test (8) says more than a machine that died (125).
			{ [ "$rc" = 0 ] || [ "$r" = 8 ]; } && rc=$r
		fi
	done
	[ -z "$bad" ] || echo "vm-ctest: groups that failed:$bad; their output says which tests" >&2
	cat "$dir"/sum.* >>"$summary" 2>/dev/null
	finish "$rc"
fi

# One -E for ctest: the caller's, if any, or'ed with the finished tests.
args=() user_exclude=
while [ $# -gt 0 ]; do
	if [ "$1" = -E ] && [ $# -ge 2 ]; then
		user_exclude=$2
		shift 2
	else
		args+=("$1")
		shift
	fi
done

# failures LOG: the tests ctest marked failed ("3/9 Test #3: name ...***Failed").
failures() {
	sed -n 's/^ *[0-9]*\/[0-9]* *Test *#[0-9]*: \([A-Za-z0-9_.-]*\) .*\*\*\*.*/\1/p' "$1"
}

finished='' failed='' machine=1
while :; do
	exclude=${user_exclude:+($user_exclude)}
	if [ -n "$finished" ]; then
		exclude=${exclude:+$exclude|}"^($(echo "$finished" | paste -sd'|'))\$"
	fi
	"$runner" -- ctest --output-on-failure -j1 "${args[@]}" ${exclude:+-E "$exclude"} 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	excerpt "$log" >>"$summary"
	failed=$(printf '%s\n%s\n' "$failed" "$(failures "$log")" | grep . || true)
	[ "$rc" = 125 ] || break
	# ctest's result lines: "12/56 Test #12: name ......   Passed   1.00 sec".
	now=$(sed -n 's/^ *[0-9]*\/[0-9]* *Test *#[0-9]*: \([A-Za-z0-9_.-]*\) .*\(Passed\|Failed\|Timeout\|Not Run\|Exception\|SegFault\|Skipped\).*/\1/p' "$log")
	if [ "$machine" -gt "$retries" ] || [ -z "$now" ]; then
		echo "vm-ctest: emulated machine $machine died too (exit 125)$([ -z "$now" ] && echo " before any test finished"): giving up" >&2
		break
	fi
	finished=$(printf '%s\n%s\n' "$finished" "$now" | grep . || true)
	echo "vm-ctest: emulated machine $machine died before ctest finished (exit 125);" \
		"$(echo "$finished" | grep -c .) tests have finished ($(echo "$failed" | grep -c .) of them failed):" \
		"running the others in machine $((machine + 1))" >&2
	machine=$((machine + 1))
done
if [ -n "$failed" ] && [ "$rerun" != 0 ] && { [ "$rc" = 0 ] || [ "$rc" = 8 ]; }; then
	list=$(echo "$failed" | paste -sd' ')
	echo "vm-ctest: failed in the emulated machine: $list; running them once more in a new machine" >&2
	"$runner" -- ctest --output-on-failure -j1 -R "^($(echo "$failed" | paste -sd'|'))\$" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	excerpt "$log" >>"$summary"
	again=$(failures "$log")
	if [ "$rc" = 0 ] && [ -z "$again" ]; then
		echo "vm-ctest: passed only on the rerun (their first failure is above): $list" >&2
	else
		echo "vm-ctest: failed again on the rerun$([ -n "$again" ] && echo ": $(echo "$again" | paste -sd' ')") (machine exit $rc)" >&2
		rc=8
	fi
elif [ -n "$failed" ]; then
	echo "vm-ctest: failed: $(echo "$failed" | paste -sd' ')" >&2
	[ "$rc" = 0 ] && rc=8
fi
finish "$rc"
