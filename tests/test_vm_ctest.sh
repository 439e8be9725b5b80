#!/bin/bash
# scripts/vm-ctest.sh with a stand-in for kvm-vm.sh: a machine that dies
# (exit 125) after some tests finished gets the unfinished ones run in a new
# one, with the caller's -E kept, machine after machine while each finishes a
# test (up to FT_KVM_VM_RETRY); finished tests are not run again there, and
# with FT_KVM_VM_RERUN=0 a failure in any machine fails the run even when the
# rest pass; by default the failures run once more in a new machine, which
# decides (and the output names them); other exit codes pass through; a
# machine that finishes nothing, or FT_KVM_VM_RETRY=0, ends it. In groups
# (FT_KVM_VM_SHARDS=2): the tests ctest lists are split by their seconds in
# the table, longest first, each group runs in machines of its own with the
# caller's arguments and a memory size, and any group's failure fails the run.
# Exit 0 pass, 1 fail.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"

# The stand-in: call N prints $TMP/out.N (if any), records its arguments in
# $TMP/args.N and exits with $TMP/rc.N.
cat >"$TMP/runner" <<-'EOS'
	#!/bin/bash
	n=$(($(cat "$T/calls" 2>/dev/null || echo 0) + 1))
	echo $n >"$T/calls"
	printf '%s\n' "$@" >"$T/args.$n"
	cat "$T/out.$n" 2>/dev/null
	exit "$(cat "$T/rc.$n")"
EOS
chmod +x "$TMP/runner"
# What the caller's run of vm-ctest.sh set (this test may run inside one of
# its machines) is not this test's.
unset FT_KVM_VM_SUMMARY FT_KVM_VM_EXCERPT FT_KVM_VM_RERUN FT_KVM_VM_RETRY FT_KVM_VM_MEM \
	FT_KVM_VM_SECONDS FT_KVM_VM_CTEST
export T=$TMP FT_KVM_VM_RUNNER=$TMP/runner FT_KVM_VM_SHARDS=1

# run RC1 [RC2...] -- ARGS...: vm-ctest.sh's exit code in $rc, output in $TMP/out.
run() {
	local i=1
	rm -f "$TMP"/rc.* "$TMP"/args.* "$TMP/calls"
	while [ "$1" != -- ]; do
		echo "$1" >"$TMP/rc.$i"
		i=$((i + 1))
		shift
	done
	shift
	rc=0
	"$SRC/scripts/vm-ctest.sh" "$@" >"$TMP/out" 2>&1 || rc=$?
}
calls() { cat "$TMP/calls" 2>/dev/null || echo 0; }
exclude_of() { grep -A1 -x -- '-E' "$TMP/args.$1" | tail -1; }

line() { printf ' %d/9 Test  #%d: %s ...........   %s    0.05 sec\n' "$1" "$1" "$2" "$3"; }
{ echo "Test project /x/build"; line 1 test_a Passed; line 2 test_b '***Failed'; line 3 test_c '***Timeout'
	echo "      Start  4: test_d"; echo "[  266.067246] Kernel panic - not syncing: corrupted stack end"; } >"$TMP/out.1"
{ line 1 test_d Passed; echo "      Start  2: test_e"; } >"$TMP/out.2"
rm -f "$TMP/out.3"

FT_KVM_VM_RERUN=0 run 125 0 -- -L kvm -E '^(test_x)$'
[ "$rc" = 8 ] || fail "a failure in the first machine, the rest passing: exit $rc, not 8: $(cat "$TMP/out")"
[ "$(calls)" = 2 ] || fail "$(calls) machines, not 2"
grep -qx -- '-L' "$TMP/args.2" && grep -qx 'kvm' "$TMP/args.2" ||
	fail "the second machine lost the caller's arguments: $(cat "$TMP/args.2")"
[ "$(exclude_of 2)" = '(^(test_x)$)|^(test_a|test_b|test_c)$' ] ||
	fail "the second machine's -E is '$(exclude_of 2)', not the caller's or'ed with the finished tests"
[ "$(grep -cx -- '-E' "$TMP/args.2")" = 1 ] || fail "more than one -E: $(cat "$TMP/args.2")"
grep -q "failed: test_b test_c" "$TMP/out" || fail "no report of the first machine's failures: $(cat "$TMP/out")"
echo "ok: the unfinished tests ran again; finished ones excluded, the caller's -E kept, first failures kept (exit 8)"

# The failures run once more, alone, in a third machine: passing there passes
# the run and names them; failing there (or that machine dying) fails it.
line 1 test_b Passed >"$TMP/out.3"
line 2 test_c Passed >>"$TMP/out.3"
run 125 0 0 -- -L kvm -E '^(test_x)$'
[ "$rc" = 0 ] && [ "$(calls)" = 3 ] || fail "failures passing on the rerun: exit $rc after $(calls) machines, not 0 after 3: $(cat "$TMP/out")"
[ "$(grep -A1 -x -- '-R' "$TMP/args.3" | tail -1)" = '^(test_b|test_c)$' ] ||
	fail "the rerun's arguments: $(cat "$TMP/args.3")"
