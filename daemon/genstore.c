// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/genstore.h"

#define GEN_FILE "generation"

int genstore_load(const char *dir, struct gen_state *ret)
{
	char path[PATH_MAX], text[2048];
	size_t len = 0;
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/" GEN_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The whole file: one byte more than a state can be tells a larger file. */
	while (len < sizeof(text)) {
		ssize_t n = read(fd, text + len, sizeof(text) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r < 0)
		return r;
	/* Larger than any state, or with a NUL inside: not a file gen_serialize wrote. */
	if (len == sizeof(text) || memchr(text, 0, len))
		return -EINVAL;
	text[len] = 0;
	return gen_parse(text, ret);
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int genstore_save(const char *dir, const struct gen_state *g)
{
	char path[PATH_MAX], tmp[PATH_MAX], text[2048];
	int len = gen_serialize(g, text, sizeof(text)), fd, dfd, r = 0;

	if (len < 0)
		return len;
	r = make_dirs(dir);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/" GEN_FILE, dir);
	snprintf(tmp, sizeof(tmp), "%s/." GEN_FILE ".%d", dir, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/*
	 * A full file system shows as a short write first: write on until it
	 * fails, so that r is that error, not an errno left by make_dirs.
	 */
	for (int at = 0; at < len && !r;) {
		ssize_t n = write(fd, text + at, (size_t)(len - at));

		if (n < 0 && errno != EINTR)
			r = -errno;
		else if (n == 0)
			r = -EIO;
		else if (n > 0)
			at += (int)n;
	}
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(tmp);
		return r;
	}
	/* The rename is durable only once the directory is. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		r = -errno;
	close(dfd);
	return r;
}

int genstore_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

uint64_t genstore_tag(void)
{
	uint64_t t = 0;

	while (!t)
		if (genstore_random(&t, sizeof(t)) < 0)
			t = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
	return t;
}
