// SPDX-License-Identifier: MIT
/*
 * ftctl: asks running ftd instances over their control sockets
 * (daemon/control.h) and prints the answers, short and human by default, the
 * daemon's JSON with --json. An instance is named as its systemd unit is,
 * ftd@NAME, whose socket is /run/ftd/NAME.sock (ctl/instance.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ftctl.h"

static void usage(FILE *out)
{
	fputs("Usage: ftctl [--socket PATH] status [NAME...] [--json]\n"
	      "       ftctl [--socket PATH] list [NAME...] [--json]\n"
	      "       ftctl [--socket PATH] metrics [NAME] [--json]\n"
	      "       ftctl [--socket PATH] start [NAME] [--json]\n"
	      "       ftctl [--socket PATH] failover [NAME] [--force] [--json]\n"
	      "       ftctl [--socket PATH] switchover [NAME] [--json]\n"
	      "       ftctl [--socket PATH] discard [NAME] [--json]\n"
	      "       ftctl [--socket PATH] protect [NAME] --peer HOST:PORT [--tls-peer NAME]"
	      " [--json]\n"
	      "       ftctl [--socket PATH] events [NAME] [--now] [--json]\n"
	      "       ftctl [--socket PATH] set interval DURATION|auto [NAME] [--json]\n"
	      "       ftctl [--socket PATH] raw REQUEST [NAME]   (send one request line as is)\n"
	      "       ftctl --version | --help\n"
	      "\n"
	      "Talks to running ftd instances over their control sockets. An instance is\n"
	      "named as its unit ftd@NAME: its socket is /run/ftd/NAME.sock (the directory:\n"
	      "$FTCTL_RUN_DIR if set). status and list without a NAME show every instance\n"
	      "found there; the other commands need a NAME unless exactly one is found.\n"
	      "--socket PATH talks to the ftd on PATH instead (with no NAME).\n"
	      "\n"
	      "  status    role, replication state, peer, versions, epoch, last acknowledged\n"
	      "            checkpoint and its age, interval, pause p50/p99, dirty pages per\n"
	      "            checkpoint, bytes on the wire, verification counts\n"
	      "  list      one line per instance: name, role, state\n"
	      "  metrics   Prometheus text format (ftd_checkpoints_total,\n"
	      "            ftd_checkpoint_pause_seconds, ftd_replication_bytes_total, ...)\n"
	      "  start     on a node waiting for an operator: boot the guest here\n"
	      "  failover  on a secondary: run the guest here from the last complete\n"
	      "            checkpoint; refused while the primary is connected (it may be\n"
	      "            alive) unless --force\n"
	      "  discard   on a secondary: its replica stops counting, so that a primary\n"
	      "            of another guest or an older generation may sync over it\n"
	      "            (refused while a primary is connected)\n"
	      "  switchover\n"
	      "            on the node running the guest: planned hand-over to its secondary\n"
	      "            (a final checkpoint, the guest stops here and runs there; nothing\n"
	      "            is lost or repeated); answers once it is done\n"
	      "  protect --peer HOST:PORT\n"
	      "            on the node running the guest (a promoted secondary included):\n"
	      "            sync to the ftd secondary at HOST:PORT and protect the guest;\n"
	      "            with TLS, --tls-peer NAME is the name its certificate must bear\n"
	      "            (needed on a promoted node whose ftd --tls-peer named its primary)\n"
	      "  events    one line per event as it happens (role change, peer connected or\n"
	      "            lost, sync progress, protected, switchover, failover, fenced)\n"
	      "            until the daemon exits or ftctl is interrupted; --now: the\n"
	      "            current state first (a `state` event), then the changes\n"
	      "  set interval DURATION|auto\n"
	      "            checkpoint interval of a primary from the next tick (1ms..60s;\n"
	      "            a bare number is seconds); auto: chosen every second from\n"
	      "            ftd's --auto-overhead and --auto-max-hold budgets\n"
	      "  --json    print the daemon's answer as JSON (schema: ctl/README.md); status\n"
	      "            and list without --socket or with several NAMEs: an array\n"
	      "\n"
	      "Exit status: 0 answered, 1 the daemon refused the request, 2 bad command line\n"
	      "(also: no NAME given and several instances found), 3 no daemon on the socket\n"
	      "(or no permission to use it; status and list: any instance not running).\n",
	      out);
}

enum cmd_kind {
	CMD_STATUS,
	CMD_LIST,
	CMD_METRICS,
	CMD_START,
	CMD_FAILOVER,
	CMD_SWITCHOVER,
	CMD_DISCARD,
	CMD_PROTECT,
	CMD_EVENTS,
	CMD_SET,
	CMD_RAW,
};

enum {
	OPT_FORCE = 1 << 0,
	OPT_NOW = 1 << 1,
	OPT_PEER = 1 << 2, /* --peer and --tls-peer */
};

