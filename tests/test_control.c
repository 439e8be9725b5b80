// SPDX-License-Identifier: MIT
/*
 * The control socket (daemon/control.c) in-process, with a stub request
 * handler, driven by raw Unix-socket clients the way a careless or hostile
 * client would: no VM. One thread: the test pumps the netloop between its
 * clients' reads and writes, as the owner thread's loop would.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/control.h"
#include "daemon/events.h"
#include "lib/clock.h"
#include "proto/link.h"

static struct netloop nl;
static struct control *ctl;
static char dir[64], sockdir[96], path[128];
#define BUSY "{\"ok\":false,\"error\":\"busy: another request (switchover) is in progress\"}\n"

static int calls;	      /* requests the stub handler saw */
static size_t metrics_len;    /* the size of the stub's `metrics` text */
static uint64_t interval_got; /* `set interval` as the handler saw it */

static int stub(void *opaque, const struct request *req, struct json_object *reply)
{
	calls++;
	switch (req->kind) {
	case REQ_STATUS:
		json_object_object_add(reply, "role", json_object_new_string("stub"));
		json_object_object_add(reply, "calls", json_object_new_int(calls));
		return 0;
	case REQ_METRICS: {
		char *text = malloc(metrics_len + 1);

		memset(text, 'm', metrics_len);
		text[metrics_len] = 0;
		json_object_object_add(reply, "text", json_object_new_string(text));
		free(text);
		return 0;
	}
	case REQ_SET_INTERVAL:
		interval_got = req->interval_ns;
		json_object_object_add(reply, "interval_us",
				       json_object_new_int64((int64_t)(req->interval_ns / 1000)));
		return 0;
	case REQ_SWITCHOVER:
		return CONTROL_LATER;
	default:
		json_object_object_add(reply, "error", json_object_new_string("refused"));
		return -EPERM;
	}
}

/* ---- the loop and the clients ----------------------------------------------- */

/* Runs the server's side for ms milliseconds. */
static void pump(unsigned int ms)
{
	uint64_t end = clock_now_ns() + ms * NS_PER_MS;

	do
		assert_int_equal(netloop_wait(&nl, NS_PER_MS), 0);
	while (clock_now_ns() < end);
}

static int cli_connect(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sun.sun_path, path);
	/* The listener's backlog is 16: wait for the server to accept when it is full. */
	for (int i = 0; connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0; i++) {
		assert_int_equal(errno, EAGAIN);
		assert_true(i < 1000);
		pump(1);
	}
	pump(2);
	return fd;
}

