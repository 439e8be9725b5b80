// SPDX-License-Identifier: MIT
/*
 * Events (daemon/events.h): how each role's state changes become events, and
 * how an event reaches `ftctl events` and the notify command. A switchover's
 * waiting `ftctl switchover` is answered here too, with its "switchover" event.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/events.h"
#include "daemon/hooks.h"
#include "daemon/role.h"
#include "lib/log.h"

/* --notify-command, told about every event but sync progress. */
static const char *notify_command;

#define EVENT_ENV_MAX 8

void event_set_notify(const char *cmd)
{
	notify_command = cmd;
}

void event_emit(struct control *ctl, const char *event, ...)
{
	struct json_object *ev = json_object_new_object();
	char env[EVENT_ENV_MAX][192];
	const char *envp[EVENT_ENV_MAX + 1];
	unsigned int n = 0;
	struct timespec ts;
	va_list ap;
	const char *k;

	clock_gettime(CLOCK_REALTIME, &ts);
	json_add_u64(ev, "time_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / NS_PER_MS);
	json_add_str(ev, "event", event);
	snprintf(env[n++], sizeof(env[0]), "FTD_EVENT=%s", event);
	va_start(ap, event);
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);

		json_add_str(ev, k, v);
		if (v && n < EVENT_ENV_MAX) {
			int at = snprintf(env[n], sizeof(env[0]), "FTD_");

			for (const char *c = k; *c && at < 40; c++)
				env[n][at++] = *c == '-' ? '_' : (char)(*c & ~0x20);
			snprintf(env[n] + at, sizeof(env[0]) - (size_t)at, "=%.140s", v);
			n++;
		}
	}
	va_end(ap);
	control_event(ctl, ev);
	if (!notify_command || !strcmp(event, "sync-progress"))
		return;
	for (unsigned int i = 0; i < n; i++)
		envp[i] = env[i];
	envp[n] = NULL;
	if (hook_spawn(notify_command, envp) < 0)
		log_warning("Cannot run the notify command for %s: %s", event, strerror(errno));
}

void ftd_primary_events(struct ftd_primary *a, uint64_t now)
{
	struct primary *p = a->p;
	char buf[32];

	if (p->state != a->last_state) {
		enum primary_state was = a->last_state;

		a->last_state = p->state;
		if (p->state == PRIMARY_HANDSHAKE)
			event_emit(a->pr->ctl, "peer-connected", "peer", p->cfg.peer_name, NULL);
		else if (p->state == PRIMARY_SYNCING)
			event_emit(a->pr->ctl, "sync-started", "peer", p->cfg.peer_name, NULL);
		else if (p->state == PRIMARY_PROTECTED) {
			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)p->first_checkpoint);
			event_emit(a->pr->ctl, "protected", "peer", p->cfg.peer_name, "checkpoint",
				   buf, NULL);
		} else if (p->state == PRIMARY_UNPROTECTED && was >= PRIMARY_HANDSHAKE &&
			   p->handover != HANDOVER_DONE)
			event_emit(a->pr->ctl, "peer-lost", "peer", p->cfg.peer_name, "reason",
				   p->last_drop, NULL);
	}
	if (p->state == PRIMARY_SYNCING && now - a->last_sync_event_ns >= NS_PER_S) {
		char sent[24], left[24];

		a->last_sync_event_ns = now;
		snprintf(sent, sizeof(sent), "%llu", (unsigned long long)p->st.sync_pages);
		snprintf(left, sizeof(left), "%llu", (unsigned long long)p->st.sync_remaining);
		event_emit(a->pr->ctl, "sync-progress", "pages", sent, "remaining", left, NULL);
	}
	if (control_waiting(a->pr->ctl) && p->handover >= HANDOVER_DONE) {
		struct json_object *r = json_object_new_object();
		int e = 0;

		if (p->handover == HANDOVER_DONE) {
			json_add_u64(r, "checkpoint", p->handover_epoch);
			json_add_str(r, "peer", p->cfg.peer_name);
		} else {
			json_add_str(r, "error", p->handover_error);
			e = p->handover == HANDOVER_FAILED ? -EAGAIN : -EIO;
		}
		event_emit(a->pr->ctl, "switchover", "phase",
			   p->handover == HANDOVER_DONE	    ? "done"
			   : p->handover == HANDOVER_FAILED ? "failed"
							    : "unknown",
			   "peer", p->cfg.peer_name, "error", e ? p->handover_error : NULL, NULL);
		control_answer(a->pr->ctl, e, r);
	}
	if (p->handover == HANDOVER_FAILED)
		p->handover = HANDOVER_NONE;
}

void ftd_secondary_events(struct ftd_secondary *sb, enum secondary_state was)
{
	struct secondary *s = sb->s;
	char ck[24];

	if (s->state == was)
		return;
	snprintf(ck, sizeof(ck), "%llu", (unsigned long long)s->replica.checkpoint);
	if (s->state == SECONDARY_SYNCING)
		event_emit(sb->pr->ctl, "peer-connected", "peer", secondary_peer(s), NULL);
	else if (s->state == SECONDARY_REPLICATING)
		event_emit(sb->pr->ctl, "replicating", "peer", secondary_peer(s), "checkpoint", ck,
			   NULL);
	else if (s->state == SECONDARY_WAITING)
		event_emit(sb->pr->ctl, "peer-lost", "checkpoint",
			   s->replica.has_checkpoint ? ck : NULL, NULL);
	else if (s->state == SECONDARY_ACTIVE)
		event_emit(sb->pr->ctl, "failover", "by", s->promoted_by, "checkpoint", ck, NULL);
}