#define NAMES_MANY 1024 /* status and list: any number of names */

static const struct command {
	const char *word;
	enum cmd_kind kind;
	unsigned int args;  /* its own arguments, before NAME */
	unsigned int names; /* how many NAMEs it takes */
	unsigned int options;
	const char *request; /* NULL: built from the arguments */
} commands[] = {
	{ "status", CMD_STATUS, 0, NAMES_MANY, 0, "status" },
	{ "list", CMD_LIST, 0, NAMES_MANY, 0, "status" },
	{ "metrics", CMD_METRICS, 0, 1, 0, "metrics" },
	{ "start", CMD_START, 0, 1, 0, "start" },
	{ "failover", CMD_FAILOVER, 0, 1, OPT_FORCE, NULL },
	{ "switchover", CMD_SWITCHOVER, 0, 1, 0, "switchover" },
	{ "discard", CMD_DISCARD, 0, 1, 0, "discard" },
	{ "protect", CMD_PROTECT, 0, 1, OPT_PEER, NULL },
	{ "events", CMD_EVENTS, 0, 1, OPT_NOW, NULL },
	{ "set", CMD_SET, 2, 1, 0, NULL },
	{ "raw", CMD_RAW, 1, 1, 0, NULL },
};

struct cmdline {
	const struct command *cmd;
	const char *socket; /* --socket PATH, or NULL */
	bool json, force, now;
	const char *peer, *tls_peer;
	const char *args[2];
	unsigned int nr_args;
	char **names;
	unsigned int nr_names;
};

/* What follows the command word: its arguments, NAMEs and options, in any order. */
static int parse_command(int argc, char **argv, struct cmdline *cl)
{
	const struct command *cmd = cl->cmd;

	/* The NAMEs are gathered at the front of argv: never past what was read. */
	cl->names = argv;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json")) {
			cl->json = true;
		} else if (!strcmp(a, "--force") && (cmd->options & OPT_FORCE)) {
			cl->force = true;
		} else if (!strcmp(a, "--now") && (cmd->options & OPT_NOW)) {
			cl->now = true;
		} else if ((!strcmp(a, "--peer") || !strcmp(a, "--tls-peer")) &&
			   (cmd->options & OPT_PEER)) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ftctl: %s %s needs a value\n", cmd->word, a);
				return -EINVAL;
			}
			if (!strcmp(a, "--peer"))
				cl->peer = argv[++i];
			else
				cl->tls_peer = argv[++i];
		} else if (!strncmp(a, "--", 2)) {
			fprintf(stderr, "ftctl: %s does not take %s (see ftctl --help)\n",
				cmd->word, a);
			return -EINVAL;
		} else if (cl->nr_args < cmd->args) {
			cl->args[cl->nr_args++] = a;
		} else if (cl->nr_names < cmd->names) {
			cl->names[cl->nr_names++] = argv[i];
		} else {
			fprintf(stderr, "ftctl: unexpected argument '%s' (see ftctl --help)\n", a);
			return -EINVAL;
		}
	}
	if (cl->nr_args < cmd->args) {
		fprintf(stderr, "ftctl: %s needs %s\n", cmd->word,
			cmd->kind == CMD_SET ? "interval DURATION|auto" : "a REQUEST");
		return -EINVAL;
	}
	if (cmd->kind == CMD_SET && strcmp(cl->args[0], "interval")) {
		fprintf(stderr, "ftctl: unknown setting '%s' (known: interval)\n", cl->args[0]);
		return -EINVAL;
	}
	if (cmd->kind == CMD_PROTECT && !cl->peer) {
		fprintf(stderr, "ftctl: protect needs --peer HOST:PORT\n");
		return -EINVAL;
	}
	if (cl->socket && cl->nr_names) {
		fprintf(stderr, "ftctl: give either --socket PATH or a NAME, not both\n");
		return -EINVAL;
	}
	return 0;
}

