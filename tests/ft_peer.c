// SPDX-License-Identifier: MIT
/*
 * ft_peer: a fake primary for hostile-input integration tests. It connects to a
 * running `ftd secondary` with a plain blocking socket, sends what MODE says
 * (garbage, a truncated or oversized frame, a HELLO the secondary must refuse,
 * an epoch before any handshake, or nothing at all), then reads whatever the
 * secondary answers until it closes the connection and prints one line:
 *
 *   closed                                      closed without a frame
 *   refused: field=F local=L remote=R reason=W  a REFUSE (L is the secondary's value)
 *
 * possibly followed by "; still open after N s" when it did not close.
 *
 *   ft_peer HOST:PORT MODE [--mem SIZE] [--vcpus N] [--hold SECONDS]
 *
 * Exit status: 0 when the secondary behaved as expected for MODE (it closed the
 * connection and, for the handshake modes, sent a REFUSE naming the expected
 * field and nothing else), 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "proto/epoch.h"
#include "proto/ringft.pb-c.h"
#include "proto/session.h"
#include "proto/wire.h"

#define GARBAGE_SIZE	  4096
#define TRUNC_ANNOUNCED	  500
#define TRUNC_SENT	  100
#define HUGE_LENGTH	  0xFFFFFFF0u
#define ANSWER_WAIT_S	  3.0
#define SILENT_WAIT_S	  10.0
#define PEER_KVM_API	  12
#define PEER_RING_SIZE	  4096
#define MEMSIZE_EXTRA	  (2ULL << 20)
#define BAD_PROTO_VERSION 99

struct peer_opts {
	uint64_t mem_size;
	uint32_t vcpus;
	double hold_s;
};

struct mode {
	const char *name;
	int (*send)(int fd, const struct peer_opts *o);
	const char *refuse_field; /* handshake modes: the field the REFUSE must name */
	double wait_s;
};

/* What the secondary did after our bytes. */
struct outcome {
	bool closed;	      /* EOF or reset */
	int error;	      /* another socket error (-errno), or 0 */
	unsigned int frames;  /* frames received, whatever their type */
	bool expected_refuse; /* a REFUSE named the expected field */
	bool junk;	      /* bytes that do not frame, or an incomplete frame */
	uint64_t bytes;	      /* received */
	char desc[768];
	size_t desc_len;
};

static void desc_add(struct outcome *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void desc_add(struct outcome *out, const char *fmt, ...)
{
	size_t room = sizeof(out->desc) - out->desc_len;
	va_list ap;
	int n;

	if (out->desc_len && room > 2) {
		memcpy(out->desc + out->desc_len, "; ", 3);
		out->desc_len += 2;
		room -= 2;
	}
	va_start(ap, fmt);
	n = vsnprintf(out->desc + out->desc_len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		out->desc_len += (size_t)n < room ? (size_t)n : room - 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- sending ---------------------------------------------------------------- */

/*
 * Sends everything, or returns -EPIPE/-ECONNRESET when the secondary closed
 * first (which several modes expect: the caller goes on to read the outcome).
 */
static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_header(int fd, uint16_t type, uint32_t length, uint64_t epoch)
{
	uint8_t hdr[WIRE_HDR_SIZE];

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = type, .length = length, .epoch = epoch });
	return send_all(fd, hdr, sizeof(hdr));
}

static int send_garbage(int fd, const struct peer_opts *o)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: ringft\r\nUser-Agent: ft_peer\r\n\r\n";
	uint8_t buf[GARBAGE_SIZE];
	size_t have = sizeof(http) - 1;

	(void)o;
	memcpy(buf, http, have);
	while (have < sizeof(buf)) {
		ssize_t n = getrandom(buf + have, sizeof(buf) - have, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		have += (size_t)n;
	}
	return send_all(fd, buf, sizeof(buf));
}

/* A HELLO the way the primary builds it (daemon/replication.c, local_hello()). */
static void peer_hello(const struct peer_opts *o, struct hello_info *h)
{
	memset(h, 0, sizeof(*h));
	h->protocol_version = RINGFT_PROTOCOL_VERSION;
	h->role = HELLO_PRIMARY;
	h->mem_size = o->mem_size;
	h->nr_vcpus = o->vcpus;
	h->page_size = WIRE_PAGE_SIZE;
	h->kvm_api_version = PEER_KVM_API;
	h->xsave_size = 0; /* host-specific: compared after what the modes test */
	h->tracking = "ring";
	h->ring_entries = PEER_RING_SIZE;
	h->guest = "ft_peer";
	h->devices[h->nr_devices++] = "serial";
}

static int send_hello(int fd, const struct hello_info *h)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = hello_frame(h, &buf, &len);

	if (r == 0)
		r = send_all(fd, buf, len);
	free(buf);
	return r;
}

