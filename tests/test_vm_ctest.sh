#!/bin/bash
# scripts/vm-ctest.sh with a stand-in for kvm-vm.sh: a machine that dies
# (exit 125) after some tests finished gets the unfinished ones run in a new
# one, with the caller's -E kept, machine after machine while each finishes a
# test (up to FT_KVM_VM_RETRY); finished tests are not run again there, and
# with FT_KVM_VM_RERUN=0 a failure in any machine fails the run even when the
# rest pass; by default the failures run once more in a new machine, which
# decides (and the output names them); other exit codes pass through; a
# machine that finishes nothing, or FT_KVM_VM_RETRY=0, ends it.
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
export T=$TMP FT_KVM_VM_RUNNER=$TMP/runner

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
