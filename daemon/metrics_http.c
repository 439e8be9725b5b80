// SPDX-License-Identifier: MIT
/*
 * Prometheus text over HTTP (daemon/metrics_http.h). The role's renderer
 * (status.c, through its control handler) writes the samples without the
 * guest's name; every sample served here gets guest="NAME" from the reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "daemon/metrics_http.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/netaddr.h"

#define TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define TYPE_TEXT    "text/plain; charset=utf-8"

struct metrics_http {
	struct MHD_Daemon *d;
	int epoll_fd;
	control_fn fn;
	void *opaque;
};

/* A label value as the exposition format quotes it: \\, \" and \n escaped. */
static void put_label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

/*
 * text with guest="NAME" as the first label of every sample ("name value" or
 * "name{labels} value"); comments and blank lines unchanged. Malloc'ed, or NULL.
 */
static char *add_guest_label(const char *text, const char *guest, size_t *ret_len)
{
	char *out = NULL;
	FILE *f = open_memstream(&out, ret_len);

	if (!f)
		return NULL;
	while (*text) {
		size_t len = strcspn(text, "\n"), name = strcspn(text, "{ \n");

		if (len && text[0] != '#' && name < len) {
			fprintf(f, "%.*s{guest=\"", (int)name, text);
			put_label_value(f, guest);
			fputs(text[name] == '{' ? "\"," : "\"}", f);
			fwrite(text + name + (text[name] == '{'), 1,
			       len - name - (text[name] == '{'), f);
		} else {
			fwrite(text, 1, len, f);
		}
		fputc('\n', f);
		text += len + (text[len] == '\n');
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Queues status with body, which it takes (malloc'ed), or a copy of a constant. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned int status, const char *type,
			       char *body, size_t len, bool owned)
{
	struct MHD_Response *resp =
		owned ? MHD_create_response_from_buffer_with_free_callback(len, body, free)
		      : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result r;

	if (!resp) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result respond_const(struct MHD_Connection *conn, unsigned int status,
				     const char *body)
{
	return respond(conn, status, TYPE_TEXT, (char *)body, strlen(body), false);
}

/* A `metrics` request to the role's handler; its "text" labelled with its "guest". */
static enum MHD_Result serve_metrics(struct metrics_http *mh, struct MHD_Connection *conn)
{
	struct request req = { .kind = REQ_METRICS, .text = "metrics" };
	struct json_object *reply = json_object_new_object(), *text, *guest;
	enum MHD_Result ret;
	char *body = NULL;
	size_t len = 0;

	if (!reply)
		return MHD_NO;
	if (mh->fn(mh->opaque, &req, reply) == 0 &&
	    json_object_object_get_ex(reply, "text", &text) &&
	    json_object_is_type(text, json_type_string)) {
		json_object_object_get_ex(reply, "guest", &guest);
		body = add_guest_label(json_object_get_string(text),
				       guest ? json_object_get_string(guest) : "", &len);
	}
	json_object_put(reply);
	if (body)
		ret = respond(conn, MHD_HTTP_OK, TYPE_METRICS, body, len, true);
	else
		ret = respond_const(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    "the daemon has no metrics to give\n");
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	/* Answered at the first call: a body, if any, is not read (MHD closes after). */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return respond_const(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
	if (strcmp(url, "/metrics"))
		return respond_const(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
	return serve_metrics(cls, conn);
}

/* A non-blocking listening socket on addr: 0 or -errno (logged, naming addr). */
static int listen_on(const char *addr, int *ret_fd)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[160];
	int fd, one = 1, r;

	if (net_parse_addr(addr, &ss, &len, err, sizeof(err)) < 0) {
		log_error("--metrics-listen: %s", err);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, METRICS_HTTP_CONNECTIONS) < 0) {
		r = -errno;
		log_error("Cannot serve metrics on %s (--metrics-listen): %s", addr, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int metrics_http_open(const char *addr, control_fn fn, void *opaque, struct metrics_http **ret)
{
	struct metrics_http *mh = calloc(1, sizeof(*mh));
	const union MHD_DaemonInfo *info;
	int fd = -1, r;

	*ret = NULL;
	if (!mh) {
		log_error("Cannot serve metrics on %s: %s", addr, strerror(ENOMEM));
		return -ENOMEM;
	}
	mh->fn = fn;
	mh->opaque = opaque;
	r = listen_on(addr, &fd);
	if (r < 0)
		goto out;
	/* No thread, no MHD_USE_INTERNAL_POLLING_THREAD: MHD_run() from the loop. */
	mh->d = MHD_start_daemon(
		MHD_USE_EPOLL, 0, NULL, NULL, on_request, mh, MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_HTTP_CONNECTIONS,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)METRICS_HTTP_CONNECTIONS / 2,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_HTTP_TIMEOUT_S,
		MHD_OPTION_END);
	if (mh->d)
		fd = -1; /* the daemon's: MHD_stop_daemon() closes it */
	info = mh->d ? MHD_get_daemon_info(mh->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (!info) {
		r = -EIO;
		log_error("Cannot serve metrics on %s: libmicrohttpd did not start", addr);
		goto out;
	}
	mh->epoll_fd = info->epoll_fd;
	log_info("metrics: Prometheus text at http://%s/metrics", addr);
	*ret = mh;
	mh = NULL;
out:
	if (fd >= 0) /* a daemon that failed to start leaves it to us */
		close(fd);
	metrics_http_close(mh);
	return r;
}

void metrics_http_close(struct metrics_http *mh)
{
	if (!mh)
		return;
	if (mh->d)
		MHD_stop_daemon(mh->d);
	free(mh);
}

void metrics_http_set_handler(struct metrics_http *mh, control_fn fn, void *opaque)
{
	mh->fn = fn;
	mh->opaque = opaque;
}

int metrics_http_fd(const struct metrics_http *mh)
{
	return mh->epoll_fd;
}

uint64_t metrics_http_wait_ns(struct metrics_http *mh)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(mh->d, &ms) != MHD_YES)
		return UINT64_MAX;
	return ms < UINT64_MAX / NS_PER_MS ? (uint64_t)ms * NS_PER_MS : UINT64_MAX;
}

void metrics_http_run(struct metrics_http *mh)
{
	/*
	 * Every pass, not only when the fd is readable: MHD must run after every
	 * poll while it has a timeout pending (microhttpd.h), and once below its
	 * connection limit again it only takes its listening socket back into its
	 * epoll set the next time it runs. Cheap: one epoll_wait() that does not wait.
	 */
	MHD_run(mh->d);
}
