// SPDX-License-Identifier: MIT
/*
 * `ftd run`: the checkpoint cycle without a peer. The owner thread waits on a
 * periodic timer, the VM's event fd (a full dirty ring asks for an early
 * checkpoint; a stopped vCPU ends the run) and a signalfd for SIGINT/SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon/disk.h"
#include "daemon/loop.h"
#include "daemon/net.h"
#include "daemon/reload.h"
#include "daemon/run.h"
#include "daemon/status.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/stats.h"
#include "primary/checkpoint.h"
#include "vmm/cmos.h"
#include "vmm/linux_boot.h"
#include "vmm/loader.h"
#include "vmm/serial.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct run_stats {
	uint64_t checkpoints;
	uint64_t early;
	uint64_t pages_total;
	uint64_t pages_max;
	struct samples pause_us;       /* this second */
	struct histogram all_pause_us; /* the whole run, in constant memory */
	uint64_t window_checkpoints;
	uint64_t window_pages;
	uint64_t window_start_ns;
	struct ftd_disk_window disk;
};

/* Console sink: the guest's serial bytes go straight to the console fd. */
void ftd_console_write(void *opaque, const uint8_t *buf, size_t len)
{
	int fd = *(int *)opaque;

	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed console must not stop the guest */
		buf += n;
		len -= (size_t)n;
	}
}

int ftd_open_console(const char *path)
{
	struct stat sb;
	int fd;

	if (strcmp(path, "-"))
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	else
		fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	/* A pipe nobody drains must not stall the loop. */
	if (fd >= 0 && fstat(fd, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void print_stats(struct run_stats *rs, struct virtio_blk *disk, uint64_t now)
{
	double secs = (double)(now - rs->window_start_ns) / NS_PER_S;
	uint64_t n = rs->window_checkpoints;
	struct stats_line l;

	stats_begin(&l);
	stats_u64(&l, "checkpoints", rs->checkpoints);
	stats_rate(&l, "rate", n, secs);
	stats_u64(&l, "early", rs->early);
	stats_group(&l, "dirty/ckpt");
	stats_u64(&l, "avg", n ? rs->window_pages / n : 0);
	stats_u64(&l, "max", rs->pages_max);
	stats_samples(&l, "pause_us", &rs->pause_us, STATS_P50 | STATS_P99 | STATS_MAX);
	ftd_disk_stats(disk, &rs->disk, secs, &l);
	stats_end(&l);
	samples_reset(&rs->pause_us);
	rs->window_checkpoints = rs->window_pages = rs->pages_max = 0;
	rs->window_start_ns = now;
}

static void print_summary(struct run_stats *rs, uint64_t elapsed_ns)
{
	log_info("summary: %llu checkpoints in %.1fs (%llu early), %.0f dirty pages/checkpoint, "
		 "pause us p50=%llu p99=%llu max=%llu",
		 (unsigned long long)rs->checkpoints, (double)elapsed_ns / NS_PER_S,
		 (unsigned long long)rs->early,
		 rs->checkpoints ? (double)rs->pages_total / (double)rs->checkpoints : 0.0,
		 (unsigned long long)histogram_percentile(&rs->all_pause_us, 50),
		 (unsigned long long)histogram_percentile(&rs->all_pause_us, 99),
		 (unsigned long long)rs->all_pause_us.max);
}

static bool hup_pending;

bool ftd_read_signal(int sig_fd)
{
	struct signalfd_siginfo si;

	if (read(sig_fd, &si, sizeof(si)) != sizeof(si))
		return false;
	if (si.ssi_signo == SIGHUP) {
		log_info("received %s: reopening the console, reading the configuration again",
			 strsignal((int)si.ssi_signo));
		hup_pending = true;
		return false;
	}
	log_info("received %s, stopping", strsignal((int)si.ssi_signo));
	return true;
}

bool ftd_hup_take(void)
{
	bool was = hup_pending;

	hup_pending = false;
	return was;
}

int ftd_report_stopped(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v->status == VCPU_CRASHED && v->crash_regs_lost)
			log_error("guest crashed: vCPU %u: %s", i, v->fail_reason);
		else if (v->status == VCPU_CRASHED)
			log_error("guest crashed: vCPU %u: %s (rax=0x%llx rbx=0x%llx rcx=0x%llx "
				  "rdx=0x%llx rflags=0x%llx)",
				  i, v->fail_reason, (unsigned long long)v->crash_regs.rax,
				  (unsigned long long)v->crash_regs.rbx,
				  (unsigned long long)v->crash_regs.rcx,
				  (unsigned long long)v->crash_regs.rdx,
				  (unsigned long long)v->crash_regs.rflags);
		else if (v->status == VCPU_FAILED)
			log_error("vCPU %u stopped: %s", i, v->fail_reason);
	}
	return 1;
}

int ftd_signalfd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP); /* reload (daemon/reload.h), never a stop */
	/* Blocked before the vCPU threads exist, so they inherit the mask. */
	errno = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (errno)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int ftd_timer_set(int fd, uint64_t interval_ns)
{
	struct itimerspec its = {
		.it_interval = { .tv_sec = (time_t)(interval_ns / NS_PER_S),
				 .tv_nsec = (long)(interval_ns % NS_PER_S) },
	};

	its.it_value = its.it_interval;
	return timerfd_settime(fd, 0, &its, NULL);
}

