// SPDX-License-Identifier: MIT
/*
 * /init of ringft's Linux test guest (packed by scripts/linux-guest.sh).
 *
 * Like the builtin bank guest, it keeps an invariant in userspace memory and
 * prints one numbered line per period on the console (the 16550, ttyS0):
 *
 *   ringft-init: started pid 1, boot took 13712 ms (CLOCK_MONOTONIC)
 *   ringft-init: disk /dev/vda: 32768 sectors, ...     (only with a disk)
 *   ringft-init: net up 10.0.2.15                      (only with ringft.net=1)
 *   ringft-init: line 000001 ok sum=... moves=... t=14.012345678
 *
 * Line numbers are consecutive from 1: after a failover each must appear
 * exactly once. A line says BAD, with detail, when the bank's total changed
 * or CLOCK_MONOTONIC went backwards since the previous reading.
 *
 * With a disk (ftd --disk: the kernel's virtio_blk driver found vda), every
 * numbered line is first written to the disk as a 512-byte record (struct
 * disk_record: the line's number and text) in sector line % slots, and
 * flushed; only then is it printed. A line the console shows therefore has
 * its record durable on the disk: after a failover, on the promoted side's
 * image (tests/test_linux.sh failover checks it).
 *
 * Between lines the work is userspace only: transfers between accounts of a
 * bank touched once at start, and clock reads through the vDSO. The system
 * calls per line are the write(2) of the line and, with a disk, the pwrite(2)
 * and fdatasync(2) of its record, so the kernel (emulated on kvm_pvm) is
 * entered rarely and the guest's dirty pages come from userspace work.
 *
 * Kernel command line (read from /proc/cmdline):
 *   ringft.period_ms=N    line period, default 100
 *   ringft.transfers=N    transfers per period, spread evenly, default 1000
 *   ringft.bank_kib=N     bank size, default 4096 (8-byte accounts)
 *   ringft.net=1          start busybox httpd on port 80 and a TCP echo
 *                         server on port 7 (busybox nc -ll -e cat)
 *   ringft.ip=A.B.C.D/N   configure eth0 with busybox ip; without it the
 *                         kernel's ip= (IP_PNP) is expected to have done so
 *   ringft.disk=0         leave the disk alone even if there is one
 *   ringft.disk_slots=N   records in sectors 0..N-1, default 1024 (at most
 *                         the disk's size)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INITIAL_BALANCE 1000u

struct opts {
	uint64_t period_ms;
	uint64_t transfers;
	uint64_t bank_kib;
	int net;
	int disk;
	uint64_t disk_slots;
	char ip[64];
};

/*
 * One line's record on the disk, one 512-byte sector, little-endian as the
 * guest writes it. tests/test_linux.sh reads it with struct '<8sQII480sQ'.
 */
#define DISK_MAGIC  "RFTLINE1"
#define DISK_SECTOR 512
struct disk_record {
	char magic[8];	/* DISK_MAGIC, no NUL */
	uint64_t line;	/* the line's number */
	uint32_t slots; /* records are in sectors 0..slots-1 */
	uint32_t len;	/* bytes of text */
	char text[480]; /* the line as printed, without its newline */
	uint64_t sum;	/* FNV-1a 64 of the 504 bytes before it */
};
_Static_assert(sizeof(struct disk_record) == DISK_SECTOR, "a record is one sector");

struct disk {
	int fd; /* /dev/vda, O_DIRECT; -1: no disk */
	uint64_t slots;
	struct disk_record *rec; /* sector-aligned for O_DIRECT */
};

#define SAY_MAX 256

/* Formats "ringft-init: ..." into buf (SAY_MAX bytes); returns its length. */
static int vformat(char *buf, const char *fmt, va_list ap)
{
	int n;

	memcpy(buf, "ringft-init: ", 13);
	n = vsnprintf(buf + 13, SAY_MAX - 14, fmt, ap);
	if (n < 0)
		return 0;
	n += 13;
	return n > SAY_MAX - 2 ? SAY_MAX - 2 : n;
}