static void cli_send(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void cli_sends(int fd, const char *s)
{
	cli_send(fd, s, strlen(s));
}

/*
 * Reads what the server sends for up to ms, pumping it meanwhile: until EOF, or
 * with lines > 0 until that many newlines arrived. Returns the bytes read (NUL
 * terminated in buf); *eof tells whether the server closed.
 */
static size_t cli_read(int fd, char *buf, size_t cap, unsigned int ms, int lines, bool *eof)
{
	uint64_t end = clock_now_ns() + ms * NS_PER_MS;
	size_t have = 0;
	int seen = 0;

	*eof = false;
	for (;;) {
		ssize_t n = recv(fd, buf + have, cap - 1 - have, MSG_DONTWAIT);

		if (n == 0) {
			*eof = true;
			break;
		}
		if (n < 0) {
			assert_true(errno == EAGAIN || errno == ECONNRESET);
			if (errno == ECONNRESET) {
				*eof = true;
				break;
			}
			if (clock_now_ns() >= end)
				break;
			pump(1);
			continue;
		}
		for (ssize_t i = 0; i < n; i++)
			seen += buf[have + (size_t)i] == '\n';
		have += (size_t)n;
		assert_true(have < cap - 1);
		if (lines > 0 && seen >= lines)
			break;
	}
	buf[have] = 0;
	return have;
}

/* The whole answer (one line then EOF) to one request. */
static void expect_answer(int fd, const char *want)
{
	char buf[4096];
	bool eof;

	cli_read(fd, buf, sizeof(buf), 2000, 0, &eof);
	assert_string_equal(buf, want);
	assert_true(eof);
	close(fd);
}

static void request_expect(const char *req, const char *want)
{
	int fd = cli_connect();

	cli_sends(fd, req);
	expect_answer(fd, want);
}

/* Nothing from the server, and the connection still open. */
static void expect_silent_open(int fd)
{
	char buf[64];
	bool eof;

	assert_int_equal(cli_read(fd, buf, sizeof(buf), 20, 0, &eof), 0);
	assert_false(eof);
}

/* Closed by the server without a byte. */
static void expect_dropped(int fd)
{
	char buf[64];
	bool eof;

	assert_int_equal(cli_read(fd, buf, sizeof(buf), 2000, 0, &eof), 0);
	assert_true(eof);
}

static struct json_object *parse_line(const char *line)
{
	struct json_object *o = json_tokener_parse(line);

	assert_non_null(o);
	return o;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

/* ---- fixture ---------------------------------------------------------------- */

static int setup(void **state)
{
	calls = 0;
	metrics_len = 16;
	snprintf(dir, sizeof(dir), "/tmp/test_control.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sockdir, sizeof(sockdir), "%s/run", dir);
	snprintf(path, sizeof(path), "%s/t.sock", sockdir);
	if (netloop_init(&nl, false) < 0)
		return -1;
	return control_open(&nl, path, stub, NULL, &ctl) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	control_close(ctl);
	ctl = NULL;
	netloop_drain(&nl, 2 * NS_PER_S);
	assert_int_equal(nl.inflight, 0); /* every link and the listener freed */
	netloop_free(&nl);
	rmdir(sockdir);
	rmdir(dir);
	return 0;
}

/* ---- cases ------------------------------------------------------------------ */

static void test_request_answered(void **state)
{
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":1,\"ok\":true}\n");
	request_expect("discard\n", "{\"error\":\"refused\",\"ok\":false}\n");
	/* A line in pieces. */
	{
		int fd = cli_connect();

		cli_sends(fd, "sta");
		pump(10);
		expect_silent_open(fd);
		cli_sends(fd, "tus\n");
		expect_answer(fd, "{\"role\":\"stub\",\"calls\":3,\"ok\":true}\n");
	}
	/* Bytes after the line are ignored: one request per connection. */
	request_expect("status\nstatus\nmetrics\n",
		       "{\"role\":\"stub\",\"calls\":4,\"ok\":true}\n");
	assert_int_equal(calls, 4);
	/* A client that half-closes after its line still gets its answer. */
	{
		int fd = cli_connect();

		cli_sends(fd, "status\n");
		shutdown(fd, SHUT_WR);
		expect_answer(fd, "{\"role\":\"stub\",\"calls\":5,\"ok\":true}\n");
	}
	/* The handler can be swapped (a promoted secondary answers as a primary). */
	control_set_handler(ctl, stub, &calls);
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":6,\"ok\":true}\n");
}

static void test_line_limit(void **state)
{
	char line[1024];
	int fd;

	/* 511 bytes of printable ASCII, the documented maximum, reach the handler. */
	memset(line, '0', sizeof(line));
	memcpy(line, "set interval ", 13);
	memcpy(line + 508, "5ms\n", 4);
	fd = cli_connect();
	cli_send(fd, line, 512);
	expect_answer(fd, "{\"interval_us\":5000,\"ok\":true}\n");
	assert_int_equal(interval_got, 5 * NS_PER_MS);

	/* 512 bytes and the newline: refused, the handler never sees it. */
	memset(line, 'x', sizeof(line));
	line[512] = '\n';
	fd = cli_connect();
	cli_send(fd, line, 513);
	expect_answer(fd, "{\"ok\":false,\"error\":\"request longer than 511 bytes\"}\n");

	/* No newline at all: refused as soon as the limit is passed. */
	fd = cli_connect();
	cli_send(fd, line, 600);
	expect_answer(fd, "{\"ok\":false,\"error\":\"request longer than 511 bytes\"}\n");

	/* The same in small pieces. */
	fd = cli_connect();
	for (int i = 0; i < 5; i++) {
		cli_send(fd, line, 100);
		pump(2);
	}
	expect_silent_open(fd);
	cli_send(fd, line, 100);
	expect_answer(fd, "{\"ok\":false,\"error\":\"request longer than 511 bytes\"}\n");
	assert_int_equal(calls, 1);
}

static void test_bad_bytes(void **state)
{
	static const char *const bad[] = { "sta\001tus\n", "status\r\n", "\377\n", "\tstatus\n" };
	const char *want = "{\"ok\":false,\"error\":\"request is not a line of printable text\"}\n";
	int fd;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		request_expect(bad[i], want);
	/* A NUL byte inside the line. */
	fd = cli_connect();
	cli_send(fd, "st\0atus\n", 8);
	expect_answer(fd, want);
	/* An empty line is an unknown request. */
	request_expect("\n",
		       "{\"ok\":false,\"error\":\"unknown request '' (known: status, metrics, "
		       "events [--now], failover [--force], switchover, protect --peer "
		       "HOST:PORT [--tls-peer NAME], set interval DURATION|auto, discard)\"}\n");
	request_expect("STATUS\n", "{\"ok\":false,\"error\":\"unknown request 'STATUS' (known: "
				   "status, metrics, events [--now], failover [--force], "
				   "switchover, protect --peer HOST:PORT [--tls-peer NAME], set "
				   "interval DURATION|auto, discard)\"}\n");
	assert_int_equal(calls, 0);
}

static void test_connect_and_close(void **state)
{
	/* Far more than the slots: each gives its slot back. */
	for (int i = 0; i < 100; i++) {
		int fd = cli_connect();

		if (i % 2)
			cli_sends(fd, "stat"); /* half a line, then gone */
		close(fd);
		pump(1);
	}
	pump(10);
	assert_int_equal(calls, 0);
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":1,\"ok\":true}\n");
}