int ftd_timerfd(uint64_t interval_ns)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);

	if (fd >= 0 && ftd_timer_set(fd, interval_ns) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * --realtime. The owner thread drives every pause: if it waits for a CPU behind
 * vCPU threads that spin in the guest, the pause grows by a scheduler tick (p99
 * 4 ms with 2 vCPUs on 2 cores, 0.8 ms with this). A low real-time priority lets
 * it run when its timer fires; it never spins while vCPUs need its CPU (see
 * vm_pause). vCPU threads are created with the normal policy explicitly (vm.c):
 * they spin in the guest, and at a real-time priority they would starve it.
 */
static void set_owner_priority(void)
{
	struct sched_param sp = { .sched_priority = 1 };
	int r = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);

	if (r)
		log_warning("Failed to give the checkpoint thread real-time priority: %s "
			    "(pauses may take a scheduler tick longer)",
			    strerror(r));
}

void ftd_owner_priority(const struct ftd_options *o, const struct vm *vm)
{
	/*
	 * Auto: with a CPU to spare the owner gets one anyway and real-time priority
	 * buys nothing measurable (1 vCPU here: p50 within 15 us either way); with
	 * none to spare it cuts pause p99 from a scheduler tick to under 1 ms.
	 */
	if (o->realtime == 1 || (o->realtime < 0 && !vm->pause_poll))
		set_owner_priority();
}

/* MemAvailable of /proc/meminfo in bytes, or UINT64_MAX when unknown. */
static uint64_t mem_available(void)
{
	unsigned long long kb;
	uint64_t avail = UINT64_MAX;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return avail;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			avail = (uint64_t)kb << 10;
	fclose(f);
	return avail;
}

/* vm_notice_once(): one line per kind, from a vCPU thread. */
static void vm_notice(void *opaque, const char *msg)
{
	(void)opaque;
	log_info("Guest: %s", msg);
}

int ftd_load_guest(const struct ftd_options *o, struct vm *vm)
{
	int r;

	if (o->kern.kernel[0] && o->tracking == DIRTY_RING &&
	    access("/sys/module/kvm_pvm", F_OK) == 0) {
		/* docs/linux.md, "The dirty ring and an emulated kernel". */
		log_error("A Linux guest needs --tracking bitmap on this host (kvm_pvm): its "
			  "kernel runs emulated, every emulated store is a dirty ring entry "
			  "(about 2 million a second) and an emulation batch overruns the "
			  "ring's reserve, which loses entries and stops the vCPU for good");
		return 2;
	}
	if (o->kern.kernel[0]) {
		struct linux_boot_config lc = {
			.kernel = o->kern.kernel,
			.initrd = o->kern.initrd[0] ? o->kern.initrd : NULL,
			.cmdline = o->kern.cmdline,
			.protocol = o->kern.pvh ? LINUX_BOOT_PVH : LINUX_BOOT_64BIT,
		};
		char err[256] = "";

		r = linux_boot_load(vm, &lc, err, sizeof(err));
		if (r < 0) {
			log_error("Failed to load Linux kernel %s: %s", o->kern.kernel,
				  err[0] ? err : strerror(-r));
			return 2;
		}
	} else {
		r = loader_load(vm, o->guest, &o->gp);
		if (r < 0) {
			log_error("Failed to load guest %s: %s", o->guest,
				  r == -ENOENT	? "no such built-in guest"
				  : r == -E2BIG ? "its workload does not fit in guest RAM"
						: strerror(-r));
			return r == -ENOENT || r == -E2BIG ? 2 : 1;
		}
	}
	return 0;
}

