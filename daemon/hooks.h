/* SPDX-License-Identifier: MIT */
/*
 * Operator hooks, as clusters already use them: a fence command that must
 * succeed before a secondary promotes (a Pacemaker fence agent, an IPMI power
 * off), and a notify command told about role changes (like keepalived's notify
 * scripts). Both run as `/bin/sh -c COMMAND` with FTD_* variables in the
 * environment, no inherited descriptors beyond stdin/stdout/stderr, default
 * signal dispositions, an empty signal mask, and a process group of their own.
 */
#ifndef RINGFT_DAEMON_HOOKS_H
#define RINGFT_DAEMON_HOOKS_H

#include <stdint.h>

/*
 * Runs cmd and waits at most timeout_ns. env is a NULL-ended list of
 * "NAME=value" strings added to the environment. Returns the exit status
 * (0..255), 128 + the signal that ended it, -ETIMEDOUT (it was killed, with
 * every process of its group), or -errno when it could not be started.
 */
int hook_run(const char *cmd, const char *const *env, uint64_t timeout_ns);
/* Starts cmd without waiting for it; hook_reap() collects it. Returns 0 or -errno. */
int hook_spawn(const char *cmd, const char *const *env);
/* Collects finished hook_spawn() children (call now and then). */
void hook_reap(void);

#endif