static void test_many_clients(void **state)
{
	int fd[32], extra, again;

	for (int i = 0; i < 32; i++)
		fd[i] = cli_connect();
	/* The 33rd is closed at once, without an answer. */
	extra = cli_connect();
	expect_dropped(extra);
	close(extra);
	for (int i = 0; i < 32; i++)
		expect_silent_open(fd[i]);
	/* The ones inside are served. */
	cli_sends(fd[7], "status\n");
	expect_answer(fd[7], "{\"role\":\"stub\",\"calls\":1,\"ok\":true}\n");
	fd[7] = -1;
	pump(5);
	/* Its slot is free again. */
	again = cli_connect();
	cli_sends(again, "status\n");
	expect_answer(again, "{\"role\":\"stub\",\"calls\":2,\"ok\":true}\n");
	for (int i = 0, n = 3; i < 32; i++)
		if (fd[i] >= 0) {
			char want[64];

			snprintf(want, sizeof(want),
				 "{\"role\":\"stub\",\"calls\":%d,\"ok\":true}\n", n++);
			cli_sends(fd[i], "status\n");
			expect_answer(fd[i], want);
		}
	assert_int_equal(calls, 33);
}

static void test_idle_clients(void **state)
{
	uint64_t t0 = clock_now_ns();
	int idle = cli_connect(), half = cli_connect(), sub = cli_connect(), wait = cli_connect();
	int c;
	char buf[512];
	bool eof;

	cli_sends(half, "status"); /* no newline, ever */
	cli_sends(sub, "events\n");
	cli_read(sub, buf, sizeof(buf), 1000, 1, &eof);
	assert_non_null(strstr(buf, "\"event\":\"subscribed\"}\n"));
	cli_sends(wait, "switchover\n");
	pump(20);
	assert_true(control_waiting(ctl));

	/* A new client before CLIENT_IDLE_NS (5 s) sweeps nobody. */
	c = cli_connect();
	cli_sends(c, "discard\n");
	expect_answer(c, BUSY);
	expect_silent_open(idle);
	expect_silent_open(half);

	/* Past 5 s they are still there while no client arrives: the sweep runs on accept. */
	while (clock_now_ns() - t0 < 5 * NS_PER_S + 100 * NS_PER_MS)
		pump(10);
	expect_silent_open(idle);
	expect_silent_open(half);

	/* The next client to connect has them closed, without a word. */
	c = cli_connect();
	expect_dropped(idle);
	expect_dropped(half);
	cli_sends(c, "discard\n");
	expect_answer(c, BUSY);
	assert_int_equal(calls, 1);
	/* A subscriber and a request waiting for its answer are not idle. */
	expect_silent_open(sub);
	assert_true(control_waiting(ctl));
	expect_silent_open(wait);
	control_answer(ctl, 0, json_object_new_object());
	expect_answer(wait, "{\"ok\":true}\n");
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":2,\"ok\":true}\n");
	close(idle);
	close(half);
	close(sub);
}