grep -q "passed only on the rerun (their first failure is above): test_b test_c" "$TMP/out" ||
	fail "the rerun does not name the tests that failed once: $(cat "$TMP/out")"
line 2 test_c '***Failed' >>"$TMP/out.3"
run 125 0 8 --
[ "$rc" = 8 ] || fail "a test failing on the rerun too: exit $rc, not 8"
grep -q "failed again on the rerun: test_c (machine exit 8)" "$TMP/out" || fail "the second failure is not named: $(cat "$TMP/out")"
rm -f "$TMP/out.3"
run 125 0 125 --
[ "$rc" = 8 ] || fail "the rerun's machine dying: exit $rc, not 8"
echo "ok: failures run once more in a new machine: passing there passes (and says so), failing or dying fails"

FT_KVM_VM_RERUN=0 run 125 125 0 --
[ "$rc" = 8 ] && [ "$(calls)" = 3 ] || fail "two machines dying: exit $rc after $(calls) machines, not 8 after 3"
[ "$(exclude_of 3)" = '^(test_a|test_b|test_c|test_d)$' ] || fail "the third machine's -E: $(exclude_of 3)"
echo "ok: a third machine runs what two dead ones left, excluding what either finished"

FT_KVM_VM_RERUN=0 run 125 8 --
[ "$rc" = 8 ] || fail "second machine failing: exit $rc, not 8"
sed -i '/test_b\|test_c/d' "$TMP/out.1"
run 125 0 --
[ "$rc" = 0 ] || fail "all passed across two machines: exit $rc, not 0: $(cat "$TMP/out")"
[ "$(exclude_of 2)" = '^(test_a)$' ] || fail "no caller -E: $(cat "$TMP/args.2")"
echo "ok: a later machine's result decides when no earlier one had failures"

rm -f "$TMP/out.2"
run 125 125 0 --
[ "$rc" = 125 ] && [ "$(calls)" = 2 ] || fail "a machine that finished nothing: exit $rc after $(calls) machines, not 125 after 2"
run 125 125 125 125 125 0 --
[ "$rc" = 125 ] || fail "machines that keep dying: exit $rc"
run 8 0 --
[ "$rc" = 8 ] && [ "$(calls)" = 1 ] || fail "exit 8 of the first machine: $rc after $(calls) machines"
run 0 0 --
[ "$rc" = 0 ] && [ "$(calls)" = 1 ] || fail "exit 0 of the first machine: $rc"
FT_KVM_VM_RETRY=0 run 125 0 --
[ "$rc" = 125 ] && [ "$(calls)" = 1 ] || fail "FT_KVM_VM_RETRY=0: exit $rc after $(calls) machines"
echo "ok: no retry after a machine that finished nothing, nor with FT_KVM_VM_RETRY=0; other exits pass through"

# The run ends with the last lines each failed test printed (a CI log may keep
# only its head and tail), also for one that passed on its rerun.
{ echo "Test project /x/build"; line 1 test_a Passed; line 2 test_b '***Failed'
	for i in 1 2 3 4 5; do echo "test_b says $i"; done
	echo "      Start  3: test_c"; line 3 test_c Passed
	echo; echo "67% tests passed, 1 tests failed out of 3"; } >"$TMP/out.1"