/* The request line a command sends. Returns 0, or -EINVAL when it would be too long. */
static int build_request(const struct cmdline *cl, char *buf, size_t len)
{
	int n;

	switch (cl->cmd->kind) {
	case CMD_FAILOVER:
		n = snprintf(buf, len, "%s", cl->force ? "failover --force" : "failover");
		break;
	case CMD_EVENTS:
		n = snprintf(buf, len, "%s", cl->now ? "events --now" : "events");
		break;
	case CMD_PROTECT:
		n = snprintf(buf, len, "protect --peer %s%s%s", cl->peer,
			     cl->tls_peer ? " --tls-peer " : "", cl->tls_peer ? cl->tls_peer : "");
		break;
	case CMD_SET:
		n = snprintf(buf, len, "set interval %s", cl->args[1]);
		break;
	case CMD_RAW:
		n = snprintf(buf, len, "%s", cl->args[0]);
		break;
	default:
		n = snprintf(buf, len, "%s", cl->cmd->request);
		break;
	}
	if (n < 0 || (size_t)n >= len) {
		fprintf(stderr, "ftctl: the request is too long: %.64s...\n", buf);
		return -EINVAL;
	}
	return 0;
}

/*
 * The instances a command addresses: --socket, the NAMEs, or every one found.
 * Returns their count (*ret malloc'ed), or an exit status as -EXIT_*.
 */
static int targets(const struct cmdline *cl, struct instance **ret)
{
	struct instance *list;
	int n;

	if (cl->socket || cl->nr_names) {
		n = cl->socket ? 1 : (int)cl->nr_names;
		list = calloc((size_t)n, sizeof(*list));
		if (!list)
			return -EXIT_UNREACHABLE;
		for (int i = 0; i < n; i++)
			if (cl->socket ? instance_by_path(cl->socket, &list[i]) < 0
				       : instance_by_name(cl->names[i], &list[i]) < 0) {
				if (cl->socket)
					fprintf(stderr, "ftctl: socket path %s is too long\n",
						cl->socket);
				free(list);
				return -EXIT_USAGE;
			}
		*ret = list;
		return n;
	}
	n = instances_find(&list);
	if (n < 0) {
		fprintf(stderr, "ftctl: cannot look for ftd instances in %s: %s\n", instance_dir(),
			strerror(-n));
		return -EXIT_UNREACHABLE;
	}
	if (!n) {
		fprintf(stderr,
			"ftctl: no ftd instance in %s (none running, or give --socket PATH)\n",
			instance_dir());
		return -EXIT_UNREACHABLE;
	}
	*ret = list;
	return n;
}

/* A command for one instance, without a NAME: only if exactly one was found. */
static int one_target(const struct cmdline *cl, struct instance *ret)
{
	struct instance *list;
	int n = targets(cl, &list);

	if (n < 0)
		return n;
	if (n > 1) {
		fprintf(stderr, "ftctl: %d ftd instances in %s:", n, instance_dir());
		for (int i = 0; i < n; i++)
			fprintf(stderr, "%s %s", i ? "," : "", list[i].name);
		fprintf(stderr, "; name one (ftctl %s NAME)\n", cl->cmd->word);
		free(list);
		return -EXIT_USAGE;
	}
	*ret = list[0];
	free(list);
	return 0;
}

/* The daemon's answer as an object, or NULL (said why). */
static struct json_object *parse_answer(const char *answer)
{
	struct json_object *reply = json_tokener_parse(answer);

	if (reply && json_object_is_type(reply, json_type_object))
		return reply;
	fprintf(stderr, "ftctl: the daemon's answer is not JSON: %.200s\n", answer);
	json_object_put(reply);
	return NULL;
}

/* {"name": NAME, ...the answer's keys}: an element of status's or list's array. */
static struct json_object *named(const struct instance *in, struct json_object *reply)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(in->name));
	json_object_object_foreach(reply, k, v)
	{
		if (strcmp(k, "name"))
			json_object_object_add(o, k, json_object_get(v));
	}
	return o;
}

