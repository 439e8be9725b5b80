// SPDX-License-Identifier: MIT
/*
 * bench/wire: what the replication transport carries over loopback TCP for
 * large sends, against plain blocking send() on the same connection type, side
 * by side in one run. A forked child reads everything with plain recv() into
 * a 1 MiB buffer; the parent sends TOTAL bytes from a 64 MiB buffer
 *   - with send(), 1 MiB at a time (the reference),
 *   - through proto/link.c (io_uring SENDMSG, 256 iovecs of 4 KiB per message,
 *     as an epoch's page frames are),
 *   - the same with IORING_OP_SENDMSG_ZC.
 * Each mode runs REPS times, alternating; it prints the median and worst MB/s
 * and writes CSV. No guest, no KVM.
 */
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "proto/link.h"

#define BUF_BYTES  (64u << 20)
#define MSG_IOVS   256u
#define PAGE	   4096u
#define MSG_BYTES  (MSG_IOVS * PAGE)
#define MAX_QUEUED 4 /* messages in the link's queue at once (like staging slots) */

static uint8_t *buf;

/* The child: accept one connection at a time and drain it. */
static void drain(int ls)
{
	static uint8_t rbuf[1 << 20];

	for (;;) {
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			_exit(0);
		while (recv(fd, rbuf, sizeof(rbuf), 0) > 0)
			;
		close(fd);
	}
}

static int connect_to(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static double run_send(const struct sockaddr_in *sa, uint64_t total)
{
	int fd = connect_to(sa);
	uint64_t t0 = clock_now_ns(), sent = 0;

	while (sent < total) {
		ssize_t n = send(fd, buf + sent % BUF_BYTES, 1u << 20, 0);

		if (n <= 0) {
			perror("send");
			exit(1);
		}
		sent += (uint64_t)n;
	}
	close(fd);
	return (double)sent / ((double)(clock_now_ns() - t0) / 1e9) / 1e6;
}

struct lmsg {
	struct link_msg m;
	struct iovec iov[MSG_IOVS];
	bool busy;
};

static unsigned int nr_busy;
static int link_err;

static void lmsg_done(struct link_msg *m, int err)
{
	((struct lmsg *)m)->busy = false;
	nr_busy--;
	if (err)
		link_err = err;
}

static void ign_buf(void *o, uint8_t **b, size_t *l)
{
	static uint8_t rb[4096];

	*b = rb;
	*l = sizeof(rb);
}
static int ign_recv(void *o, uint8_t *b, size_t n)
{
	return 0;
}
static void ign_closed(void *o, int err)
{
	if (err)
		link_err = err;
}

static const struct link_ops ops = { .recv_buf = ign_buf,
				     .received = ign_recv,
				     .closed = ign_closed };

static double run_link(const struct sockaddr_in *sa, uint64_t total, bool zc)
{
	static struct lmsg msgs[MAX_QUEUED];
	struct netloop nl;
	struct link *l;
	uint64_t t0, queued = 0, off = 0;

	if (netloop_init(&nl, zc) < 0 || link_open(&nl, connect_to(sa), NULL, &ops, NULL, &l) < 0) {
		fprintf(stderr, "wire: io_uring setup failed\n");
		exit(1);
	}
	t0 = clock_now_ns();
	while (queued < total || nr_busy) {
		for (unsigned int i = 0; i < MAX_QUEUED && queued < total; i++) {
			struct lmsg *m = &msgs[i];

			if (m->busy)
				continue;
			for (unsigned int k = 0; k < MSG_IOVS; k++) {
				m->iov[k] = (struct iovec){ buf + off, PAGE };
				off = (off + PAGE) % BUF_BYTES;
			}
			m->m = (struct link_msg){ .iov = m->iov,
						  .nr_iov = MSG_IOVS,
						  .zero_copy = true,
						  .done = lmsg_done };
			m->busy = true;
			nr_busy++;
			queued += MSG_BYTES;
			link_send(l, &m->m);
		}
		netloop_wait(&nl, 100000000ULL);
		if (link_err) {
			fprintf(stderr, "wire: link failed: %s\n", strerror(-link_err));
			exit(1);
		}
	}
	t0 = clock_now_ns() - t0;
	link_close(l);
	while (nl.inflight)
		netloop_wait(&nl, 10000000ULL);
	netloop_free(&nl);
	return (double)queued / ((double)t0 / 1e9) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "send() 1 MiB", "link SENDMSG", "link SENDMSG_ZC" };
	const char *csv = argc > 1 ? argv[1] : "wire.csv";
	uint64_t total = 2ULL << 30;
	enum { REPS = 5, MODES = 3 };
	double mbps[MODES][REPS];
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	pid_t child;
	FILE *f;

	buf = malloc(BUF_BYTES);
	if (!buf || ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(ls, 4) < 0 || getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
		perror("wire: setup");
		return 1;
	}
	for (size_t i = 0; i < BUF_BYTES; i++)
		buf[i] = (uint8_t)(i * 131);
	child = fork();
	if (child == 0)
		drain(ls);
	close(ls);
	printf("bench/wire: %llu MiB over 127.0.0.1 per run, %d runs per mode, alternating\n",
	       (unsigned long long)(total >> 20), REPS);
	for (int r = 0; r < REPS; r++) {
		mbps[0][r] = run_send(&sa, total);
		mbps[1][r] = run_link(&sa, total, false);
		mbps[2][r] = run_link(&sa, total, true);
	}
	kill(child, SIGTERM);
	waitpid(child, NULL, 0);
	f = fopen(csv, "w");
	if (f)
		fprintf(f, "mode,run,mbps\n");
	printf("%-18s %10s %10s\n", "mode", "median", "worst");
	for (int m = 0; m < MODES; m++) {
		if (f)
			for (int r = 0; r < REPS; r++)
				fprintf(f, "%s,%d,%.0f\n", names[m], r, mbps[m][r]);
		qsort(mbps[m], REPS, sizeof(double), cmp_double);
		printf("%-18s %7.0f MB/s %7.0f MB/s\n", names[m], mbps[m][REPS / 2], mbps[m][0]);
	}
	if (f) {
		fclose(f);
		printf("CSV written to %s\n", csv);
	}
	return 0;
}
