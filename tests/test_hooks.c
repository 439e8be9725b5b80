// SPDX-License-Identifier: MIT
/*
 * The operator hooks without KVM (daemon/hooks.h): what a fence or notify
 * command sees (its FTD_* variables first, no ftd descriptors, no blocked or
 * ignored signals), what hook_run returns (exit status, 128 + a signal, a
 * command that is not there), and a timeout that kills the command and what
 * it started, within the bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/hooks.h"
#include "lib/clock.h"

#define LONG_WAIT (10 * NS_PER_S)

static void test_status(void **state)
{
	assert_int_equal(hook_run("exit 0", NULL, LONG_WAIT), 0);
	assert_int_equal(hook_run("exit 7", NULL, LONG_WAIT), 7);
	assert_int_equal(hook_run("kill -USR1 $$", NULL, LONG_WAIT), 128 + SIGUSR1);
	/* sh's own answer for a command it cannot find. */
	assert_int_equal(hook_run("ringft-no-such-fence-agent 2>/dev/null", NULL, LONG_WAIT), 127);
}

static void test_environment(void **state)
{
	const char *env[] = { "FTD_EVENT=promote", "FTD_PEER=10.0.0.2:7410", NULL };

	/* Ours win over the daemon's own environment (getenv takes the first). */
	assert_int_equal(setenv("FTD_EVENT", "outer", 1), 0);
	assert_int_equal(setenv("RINGFT_TEST_KEPT", "yes", 1), 0);
	assert_int_equal(
		hook_run("[ \"$FTD_EVENT\" = promote ] && [ \"$FTD_PEER\" = 10.0.0.2:7410 ] "
			 "&& [ \"$RINGFT_TEST_KEPT\" = yes ]",
			 env, LONG_WAIT),
		0);
	assert_int_equal(hook_run("[ \"$FTD_EVENT\" = outer ]", NULL, LONG_WAIT), 0);
	unsetenv("FTD_EVENT");
	unsetenv("RINGFT_TEST_KEPT");
}

/* No descriptor of the daemon's (a VM, a socket) reaches the command, CLOEXEC or not. */
static void test_descriptors(void **state)
{
	int fd = open("/dev/null", O_RDONLY), hi;
	char cmd[128];

	assert_true(fd >= 3);
	hi = fcntl(fd, F_DUPFD, 40);
	assert_true(hi >= 40);
	snprintf(cmd, sizeof(cmd), "[ ! -e /proc/$$/fd/%d ] && [ ! -e /proc/$$/fd/%d ]", fd, hi);
	assert_int_equal(hook_run(cmd, NULL, LONG_WAIT), 0);
	/* The check sees descriptors at all: 2 is there. */
	assert_int_equal(hook_run("[ -e /proc/$$/fd/2 ]", NULL, LONG_WAIT), 0);
	close(hi);
	close(fd);
}

/* Signals blocked or ignored in the daemon (signalfd, SIGPIPE) are not in the command. */
static void test_signals(void **state)
{
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old), 0);
	signal(SIGUSR2, SIG_IGN);
	/* grep itself, exec'd: sh may block signals for a moment around its own forks. */
	assert_int_equal(hook_run("exec grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status", NULL,
				  LONG_WAIT),
			 0);
	assert_int_equal(hook_run("kill -USR2 $$; exit 0", NULL, LONG_WAIT), 128 + SIGUSR2);
	assert_int_equal(hook_run("kill -TERM $$; exit 0", NULL, LONG_WAIT), 128 + SIGTERM);
	signal(SIGUSR2, SIG_DFL);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

/*
 * A command over its time is killed, with what it started (a fence agent that
 * outlived the verdict could still power off the node running the guest).
 */
static void test_timeout(void **state)
{
	char dir[] = "/tmp/ringft-hooks.XXXXXX", cmd[256], path[64];
	uint64_t t0;
	FILE *f;
	int pid = 0, r;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/child", dir);
	snprintf(cmd, sizeof(cmd), "sleep 30 & echo $! > %s; wait", path);
	t0 = clock_now_ns();
	r = hook_run(cmd, NULL, 300 * NS_PER_MS);
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(clock_now_ns() - t0 < 3 * NS_PER_S);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	assert_true(pid > 0);
	/* Killed with the group; reaped by init (or the subreaper) soon after. */
	for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
		usleep(10000);
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		fail_msg("the command's child %d outlived the timeout", pid);
	}
	assert_int_equal(errno, ESRCH);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);

	/* A plain command over its time. */
	t0 = clock_now_ns();
	assert_int_equal(hook_run("sleep 5", NULL, 200 * NS_PER_MS), -ETIMEDOUT);
	assert_true(clock_now_ns() - t0 < 2 * NS_PER_S);
}

/* hook_spawn does not wait; hook_reap collects it. */
static void test_spawn(void **state)
{
	char dir[] = "/tmp/ringft-hooks.XXXXXX", cmd[256], path[64];
	const char *env[] = { "FTD_EVENT=role", NULL };
	int i;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ran", dir);
	snprintf(cmd, sizeof(cmd), "echo \"$FTD_EVENT\" > %s.tmp && mv %s.tmp %s", path, path,
		 path);
	assert_int_equal(hook_spawn(cmd, env), 0);
	for (i = 0; i < 500 && access(path, F_OK); i++) {
		usleep(10000);
		hook_reap();
	}
	assert_int_equal(access(path, F_OK), 0);
	hook_reap();
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),	    cmocka_unit_test(test_environment),
		cmocka_unit_test(test_descriptors), cmocka_unit_test(test_signals),
		cmocka_unit_test(test_timeout),	    cmocka_unit_test(test_spawn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