int ftd_make_vm(const struct ftd_options *o, serial_sink_fn sink, void *opaque, bool load_guest,
		struct ftd_net *net, struct virtio_blk **ret_disk, struct vm **ret_vm)
{
	struct vm_config cfg = {
		.mem_size = o->mem_size,
		.nr_vcpus = o->vcpus,
		.tracking = o->tracking,
		.ring_entries = o->ring_entries,
	};
	struct device *serial = NULL, *cmos = NULL;
	struct vm *vm = NULL;
	int r;

	r = vm_create(&cfg, &vm);
	if (r < 0) {
		log_error("Failed to create the VM (%s tracking, %llu MiB, %u vCPUs): %s",
			  dirty_mode_name(o->tracking), (unsigned long long)(o->mem_size >> 20),
			  o->vcpus, strerror(-r));
		return 1;
	}
	if (o->prealloc) {
		uint64_t avail = mem_available();

		/* Populating more than the host has would wake the OOM killer, not fail. */
		r = avail < o->mem_size ? -ENOMEM : vm_prealloc(vm);
		if (r < 0) {
			if (avail < o->mem_size)
				log_error("Cannot allocate the guest's %llu MiB of RAM up front "
					  "(--prealloc): only %llu MiB available",
					  (unsigned long long)(o->mem_size >> 20),
					  (unsigned long long)(avail >> 20));
			else
				log_error("Cannot allocate the guest's %llu MiB of RAM up front "
					  "(--prealloc): %s",
					  (unsigned long long)(o->mem_size >> 20), strerror(-r));
			vm_free(vm);
			return 1;
		}
	}
	r = serial_new(GUEST_PORT_COM1, sink, opaque, &serial);
	if (r < 0 || (r = vm_add_device(vm, serial)) < 0) {
		log_error("Failed to add the serial console: %s", strerror(-r));
		if (serial)
			serial->ops->free(serial);
		vm_free(vm);
		return 1;
	}
	vm_set_notice_hook(vm, vm_notice, NULL);
	serial_set_irq(serial, vm, GUEST_IRQ_COM1);
	r = cmos_new(&cmos);
	if (r < 0 || (r = vm_add_device(vm, cmos)) < 0) {
		log_error("Failed to add the CMOS clock: %s", strerror(-r));
		if (cmos)
			cmos->ops->free(cmos);
		vm_free(vm);
		return 1;
	}
	if (ftd_net_create(net, vm, o) < 0 || ftd_disk_create(vm, o, ret_disk) < 0) {
		vm_free(vm);
		return 1;
	}
	if (load_guest) {
		r = ftd_load_guest(o, vm);
		if (r) {
			vm_free(vm);
			return r;
		}
	}
	*ret_vm = vm;
	return 0;
}

static int checkpoint_once(struct ckpt *c, struct run_stats *rs)
{
	struct ckpt_timing t;
	int r = ckpt_capture(c, &t);

	if (r == -ESRCH)
		return r; /* the guest stopped: the caller reports why */
	if (r < 0) {
		log_error("Failed to take checkpoint %llu: %s", (unsigned long long)rs->checkpoints,
			  strerror(-r));
		return r;
	}
	rs->checkpoints++;
	rs->window_checkpoints++;
	rs->pages_total += t.pages;
	rs->window_pages += t.pages;
	if (t.pages > rs->pages_max)
		rs->pages_max = t.pages;
	samples_add(&rs->pause_us, t.pause_ns / NS_PER_US);
	histogram_add(&rs->all_pause_us, t.pause_ns / NS_PER_US);
	return 0;
}

struct run_loop {
	struct vm *vm;
	struct ckpt *c;
	struct ftd_net *net;
	struct virtio_blk *disk;
	const struct ftd_options *o;
	int timer_fd, console_fd;
	struct run_stats rs;
};

/* The VM's events and the timer: a checkpoint when either asks for one (devices: tick). */
static int run_io(void *opaque)
{
	struct run_loop *rl = opaque;
	uint64_t expirations;
	unsigned int events = vm_take_events(rl->vm);
	bool take = false;
	int r;

	if (events & VM_EVENT_STOPPED)
		return ftd_report_stopped(rl->vm);
	if (events & VM_EVENT_RING_FULL) {
		rl->rs.early++;
		take = true;
	}
	if (read(rl->timer_fd, &expirations, sizeof(expirations)) == sizeof(expirations))
		take = true;
	if (take && (r = checkpoint_once(rl->c, &rl->rs)) < 0)
		return r == -ESRCH ? ftd_report_stopped(rl->vm) : 1;
	return FTD_LOOP_ON;
}

static void run_second(void *opaque, uint64_t now)
{
	struct run_loop *rl = opaque;

	print_stats(&rl->rs, rl->disk, now);
}