/* Prints the n bytes of buf as one line: one write, the console sees it whole. */
static void emit(char *buf, int n)
{
	buf[n++] = '\n';
	while (write(1, buf, n) < 0 && errno == EINTR)
		;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[SAY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vformat(buf, fmt, ap);
	va_end(ap);
	emit(buf, n);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void setup_fs(void)
{
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mkdir("/dev", 0755);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	/* DEVTMPFS_MOUNT does not apply to an initramfs root: mount it here. */
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);

	/* The kernel opens /dev/console for init when the initramfs has it. */
	if (fcntl(1, F_GETFD) < 0) {
		int fd = open("/dev/console", O_RDWR | O_NOCTTY);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
}

static uint64_t param(const char *cmdline, const char *key, uint64_t dflt)
{
	const char *p = cmdline;
	size_t len = strlen(key);

	while ((p = strstr(p, key)) != NULL) {
		if ((p == cmdline || p[-1] == ' ') && p[len] == '=')
			return strtoull(p + len + 1, NULL, 10);
		p += len;
	}
	return dflt;
}

static void parse_cmdline(struct opts *o)
{
	char cmdline[4096] = "";
	const char *ip;
	ssize_t n = -1;
	int fd;

	fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0) {
		n = read(fd, cmdline, sizeof(cmdline) - 1);
		close(fd);
	}
	if (n > 0)
		cmdline[n] = '\0';
	cmdline[strcspn(cmdline, "\n")] = '\0';

	o->period_ms = param(cmdline, "ringft.period_ms", 100);
	o->transfers = param(cmdline, "ringft.transfers", 1000);
	o->bank_kib = param(cmdline, "ringft.bank_kib", 4096);
	o->net = param(cmdline, "ringft.net", 0) != 0;
	o->disk = param(cmdline, "ringft.disk", 1) != 0;
	o->disk_slots = param(cmdline, "ringft.disk_slots", 1024);
	if (o->period_ms == 0)
		o->period_ms = 100;
	if (o->bank_kib == 0)
		o->bank_kib = 4096;

	ip = strstr(cmdline, "ringft.ip=");
	if (ip && (ip == cmdline || ip[-1] == ' ')) {
		ip += strlen("ringft.ip=");
		snprintf(o->ip, sizeof(o->ip), "%.*s", (int)strcspn(ip, " "), ip);
	}
}

/* Runs PROG ARGS... and waits for it; returns its exit status or -1. */
static int run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		/* init ignores SIGCHLD; an ignored signal would survive exec. */
		signal(SIGCHLD, SIG_DFL);
		setsid();
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0)
		say("BAD cannot fork %s: %s", argv[0], strerror(errno));
}

static int if_up(int sock, const char *name)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(sock, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static void start_net(const struct opts *o)
{
	char *httpd[] = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www", NULL };
	char *echo[] = { "/bin/busybox", "nc", "-ll", "-p", "7", "-e", "/bin/cat", NULL };
	struct ifreq ifr = { 0 };
	char addr[INET_ADDRSTRLEN] = "none";
	int sock;

	sock = socket(AF_INET, SOCK_DGRAM, 0);
	if (sock < 0) {
		say("BAD net: socket: %s", strerror(errno));
		return;
	}
	if_up(sock, "lo");
	if (o->ip[0]) {
		char ipbuf[64];
		char *add[] = { "/bin/ip", "addr", "add", ipbuf, "dev", "eth0", NULL };
		char *up[] = { "/bin/ip", "link", "set", "eth0", "up", NULL };

		snprintf(ipbuf, sizeof(ipbuf), "%s", o->ip);
		if (run(add) != 0 || run(up) != 0)
			say("BAD net: ip addr add %s dev eth0 failed", o->ip);
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	if (ioctl(sock, SIOCGIFADDR, &ifr) == 0)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, addr,
			  sizeof(addr));
	else
		say("BAD net: eth0 has no address: %s", strerror(errno));
	close(sock);

	spawn(httpd);
	spawn(echo);
	say("net up %s", addr);
}

/* Reads the first line of a small sysfs file into buf; 0 or -errno. */
static int read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/*
 * Opens the disk the kernel's virtio_blk driver found as vda, if any.
 * devtmpfs has made /dev/vda; without it the node is made from sysfs's
 * MAJOR:MINOR. O_DIRECT: a record goes from our buffer to the driver, not
 * through the page cache, whose 4 KiB blocks would read around each sector.
 * Returns 0 (d->fd < 0 when there is no disk) or -errno.
 */
static int disk_open(struct disk *d, const struct opts *o)
{
	char buf[64];
	unsigned int major, minor;
	uint64_t sectors;
	struct stat st;
	int r;

	d->fd = -1;
	if (!o->disk || read_small("/sys/block/vda/dev", buf, sizeof(buf)) < 0)
		return 0;
	if (sscanf(buf, "%u:%u", &major, &minor) != 2)
		return -EINVAL;
	if (stat("/dev/vda", &st) < 0 &&
	    mknod("/dev/vda", S_IFBLK | 0600, makedev(major, minor)) < 0)
		return -errno;
	r = read_small("/sys/block/vda/size", buf, sizeof(buf)); /* 512-byte sectors */
	if (r < 0)
		return r;
	sectors = strtoull(buf, NULL, 10);
	if (sectors == 0)
		return -ENOSPC;
	d->slots = o->disk_slots ? o->disk_slots : 1024;
	if (d->slots > sectors)
		d->slots = sectors;
	d->rec = aligned_alloc(4096, 4096);
	if (!d->rec)
		return -ENOMEM;
	d->fd = open("/dev/vda", O_RDWR | O_DIRECT | O_CLOEXEC);
	if (d->fd < 0) {
		r = -errno;
		free(d->rec);
		d->rec = NULL;
		return r;
	}
	say("disk /dev/vda: %" PRIu64 " sectors, line N's record in sector N %% %" PRIu64
	    ", flushed before the line",
	    sectors, d->slots);
	return 0;
}

static uint64_t fnv1a64(const void *p, size_t len)
{
	const unsigned char *c = p;
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--)
		h = (h ^ *c++) * 0x100000001b3ull;
	return h;
}