static int send_truncated(int fd, const struct peer_opts *o)
{
	uint8_t payload[TRUNC_SENT] = { 0 };
	struct hello_info h;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	/* The start of a real HELLO payload, zero-padded: the rest never comes. */
	peer_hello(o, &h);
	r = hello_frame(&h, &buf, &len);
	if (r < 0)
		return r;
	len -= WIRE_HDR_SIZE;
	memcpy(payload, buf + WIRE_HDR_SIZE, len < sizeof(payload) ? len : sizeof(payload));
	free(buf);
	r = send_header(fd, WIRE_HELLO, TRUNC_ANNOUNCED, 0);
	if (r == 0)
		r = send_all(fd, payload, sizeof(payload));
	if (r == 0 && shutdown(fd, SHUT_WR) < 0)
		r = -errno;
	return r;
}

static int send_huge(int fd, const struct peer_opts *o)
{
	(void)o;
	return send_header(fd, WIRE_HELLO, HUGE_LENGTH, 0);
}

static int send_bad_version(int fd, const struct peer_opts *o)
{
	struct hello_info h;

	peer_hello(o, &h);
	h.protocol_version = BAD_PROTO_VERSION;
	return send_hello(fd, &h);
}

static int send_bad_memsize(int fd, const struct peer_opts *o)
{
	struct hello_info h;

	peer_hello(o, &h);
	h.mem_size = o->mem_size + MEMSIZE_EXTRA;
	return send_hello(fd, &h);
}

/* The EPOCH_BEGIN frame of an initial-sync epoch of one page, as the primary frames it. */
static int send_epoch_first(int fd, const struct peer_opts *o)
{
	static const uint8_t page[WIRE_PAGE_SIZE];
	static const uint64_t pages[1] = { 0 };
	struct epoch_opts eo = { .initial_sync = true };
	struct epoch_tx tx = { 0 };
	int r = epoch_pack(&tx, 1, pages, 1, page, NULL, &eo);

	(void)o;
	/* iov[0] is its header, iov[1] its message. */
	if (r == 0 && tx.nr_iov < 2)
		r = -EINVAL;
	if (r == 0)
		r = send_all(fd, tx.iov[0].iov_base, tx.iov[0].iov_len);
	if (r == 0)
		r = send_all(fd, tx.iov[1].iov_base, tx.iov[1].iov_len);
	epoch_tx_free(&tx);
	return r;
}

static int send_nothing(int fd, const struct peer_opts *o)
{
	(void)fd;
	(void)o;
	return 0;
}

static const struct mode modes[] = {
	{ "garbage", send_garbage, NULL, ANSWER_WAIT_S },
	{ "truncated", send_truncated, NULL, ANSWER_WAIT_S },
	{ "huge", send_huge, NULL, ANSWER_WAIT_S },
	{ "version", send_bad_version, "protocol_version", ANSWER_WAIT_S },
	{ "memsize", send_bad_memsize, "mem_size", ANSWER_WAIT_S },
	{ "epoch-first", send_epoch_first, NULL, ANSWER_WAIT_S },
	{ "silent", send_nothing, NULL, SILENT_WAIT_S },
};

/* ---- reading the answer ----------------------------------------------------- */

static void on_frame(const struct mode *m, const struct frame_rx *fr, struct outcome *out)
{
	Ringft__Refuse *rf;

	out->frames++;
	if (fr->hdr.type != WIRE_REFUSE) {
		desc_add(out, "got a %s frame (%u bytes)", wire_type_name(fr->hdr.type),
			 fr->hdr.length);
		return;
	}
	rf = ringft__refuse__unpack(NULL, fr->hdr.length, fr->payload);
	if (!rf) {
		desc_add(out, "refused: undecodable REFUSE payload (%u bytes)", fr->hdr.length);
		return;
	}
	desc_add(out, "refused: field=%s local=%s remote=%s reason=%s",
		 rf->field && rf->field[0] ? rf->field : "(none)", rf->local ? rf->local : "",
		 rf->remote ? rf->remote : "", rf->reason ? rf->reason : "");
	if (m->refuse_field && rf->field && !strcmp(rf->field, m->refuse_field))
		out->expected_refuse = true;
	ringft__refuse__free_unpacked(rf, NULL);
}

