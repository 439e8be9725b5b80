/* SPDX-License-Identifier: MIT */
#ifndef RINGFT_DAEMON_RUN_H
#define RINGFT_DAEMON_RUN_H

#include "daemon/options.h"

#include <stdbool.h>

#include "vmm/serial.h"

struct ftd_net;
struct virtio_blk;
struct vm;

/* `ftd run`: one VM, the local checkpoint cycle, no peer. Returns the exit status. */
int ftd_run(const struct ftd_options *o);

/* Shared by every role. */
int ftd_open_console(const char *path); /* "-": stdout; else appended; -1 and errno */
int ftd_signalfd(void);			/* SIGINT, SIGTERM and SIGHUP, blocked in every thread */
/*
 * Reads one signal from ftd_signalfd() and logs it: true for a stop (SIGINT,
 * SIGTERM), false if none was there or it was SIGHUP (ftd_hup_take() says so).
 */
bool ftd_read_signal(int sig_fd);
/* Whether a SIGHUP was read since the last call: the loop reloads (daemon/reload.h). */
bool ftd_hup_take(void);
/* Serial sink writing the guest console to the fd at *opaque (whole, retried). */
void ftd_console_write(void *opaque, const uint8_t *buf, size_t len);
int ftd_timerfd(uint64_t interval_ns);
int ftd_timer_set(int fd, uint64_t interval_ns); /* 0, or -1 and errno */
void ftd_owner_priority(const struct ftd_options *o, const struct vm *vm);
/*
 * The owner's device work, every pass of its loop: every device's queue
 * notifies and backend completions (vm_devices_poll: the disk, the NIC), then
 * the NIC's own (ftd_net_work). 0 or -errno (logged).
 */
int ftd_devices_work(struct vm *vm, struct ftd_net *net, uint64_t now);
/* Logs why each stopped vCPU stopped; returns the exit status (1). */
int ftd_report_stopped(struct vm *vm);
/*
 * Loads the guest of the options (--kernel, else --guest) into vm's memory.
 * Logs failures; returns 0 or the exit status.
 */
int ftd_load_guest(const struct ftd_options *o, struct vm *vm);
/*
 * The VM of the options with its serial console on `sink`, its NIC in *net
 * (--net; TAP not opened yet), its disk in *ret_disk (--disk, else NULL; the
 * VM owns it), and the guest loaded when load_guest. Logs
 * failures; returns 0 or the exit status.
 */
int ftd_make_vm(const struct ftd_options *o, serial_sink_fn sink, void *opaque, bool load_guest,
		struct ftd_net *net, struct virtio_blk **ret_disk, struct vm **ret_vm);

#endif
