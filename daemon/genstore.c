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
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/" GEN_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = 0;
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
	if (write(fd, text, (size_t)len) != len || fsync(fd) < 0)
		r = errno ? -errno : -EIO;
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
