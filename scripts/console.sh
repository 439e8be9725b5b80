# Guest console and event helpers (sourced by scripts/demo, bench/failover and tests/lib.sh).

# stream_join OUT FILE:OFFSET...: the consoles of the nodes that ran one guest
# in turn, each starting at OFFSET of the guest's output stream, joined into
# OUT. Where two consoles overlap they must hold the same bytes; a gap between
# them fails. A console that ends inside the one before it (a secondary stopped
# while its primary released on) adds nothing.
stream_join() {
	local out=$1 prev= pbase=0 arg f base keep len over flen
	shift
	: >"$out"
	for arg; do
		f=${arg%:*} base=${arg##*:}
		if [ -n "$prev" ]; then
			keep=$((base - pbase)) len=$(stat -c %s "$prev") flen=$(stat -c %s "$f")
			if [ $keep -lt 0 ] || [ $keep -gt "$len" ]; then
				echo "$prev covers stream offsets $pbase..$((pbase + len)), $f starts at $base"
				return 1
			fi
			over=$((len - keep))
			[ $over -gt "$flen" ] && over=$flen
			if [ $over -gt 0 ] &&
				! cmp -s <(tail -c +$((keep + 1)) "$prev" | head -c $over) <(head -c $over "$f"); then
				echo "$prev and $f differ where they overlap (stream offsets $base..$((base + over)))"
				return 1
			fi
			[ $((keep + flen)) -le "$len" ] && continue
			head -c $keep "$prev" >>"$out"
		fi
		prev=$f pbase=$base
	done
	cat "$prev" >>"$out"
}

# bank_tally FILE VCPUS: "LINES LOST REPEATED NOT_OK" over the complete bank
# lines of FILE: iters missing from a vCPU's sequence, iters seen again, lines
# whose sum check failed.
bank_tally() {
	if [ -n "$(tail -c1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi |
		awk -v n="$2" '
	/^bank vcpu=[0-9]+ iter=[0-9]+ / {
		split($2, v, "="); split($3, it, "=");
		lines++
		if ($NF != "ok") bad++
		want = (v[2] in last) ? last[v[2]] + 1 : 0
		if (it[2] > want) lost += it[2] - want
		if (it[2] < want) rep++
		if (it[2] >= want) last[v[2]] = it[2]
	}
	END { printf "%d %d %d %d\n", lines, lost, rep, bad }'
}

# event_ms FILE EVENT: time_ms of the first EVENT in FILE (`ftctl events --json`), or nothing.
event_ms() {
	grep "\"event\":\"$2\"" "$1" | head -1 | sed -n 's/.*"time_ms":\([0-9]*\).*/\1/p'
}
