#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs a command where /dev/kvm works, on a machine whose own kernel cannot
# offer it: inside Debian's kernel under QEMU's emulator (TCG) with an emulated
# AMD CPU that has SVM and nested paging, where Debian's kvm_amd module gives a
# real /dev/kvm. ringft's KVM tests then run against ordinary SVM KVM (not
# kvm_pvm), which is also how they stay honest about what kvm_pvm hides.
#
#   scripts/kvm-vm.sh [--mem SIZE] [--cpus N] [--] COMMAND [ARG...]
#
# The VM sees this machine's whole file system through 9p (read-write, as
# root), so a build made here runs there unchanged; /tmp, /run and /dev/shm
# are the VM's own tmpfs (but for the directory of /tmp that COMMAND runs in,
# such as a CI clone, which is this machine's). COMMAND runs as root (the VM's PID 1) in the current
# directory with PATH, HOME, TERM, CI and every FT_*, RINGFT_*, ASAN_*, UBSAN_*
# and LSAN_* variable passed on; its output is this script's output and its
# exit code is this script's (125 when the VM itself failed: no kernel, no
# /dev/kvm, a crash). FT_KVM_EMULATED=1 is set there: the tests' floors on
# rates know the CPU is emulated (tests/lib.sh rate_floor).
#
# The kernel is Debian's linux-image-amd64 (apt-get download, unpacked, never
# installed), cached with a busybox initramfs in $FT_KVM_VM_CACHE (default
# /var/cache/ringft/kvm-vm). Missing Debian packages are installed (as root).
#
#   scripts/kvm-vm.sh --check          # exit 0 when this machine needs the VM
#                                      # (no usable /dev/kvm), else 1
set -euo pipefail

cache=${FT_KVM_VM_CACHE:-/var/cache/ringft/kvm-vm}
mem=${FT_KVM_VM_MEM:-16G} # --mem, or FT_KVM_VM_MEM (scripts/vm-ctest.sh sets it for its groups)
# One CPU. With two (each on a host thread of its own, multi-threaded TCG),
# nested guests fault in ways no hardware does, and take the emulated
# machine's kernel with them: test_dirty alone, 2026-12-04, old and new
# builds alike, in 5 runs on 2 CPUs: 1 triple fault of a built-in guest, 3
# kernel panics ("corrupted stack end detected inside scheduler" in a vCPU
# thread, right after its guest's shutdown exit; in one, an RCU stall); on 1
# CPU, 4 runs clean and each faster (55-75 s against 60-90 s). Each crash
# needs the two emulated CPUs racing: most likely in QEMU's nested SVM under
# multi-threaded TCG (its VMRUN, for one, ignores TLB_CONTROL_FLUSH_ASID).
# --cpus 2 brings the second CPU back. FT_KVM_VM_TCG=single runs the CPUs on
# one host thread in turn.
cpus=1
tcg=${FT_KVM_VM_TCG:-multi}
PACKAGES=(busybox-static cpio kmod)
# QEMU older than this is replaced by the release's backports (Debian 12: 7.2).
QEMU_MIN_MAJOR=10
# What the initramfs loads to reach the shared root (in dependency order).
BOOT_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	9pnet netfs fscache 9p 9pnet_virtio)

log() { echo "kvm-vm: $*" >&2; }
die() {
	log "error: $*"
	exit 125
}

kvm_usable() { [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; }

while [ $# -gt 0 ]; do
	case $1 in
	--check) if kvm_usable; then exit 1; else exit 0; fi ;;
	--mem) mem=${2:?--mem needs a size}; shift 2 ;;
	--cpus) cpus=${2:?--cpus needs a count}; shift 2 ;;
	--) shift; break ;;
	-*) echo "usage: scripts/kvm-vm.sh [--mem SIZE] [--cpus N] [--] COMMAND [ARG...]" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: scripts/kvm-vm.sh [--mem SIZE] [--cpus N] [--] COMMAND [ARG...]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (the VM shares / as root through 9p)"

# Preparing (packages, kernel, initramfs) is one at a time; the VMs then run
# side by side, each with a job directory of its own (scripts/vm-ctest.sh
# runs its shards so).
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | awk 'NR == 1 { split($4, v, "."); print v[1] + 0; exit }'
}