/*
 * An instance that did not answer (r: why; 0: not JSON). Says so (alone, as
 * any other command would; among others, as its state) and returns
 * its element: {"name", "running" (false: no daemon listens), "error"}.
 */
static struct json_object *show_down(const struct cmdline *cl, const struct instance *in, int r,
				     bool array)
{
	bool list = cl->cmd->kind == CMD_LIST, down = instance_not_running(r);
	const char *why = r ? strerror(-r) : "its answer is not JSON";
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(in->name));
	if (!list)
		json_object_object_add(o, "ok", json_object_new_boolean(0));
	if (list || !r || down)
		json_object_object_add(o, "running", json_object_new_boolean(!down));
	json_object_object_add(o, "error", json_object_new_string(why));
	if (list) {
		json_object_object_add(o, "role", NULL);
		json_object_object_add(o, "state", NULL);
	}
	if (!array || (!cl->json && !list && !down)) {
		/* Alone, or not a matter of state: as any other command would say it. */
		if (r)
			instance_report(in, r);
		else
			fprintf(stderr, "ftctl: %s: %s\n", in->name, why);
	} else if (!cl->json && list)
		printf("%-16s %-10s %s\n", in->name, "-", down ? "not running" : why);
	else if (!cl->json) /* one of several: not running is its state */
		printf("%s: not running\n", in->name);
	return o;
}

/*
 * One line of `ftctl list`, and its element {"name", "running", "role",
 * "state"}; for a refused status, role and state null and its "error".
 */
static struct json_object *show_row(const struct cmdline *cl, const struct instance *in,
				    struct json_object *reply)
{
	struct json_object *o = json_object_new_object();
	bool ok = jbool(reply, "ok");

	json_object_object_add(o, "name", json_object_new_string(in->name));
	json_object_object_add(o, "running", json_object_new_boolean(1));
	if (!ok)
		json_object_object_add(o, "error", json_object_new_string(jstr(reply, "error")));
	json_object_object_add(o, "role", ok ? json_object_new_string(jstr(reply, "role")) : NULL);
	json_object_object_add(o, "state",
			       ok ? json_object_new_string(jstr(reply, "state")) : NULL);
	if (!cl->json)
		printf("%-16s %-10s %s\n", in->name, ok ? jstr(reply, "role") : "-",
		       ok ? jstr(reply, "state") : jstr(reply, "error"));
	return o;
}

/*
 * status and list: every target, one that fails not keeping the others from
 * answering. Returns the exit status: 3 if any did not answer, else 1 if any
 * refused, else 0.
 */
static int show_instances(const struct cmdline *cl)
{
	bool list = cl->cmd->kind == CMD_LIST;
	/* The shape follows the command line: one object for --socket or one NAME. */
	bool array = list || !(cl->socket || cl->nr_names == 1);
	struct json_object *out;
	struct instance *in;
	int n = targets(cl, &in), status = 0;

	if (n < 0) {
		if (n == -EXIT_UNREACHABLE && cl->json && array)
			printf("[]\n"); /* none found: an empty list (and exit 3) */
		return -n;
	}
	out = json_object_new_array();
	for (int i = 0; i < n; i++) {
		struct json_object *reply = NULL, *o;
		char *answer;
		int r = instance_ask(&in[i], "status", &answer);

		if (r == 0) {
			reply = parse_answer(answer);
			free(answer);
		}
		if (!reply) {
			status = EXIT_UNREACHABLE;
			o = show_down(cl, &in[i], r, array);
		} else if (list) {
			if (!jbool(reply, "ok") && !status)
				status = EXIT_REFUSED;
			o = show_row(cl, &in[i], reply);
		} else {
			if (!jbool(reply, "ok") && !status)
				status = EXIT_REFUSED;
			o = array ? named(&in[i], reply) : json_object_get(reply);
			if (!cl->json && !jbool(reply, "ok"))
				fprintf(stderr, "ftctl: %s: %s\n", in[i].name,
					jstr(reply, "error"));
			else if (!cl->json)
				print_status(cl->socket ? NULL : in[i].name, reply);
		}
		json_object_put(reply);
		json_object_array_add(out, o);
	}
	if (cl->json && (array || status != EXIT_UNREACHABLE))
		printf("%s\n", json_object_to_json_string_ext(
				       array ? out : json_object_array_get_idx(out, 0),
				       JSON_C_TO_STRING_PLAIN));
	json_object_put(out);
	free(in);
	return status;
}