static void test_never_reads_answer(void **state)
{
	int stuck = cli_connect(), c;
	size_t total = 0;
	uint64_t t;
	char *buf;
	bool eof;

	/* An answer far above the socket buffer (about 208 KiB), never read. */
	metrics_len = 600000;
	cli_sends(stuck, "metrics\n");
	t = clock_now_ns();
	pump(50);
	assert_true(clock_now_ns() - t < 500 * NS_PER_MS); /* the server did not block */
	/* Others are served meanwhile. */
	c = cli_connect();
	cli_sends(c, "status\n");
	expect_answer(c, "{\"role\":\"stub\",\"calls\":2,\"ok\":true}\n");
	/* The answer arrives whole once the client reads, then EOF. */
	buf = malloc(1 << 20);
	total = cli_read(stuck, buf, 1 << 20, 5000, 0, &eof);
	assert_true(eof);
	assert_int_equal(total, strlen("{\"text\":\"\",\"ok\":true}\n") + 600000);
	assert_memory_equal(buf, "{\"text\":\"mmm", 12);
	assert_string_equal(buf + total - 14, "m\",\"ok\":true}\n");
	free(buf);
	close(stuck);

	/* A client that goes away with its answer unsent costs nothing either. */
	stuck = cli_connect();
	cli_sends(stuck, "metrics\n");
	pump(20);
	close(stuck);
	pump(20);
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":4,\"ok\":true}\n");
}

static void test_events(void **state)
{
	int a = cli_connect(), b = cli_connect();
	struct json_object *o, *st, *v;
	char buf[4096], *nl2;
	bool eof;

	cli_sends(a, "events\n");
	cli_read(a, buf, sizeof(buf), 1000, 1, &eof);
	o = parse_line(buf);
	assert_int_equal(json_object_object_length(o), 2);
	assert_string_equal(jstr(o, "event"), "subscribed");
	assert_true(json_object_object_get_ex(o, "time_ms", &v));
	assert_true(json_object_get_uint64(v) > 1600000000000ULL);
	json_object_put(o);

	cli_sends(b, "events --now\n");
	cli_read(b, buf, sizeof(buf), 1000, 2, &eof);
	nl2 = strchr(buf, '\n');
	assert_non_null(nl2);
	o = parse_line(nl2 + 1);
	assert_string_equal(jstr(o, "event"), "state");
	assert_true(json_object_object_get_ex(o, "status", &st));
	assert_string_equal(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN),
			    "{\"role\":\"stub\",\"calls\":1}");
	json_object_put(o);
	assert_int_equal(calls, 1);

	/* Anything a subscriber sends after its line is ignored. */
	cli_sends(a, "status\nmetrics\n");
	pump(10);
	assert_int_equal(calls, 1);

	event_emit(ctl, "peer-lost", "reason", "test", "checkpoint", NULL, NULL);
	for (int fd = a; fd >= 0; fd = fd == a ? b : -1) {
		cli_read(fd, buf, sizeof(buf), 1000, 1, &eof);
		assert_false(eof);
		o = parse_line(buf);
		assert_string_equal(jstr(o, "event"), "peer-lost");
		assert_string_equal(jstr(o, "reason"), "test");
		assert_true(json_object_object_get_ex(o, "checkpoint", &v));
		assert_null(v);
		json_object_put(o);
	}
	/* A subscriber that leaves is forgotten; the other goes on. */
	close(a);
	pump(10);
	event_emit(ctl, "frozen", NULL);
	cli_read(b, buf, sizeof(buf), 1000, 1, &eof);
	assert_non_null(strstr(buf, "\"event\":\"frozen\"}\n"));
	/* Closing the control socket ends the stream. */
	control_close(ctl);
	ctl = NULL;
	expect_dropped(b);
	close(b);
	assert_int_equal(access(path, F_OK), -1); /* the socket file is gone */
	event_emit(NULL, "frozen", NULL);	  /* a NULL control is accepted */
}

