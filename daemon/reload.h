/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP (what logrotate and `systemctl reload` send): the console file is
 * reopened, and the configuration is read again, file and command line as at
 * the start. What can change while the guest runs takes effect (the
 * checkpoint interval, timeouts, hooks, the cluster wait, the TLS files for
 * the next connection); every other option that changed is named in a
 * warning and keeps its value until ftd restarts. A file that no longer
 * parses changes nothing.
 */
#ifndef RINGFT_DAEMON_RELOAD_H
#define RINGFT_DAEMON_RELOAD_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "daemon/options.h"

struct ftd_process;

/* What a reload changed, for the role to apply (ftd_reload's return value). */
enum {
	RELOAD_INTERVAL = 1 << 0, /* interval (and interval auto, output-interval) */
	RELOAD_TIMEOUT = 1 << 1,
	RELOAD_TLS = 1 << 2, /* the process's TLS context was replaced */
};

/* main(): the options the process runs with, and the command line they came from. */
void ftd_reload_init(struct ftd_options *o, int argc, char **argv);

/*
 * Reopens pr's console and reads the configuration again into the options
 * given to ftd_reload_init (pr->o). Logs what it did and what it could not;
 * returns the RELOAD_* of what the role must apply, 0 if nothing.
 */
unsigned int ftd_reload(struct ftd_process *pr);
/* The same with the console on console_fd and the TLS context in *tls (NULL: none). */
unsigned int ftd_reload_files(int console_fd, SSL_CTX **tls);
/*
 * Their options part: `n` is the configuration read again, `o` the options
 * the process runs with. Every option fixed for the life of the process that
 * differs is logged as applying at the next start and stays; so does a swap
 * between TLS and the clear (`n`'s TLS files are set back to `o`'s); the
 * others are copied into `o`. Returns the RELOAD_INTERVAL and RELOAD_TIMEOUT
 * of what changed.
 */
unsigned int ftd_reload_options(struct ftd_options *o, struct ftd_options *n);

#endif
