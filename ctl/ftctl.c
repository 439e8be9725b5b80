// SPDX-License-Identifier: MIT
/*
 * ftctl: asks a running ftd over its control socket (daemon/control.h) and
 * prints the answer, short and human by default, the daemon's JSON with --json.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

enum {
	EXIT_REFUSED = 1, /* the daemon answered with an error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* no daemon on the socket, or not allowed to talk to it */
};

static void usage(FILE *out)
{
	fputs("Usage: ftctl [--socket PATH] status [--json]\n"
	      "       ftctl [--socket PATH] metrics [--json]\n"
	      "       ftctl [--socket PATH] failover [--force] [--json]\n"
	      "       ftctl [--socket PATH] switchover [--json]\n"
	      "       ftctl [--socket PATH] discard [--json]\n"
	      "       ftctl [--socket PATH] protect --peer HOST:PORT [--tls-peer NAME] [--json]\n"
	      "       ftctl [--socket PATH] events [--json]\n"
	      "       ftctl [--socket PATH] set interval DURATION|auto [--json]\n"
	      "       ftctl [--socket PATH] raw REQUEST   (send one request line as is)\n"
	      "       ftctl --help\n"
	      "\n"
	      "Talks to a running ftd over its control socket. Without --socket it uses\n"
	      "/run/ftd/primary.sock, or /run/ftd/secondary.sock if only that exists.\n"
	      "\n"
	      "  status    role, replication state, peer, epoch, last acknowledged checkpoint\n"
	      "            and its age, interval, pause p50/p99, dirty pages per checkpoint,\n"
	      "            bytes on the wire, verification counts\n"
	      "  metrics   Prometheus text format (ftd_checkpoints_total,\n"
	      "            ftd_checkpoint_pause_seconds, ftd_replication_bytes_total, ...)\n"
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
	      "            until the daemon exits or ftctl is interrupted\n"
	      "  set interval DURATION|auto\n"
	      "            checkpoint interval of a primary from the next tick (1ms..60s;\n"
	      "            a bare number is seconds); auto: chosen every second from\n"
	      "            ftd's --auto-overhead and --auto-max-hold budgets\n"
	      "  --json    print the daemon's answer as one JSON object (schema: ctl/README.md)\n"
	      "\n"
	      "Exit status: 0 answered, 1 the daemon refused the request, 2 bad command line,\n"
	      "3 no daemon on the socket (or no permission to use it).\n",
	      out);
}

static const char *default_socket(void)
{
	if (access("/run/ftd/primary.sock", F_OK) == 0 || access("/run/ftd/secondary.sock", F_OK))
		return "/run/ftd/primary.sock";
	return "/run/ftd/secondary.sock";
}

/* Sends one request line and reads the whole answer. Returns it (malloc'ed) or NULL. */
static char *ask(const char *path, const char *request)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = 0, cap = 4096;
	char *buf = NULL, *line;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "ftctl: socket path %s is too long\n", path);
		return NULL;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "ftctl: cannot reach ftd at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (asprintf(&line, "%s\n", request) < 0)
		line = NULL;
	if (!line || write(fd, line, strlen(line)) < 0) {
		/* A daemon that refuses us (SO_PEERCRED) may close before we write. */
		if (errno == EPIPE || errno == ECONNRESET)
			fprintf(stderr,
				"ftctl: ftd at %s closed the connection without answering (not "
				"allowed to control it?)\n",
				path);
		else
			fprintf(stderr, "ftctl: cannot send to %s: %s\n", path, strerror(errno));
		free(line);
		close(fd);
		return NULL;
	}
	free(line);
	buf = malloc(cap);
	while (buf) {
		ssize_t n = read(fd, buf + len, cap - len - 1);

		if (n <= 0)
			break;
		len += (size_t)n;
		if (cap - len < 2) {
			char *b = realloc(buf, cap * 2);

			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
	}
	close(fd);
	if (buf)
		buf[len] = 0;
	if (buf && !len) {
		fprintf(stderr,
			"ftctl: ftd at %s closed the connection without answering (not "
			"allowed to control it?)\n",
			path);
		free(buf);
		return NULL;
	}
	return buf;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : "-";
}

static uint64_t u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_uint64(v) : 0;
}

static bool has(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && v;
}

/* The guest's identity: "guest UUID, generation N (earlier: N-1, ...)". */
static void print_generation(struct json_object *r)
{
	struct json_object *h = NULL;
	size_t n;

	if (!has(r, "uuid")) {
		printf("  guest: none held\n");
		return;
	}
	printf("  guest %s, generation %" PRIu64, str(r, "uuid"), u64(r, "generation"));
	json_object_object_get_ex(r, "history", &h);
	n = h && json_object_is_type(h, json_type_array) ? json_object_array_length(h) : 0;
	for (size_t i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? ", " : " (earlier: ",
		       json_object_get_uint64(json_object_array_get_idx(h, i)));
	printf("%s\n", n ? ")" : "");
}