static void test_events_slow_reader(void **state)
{
	enum { EVENTS = 8000 }; /* well past a socket buffer and EVENTS_QUEUED_MAX */
	int fast = cli_connect(), slow = cli_connect(), fast_lines = 0, slow_lines = 0;
	char buf[1 << 16];
	bool eof = false, slow_eof = false;
	char last = 0;
	size_t n;

	cli_sends(fast, "events\n");
	cli_sends(slow, "events\n");
	pump(10);
	cli_read(fast, buf, sizeof(buf), 1000, 1, &eof); /* subscribed */
	for (int i = 0; i < EVENTS; i++) {
		event_emit(ctl, "sync-progress", "pages", "123456", "remaining", "654321", NULL);
		if (i % 8 == 7) {
			pump(1);
			n = cli_read(fast, buf, sizeof(buf), 0, 0, &eof);
			for (size_t j = 0; j < n; j++)
				fast_lines += buf[j] == '\n';
			assert_false(eof);
		}
	}
	/* The reader got every event. */
	while (fast_lines < EVENTS) {
		n = cli_read(fast, buf, sizeof(buf), 1000, 0, &eof);
		assert_true(n > 0);
		for (size_t j = 0; j < n; j++)
			fast_lines += buf[j] == '\n';
	}
	assert_int_equal(fast_lines, EVENTS);
	/* The one that never read was dropped: what it can still read ends in EOF. */
	while (!slow_eof) {
		n = cli_read(slow, buf, sizeof(buf), 2000, 0, &slow_eof);
		assert_true(n > 0 || slow_eof);
		for (size_t j = 0; j < n; j++)
			slow_lines += buf[j] == '\n';
		if (n)
			last = buf[n - 1];
	}
	print_message("slow subscriber: %d lines (the subscribed line included) of %d, then "
		      "dropped\n",
		      slow_lines, EVENTS + 1);
	assert_true(slow_lines > 1);
	assert_true(slow_lines < EVENTS);
	/* Lines are whole up to the drop: the last byte read ends a line. */
	assert_int_equal(last, '\n');
	close(slow);
	close(fast);
}

