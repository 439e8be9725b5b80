/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a Unix stream socket (mode 0600 in a 0700 directory) on
 * which `ftctl` asks the daemon one thing per connection. A request is one
 * line of text ("status", "metrics", "set interval 5ms"); the answer is one JSON object and the
 * connection closes. Peers are checked with SO_PEERCRED: only root or the daemon's own user. Served
 * by the owner thread through the same io_uring as replication, several clients at once; a
 * malformed request gets an error object.
 */
#ifndef RINGFT_DAEMON_CONTROL_H
#define RINGFT_DAEMON_CONTROL_H

#include <stdbool.h>

#include <json-c/json.h>

#include "daemon/request.h"

struct netloop;
struct control;

/*
 * Fills *reply (a JSON object) for a parsed request (never `events`, which the
 * control socket serves itself); returns 0, or -errno after putting an
 * "error" string in *reply (a request this role refuses).
 */
typedef int (*control_fn)(void *opaque, const struct request *req, struct json_object *reply);

/*
 * A handler that answers later (a switchover takes a round trip) returns
 * CONTROL_LATER, leaving *reply empty; control_answer() completes it. One
 * request at a time may wait.
 */
#define CONTROL_LATER 1

#define CONTROL_DIR "/run/ftd"

/*
 * Listens on `path`: creates its directory (0700) if missing, replaces a stale
 * socket, refuses one a live daemon answers on (-EADDRINUSE). Logs failures.
 */
int control_open(struct netloop *nl, const char *path, control_fn fn, void *opaque,
		 struct control **ret);
/* Stops listening, closes clients, removes the socket file. Accepts NULL. */
void control_close(struct control *c);
/* Requests go to fn from now on (a promoted secondary answers as a primary). */
void control_set_handler(struct control *c, control_fn fn, void *opaque);
/* Whether a request waits for control_answer(). */
bool control_waiting(const struct control *c);
/* Answers the waiting request with r (0 ok) and reply, which it takes. */
void control_answer(struct control *c, int r, struct json_object *reply);
/*
 * The `events` request keeps its client connected: every event is sent to each
 * such client as one JSON line. Takes ev; accepts a NULL control. `events
 * --now` first gets the answer to `status` from the handler, as a "state" event.
 */
void control_event(struct control *c, struct json_object *ev);

#endif
