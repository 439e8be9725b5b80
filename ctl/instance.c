// SPDX-License-Identifier: MIT
/*
 * ftd instances as ftctl finds them: NAME.sock in /run/ftd (systemd's
 * ftd@NAME puts its control socket there), and one request per connection
 * on a socket (daemon/control.h).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ftctl.h"

#define SOCK_SUFFIX ".sock"
/*
 * A daemon answers from its owner loop at once; one that has not taken the
 * request, or (but for failover and switchover, which answer when they are
 * over: a fence command, a hand-over) answered it, within this long is hung
 * (systemd's watchdog is 10 s too). Reported, not waited for forever.
 */
#define ANSWER_TIMEOUT_MS 10000
/* Far more than any answer (a status or metrics is a few KiB): not an ftd. */
#define ANSWER_MAX (4u << 20)

const char *instance_dir(void)
{
	const char *dir = getenv("FTCTL_RUN_DIR");

	return dir && *dir ? dir : FTCTL_RUN_DIR;
}

/* A name is a file name: no directories, nothing hidden, printable. */
static bool name_ok(const char *name, size_t len)
{
	if (!len || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f ||
		    name[i] == '/')
			return false;
	return true;
}

static int instance_at(const char *name, size_t len, struct instance *ret)
{
	if ((size_t)snprintf(ret->path, sizeof(ret->path), "%s/%.*s" SOCK_SUFFIX, instance_dir(),
			     (int)len, name) >= sizeof(ret->path))
		return -ENAMETOOLONG;
	snprintf(ret->name, sizeof(ret->name), "%.*s", (int)len, name);
	return 0;
}

int instance_by_name(const char *name, struct instance *ret)
{
	if (!name_ok(name, strlen(name))) {
		fprintf(stderr,
			"ftctl: '%s' is not an instance name (the NAME of ftd@NAME; a socket "
			"elsewhere: --socket PATH)\n",
			name);
		return -EINVAL;
	}
	if (instance_at(name, strlen(name), ret) < 0) {
		fprintf(stderr, "ftctl: the socket path of instance '%s' is too long\n", name);
		return -EINVAL;
	}
	return 0;
}

int instance_by_path(const char *path, struct instance *ret)
{
	const char *base = strrchr(path, '/');
	size_t len;

	if (strlen(path) >= sizeof(ret->path))
		return -ENAMETOOLONG;
	snprintf(ret->path, sizeof(ret->path), "%s", path);
	base = base ? base + 1 : path;
	len = strlen(base);
	if (len > strlen(SOCK_SUFFIX) && !strcmp(base + len - strlen(SOCK_SUFFIX), SOCK_SUFFIX))
		len -= strlen(SOCK_SUFFIX);
	snprintf(ret->name, sizeof(ret->name), "%.*s", (int)len, base);
	return 0;
}

static int instance_cmp(const void *a, const void *b)
{
	return strcmp(((const struct instance *)a)->name, ((const struct instance *)b)->name);
}

int instances_find(struct instance **ret)
{
	const char *dir = instance_dir();
	struct instance *list = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	*ret = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		struct instance in;
		struct stat st;

		if (len <= strlen(SOCK_SUFFIX) ||
		    strcmp(de->d_name + len - strlen(SOCK_SUFFIX), SOCK_SUFFIX))
			continue;
		len -= strlen(SOCK_SUFFIX);
		/* Sockets only: a file that merely ends in .sock is no instance. */
		if (!name_ok(de->d_name, len) || instance_at(de->d_name, len, &in) < 0 ||
		    lstat(in.path, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (n == cap) {
			struct instance *l = realloc(list, (cap = cap ? 2 * cap : 8) * sizeof(*l));

			if (!l)
				break;
			list = l;
		}
		list[n++] = in;
	}
	closedir(d);
	if (de) { /* out of memory */
		free(list);
		return -ENOMEM;
	}
	if (n)
		qsort(list, n, sizeof(*list), instance_cmp);
	*ret = list;
	return (int)n;
}

int instance_send(const struct instance *in, const char *request)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(request);
	char *line;
	ssize_t w;
	int fd, r;

	if (strlen(in->path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, in->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* connect() waits while the daemon's backlog is full, write() while its buffer is. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO,
		   &(struct timeval){ .tv_sec = ANSWER_TIMEOUT_MS / 1000 }, sizeof(struct timeval));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = errno == EAGAIN ? -ETIMEDOUT : -errno;
		close(fd);
		return r;
	}
	line = malloc(len + 1);
	if (!line) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(line, request, len);
	line[len] = '\n';
	w = write(fd, line, len + 1);
	if (w == (ssize_t)(len + 1))
		r = 0;
	else /* short or EAGAIN: the daemon did not take it within SO_SNDTIMEO */
		r = w >= 0 || errno == EAGAIN ? -ETIMEDOUT : -errno;
	free(line);
	if (r < 0) {
		close(fd);
		/* A daemon that refuses us (SO_PEERCRED) may close before we write. */
		return r == -EPIPE ? -ECONNRESET : r;
	}
	return fd;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the daemon answers request only once it is over (no time bound). */
static bool answers_when_over(const char *request)
{
	size_t n = strcspn(request, " ");

	return (n == 8 && !strncmp(request, "failover", n)) ||
	       (n == 10 && !strncmp(request, "switchover", n));
}

int instance_ask(const struct instance *in, const char *request, char **ret)
{
	size_t len = 0, cap = 4096;
	char *buf = NULL;
	int fd = instance_send(in, request), r = 0;
	bool bounded = !answers_when_over(request);
	int64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;

	*ret = NULL;
	if (fd < 0)
		return fd;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (bounded) {
			int ready = left > 0 ? poll(&p, 1, (int)left) : 0;

			if (ready < 0 && errno == EINTR)
				continue;
			if (ready == 0) {
				r = -ETIMEDOUT;
				break;
			}
		}
		if (len >= ANSWER_MAX) {
			r = -EMSGSIZE;
			break;
		}
		if (cap - len < 2 || !buf) {
			char *b = realloc(buf, buf ? cap *= 2 : cap);

			if (!b) {
				r = -ENOMEM;
				break;
			}
			buf = b;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (!r && !len)
		r = -ECONNRESET; /* closed without a word: not allowed to control it */
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = 0;
	*ret = buf;
	return 0;
}

bool instance_not_running(int err)
{
	return err == -ECONNREFUSED || err == -ENOENT;
}

void instance_report(const struct instance *in, int err)
{
	if (err == -ETIMEDOUT)
		fprintf(stderr, "ftctl: ftd at %s did not answer within %d s\n", in->path,
			ANSWER_TIMEOUT_MS / 1000);
	else if (err == -EMSGSIZE)
		fprintf(stderr, "ftctl: ftd at %s answered more than %u MiB: not an ftd\n",
			in->path, ANSWER_MAX >> 20);
	else if (err == -ECONNRESET)
		fprintf(stderr,
			"ftctl: ftd at %s closed the connection without answering (not allowed "
			"to control it?)\n",
			in->path);
	else if (err == -ENAMETOOLONG)
		fprintf(stderr, "ftctl: socket path %s is too long\n", in->path);
	else
		fprintf(stderr, "ftctl: cannot reach ftd at %s: %s%s\n", in->path, strerror(-err),
			err == -ECONNREFUSED ? " (no ftd listens on it: a stale socket)" : "");
}
