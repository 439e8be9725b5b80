// SPDX-License-Identifier: MIT
/*
 * ft_proxy: a man in the middle for the TLS tests, one connection at a time.
 *
 *   ft_proxy PORT TARGET flip N      forward 127.0.0.1:PORT <-> TARGET, flipping
 *                                    one bit of byte N of the client's stream
 *   ft_proxy PORT TARGET record FILE forward, and keep the client's first MiB in FILE
 *   ft_proxy - TARGET replay FILE    connect to TARGET and send FILE's bytes as
 *                                    they were recorded (a captured session again)
 *   ft_proxy PORT TARGET mismatch N  forward in the clear, turning the Nth ACK that
 *                                    says "memory hash matched" into "mismatch";
 *                                    later connections are forwarded unchanged
 *   ft_proxy PORT TARGET disk-beyond N
 *                                    forward in the clear, moving the Nth DISK
 *                                    record with data of the client's stream
 *                                    beyond any image (offset 2^60); later
 *                                    connections are forwarded unchanged
 *
 * PORT may be ADDR:PORT (an IPv4 address to listen on instead of loopback).
 * It serves one connection and exits 0 when either side closes (mismatch,
 * disk-beyond: it serves connections until killed); 1 on errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECORD_MAX (1L << 20)

static int connect_to(const char *target)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(target, ':');
	int fd;

	if (!colon || colon - target >= (long)sizeof(host))
		return -1;
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = 0;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ft_proxy: cannot connect to %s: %s\n", target, strerror(errno));
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *buf, size_t len);

#define FRAME_HDR  24
#define FRAME_ACK  7
#define FRAME_DISK 11

/*
 * Frames of one direction held until whole, then passed on, the Nth of a kind
 * rewritten. mismatch, the secondary's frames (small ones: HELLO, ACK,
 * heartbeats): the Nth ACK whose message ends with verify = 1 (protobuf field
 * 2, varint 1: bytes 0x10 0x01) leaves with verify = 2. disk-beyond, the
 * primary's (pages and disk records, at most 1 MiB each; page lists of small
 * guests): the Nth DISK frame with flags 0 leaves with its offset at 2^60.
 */
struct frames {
	char buf[1 << 23];
	size_t len;
	long seen, rewrite_at;
	int type; /* FRAME_ACK or FRAME_DISK */
};

static void rewrite(struct frames *a, unsigned char *h, size_t whole)
{
	size_t plen = whole - FRAME_HDR;

	if (a->type == FRAME_ACK && plen >= 2 && h[whole - 2] == 0x10 && h[whole - 1] == 0x01 &&
	    ++a->seen == a->rewrite_at) {
		h[whole - 1] = 0x02;
		fprintf(stderr, "ft_proxy: verified ACK %ld now says mismatch\n", a->seen);
	}
	/* A DISK record: u64 offset, u32 len, u32 flags, data. */
	if (a->type == FRAME_DISK && plen > 16 && !(h[FRAME_HDR + 12] | h[FRAME_HDR + 13]) &&
	    ++a->seen == a->rewrite_at) {
		memset(h + FRAME_HDR, 0, 8);
		h[FRAME_HDR + 7] = 0x10;
		fprintf(stderr, "ft_proxy: disk record %ld now writes at offset 2^60\n", a->seen);
	}
}