static void test_answer_later(void **state)
{
	int a = cli_connect(), b, s;

	assert_false(control_waiting(ctl));
	/* Nothing waits: an answer is dropped (and freed). */
	control_answer(ctl, 0, json_object_new_object());
	control_answer(NULL, 0, json_object_new_object());

	cli_sends(a, "switchover\n");
	pump(20);
	expect_silent_open(a);
	assert_true(control_waiting(ctl));
	/* A second one while the first waits: refused, the handler not asked. */
	request_expect("switchover\n",
		       "{\"ok\":false,\"error\":\"busy: another request (switchover) is in "
		       "progress\"}\n");
	assert_int_equal(calls, 1);
	/* So is any other request that changes something ... */
	request_expect("discard\n", "{\"ok\":false,\"error\":\"busy: another request (switchover) "
				    "is in progress\"}\n");
	assert_int_equal(calls, 1);
	/* ... but status and metrics are answered (monitors watch the node), and events taken. */
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":2,\"ok\":true}\n");
	assert_int_equal(calls, 2);
	s = cli_connect();
	cli_sends(s, "events\n");
	{
		char buf[256];
		bool eof;

		cli_read(s, buf, sizeof(buf), 1000, 1, &eof);
		assert_non_null(strstr(buf, "\"event\":\"subscribed\"}\n"));
	}
	/* The waiting client's further bytes are ignored. */
	cli_sends(a, "status\n");
	pump(10);
	assert_int_equal(calls, 2);
	{
		struct json_object *r = json_object_new_object();

		json_object_object_add(r, "checkpoint", json_object_new_int(7));
		control_answer(ctl, 0, r);
	}
	assert_false(control_waiting(ctl));
	expect_answer(a, "{\"checkpoint\":7,\"ok\":true}\n");

	/* A failed one says so. */
	a = cli_connect();
	cli_sends(a, "switchover\n");
	pump(10);
	assert_true(control_waiting(ctl));
	{
		struct json_object *r = json_object_new_object();

		json_object_object_add(r, "error", json_object_new_string("not acknowledged"));
		control_answer(ctl, -EIO, r);
	}
	expect_answer(a, "{\"error\":\"not acknowledged\",\"ok\":false}\n");

	/* A waiting client that goes away: nothing waits any more, the next may. */
	a = cli_connect();
	cli_sends(a, "switchover\n");
	pump(10);
	assert_true(control_waiting(ctl));
	close(a);
	pump(10);
	assert_false(control_waiting(ctl));
	control_answer(ctl, 0, json_object_new_object()); /* late: dropped */
	b = cli_connect();
	cli_sends(b, "switchover\n");
	pump(10);
	assert_true(control_waiting(ctl));
	assert_int_equal(calls, 5);
	/* Closed while waiting: EOF, no answer. */
	control_close(ctl);
	ctl = NULL;
	expect_dropped(b);
	close(b);
	expect_dropped(s);
	close(s);
}

/*
 * A client that half-closes (shutdown(SHUT_WR), as `socat` or `nc -N` do at the
 * end of their input) after its line. An answer given at once arrives
 * (test_request_answered); one given later, and an event stream, do not: the
 * server takes the read side's EOF for the client being gone. This is what
 * the code does today (ftctl never half-closes).
 */
static void test_half_close(void **state)
{
	int a = cli_connect(), s = cli_connect();
	char buf[256];
	bool eof;

	cli_sends(a, "switchover\n");
	shutdown(a, SHUT_WR);
	pump(20);
	assert_int_equal(calls, 1);
	assert_false(control_waiting(ctl));
	expect_dropped(a);
	close(a);

	cli_sends(s, "events\n");
	shutdown(s, SHUT_WR);
	cli_read(s, buf, sizeof(buf), 1000, 0, &eof);
	assert_true(eof);
	assert_non_null(strstr(buf, "\"event\":\"subscribed\"}\n"));
	assert_int_equal(strchr(buf, '\n') - buf + 1, (long)strlen(buf)); /* that line alone */
	close(s);
}

static void test_socket_file(void **state)
{
	struct control *other = NULL;
	struct stat st;
	mode_t old;
	int fd;

	assert_int_equal(stat(sockdir, &st), 0); /* created by control_open */
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, geteuid());
	/* The umask is given back. */
	old = umask(022);
	assert_int_equal(old, umask(old));
	/* A live socket is not taken over. */
	assert_int_equal(control_open(&nl, path, stub, NULL, &other), -EADDRINUSE);
	assert_null(other);
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":1,\"ok\":true}\n");
	/* A too long path. */
	{
		char longp[200];

		memset(longp, 'a', sizeof(longp));
		longp[0] = '/';
		longp[sizeof(longp) - 1] = 0;
		assert_int_equal(control_open(&nl, longp, stub, NULL, &other), -ENAMETOOLONG);
	}
	/* Closed: the file is gone. A stale socket file (no listener) is replaced. */
	control_close(ctl);
	ctl = NULL;
	assert_int_equal(access(path, F_OK), -1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		strcpy(sun.sun_path, path);
		assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	}
	close(fd);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(control_open(&nl, path, stub, NULL, &ctl), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	request_expect("status\n", "{\"role\":\"stub\",\"calls\":2,\"ok\":true}\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_request_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_and_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_reads_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_slow_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_later, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_clients, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
