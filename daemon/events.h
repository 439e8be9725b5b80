/* SPDX-License-Identifier: MIT */
/*
 * What the outside world is told as things happen: one JSON line per event to
 * `ftctl events` subscribers, and the --notify-command with FTD_* variables.
 * The event names and their keys are documented in ctl/README.md.
 */
#ifndef RINGFT_DAEMON_EVENTS_H
#define RINGFT_DAEMON_EVENTS_H

#include <stdint.h>

#include "secondary/receiver.h"

struct ftd_primary;
struct control;
struct ftd_secondary;

/* --notify-command (NULL: none), told about every event but sync progress. */
void event_set_notify(const char *cmd);
/*
 * One event: a JSON line to `ftctl events` subscribers, and the notify
 * command with FTD_EVENT and FTD_<KEY> for each key/value pair (strings,
 * NULL-ended; a NULL value is left out).
 */
void event_emit(struct control *ctl, const char *event, ...);

/* Events from what changed on the primary since the last look; answers a switchover. */
void ftd_primary_events(struct ftd_primary *a, uint64_t now);
/* Secondary-side events from state changes since `was`. */
void ftd_secondary_events(struct ftd_secondary *sb, enum secondary_state was);

#endif