# A private apt configuration: the machine's own Debian sources plus the
# release's -backports suite, derived from the stanza (or line) of the release
# itself, with the same mirror and keyring.
backports_apt() {
	local rel=$1 apt=$2 deb822=/etc/apt/sources.list.d/debian.sources
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"
	rm -f "$apt/sources.list.d/"*
	: >"$apt/sources.list"
	[ -r /etc/apt/sources.list ] && cp /etc/apt/sources.list "$apt/sources.list"
	if [ -r "$deb822" ]; then
		cp "$deb822" "$apt/sources.list.d/"
		awk -v rel="$rel" 'BEGIN { RS = ""; FS = "\n" }
			{
				ok = 0
				for (i = 1; i <= NF; i++)
					if ($i ~ /^Suites:/)
						for (j = split($i, w, /[ \t]+/); j > 1; j--)
							if (w[j] == rel) ok = 1
				if (!ok || done) next
				done = 1
				for (i = 1; i <= NF; i++)
					if ($i ~ /^Suites:/) print "Suites: " rel "-backports"
					else if ($i ~ /^Components:/) print "Components: main"
					else if ($i !~ /^#/) print $i
			}' "$deb822" >"$apt/sources.list.d/backports.sources"
	fi
	# One-line sources: "deb [options] URI SUITE COMPONENTS".
	if [ -r /etc/apt/sources.list ]; then
		awk -v rel="$rel" '$1 == "deb" {
				o = ($2 ~ /^\[/) ? $2 " " : ""; u = o == "" ? 2 : 3
				if ($(u + 1) == rel) { print "deb " o $u " " rel "-backports main"; exit }
			}' /etc/apt/sources.list >>"$apt/sources.list"
	fi
	grep -qs -- "$rel-backports" "$apt/sources.list" "$apt/sources.list.d/backports.sources" ||
		die "no Debian source for $rel in $deb822 or /etc/apt/sources.list to derive $rel-backports from"
}

# Debian 12's QEMU 7.2 runs the VM's CPUs on one host thread in turn (with its
# multi-threaded TCG the VM's kernel crashed under test_dirty's signal storm),
# and that mode corrupts the nested guests' interrupt delivery: a Linux guest
# whose vCPU thread got a signal every 10 ms (only a signal: no checkpoint)
# took an interrupt twice, the second at the first instruction of its
# handler ("ENTRY_TRAMPOLINE stack guard page was hit", a triple fault), or
# lost one and hung, within seconds to a minute, under QEMU 7.2 and 10.0 alike.
# QEMU 10's multi-threaded TCG ran the same guest 150 s clean, 4 runs of 4,
# at the guest's own real-time pace; QEMU itself as the nested guest's VMM,
# kicked the same way, did not crash either (docs/linux.md). Multi-threaded
# TCG is not flawless either: about once in 20 minutes of tests (twice seen)
# the VM's own kernel died in a vCPU thread ("corrupted stack end detected
# inside scheduler" after a stack overflow of page faults, knlGS still the
# nested guest's), which ends the run with exit 125; scripts/vm-ctest.sh
# then runs the unfinished tests in a new VM.
if [ "$(qemu_major)" -lt $QEMU_MIN_MAJOR ] 2>/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
	rel=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$rel" ] || die "no VERSION_CODENAME in /etc/os-release: cannot find QEMU $QEMU_MIN_MAJOR"
	mkdir -p "$cache"
	backports_apt "$rel" "$cache/.apt"
	aptopts=(-o Dir::Etc::SourceList="$cache/.apt/sources.list"
		-o Dir::Etc::SourceParts="$cache/.apt/sources.list.d"
		-o Dir::State::Lists="$cache/.apt/lists" -o Dir::Cache="$cache/.apt/cache")
	log "installing qemu-system-x86 from $rel-backports (QEMU $(qemu_major) here; $QEMU_MIN_MAJOR or later needed)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get "${aptopts[@]}" update -qq
	apt-get "${aptopts[@]}" install -y -qq --no-install-recommends -t "$rel-backports" \
		qemu-system-x86 >/dev/null
	[ "$(qemu_major)" -ge $QEMU_MIN_MAJOR ] || die "QEMU $(qemu_major) after installing from $rel-backports"
fi

# The kernel: the version linux-image-amd64 points at now, unpacked once.
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
kpkg=$(kernel_package)
if [ -z "$kpkg" ]; then
	apt-get update -qq
	kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] || die "apt-cache names no kernel behind linux-image-amd64 (run apt-get update)"
