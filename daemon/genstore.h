/* SPDX-License-Identifier: MIT */
/*
 * This node's guest identity and data generation on disk: STATE_DIR/generation
 * (--state-dir, default /var/lib/ftd/NAME), in the text form of
 * proto/generation.h. Written atomically: a temporary file, fsync, rename over
 * the old one, fsync of the directory; a crash leaves the old or the new
 * state, never a mix.
 */
#ifndef RINGFT_DAEMON_GENSTORE_H
#define RINGFT_DAEMON_GENSTORE_H

#include <stdint.h>

#include "proto/generation.h"

/* Loads the state: 0, -ENOENT when there is none yet, -EINVAL if unreadable, or -errno. */
int genstore_load(const char *dir, struct gen_state *ret);
/* Creates dir (0700) if needed and replaces the state. Returns 0 or -errno. */
int genstore_save(const char *dir, const struct gen_state *g);
/* Random bytes for UUIDs and tags (getrandom). Returns 0 or -errno. */
int genstore_random(void *buf, size_t len);
/* A new random generation tag, never 0. */
uint64_t genstore_tag(void);

#endif