/* Reads until the secondary closes or wait_s passes. */
static int await_answer(int fd, const struct mode *m, double wait_s, struct outcome *out)
{
	uint64_t deadline = now_ns() + (uint64_t)(wait_s * 1e9);
	struct frame_rx fr;
	uint8_t buf[65536];
	int ret = frame_rx_init(&fr);

	if (ret < 0)
		return ret;
	while (!out->closed && !out->error) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		size_t off = 0, used;
		ssize_t n;
		int r;

		if (now >= deadline)
			break;
		r = poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
		if (r < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (r <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* A reset is a close too: the secondary closed with our bytes unread. */
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			out->closed = true;
		else if (n < 0)
			out->error = -errno;
		else
			out->bytes += (uint64_t)n;
		while (n > 0 && off < (size_t)n && !out->junk) {
			r = frame_rx_feed(&fr, buf + off, (size_t)n - off, &used);
			off += used;
			if (r < 0) {
				out->junk = true;
				desc_add(out, "unframed answer: %s", fr.error);
			} else if (r == 1) {
				on_frame(m, &fr, out);
			} else {
				break;
			}
		}
	}
	if (!out->junk && (fr.hdr_have || fr.in_payload)) {
		out->junk = true;
		desc_add(out, "an incomplete frame (%llu bytes received in all)",
			 (unsigned long long)out->bytes);
	}
	frame_rx_free(&fr);
	return ret;
}

/* ---- command line ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: ft_peer HOST:PORT MODE [--mem SIZE] [--vcpus N] [--hold SECONDS]\n"
		   "  MODE: garbage, truncated, huge, version, memsize, epoch-first, silent\n"
		   "  --mem SIZE       the guest RAM to announce (default 128M)\n"
		   "  --vcpus N        the vCPUs to announce (default 2)\n"
		   "  --hold SECONDS   keep the connection open this long before reading\n");
}

static int parse_size(const char *s, uint64_t *ret)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	case 0:
		break;
	default:
		return -EINVAL;
	}
	if (shift)
		end++;
	if (*end == 'i')
		end++;
	if (*end == 'B' && shift)
		end++;
	if (*end || !v || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*ret = (uint64_t)v << shift;
	return 0;
}

static int parse_u32(const char *s, uint32_t *ret)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_seconds(const char *s, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0 && v <= 3600))
		return -EINVAL;
	*ret = v;
	return 0;
}

/* HOST:PORT or [V6]:PORT; returns a connected blocking socket or -errno. */
static int peer_connect(const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char host[256];
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hlen;
	int fd = -1, r, saved = ECONNREFUSED;

	if (!colon || !colon[1]) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	hlen = (size_t)(colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (!hlen || hlen >= sizeof(host)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	memcpy(host, h, hlen);
	host[hlen] = 0;
	r = getaddrinfo(host, colon + 1, &hints, &res);
	if (r) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", addr, strerror(saved));
		return -saved;
	}
	return fd;
}

static void hold(double seconds)
{
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "hold", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct peer_opts o = { .mem_size = 128ULL << 20, .vcpus = 2 };
	struct outcome out = { 0 };
	const struct mode *m = NULL;
	char err[320];
	bool ok;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &o.mem_size) < 0) {
				fprintf(stderr, "ft_peer: --mem: '%s' is not a size (e.g. 128M)\n",
					optarg);
				return 2;
			}
			break;
		case 'c':
			if (parse_u32(optarg, &o.vcpus) < 0 || !o.vcpus) {
				fprintf(stderr, "ft_peer: --vcpus: '%s' is not a count\n", optarg);
				return 2;
			}
			break;
		case 'H':
			if (parse_seconds(optarg, &o.hold_s) < 0) {
				fprintf(stderr, "ft_peer: --hold: '%s' is not 0..3600 seconds\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[optind + 1], modes[i].name))
			m = &modes[i];
	if (!m) {
		fprintf(stderr, "ft_peer: unknown mode '%s'\n", argv[optind + 1]);
		usage(stderr);
		return 2;
	}

	fd = peer_connect(argv[optind], err, sizeof(err));
	if (fd < 0) {
		printf("error: %s\n", err);
		return fd == -EINVAL ? 2 : 1;
	}
	r = m->send(fd, &o);
	if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
		printf("error: sending %s: %s\n", m->name, strerror(-r));
		close(fd);
		return 1;
	}
	/* -EPIPE/-ECONNRESET: the secondary already closed; read what it left. */
	if (o.hold_s > 0)
		hold(o.hold_s);
	r = await_answer(fd, m, m->wait_s, &out);
	close(fd);
	if (r < 0) {
		printf("error: reading the answer: %s\n", strerror(-r));
		return 1;
	}
	if (out.error)
		desc_add(&out, "error: %s", strerror(-out.error));
	if (!out.closed && !out.error)
		desc_add(&out, "still open after %.1f s", m->wait_s);
	else if (out.closed && !out.desc_len)
		desc_add(&out, "closed");
	printf("%s\n", out.desc);

	ok = out.closed && !out.junk;
	if (m->refuse_field)
		ok = ok && out.frames == 1 && out.expected_refuse;
	else
		ok = ok && !out.frames;
	return ok ? 0 : 1;
}
