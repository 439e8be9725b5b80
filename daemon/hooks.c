// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/hooks.h"
#include "lib/clock.h"

extern char **environ;

/* Whether env (NAME=value strings) sets the variable of entry `var`. */
static bool env_has(const char *const *env, const char *var)
{
	size_t len = strcspn(var, "=");

	for (; env && *env; env++)
		if (!strncmp(*env, var, len) && (*env)[len] == '=')
			return true;
	return false;
}

/* The child starts clean: no ftd descriptors (VM, sockets), no blocked signals. */
static int spawn(const char *cmd, const char *const *env, pid_t *ret_pid)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	size_t n = 0, k = 0;
	char **envp;
	int r;

	while (environ[n])
		n++;
	for (const char *const *e = env; e && *e; e++)
		k++;
	envp = calloc(n + k + 1, sizeof(*envp));
	if (!envp)
		return -ENOMEM;
	/*
	 * Ours, then the daemon's without those names: which of two equal names
	 * a program takes is its own choice (getenv the first, sh the last).
	 */
	for (size_t i = 0; i < k; i++)
		envp[i] = (char *)env[i];
	for (size_t i = 0, j = k; i < n; i++)
		if (!env_has(env, environ[i]))
			envp[j++] = environ[i];
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	/* Its own process group: a timeout kills what it started too (hook_run). */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	r = posix_spawn(ret_pid, "/bin/sh", &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	return -r;
}

int hook_run(const char *cmd, const char *const *env, uint64_t timeout_ns)
{
	uint64_t deadline = clock_now_ns() + timeout_ns;
	pid_t pid;
	int status, pfd, r = spawn(cmd, env, &pid);

	if (r < 0)
		return r;
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		uint64_t now = clock_now_ns(), wait_ms;
		struct pollfd p = { .fd = pfd, .events = POLLIN };

		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (now >= deadline) {
			/*
			 * The whole group: a fence agent the shell started and that
			 * outlived our verdict could still power off the node that
			 * runs the guest after we chose not to promote.
			 */
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			if (pfd >= 0)
				close(pfd);
			return -ETIMEDOUT;
		}
		/*
		 * The owner loop waits here (up to --fence-timeout): tell systemd's
		 * watchdog once a second that the wait is bounded, not a hang.
		 */
		sd_notify(0, "WATCHDOG=1");
		wait_ms = (deadline - now) / NS_PER_MS + 1;
		/* Without a pidfd (old kernel), look again every 10 ms. */
		if (pfd < 0 || poll(&p, 1, wait_ms < 1000 ? (int)wait_ms : 1000) < 0)
			usleep(10000);
	}
	if (pfd >= 0)
		close(pfd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int hook_spawn(const char *cmd, const char *const *env)
{
	pid_t pid;

	return spawn(cmd, env, &pid);
}

void hook_reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}