int ftd_devices_work(struct vm *vm, struct ftd_net *net, uint64_t now)
{
	int r = vm_devices_poll(vm);

	if (r < 0) {
		log_error("Guest devices failed: %s", strerror(-r));
		return r;
	}
	return ftd_net_work(net, now);
}

static int run_tick(void *opaque, uint64_t now)
{
	struct run_loop *rl = opaque;

	return ftd_devices_work(rl->vm, rl->net, now) < 0 ? 1 : FTD_LOOP_ON;
}

static uint64_t run_next_due(void *opaque)
{
	struct run_loop *rl = opaque;

	return ftd_net_next_due(rl->net);
}

/* SIGHUP: the console, and the interval (only the checkpoint timer's rate changes). */
static void run_reload(void *opaque)
{
	struct run_loop *rl = opaque;

	if ((ftd_reload_files(rl->console_fd, NULL) & RELOAD_INTERVAL) &&
	    ftd_timer_set(rl->timer_fd, rl->o->interval_ns) < 0)
		log_error("SIGHUP: cannot set the checkpoint timer: %s", strerror(errno));
}

static int run_loop(struct vm *vm, struct ckpt *c, struct ftd_net *net, struct virtio_blk *disk,
		    const struct ftd_options *o, int sig_fd, int timer_fd, int console_fd)
{
	static const struct ftd_loop_ops ops = { .io = run_io,
						 .tick = run_tick,
						 .second = run_second,
						 .reload = run_reload,
						 .next_due = run_next_due };
	static const struct ftd_loop_ops quiet_ops = {
		.io = run_io, .tick = run_tick, .reload = run_reload, .next_due = run_next_due
	};
	struct run_loop rl = { .vm = vm,
			       .c = c,
			       .net = net,
			       .disk = disk,
			       .o = o,
			       .timer_fd = timer_fd,
			       .console_fd = console_fd };
	uint64_t start = clock_now_ns();
	struct ftd_loop l = {
		.ops = o->quiet ? &quiet_ops : &ops,
		.opaque = &rl,
		.sig_fd = sig_fd,
		.fds = { vm->event_fd, timer_fd, vm_device_fd(vm) },
		.nr_fds = 3,
		.max_wait_ns = NS_PER_S,
		.next_second_ns = start + NS_PER_S,
		.second_on_grid = true,
		.end_ns = o->duration_ns ? start + o->duration_ns : 0,
	};
	int status;

	rl.rs.window_start_ns = start;
	status = ftd_loop_run(&l);
	print_summary(&rl.rs, clock_now_ns() - start);
	samples_free(&rl.rs.pause_us);
	return status;
}

int ftd_run(const struct ftd_options *o)
{
	struct vm *vm = NULL;
	struct ckpt ckpt = { 0 };
	struct ftd_net net;
	struct virtio_blk *disk = NULL;
	int console_fd = -1, sig_fd = -1, timer_fd = -1, status = 1, r;

	signal(SIGPIPE, SIG_IGN);
	console_fd = ftd_open_console(o->console);
	if (console_fd < 0) {
		log_error("Failed to open console %s: %s", o->console, strerror(errno));
		return 1;
	}
	sig_fd = ftd_signalfd();
	timer_fd = ftd_timerfd(o->interval_ns);
	if (sig_fd < 0 || timer_fd < 0) {
		log_error("Failed to set up signals and timer: %s", strerror(errno));
		goto out;
	}
	status = ftd_make_vm(o, ftd_console_write, &console_fd, true, &net, &disk, &vm);
	if (status)
		goto out;
	status = 1;
	if (ftd_net_attach(&net, false) < 0)
		goto out;
	r = ckpt_init(&ckpt, vm);
	if (r < 0) {
		log_error("Failed to set up checkpoint staging: %s", strerror(-r));
		goto out;
	}
	r = vm_start(vm);
	if (r < 0) {
		log_error("Failed to start vCPU threads: %s", strerror(-r));
		goto out;
	}
	ftd_owner_priority(o, vm);
	log_info("running %s: %llu MiB, %u vCPUs, %s tracking%s, checkpoint every %.3f ms",
		 o->guest, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking),
		 o->tracking == DIRTY_RING && vm->ring_acq_rel ? " (acq_rel)" : "",
		 (double)o->interval_ns / NS_PER_MS);
	status = run_loop(vm, &ckpt, &net, disk, o, sig_fd, timer_fd, console_fd);
out:
	ckpt_free(&ckpt);
	vm_free(vm);
	if (timer_fd >= 0)
		close(timer_fd);
	if (sig_fd >= 0)
		close(sig_fd);
	close(console_fd);
	return status;
}