kver=${kpkg#linux-image-}
kdir=$cache/$kver
if [ ! -e "$kdir/ready" ]; then
	log "unpacking Debian's $kpkg"
	rm -rf "$kdir" "$cache/.dl"
	mkdir -p "$cache/.dl"
	(cd "$cache/.dl" && apt-get download -qq "$kpkg" 2>/dev/null) || die "apt-get download $kpkg failed"
	dpkg-deb -x "$cache"/.dl/*.deb "$kdir"
	rm -rf "$cache/.dl"
	/sbin/depmod -b "$kdir" "$kver"
	touch "$kdir/ready"
fi

# The initramfs: busybox, the modules that reach the shared root, and an init
# that mounts it with the VM's own /proc, /sys, /dev (with the /dev/fd links
# that bash's <(...) needs), /tmp, /run and the kernel's modules, then makes
# it the root (not a chroot: nsenter and setns into a mount namespace land on
# the namespace's root) and runs the job there: the one the kernel's command
# line names (ftjob=, which the kernel hands to init as a variable).
init_script="#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${BOOT_MODULES[*]}; do insmod /mods/\$m.ko || echo \"kvm-vm: insmod \$m failed\"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose root /mnt || echo 'kvm-vm: no 9p root'
mount -t proc proc /mnt/proc
mount -t sysfs sys /mnt/sys
mount -t devtmpfs dev /mnt/dev
mkdir -p /mnt/dev/shm /mnt/dev/pts
ln -s /proc/self/fd /mnt/dev/fd
ln -s /proc/self/fd/0 /mnt/dev/stdin
ln -s /proc/self/fd/1 /mnt/dev/stdout
ln -s /proc/self/fd/2 /mnt/dev/stderr
mount -t tmpfs -o mode=1777 shm /mnt/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /mnt/dev/pts
mount --bind /mnt/tmp /mnt$cache/host-tmp
mount -t tmpfs -o mode=1777 tmp /mnt/tmp
mount -t tmpfs -o mode=0755 run /mnt/run
mkdir -p /mnt/run/lock /mnt/usr/lib/modules
mount -t tmpfs modules /mnt/usr/lib/modules
mkdir /mnt/usr/lib/modules/$kver
mount --bind /mnt$kdir/lib/modules/$kver /mnt/usr/lib/modules/$kver
stty -onlcr 2>/dev/null
exec switch_root /mnt /bin/bash \$ftjob/run
"
initrd=$kdir/initramfs-$(printf '%s' "$init_script" | sha256sum | cut -c1-12).gz
if [ ! -e "$initrd" ]; then
	tree=$(mktemp -d)
	mkdir -p "$tree"/{bin,mods,proc,sys,dev,mnt}
	cp /bin/busybox "$tree/bin/"
	for a in sh mount insmod mkdir ln stty echo switch_root; do ln -s busybox "$tree/bin/$a"; done
	for m in "${BOOT_MODULES[@]}"; do
		f=$(find "$kdir/lib/modules/$kver/kernel" -name "$m.ko" | head -1)
		[ -n "$f" ] || die "no $m.ko in $kpkg"
		cp "$f" "$tree/mods/"
	done
	printf '%s' "$init_script" >"$tree/init"
	chmod +x "$tree/init"
	(cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$tree"
fi

# The job, as the VM's PID 1, in a directory of its own: it writes its exit
# code, syncs the shared root and powers off.
mkdir -p "$cache/host-tmp"
job=$(mktemp -d "$cache/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
{
	echo 'set -u'
	echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	for v in HOME TERM CI $(compgen -e | grep -E '^(FT_|RINGFT_|ASAN_|UBSAN_|LSAN_)' || true); do
		if [ -n "${!v+x}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
	done
	# The tests' rate floors know the CPU is emulated (tests/lib.sh rate_floor).
	echo 'export FT_KVM_EMULATED=1'
	echo "hostname $(printf %q "$(hostname)")"
	echo 'ip link set lo up'
	echo 'job() {'
	echo "	modprobe kvm_amd || { echo 'kvm-vm: modprobe kvm_amd failed'; return 125; }"
	# /dev/net/tun and the loop devices appear once their modules are in.
	echo "	modprobe -a tun loop || return 125"
	echo "	[ -c /dev/kvm ] || { echo 'kvm-vm: no /dev/kvm in the VM'; return 125; }"
	# A directory of this machine's /tmp (a CI clone) is bound into the VM's.
	if [[ $PWD == /tmp/?* ]]; then
		top=${PWD#/tmp/}
		top=/tmp/${top%%/*}
		printf '\tmkdir -p %q && mount --bind %q %q || return 125\n' \
			"$top" "$cache/host-tmp/${top#/tmp/}" "$top"
	fi
	printf '\tcd %q || return 125\n' "$PWD"
	printf '\t%s\n' "$(printf '%q ' "$@")"
	echo '}'
	# Through a pipe, as on a CI runner: the console is a terminal.
	printf '{ job; echo $? >%s/rc; } 2>&1 | cat\n' "$job"
	echo 'sync'
	echo 'echo o >/proc/sysrq-trigger'
	echo 'sleep 60'
} >"$job/run"

log "$kver under QEMU $(qemu-system-x86_64 --version | awk 'NR == 1 { print $4 }') (TCG $tcg, $cpus CPUs, $mem, nested SVM): $*"
# -cpu EPYC (Zen 1: SVM with nested paging) and multi-threaded TCG (QEMU 10:
# see above). A lockup or RCU stall panics the VM's kernel and so ends QEMU
# (-no-reboot), rather than hanging the run. The EPYC features that TCG does
# not emulate are turned off, which changes nothing but QEMU's warnings about
# each.
qcpu=EPYC,-xsavec,-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save
exec 9>&- # prepared: the next VM may start
qemu-system-x86_64 -accel "tcg,thread=$tcg" -cpu "$qcpu" -smp "$cpus" -m "$mem" \
	-display none -no-reboot -nodefaults -serial stdio -monitor none \
	-kernel "$kdir/boot/vmlinuz-$kver" -initrd "$initrd" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off softlockup_panic=1 sysctl.kernel.panic_on_rcu_stall=1 ftjob=$job" \
	-virtfs local,path=/,mount_tag=root,security_model=passthrough,id=root,multidevs=remap </dev/null ||
	die "QEMU failed"
[ -s "$job/rc" ] || die "the VM stopped before the command finished"
exit "$(cat "$job/rc")"
