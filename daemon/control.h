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

#include <json-c/json.h>

struct netloop;
struct control;

/*
 * Fills *reply (a JSON object) for a request; returns 0, -EINVAL for an
 * unknown command, or another -errno after putting an "error" string in
 * *reply (a request it understood but refuses).
 */
typedef int (*control_fn)(void *opaque, const char *command, struct json_object *reply);

#define CONTROL_DIR "/run/ftd"

/*
 * Listens on `path`: creates its directory (0700) if missing, replaces a stale
 * socket, refuses one a live daemon answers on (-EADDRINUSE). Logs failures.
 */
int control_open(struct netloop *nl, const char *path, control_fn fn, void *opaque,
		 struct control **ret);
/* Stops listening, closes clients, removes the socket file. Accepts NULL. */
void control_close(struct control *c);

#endif
