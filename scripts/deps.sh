#!/bin/bash
# Installs ringft's build and test dependencies from Debian, only those missing.
set -euo pipefail

PACKAGES=(
	build-essential cmake ninja-build pkg-config
	linux-libc-dev           # KVM uapi headers (dirty ring, SREGS2, XSAVE2)
	liburing-dev             # replication sockets
	libprotobuf-c-dev protobuf-c-compiler  # wire messages
	libxxhash-dev            # epoch checksums (XXH3)
	libcmocka-dev            # unit test framework
	libjson-c-dev            # ftctl and the control socket: JSON
	libinih-dev              # ftd --config files
	libsystemd-dev systemd   # sd_notify; systemd-analyze verify in the tests
	redis-tools python3-redis iperf  # real clients of the builtin:kv guest (tests/test_net.sh)
	curl                     # ... and of the Linux guest's httpd (tests/test_linux.sh)
	dpkg-dev                 # dpkg-source: scripts/lwip.sh unpacks Debian's lwIP source
	libssl-dev openssl       # mutual TLS for replication; certificates in the tests
	clang-format             # CI format check (.clang-format)
	libcpg-dev libquorum-dev libvotequorum-dev libcorosync-common-dev  # --cluster
	corosync corosync-qdevice corosync-qnetd  # the test cluster (tests/cluster.sh)
	nftables iproute2 util-linux             # ... its namespaces and cuts
	clang libfuzzer-14-dev   # scripts/fuzz: libFuzzer harnesses (tests/fuzz)
	gnuplot-nox              # bench/plots: PNG plots of the benchmarks' CSV
	libmicrohttpd-dev        # ftd --metrics-listen: Prometheus over HTTP
	scdoc                    # man pages (docs/man/*.scd)
	file                     # CPack DEB: dpkg-shlibdeps finds the ELF files with it
	man-db                   # tests/test_package.sh: man -w, rendering
	resource-agents pacemaker pacemaker-cli-utils  # ocf-tester, crm_attribute, pacemakerd: tests/test_ocf.sh
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: run as root (or install: ${missing[*]})" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# lwIP for the builtin:kv guest: Debian's source package, fetched and unpacked
# into .deps/ (git-ignored) through a private apt configuration; a no-op once
# the unpacked version matches.
"$(dirname "$0")/lwip.sh"
# promtool (Prometheus's format checker, tests/test_metrics.sh): only the
# binary, from Debian's prometheus package, into .deps/ (no server installed).
"$(dirname "$0")/promtool.sh" || echo "deps: no promtool: test_metrics will not check the format" >&2
