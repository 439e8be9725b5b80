// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/control.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "proto/link.h"

#define REQUEST_MAX 512
#define CLIENTS_MAX 32
/* Bytes of events a subscriber may leave unread beyond its socket buffer (~1000 lines). */
#define EVENTS_QUEUED_MAX (64u << 10)
/* A client that has not sent its request within this long gives its slot up. */
#define CLIENT_IDLE_NS (5 * NS_PER_S)

struct client;

struct control {
	struct netloop *nl;
	struct listener *ls;
	control_fn fn;
	void *opaque;
	char path[108];
	struct client *clients[CLIENTS_MAX];
	struct client *later; /* waiting for control_answer() */
};

struct client {
	struct control *ctl; /* NULL once the control socket is closed */
	int slot;
	struct link *link;
	char req[REQUEST_MAX + 1]; /* the line, its newline, a NUL */
	size_t have;
	struct request parsed;
	bool answered;
	bool events; /* subscribed: stays open */
	uint64_t accepted_ns;
	uint8_t rbuf[REQUEST_MAX];
};

static void client_send_line(struct client *cl, struct json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(text);
	char *line = malloc(len + 2);

	if (!line)
		return;
	memcpy(line, text, len);
	line[len] = '\n';
	link_send_copy(cl->link, line, len + 1);
	free(line);
}

static void client_answer(struct client *cl, struct json_object *reply)
{
	cl->answered = true;
	client_send_line(cl, reply);
	json_object_put(reply);
	link_close_after_send(cl->link);
}

static void answer_error(struct client *cl, const char *fmt, const char *arg)
{
	struct json_object *reply = json_object_new_object();
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg);
	json_object_object_add(reply, "ok", json_object_new_boolean(0));
	json_object_object_add(reply, "error", json_object_new_string(msg));
	client_answer(cl, reply);
}

/* An event line for this client alone: {"time_ms":..., "event":name}. */
static struct json_object *client_event(const char *name)
{
	struct json_object *ev = json_object_new_object();
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_object_add(ev, "time_ms",
			       json_object_new_uint64((uint64_t)ts.tv_sec * 1000 +
						      (uint64_t)ts.tv_nsec / NS_PER_MS));
	json_object_object_add(ev, "event", json_object_new_string(name));
	return ev;
}

/*
 * `events --now`: {"event":"state","status":{...}}, the object `status`
 * answers (without "ok"). Built by the same handler in the same turn of the
 * owner thread that subscribed the client: no event can fall between the
 * state it shows and the first change that follows.
 */
static void client_send_state(struct client *cl)
{
	struct request status = { .kind = REQ_STATUS, .text = "status" };
	struct json_object *ev = client_event("state"), *st = json_object_new_object(), *err;
	int r = cl->ctl->fn(cl->ctl->opaque, &status, st);

	if (r == 0) {
		json_object_object_add(ev, "status", st);
	} else {
		/* No role refuses `status`; should one, say so rather than show nothing. */
		if (json_object_object_get_ex(st, "error", &err))
			json_object_object_add(ev, "error", json_object_get(err));
		json_object_put(st);
	}
	client_send_line(cl, ev);
	json_object_put(ev);
}

static void client_recv_buf(void *opaque, uint8_t **ret_buf, size_t *ret_len)
{
	struct client *cl = opaque;

	*ret_buf = cl->rbuf;
	*ret_len = sizeof(cl->rbuf);
}

static int client_received(void *opaque, uint8_t *buf, size_t n)
{
	struct client *cl = opaque;
	struct json_object *reply;
	char *nl, err[256];
	int r;

	if (cl->answered || cl->events || !cl->ctl || cl->ctl->later == cl)
		return 0;
	if (n > sizeof(cl->req) - 1 - cl->have) {
		answer_error(cl, "request longer than %s bytes", "511");
		return 0;
	}
	memcpy(cl->req + cl->have, buf, n);
	cl->have += n;
	cl->req[cl->have] = 0;
	nl = memchr(cl->req, '\n', cl->have);
	if (!nl)
		return 0;
	if (request_parse(cl->req, (size_t)(nl - cl->req), &cl->parsed, err, sizeof(err)) < 0) {
		answer_error(cl, "%s", err);
		return 0;
	}
	if (cl->parsed.kind == REQ_EVENTS) {
		struct json_object *hello = client_event("subscribed");

		cl->events = true;
		client_send_line(cl, hello);
		json_object_put(hello);
		if (cl->parsed.now)
			client_send_state(cl);
		return 0;
	}
	/*
	 * One request at a time may wait for its answer (a switchover); status and
	 * metrics read and answer at once, so monitors (Pacemaker's, ftctl) see the
	 * node meanwhile.
	 */
	if (cl->ctl->later && cl->parsed.kind != REQ_STATUS && cl->parsed.kind != REQ_METRICS) {
		answer_error(cl, "busy: another request (%.64s) is in progress",
			     cl->ctl->later->parsed.text);
		return 0;
	}
	reply = json_object_new_object();
	r = cl->ctl->fn(cl->ctl->opaque, &cl->parsed, reply);
	if (r == CONTROL_LATER) {
		json_object_put(reply);
		cl->ctl->later = cl;
		return 0;
	}
	json_object_object_add(reply, "ok", json_object_new_boolean(r == 0));
	client_answer(cl, reply);
	return 0;
}