/* One screen, modelled on `drbdsetup status`. */
static void print_status(struct json_object *r)
{
	if (!strcmp(str(r, "role"), "primary")) {
		struct json_object *pause = NULL;

		json_object_object_get_ex(r, "pause_us", &pause);
		printf("primary %s: %s, secondary %s\n", str(r, "guest"), str(r, "state"),
		       str(r, "peer"));
		print_generation(r);
		if (has(r, "promoted_by"))
			printf("  active here since a %s from checkpoint %" PRIu64 "\n",
			       str(r, "promoted_by"), u64(r, "promoted_from_checkpoint"));
		if (has(r, "sync_remaining"))
			printf("  initial sync: %" PRIu64 " pages sent, %" PRIu64 " to go\n",
			       u64(r, "sync_pages"), u64(r, "sync_remaining"));
		printf("  epoch %" PRIu64 ", %" PRIu64 " checkpoints, %" PRIu64 " acknowledged",
		       u64(r, "epoch"), u64(r, "checkpoints"), u64(r, "acked"));
		if (has(r, "last_ack_age_ms"))
			printf(" (last %" PRIu64 " ms ago)", u64(r, "last_ack_age_ms"));
		printf(", interval %.3f ms", (double)u64(r, "interval_us") / 1000.0);
		if (has(r, "interval_auto_budget")) {
			struct json_object *ai = NULL;

			json_object_object_get_ex(r, "interval_auto_budget", &ai);
			printf(" (auto: overhead %" PRIu64 "%%, bound by %s%s)",
			       u64(ai, "overhead_pct"), str(ai, "bound"),
			       json_object_get_boolean(
				       json_object_object_get(ai, "overhead_exceeded"))
				       ? ", over budget"
				       : "");
		}
		printf("\n");
		printf("  pause p50 %" PRIu64 " us, p99 %" PRIu64 " us; %" PRIu64
		       " dirty pages per checkpoint; %.1f MB sent, %.1f MB/s\n",
		       pause ? u64(pause, "p50") : 0, pause ? u64(pause, "p99") : 0,
		       u64(r, "dirty_pages_per_checkpoint"), (double)u64(r, "bytes_sent") / 1e6,
		       (double)u64(r, "bytes_per_s") / 1e6);
		if (has(r, "quorum"))
			printf("  quorum %s%s\n", str(r, "quorum"),
			       json_object_get_boolean(json_object_object_get(r, "frozen"))
				       ? ", guest stopped (lost quorum)"
				       : "");
		printf("  verified %" PRIu64 ", mismatches %" PRIu64 ", output held %" PRIu64
		       " bytes, %" PRIu64 " sessions\n",
		       u64(r, "verified"), u64(r, "mismatches"), u64(r, "held_bytes"),
		       u64(r, "sessions"));
		if (has(r, "net")) {
			struct json_object *n = json_object_object_get(r, "net");

			printf("  net %s on TAP %s%s: %" PRIu64 " frames held (%" PRIu64
			       " bytes)%s; rx %" PRIu64 " frames (%" PRIu64 " dropped), tx %" PRIu64
			       " frames\n",
			       str(n, "mac"), str(n, "tap"),
			       json_object_get_boolean(json_object_object_get(n, "attached"))
				       ? ""
				       : " (not open)",
			       u64(n, "held_frames"), u64(n, "held_bytes"),
			       json_object_get_boolean(json_object_object_get(n, "backpressured"))
				       ? ", guest transmit stopped (backpressure)"
				       : "",
			       u64(n, "rx_frames"), u64(n, "rx_dropped"), u64(n, "tx_frames"));
		}
		if (has(r, "disk")) {
			struct json_object *d = json_object_object_get(r, "disk");

			printf("  disk %s (%" PRIu64 " MiB): %" PRIu64 " reads, %" PRIu64
			       " writes (%.1f MB), %" PRIu64 " flushes, %" PRIu64
			       " errors, %" PRIu64 " in flight; last sync sent %" PRIu64
			       " blocks (%.1f MB) in %" PRIu64 " ms\n",
			       str(d, "path"), u64(d, "size") >> 20, u64(d, "reads"),
			       u64(d, "writes"), (double)u64(d, "write_bytes") / 1e6,
			       u64(d, "flushes"), u64(d, "errors"), u64(d, "inflight"),
			       u64(d, "sync_blocks"), (double)u64(d, "sync_bytes") / 1e6,
			       u64(d, "sync_ms"));
		}
		return;
	}
	printf("secondary: %s, primary %s\n", str(r, "state"), str(r, "peer"));
	if (has(r, "checkpoint"))
		printf("  replica at checkpoint %" PRIu64, u64(r, "checkpoint"));
	else
		printf("  replica holds no complete checkpoint");
	if (has(r, "last_apply_age_ms"))
		printf(" (applied %" PRIu64 " ms ago)", u64(r, "last_apply_age_ms"));
	if (json_object_get_boolean(json_object_object_get(r, "stale")))
		printf(", STALE: the primary moved on to generation %" PRIu64
		       " (never promoted automatically; failover needs --force)",
		       u64(r, "stale_by_generation"));
	printf("\n");
	print_generation(r);
	printf("  ");
	printf("%" PRIu64 " epochs applied, %" PRIu64 " checkpoints, %.1f MB received\n",
	       u64(r, "epochs_applied"), u64(r, "checkpoints"),
	       (double)u64(r, "bytes_received") / 1e6);
	printf("  verified %" PRIu64 ", mismatches %" PRIu64 ", %" PRIu64
	       " connections refused, %" PRIu64 " sessions\n",
	       u64(r, "verified"), u64(r, "mismatches"), u64(r, "refused"), u64(r, "sessions"));
	if (has(r, "quorum"))
		printf("  quorum %s\n", str(r, "quorum"));
	if (has(r, "disk")) {
		struct json_object *d = json_object_object_get(r, "disk");

		printf("  disk %s (%" PRIu64 " MiB): %.1f MB in %" PRIu64
		       " records applied, %" PRIu64 " fdatasyncs, %" PRIu64 " ms writing%s\n",
		       str(d, "path"), u64(d, "size") >> 20, (double)u64(d, "bytes_applied") / 1e6,
		       u64(d, "records_applied"), u64(d, "fdatasyncs"), u64(d, "apply_ms"),
		       json_object_get_boolean(json_object_object_get(d, "torn"))
			       ? "; TORN: a write failed half-way, this image is no checkpoint"
			       : "");
	}
}