static int frames_forward(struct frames *a, int to, const char *data, size_t n)
{
	if (n > sizeof(a->buf) - a->len)
		return -1;
	memcpy(a->buf + a->len, data, n);
	a->len += n;
	for (;;) {
		unsigned char *h = (unsigned char *)a->buf;
		size_t plen, whole;

		if (a->len < FRAME_HDR)
			return 0;
		plen = h[8] | h[9] << 8 | h[10] << 16 | (size_t)h[11] << 24;
		if (plen > sizeof(a->buf) - FRAME_HDR)
			return -1;
		whole = FRAME_HDR + plen;
		if (a->len < whole)
			return 0;
		if ((h[4] | h[5] << 8) == a->type)
			rewrite(a, h, whole);
		if (write_all(to, a->buf, whole) < 0)
			return -1;
		memmove(a->buf, a->buf + whole, a->len - whole);
		a->len -= whole;
	}
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	long flip_at = -1, seen = 0;
	static struct frames acks = { .type = FRAME_ACK }, disks = { .type = FRAME_DISK };
	bool mismatch = false, beyond = false;
	const char *port = argv[1], *colon;
	FILE *rec = NULL;
	char buf[65536];
	int ls, c, s, one = 1;

	signal(SIGPIPE, SIG_IGN); /* a peer that hangs up ends the copy, not the proxy */
	if (argc != 5) {
		fprintf(stderr, "usage: ft_proxy [ADDR:]PORT|- TARGET flip N|record FILE|replay "
				"FILE|mismatch N|disk-beyond N\n");
		return 2;
	}
	if (!strcmp(argv[3], "replay")) {
		FILE *f = fopen(argv[4], "rb");
		size_t n;

		s = connect_to(argv[2]);
		if (!f || s < 0)
			return 1;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			if (write_all(s, buf, n) < 0)
				break;
		fclose(f);
		while (read(s, buf, sizeof(buf)) > 0)
			;
		close(s);
		return 0;
	}
	if (!strcmp(argv[3], "flip"))
		flip_at = atol(argv[4]);
	else if (!strcmp(argv[3], "mismatch"))
		mismatch = true, acks.rewrite_at = atol(argv[4]);
	else if (!strcmp(argv[3], "disk-beyond"))
		beyond = true, disks.rewrite_at = atol(argv[4]);
	else if (!strcmp(argv[3], "record") && !(rec = fopen(argv[4], "wb")))
		return 1;
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	colon = strrchr(port, ':');
	if (colon) {
		char host[64];

		snprintf(host, sizeof(host), "%.*s", (int)(colon - port), port);
		if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
			fprintf(stderr, "ft_proxy: '%s' is not an IPv4 address\n", host);
			return 2;
		}
		port = colon + 1;
	}
	sa.sin_port = htons((uint16_t)atoi(port));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0) {
		fprintf(stderr, "ft_proxy: cannot listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
again:
	c = accept(ls, NULL, NULL);
	s = c < 0 ? -1 : connect_to(argv[2]);
	if (s < 0)
		return 1;
	acks.len = 0;
	disks.len = 0;
	/*
	 * A relay: an end's close (EOF) is passed on as a half-close, and the
	 * other direction goes on until its end closes too. Closing both at the
	 * first EOF would reset the connection under a peer that has not read
	 * all yet (a secondary with a goodbye queued behind its epochs).
	 */
	for (bool c_eof = false, s_eof = false; !c_eof || !s_eof;) {
		struct pollfd p[2] = { { .fd = c_eof ? -1 : c, .events = POLLIN },
				       { .fd = s_eof ? -1 : s, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			return 1;
		if (p[0].revents) {
			n = read(c, buf, sizeof(buf));
			if (n < 0)
				break;
			if (n == 0) {
				c_eof = true;
				shutdown(s, SHUT_WR);
				continue;
			}
			if (flip_at >= seen && flip_at < seen + n)
				buf[flip_at - seen] ^= 1;
			seen += n;
			if (rec && seen - n < RECORD_MAX) /* the handshake and a start suffice */
				fwrite(buf, 1, (size_t)n, rec);
			if (beyond ? frames_forward(&disks, s, buf, (size_t)n) < 0
				   : write_all(s, buf, (size_t)n) < 0)
				break;
		}
		if (p[1].revents) {
			n = read(s, buf, sizeof(buf));
			if (n < 0)
				break;
			if (n == 0) {
				s_eof = true;
				shutdown(c, SHUT_WR);
				continue;
			}
			if (mismatch ? frames_forward(&acks, c, buf, (size_t)n) < 0
				     : write_all(c, buf, (size_t)n) < 0)
				break;
		}
	}
	if (mismatch || beyond) {
		close(c);
		close(s);
		goto again;
	}
	if (rec)
		fclose(rec);
	return 0;
}