line 1 test_b Passed >"$TMP/out.2"
FT_KVM_VM_EXCERPT=3 run 8 0 --
[ "$rc" = 0 ] || fail "a failure passing on its rerun: exit $rc: $(cat "$TMP/out")"
tail -5 "$TMP/out" >"$TMP/tail"
[ "$(head -1 "$TMP/tail")" = "vm-ctest: the last lines each failed test printed (the whole output is above):" ] &&
	[ "$(sed -n 2p "$TMP/tail")" = "---- $(line 2 test_b '***Failed' | sed 's/^ *//') (its last 3 lines of 5)" ] &&
	[ "$(tail -3 "$TMP/tail")" = "  test_b says 3
  test_b says 4
  test_b says 5" ] || fail "the output does not end with test_b's last 3 lines: $(cat "$TMP/out")"
line 1 test_a Passed >"$TMP/out.1"
run 0 --
grep -q 'the last lines each failed' "$TMP/out" && fail "a run without failures printed failures' lines: $(cat "$TMP/out")"
echo "ok: the output ends with each failed test's last lines (3 of 5 with FT_KVM_VM_EXCERPT=3), also when it passed on the rerun"

# Groups. The stand-in ctest lists five tests; the table gives four of them
# seconds (test_e counts 60). The stand-in machine runs the tests its -R
# names, failing those in $TMP/failing, and records each group it ran.
cat >"$TMP/ctest" <<-'EOS'
	#!/bin/bash
	[ "$1" = -N ] || exit 99
	printf '%s\n' "${@:2}" >"$T/list-args"
	echo "Test project /x/build"
	i=1
	for t in test_a test_b test_c test_d test_e; do echo "  Test  #$i: $t"; i=$((i + 1)); done
	echo; echo "Total Tests: 5"
EOS
cat >"$TMP/groups-runner" <<-'EOS'
	#!/bin/bash
	args=$(printf '%s\n' "$@")
	re=$(grep -A1 -x -- '-R' <<<"$args" | tail -1)
	names=${re#^(}
	names=${names%)\$}
	echo "$names mem=${FT_KVM_VM_MEM:-} label=$(grep -A1 -x -- '-L' <<<"$args" | tail -1)" >>"$T/groups"
	rc=0 i=1
	for t in ${names//|/ }; do
		if grep -qx "$t" "$T/failing" 2>/dev/null; then
			printf ' %d/5 Test  #%d: %s ...........***Failed    0.05 sec\n' $i $i "$t"
			echo "$t: broke"
			rc=8
		else
			printf ' %d/5 Test  #%d: %s ...........   Passed    0.05 sec\n' $i $i "$t"
		fi
		i=$((i + 1))
	done
	exit $rc
EOS
chmod +x "$TMP/ctest" "$TMP/groups-runner"
printf '# seconds\ntest_a 100\ntest_b 90 ~\ntest_c 20\ntest_d 10\n' >"$TMP/seconds"
groups() {
	rm -f "$TMP/groups"
	rc=0
	FT_KVM_VM_SHARDS=2 FT_KVM_VM_RUNNER=$TMP/groups-runner FT_KVM_VM_CTEST=$TMP/ctest \
		FT_KVM_VM_SECONDS=$TMP/seconds "$SRC/scripts/vm-ctest.sh" "$@" >"$TMP/out" 2>&1 || rc=$?
}
groups -L kvm
[ "$rc" = 0 ] || fail "two groups passing: exit $rc: $(cat "$TMP/out")"
[ "$(cat "$TMP/list-args")" = "-L
kvm" ] || fail "the tests were not listed with the caller's arguments: $(cat "$TMP/list-args")"
got=$(cut -d' ' -f1 "$TMP/groups" | sort | paste -sd' ')
[ "$got" = "test_a|test_c|test_d test_b|test_e" ] || fail "groups '$got', not test_a|test_c|test_d (130 s) and test_b|test_e (150 s)"
grep -q ' label=kvm$' "$TMP/groups" && [ "$(grep -c ' label=kvm$' "$TMP/groups")" = 2 ] ||
	fail "a group lost the caller's -L: $(cat "$TMP/groups")"
grep -Eq ' mem=[0-9]+G ' "$TMP/groups" || fail "no FT_KVM_VM_MEM for the groups: $(cat "$TMP/groups")"
for t in test_a test_b test_c test_d test_e; do
	[ "$(grep -c "Test  #[0-9]*: $t .*Passed" "$TMP/out")" = 1 ] || fail "$t's result is not in the output once: $(cat "$TMP/out")"
done
grep -q 'group 2 of 2' "$TMP/out" || fail "the second group's output has no heading: $(cat "$TMP/out")"
echo "ok: two groups of about equal seconds (130, 150), the caller's arguments and a memory size in each, every result in the output"

echo test_e >"$TMP/failing"
groups
[ "$rc" = 8 ] || fail "a test failing in group 2 (and on its rerun): exit $rc, not 8: $(cat "$TMP/out")"
grep -qx 'test_e mem=[0-9]*G label=' "$TMP/groups" && [ "$(grep -c '^test_e ' "$TMP/groups")" = 1 ] ||
	fail "the failed test was not rerun alone once in its group: $(cat "$TMP/groups")"
grep -q 'groups that failed: 2 (exit 8)' "$TMP/out" || fail "the failing group is not named: $(cat "$TMP/out")"
sed -n '/groups that failed/,$p' "$TMP/out" | grep -c '^  test_e: broke$' | grep -qx 2 ||
	fail "the output does not end with test_e's lines of its run and its rerun: $(cat "$TMP/out")"
rm -f "$TMP/failing"
out=$(FT_KVM_VM_SHARDS=two "$SRC/scripts/vm-ctest.sh" 2>&1) && fail "FT_KVM_VM_SHARDS=two accepted"
grep -q "FT_KVM_VM_SHARDS must be a count of 1 or more, not 'two'" <<<"$out" || fail "FT_KVM_VM_SHARDS=two: $out"
echo "ok: a failure in the second group (failing its rerun too) fails the run and names the group; a bad FT_KVM_VM_SHARDS is refused"