/* `ftctl events`: lines as they come, until the daemon closes. */
static int stream_events(const char *path, bool json)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t have = 0;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "ftctl: socket path %s is too long\n", path);
		return EXIT_UNREACHABLE;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    write(fd, "events\n", 7) != 7) {
		fprintf(stderr, "ftctl: cannot reach ftd at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
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
			if (json || !ev) {
				printf("%s\n", line);
			} else {
				time_t t = (time_t)(u64(ev, "time_ms") / 1000);
				struct tm tm;
				char when[32];

				localtime_r(&t, &tm);
				strftime(when, sizeof(when), "%H:%M:%S", &tm);
				printf("%s.%03u %s", when, (unsigned)(u64(ev, "time_ms") % 1000),
				       str(ev, "event"));
				json_object_object_foreach(ev, k, v)
				{
					if (strcmp(k, "event") && strcmp(k, "time_ms") && v)
						printf(" %s=%s", k, json_object_get_string(v));
				}
				printf("\n");
			}
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

/* Options may also follow the command (ftctl status --json): only --json. */
static int trailing_json(int argc, char **argv, int from, bool *json)
{
	for (int i = from; i < argc; i++) {
		if (strcmp(argv[i], "--json")) {
			fprintf(stderr, "ftctl: unexpected argument '%s' (see ftctl --help)\n",
				argv[i]);
			return -EINVAL;
		}
		*json = true;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL, *request;
	bool json = false, raw, metrics = false, setting = false, failover = false;
	bool switchover = false, protect = false, discard = false;
	char setbuf[384];
	struct json_object *reply, *ok;
	char *answer;
	int c, status;

	signal(SIGPIPE, SIG_IGN); /* a refused connection is reported, not fatal */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "status")) {
		if (trailing_json(argc, argv, optind + 1, &json) < 0)
			return EXIT_USAGE;
		request = "status";
		raw = false;
	} else if (optind < argc && !strcmp(argv[optind], "failover")) {
		bool force = false;

		for (int i = optind + 1; i < argc; i++) {
			if (!strcmp(argv[i], "--force"))
				force = true;
			else if (trailing_json(argc, argv, i, &json) < 0)
				return EXIT_USAGE;
			else
				break;
		}
		request = force ? "failover --force" : "failover";
		raw = false;
		failover = true;
	} else if (optind < argc && !strcmp(argv[optind], "events")) {
		if (trailing_json(argc, argv, optind + 1, &json) < 0)
			return EXIT_USAGE;
		return stream_events(path ? path : default_socket(), json);
	} else if (optind < argc && !strcmp(argv[optind], "discard")) {
		if (trailing_json(argc, argv, optind + 1, &json) < 0)
			return EXIT_USAGE;
		request = "discard";
		raw = false;
		discard = true;
	} else if (optind < argc && !strcmp(argv[optind], "switchover")) {
		if (trailing_json(argc, argv, optind + 1, &json) < 0)
			return EXIT_USAGE;
		request = "switchover";
		raw = false;
		switchover = true;
	} else if (optind < argc && !strcmp(argv[optind], "protect")) {
		if (optind + 3 > argc || strcmp(argv[optind + 1], "--peer")) {
			fprintf(stderr, "ftctl: protect needs --peer HOST:PORT\n");
			return EXIT_USAGE;
		}
		const char *name = NULL;
		int rest = optind + 3;

		if (rest < argc && !strcmp(argv[rest], "--tls-peer")) {
			if (rest + 1 >= argc) {
				fprintf(stderr, "ftctl: protect --tls-peer needs a NAME\n");
				return EXIT_USAGE;
			}
			name = argv[rest + 1];
			rest += 2;
		}
		if (trailing_json(argc, argv, rest, &json) < 0)
			return EXIT_USAGE;
		if (snprintf(setbuf, sizeof(setbuf), "protect --peer %s%s%s", argv[optind + 2],
			     name ? " --tls-peer " : "", name ? name : "") >= (int)sizeof(setbuf)) {
			fprintf(stderr, "ftctl: peer '%s' is too long\n", argv[optind + 2]);
			return EXIT_USAGE;
		}
		request = setbuf;
		raw = false;
		protect = true;
	} else if (optind < argc && !strcmp(argv[optind], "metrics")) {
		if (trailing_json(argc, argv, optind + 1, &json) < 0)
			return EXIT_USAGE;
		request = "metrics";
		raw = false;
		metrics = true;
	} else if (optind + 3 <= argc && !strcmp(argv[optind], "set") &&
		   !strcmp(argv[optind + 1], "interval")) {
		if (trailing_json(argc, argv, optind + 3, &json) < 0)
			return EXIT_USAGE;
		if (snprintf(setbuf, sizeof(setbuf), "set interval %s", argv[optind + 2]) >=
		    (int)sizeof(setbuf)) {
			fprintf(stderr, "ftctl: interval '%s' is too long\n", argv[optind + 2]);
			return EXIT_USAGE;
		}
		request = setbuf;
		raw = false;
		setting = true;
	} else if (optind + 2 == argc && !strcmp(argv[optind], "raw")) {
		request = argv[optind + 1];
		raw = true;
	} else {
		if (optind < argc)
			fprintf(stderr, "ftctl: unknown command '%s' (see ftctl --help)\n",
				argv[optind]);
		else
			fprintf(stderr, "ftctl: no command given (see ftctl --help)\n");
		return EXIT_USAGE;
	}
	answer = ask(path ? path : default_socket(), request);
	if (!answer)
		return EXIT_UNREACHABLE;
	reply = json_tokener_parse(answer);
	if (!reply || !json_object_is_type(reply, json_type_object)) {
		fprintf(stderr, "ftctl: the daemon's answer is not JSON: %.200s\n", answer);
		free(answer);
		json_object_put(reply);
		return EXIT_REFUSED;
	}
	status = json_object_object_get_ex(reply, "ok", &ok) && json_object_get_boolean(ok)
			 ? 0
			 : EXIT_REFUSED;
	if (json || raw)
		printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
	else if (status)
		fprintf(stderr, "ftctl: %s\n", str(reply, "error"));
	else if (metrics)
		fputs(str(reply, "text"), stdout);
	else if (setting)
		printf("interval %.3f ms%s\n", (double)u64(reply, "interval_us") / 1000.0,
		       json_object_get_boolean(json_object_object_get(reply, "interval_auto"))
			       ? " (auto: adapts every second)"
			       : "");
	else if (failover)
		printf("promoted: the guest runs here from checkpoint %" PRIu64 "\n",
		       u64(reply, "checkpoint"));
	else if (switchover)
		printf("switched over: %s runs the guest from checkpoint %" PRIu64 "\n",
		       str(reply, "peer"), u64(reply, "checkpoint"));
	else if (discard)
		printf("%s%s\n", has(reply, "discarded") ? "discarded the replica of " : "",
		       has(reply, "discarded")
			       ? str(reply, "discarded")
			       : "nothing to discard: the replica held no checkpoint");
	else if (protect)
		printf("protecting with %s: the initial sync starts now (ftctl status shows "
		       "progress)\n",
		       str(reply, "peer"));
	else
		print_status(reply);
	json_object_put(reply);
	free(answer);
	return status;
}