/* `ftctl events`: lines as they come, until the daemon closes. */
static int stream_events(const struct instance *in, const char *request, bool json)
{
	char buf[65536];
	size_t have = 0;
	int fd = instance_send(in, request);

	if (fd < 0) {
		instance_report(in, fd);
		return EXIT_UNREACHABLE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *line, *nl;

		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		line = buf;
		while ((nl = strchr(line, '\n'))) {
			struct json_object *ev;

			*nl = 0;
			ev = json_tokener_parse(line);
			if (json || !ev)
				printf("%s\n", line);
			else
				print_event(ev);
			json_object_put(ev);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0; /* a line this long is not ours: drop it */
	}
	close(fd);
	return 0;
}

/* The answer to a command for one instance, for people. */
static void print_answer(enum cmd_kind kind, struct json_object *reply)
{
	switch (kind) {
	case CMD_METRICS:
		fputs(jstr(reply, "text"), stdout);
		break;
	case CMD_SET:
		printf("interval %.3f ms%s\n", (double)ju64(reply, "interval_us") / 1000.0,
		       jbool(reply, "interval_auto") ? " (auto: adapts every second)" : "");
		break;
	case CMD_START:
		printf("started: the guest runs here\n");
		break;
	case CMD_FAILOVER:
		printf("promoted: the guest runs here from checkpoint %" PRIu64 "\n",
		       ju64(reply, "checkpoint"));
		break;
	case CMD_SWITCHOVER:
		printf("switched over: %s runs the guest from checkpoint %" PRIu64 "\n",
		       jstr(reply, "peer"), ju64(reply, "checkpoint"));
		break;
	case CMD_DISCARD:
		printf("%s%s\n", jhas(reply, "discarded") ? "discarded the replica of " : "",
		       jhas(reply, "discarded")
			       ? jstr(reply, "discarded")
			       : "nothing to discard: the replica held no checkpoint");
		break;
	case CMD_PROTECT:
		printf("protecting with %s: the initial sync starts now (ftctl status shows "
		       "progress)\n",
		       jstr(reply, "peer"));
		break;
	default:
		print_status(NULL, reply);
		break;
	}
}

static int run_one(const struct cmdline *cl)
{
	struct json_object *reply;
	struct instance in;
	char request[512], *answer;
	int r, status;

	if (build_request(cl, request, sizeof(request)) < 0)
		return EXIT_USAGE;
	r = one_target(cl, &in);
	if (r < 0)
		return -r;
	if (cl->cmd->kind == CMD_EVENTS)
		return stream_events(&in, request, cl->json);
	r = instance_ask(&in, request, &answer);
	if (r < 0) {
		instance_report(&in, r);
		return EXIT_UNREACHABLE;
	}
	reply = parse_answer(answer);
	free(answer);
	if (!reply)
		return EXIT_UNREACHABLE; /* not an ftd that answered: as status and list say */
	status = jbool(reply, "ok") ? 0 : EXIT_REFUSED;
	if (cl->json || cl->cmd->kind == CMD_RAW)
		printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
	else if (status)
		fprintf(stderr, "ftctl: %s\n", jstr(reply, "error"));
	else
		print_answer(cl->cmd->kind, reply);
	json_object_put(reply);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct cmdline cl = { 0 };
	int c;

	signal(SIGPIPE, SIG_IGN); /* a refused connection is reported, not fatal */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cl.socket = optarg;
			break;
		case 'j':
			cl.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ftctl (ringft) " RINGFT_VERSION "\n");
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "ftctl: no command given (see ftctl --help)\n");
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[optind], commands[i].word))
			cl.cmd = &commands[i];
	if (!cl.cmd) {
		fprintf(stderr, "ftctl: unknown command '%s' (see ftctl --help)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (parse_command(argc - optind - 1, argv + optind + 1, &cl) < 0)
		return EXIT_USAGE;
	if (cl.cmd->kind == CMD_STATUS || cl.cmd->kind == CMD_LIST)
		return show_instances(&cl);
	return run_one(&cl);
}