/* The control forgets the client (it is closing or gone). */
static void client_forget(struct client *cl)
{
	if (!cl->ctl)
		return;
	if (cl->ctl->later == cl)
		cl->ctl->later = NULL;
	cl->ctl->clients[cl->slot] = NULL;
	cl->ctl = NULL;
}

static void client_closed(void *opaque, int err)
{
	struct client *cl = opaque;

	/* Gone before (or after) its answer: nothing to tell anyone. */
	client_forget(cl);
	if (!cl->answered) {
		cl->answered = true;
		link_close(cl->link);
	}
}

static void client_released(void *opaque)
{
	client_forget(opaque);
	free(opaque);
}

static const struct link_ops client_ops = {
	.recv_buf = client_recv_buf,
	.received = client_received,
	.closed = client_closed,
	.released = client_released,
};

/*
 * Clients that connected but never finished a request: closed when a new one
 * arrives, so that idle connections cannot hold every slot (an `ftctl` always
 * sends its line at once).
 */
static void control_sweep(struct control *ctl, uint64_t now)
{
	for (int i = 0; i < CLIENTS_MAX; i++) {
		struct client *cl = ctl->clients[i];

		if (!cl || cl->answered || cl->events || ctl->later == cl ||
		    now - cl->accepted_ns < CLIENT_IDLE_NS)
			continue;
		log_warning("control: closed a client (%s) that sent no request within %llu s",
			    cl->link->peer, CLIENT_IDLE_NS / NS_PER_S);
		cl->answered = true;
		client_forget(cl);
		link_close(cl->link); /* may free cl */
	}
}

static void control_accepted(void *opaque, int fd, const struct sockaddr *sa)
{
	struct control *ctl = opaque;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *cl = NULL;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		log_warning("control: refused a client (pid %d, uid %u): only root or uid %u may "
			    "control this daemon",
			    (int)cred.pid, cred.uid, geteuid());
		close(fd);
		return;
	}
	control_sweep(ctl, clock_now_ns());
	for (int i = 0; i < CLIENTS_MAX; i++)
		if (!ctl->clients[i]) {
			cl = calloc(1, sizeof(*cl));
			if (cl)
				cl->slot = i;
			break;
		}
	if (!cl || link_open(ctl->nl, fd, NULL, &client_ops, cl, &cl->link) < 0) {
		if (!cl)
			log_warning(
				"control: refused a client (pid %d): %d clients at once at most",
				(int)cred.pid, CLIENTS_MAX);
		free(cl);
		close(fd);
		return;
	}
	cl->ctl = ctl;
	cl->accepted_ns = clock_now_ns();
	ctl->clients[cl->slot] = cl;
	snprintf(cl->link->peer, sizeof(cl->link->peer), "pid %d", (int)cred.pid);
}

/* A socket file nobody answers on is stale (a daemon that was killed). */
static bool socket_alive(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return alive;
}

int control_open(struct netloop *nl, const char *path, control_fn fn, void *opaque,
		 struct control **ret)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct control *ctl;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	mode_t old;
	int r;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("control socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			r = -errno;
			log_error("Cannot create %s for the control socket: %s", dir, strerror(-r));
			return r;
		}
	}
	if (socket_alive(&sun)) {
		log_error("Control socket %s is in use by another ftd (choose one with --control)",
			  path);
		return -EADDRINUSE;
	}
	unlink(path);
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->nl = nl;
	ctl->fn = fn;
	ctl->opaque = opaque;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	old = umask(0177); /* the socket is created 0600 */
	r = listener_open(nl, (struct sockaddr *)&sun, sizeof(sun), control_accepted, ctl,
			  &ctl->ls);
	umask(old);
	if (r < 0) {
		log_error("Cannot listen on control socket %s: %s", path, strerror(-r));
		free(ctl);
		return r;
	}
	*ret = ctl;
	return 0;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	for (int i = 0; i < CLIENTS_MAX; i++) {
		struct client *cl = ctl->clients[i];

		if (!cl)
			continue;
		client_forget(cl);
		if (!cl->answered) {
			cl->answered = true;
			link_close_after_send(cl->link);
		}
	}
	listener_close(ctl->ls);
	unlink(ctl->path);
	free(ctl);
}

void control_set_handler(struct control *ctl, control_fn fn, void *opaque)
{
	ctl->fn = fn;
	ctl->opaque = opaque;
}

bool control_waiting(const struct control *ctl)
{
	return ctl && ctl->later;
}

void control_answer(struct control *ctl, int r, struct json_object *reply)
{
	struct client *cl = ctl ? ctl->later : NULL;

	if (!cl) {
		json_object_put(reply);
		return;
	}
	ctl->later = NULL;
	json_object_object_add(reply, "ok", json_object_new_boolean(r == 0));
	client_answer(cl, reply);
}

void control_event(struct control *ctl, struct json_object *ev)
{
	for (int i = 0; ctl && i < CLIENTS_MAX; i++) {
		struct client *cl = ctl->clients[i];

		if (!cl || !cl->events)
			continue;
		if (link_queued(cl->link) > EVENTS_QUEUED_MAX) {
			/* A subscriber that does not read is dropped, not buffered forever. */
			client_forget(cl);
			cl->answered = true;
			link_close(cl->link);
			continue;
		}
		client_send_line(cl, ev);
	}
	json_object_put(ev);
}