/*
 * Writes line's record (the text that is about to be printed) and flushes
 * it: fdatasync on the block device sends VIRTIO_BLK_T_FLUSH, which ftd
 * completes only once the data is durable on its image and which the next
 * checkpoint carries to the secondary. 0 or -errno.
 */
static int disk_record(struct disk *d, uint64_t line, const char *text, size_t len)
{
	struct disk_record *r = d->rec;
	ssize_t n;

	if (len > sizeof(r->text))
		len = sizeof(r->text);
	memset(r, 0, sizeof(*r));
	memcpy(r->magic, DISK_MAGIC, sizeof(r->magic));
	r->line = line;
	r->slots = (uint32_t)d->slots;
	r->len = (uint32_t)len;
	memcpy(r->text, text, len);
	r->sum = fnv1a64(r, offsetof(struct disk_record, sum));
	n = pwrite(d->fd, r, sizeof(*r), (off_t)(line % d->slots) * DISK_SECTOR);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(*r))
		return -EIO;
	return fdatasync(d->fd) < 0 ? -errno : 0;
}

/* Prints numbered line: with a disk, only once its record is durable. */
static void say_line(struct disk *d, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say_line(struct disk *d, uint64_t line, const char *fmt, ...)
{
	char buf[SAY_MAX];
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vformat(buf, fmt, ap);
	va_end(ap);
	if (d->fd >= 0) {
		r = disk_record(d, line, buf, n);
		if (r < 0) {
			say("line %06" PRIu64 " BAD disk record: %s", line, strerror(-r));
			return;
		}
	}
	emit(buf, n);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state; /* xorshift64 */

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void transfer(uint64_t *acct, uint64_t n)
{
	uint64_t from = rng() % n, to = rng() % n;
	uint64_t amount = acct[from] ? rng() % (acct[from] + 1) : 0;

	acct[from] -= amount;
	acct[to] += amount;
}

static uint64_t bank_sum(const uint64_t *acct, uint64_t n)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n; i++)
		sum += acct[i];
	return sum;
}

int main(void)
{
	uint64_t boot = now_ns(), period, n, want, *acct;
	uint64_t line = 0, moves = 0, prev, next;
	struct opts o = { 0 };
	struct disk disk = { .fd = -1 };
	int r;

	setup_fs();
	say("started pid %d, boot took %" PRIu64 " ms (CLOCK_MONOTONIC)", (int)getpid(),
	    boot / 1000000);
	parse_cmdline(&o);

	n = o.bank_kib * 1024 / sizeof(*acct);
	acct = malloc(n * sizeof(*acct));
	if (!acct) {
		say("BAD cannot allocate a bank of %" PRIu64 " KiB", o.bank_kib);
		for (;;)
			pause();
	}
	for (uint64_t i = 0; i < n; i++) /* the only first touch of the bank */
		acct[i] = INITIAL_BALANCE;
	want = n * INITIAL_BALANCE;

	r = disk_open(&disk, &o);
	if (r < 0)
		say("BAD disk /dev/vda: %s", strerror(-r));
	if (o.net)
		start_net(&o);
	/* Exited children (services, orphans) are reaped by the kernel. */
	signal(SIGCHLD, SIG_IGN);

	period = o.period_ms * 1000000;
	prev = now_ns();
	next = prev + period;
	for (;;) {
		uint64_t start = prev, back = 0, done = 0, sum, now;

		/* Transfers spread over the period, then the line at its end. */
		for (;;) {
			now = now_ns();
			if (now < prev && prev - now > back)
				back = prev - now;
			prev = now;
			if (now >= next)
				break;
			if (now > start) {
				uint64_t due = o.transfers * (now - start) / (next - start);

				for (; done < due; done++)
					transfer(acct, n);
			}
		}
		for (; done < o.transfers; done++)
			transfer(acct, n);
		moves += done;

		sum = bank_sum(acct, n);
		line++;
		if (back)
			say_line(&disk, line,
				 "line %06" PRIu64 " BAD time went back by %" PRIu64 " ns", line,
				 back);
		else if (sum != want)
			say_line(&disk, line,
				 "line %06" PRIu64 " BAD sum=%" PRIu64 " want=%" PRIu64, line, sum,
				 want);
		else
			say_line(&disk, line,
				 "line %06" PRIu64 " ok sum=%" PRIu64 " moves=%" PRIu64
				 " t=%" PRIu64 ".%09" PRIu64,
				 line, sum, moves, now / 1000000000, now % 1000000000);

		/* After a long stall (pause, failover) start afresh, no burst. */
		next += period;
		if (next <= now)
			next = now + period;
	}
}
