/* SPDX-License-Identifier: MIT */
/*
 * ftctl's pieces: finding ftd instances and asking them (instance.c), and
 * printing their answers for people (print.c). The command line is ftctl.c.
 */
#ifndef RINGFT_CTL_FTCTL_H
#define RINGFT_CTL_FTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include <json-c/json.h>

/* Where ftd instances put their control sockets: NAME.sock (FTCTL_RUN_DIR overrides). */
#define FTCTL_RUN_DIR "/run/ftd"

enum {
	EXIT_REFUSED = 1, /* the daemon answered with an error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* no daemon on the socket, or not allowed to talk to it */
};

/* One ftd: its name (the socket's file name without .sock) and its socket. */
struct instance {
	char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The directory scanned for NAME.sock: $FTCTL_RUN_DIR, else /run/ftd. */
const char *instance_dir(void);
/* NAME's socket in that directory. Returns 0, or -EINVAL (not a name: prints why). */
int instance_by_name(const char *name, struct instance *ret);
/* --socket PATH; its name is the file name without .sock. Returns 0 or -ENAMETOOLONG. */
int instance_by_path(const char *path, struct instance *ret);
/*
 * Every NAME.sock in the directory, sorted by name, daemon or not (a missing
 * directory holds none). Returns their count (malloc'ed *ret) or -errno.
 */
int instances_find(struct instance **ret);

/*
 * Connects and sends one request line. Returns the socket, or -errno:
 * -ECONNRESET when the daemon closed without taking it (SO_PEERCRED).
 */
int instance_send(const struct instance *in, const char *request);
/*
 * One request, its whole answer (malloc'ed, NUL-terminated) in *ret. Returns
 * 0 or -errno; -ECONNRESET: the daemon closed without answering.
 */
int instance_ask(const struct instance *in, const char *request, char **ret);
/* Whether err means that no daemon listens there (a stale socket, or none). */
bool instance_not_running(int err);
/* Why in is out of reach, one line on stderr, as "ftctl: ...". */
void instance_report(const struct instance *in, int err);

/* `ftctl status`, one screen modelled on `drbdsetup status` (name: NULL or a prefix). */
void print_status(const char *name, struct json_object *r);
/* One line of `ftctl events` for people: "HH:MM:SS.mmm event key=value ...". */
void print_event(struct json_object *ev);

/* Small readers of the daemon's JSON: "-" / 0 / false for what is absent. */
const char *jstr(struct json_object *o, const char *key);
uint64_t ju64(struct json_object *o, const char *key);
bool jbool(struct json_object *o, const char *key);
bool jhas(struct json_object *o, const char *key);

#endif
