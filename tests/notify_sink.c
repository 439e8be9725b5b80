// SPDX-License-Identifier: MIT
/*
 * notify_sink PATH: a stand-in for systemd's notification socket. Binds a
 * Unix datagram socket at PATH and prints every message it receives as one
 * line (the message's own newlines become '|'), until SIGTERM.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[4096];
	int fd;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "usage: notify_sink PATH\n");
		return 2;
	}
	strcpy(sun.sun_path, argv[1]);
	unlink(argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "notify_sink: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		while (n > 0 && buf[n - 1] == '\n')
			n--;
		buf[n] = 0;
		for (char *p = buf; *p; p++)
			if (*p == '\n')
				*p = '|';
		printf("%s\n", buf);
	}
}
