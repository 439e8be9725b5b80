// SPDX-License-Identifier: MIT
/*
 * vCPUs: creation, the KVM_RUN loop on each vCPU's thread, exit dispatch, and the
 * pause protocol.
 *
 * Pausing. The owner sets vm->pausing and a new pause_seq under vm->lock, then
 * for every vCPU stores run->immediate_exit = 1 and sends SIGUSR1 to its thread:
 *  - a thread inside KVM_RUN is interrupted by the signal and returns EINTR;
 *  - a thread about to enter KVM_RUN sees immediate_exit and returns EINTR at once,
 *    so a kick that lands just before entry is not lost;
 *  - a thread handling an exit finishes it, re-enters KVM_RUN, which completes the
 *    pending I/O instruction first (KVM finishes in/out on re-entry) and then
 *    returns EINTR because of immediate_exit: saved state is then consistent.
 * On EINTR the thread parks: it acknowledges the pause (saving its own state first
 * when asked, so vCPUs save in parallel) and waits on resume_cond. It clears
 * immediate_exit itself, under vm->lock, only when no pause is pending: a clear
 * cannot erase the kick of a pause that started after it looked.
 * A vCPU whose dirty ring is full, or that stopped for good, parks the same way
 * and still acknowledges pauses, so the owner never waits for it.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "guest/guest_abi.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* How long the owner polls for acknowledgements before sleeping. */
#define VM_PAUSE_POLL_NS 500000ULL
/* Parallel work below this many chunks is done by the owner alone. */
#define VM_PARALLEL_MIN_CHUNKS 8
/* How long the owner waits for an acknowledgement before kicking again. */
#define VM_PAUSE_REKICK_NS 2000000L

int vcpu_cpuid(struct vm *vm, unsigned int id, struct kvm_cpuid2 **ret)
{
	struct kvm_cpuid2 *cpuid;
	int nent = 128, r;

	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return -ENOMEM;
		cpuid->nent = (uint32_t)nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		r = -errno;
		free(cpuid);
		if (r != -E2BIG || nent >= 4096)
			return r;
		nent *= 2;
	}
	/*
	 * KVM reports the APIC ID of whichever host CPU ran the ioctl: replace it
	 * with the vCPU's own, so the guest sees consistent IDs and two hosts (or
	 * two runs) present the same CPUID.
	 */
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffffu) | (id << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = id;
		else if (e->function == 0x8000001e)
			e->eax = id;
	}
	*ret = cpuid;
	return 0;
}

static int vcpu_set_cpuid(struct vcpu *v)
{
	struct kvm_cpuid2 *cpuid;
	int r = vcpu_cpuid(v->vm, v->id, &cpuid);

	if (r < 0)
		return r;
	r = ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	return r;
}

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **ret_vcpu)
{
	struct vcpu *v;
	int r;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		r = -errno;
		goto fail;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		r = -errno;
		goto fail;
	}
	v->saved = aligned_alloc(64, sizeof(*v->saved));
	if (!v->saved) {
		r = -ENOMEM;
		goto fail;
	}
	memset(v->saved, 0, sizeof(*v->saved));
	r = vcpu_set_cpuid(v);
	if (r < 0)
		goto fail;
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	if (r > 0 && (r & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS)) ==
			     (KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS)) {
		/* kvm_dirty_regs stays 0: KVM never loads state from this copy. */
		v->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS;
		v->sync_regs = true;
	}
	if (vm->dirty->vcpu_init) {
		r = vm->dirty->vcpu_init(vm, v);
		if (r < 0)
			goto fail;
	}
	/*
	 * With the in-kernel irqchip, APs start in INIT_RECEIVED and KVM_RUN would
	 * block until a SIPI: our guests enter every vCPU directly.
	 */
	if (id > 0) {
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
			r = -errno;
			goto fail;
		}
	}
	*ret_vcpu = v;
	return 0;
fail:
	vcpu_free(v);
	return r;
}

void vcpu_free(struct vcpu *v)
{
	if (!v)
		return;
	if (v->vm->dirty->vcpu_free)
		v->vm->dirty->vcpu_free(v->vm, v);
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v->saved);
	free(v);
}

static void vm_notify(struct vm *vm, unsigned int event)
{
	uint64_t one = 1;

	/* Caller holds vm->lock. */
	vm->events |= event;
	if (write(vm->event_fd, &one, sizeof(one)) < 0) {
		/* Counter saturated: the owner has a wake-up pending anyway. */
	}
}

/*
 * Claim and run chunks of work `seq` (fn, arg and chunks as published with it,
 * read under vm->lock) until none is left. The claim is a compare-and-swap on
 * (seq, next chunk): a thread that woke late for one piece of work can never
 * claim a chunk of the next.
 */
static void run_work_chunks(struct vm *vm, uint32_t seq, vm_work_fn fn, void *arg, uint32_t chunks)
{
	uint64_t t = __atomic_load_n(&vm->work_ticket, __ATOMIC_ACQUIRE);

	for (;;) {
		uint32_t next = (uint32_t)t;

		if ((uint32_t)(t >> 32) != seq || next >= chunks)
			return;
		if (!__atomic_compare_exchange_n(&vm->work_ticket, &t, t + 1, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			continue;
		fn(arg, next);
		__atomic_add_fetch(&vm->work_done, 1, __ATOMIC_RELEASE);
		t++;
	}
}

void vm_paused_parallel(struct vm *vm, vm_work_fn fn, void *arg, uint32_t nr_chunks)
{
	/* One look at the policy per call, not per spin of the wait below. */
	bool normal = sched_getscheduler(0) == SCHED_OTHER;
	uint32_t seq;

	if (!nr_chunks)
		return;
	pthread_mutex_lock(&vm->lock);
	seq = ++vm->work_seq;
	vm->work_fn = fn;
	vm->work_arg = arg;
	vm->work_chunks = nr_chunks;
	__atomic_store_n(&vm->work_done, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->work_ticket, (uint64_t)seq << 32, __ATOMIC_RELEASE);
	/*
	 * Wake the helpers only when the work is worth a wake-up (tens of us) and
	 * they will not fight the owner for a CPU: with a normal-priority owner and no
	 * CPU to spare, woken helpers preempt it and the pause gets longer (2 vCPUs
	 * on 2 cores: p50 510 us alone, 1557 us with helpers).
	 */
	if (vm->started && nr_chunks >= VM_PARALLEL_MIN_CHUNKS && (vm->pause_poll || !normal))
		pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);

	run_work_chunks(vm, seq, fn, arg, nr_chunks);
	/*
	 * Every chunk is claimed; wait for the ones still running elsewhere. Sleep
	 * between looks rather than spin: a real-time owner spinning could keep a
	 * helper that was queued on this CPU from ever finishing its chunk.
	 */
	while (__atomic_load_n(&vm->work_done, __ATOMIC_ACQUIRE) < nr_chunks) {
		struct timespec ts = { .tv_nsec = 5000 };

		if (vm->pause_poll && normal)
			__builtin_ia32_pause(); /* a helper has a CPU of its own */
		else
			nanosleep(&ts, NULL);
	}
}

/*
 * Park until the VM is neither pausing nor waiting on us, acknowledging every
 * pause request meanwhile. Returns true when the VM is being torn down.
 */
static bool vcpu_park(struct vcpu *v, bool stopped)
{
	struct vm *vm = v->vm;
	bool stopping;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		if (vm->stopping)
			break;
		if (vm->pausing && v->acked_seq != vm->pause_seq) {
			uint64_t seq = vm->pause_seq;
			unsigned int flags = vm->pause_flags;

			pthread_mutex_unlock(&vm->lock);
			v->save_err = 0;
			v->save_ns = 0;
			if (flags & VM_PAUSE_SAVE_STATE) {
				uint64_t t = clock_now_ns();

				v->save_err = vcpu_save_state(v, v->saved);
				v->save_ns = clock_now_ns() - t;
			}
			pthread_mutex_lock(&vm->lock);
			/*
			 * The last to park harvests while everyone else is parked and
			 * the owner waits for it (harvest.c says why here).
			 */
			if ((flags & VM_PAUSE_HARVEST) && vm->nr_acked + 1 == vm->nr_vcpus) {
				pthread_mutex_unlock(&vm->lock);
				vm->pause_harvest_err =
					vm_harvest_quiet(vm, vm->pause_out, vm->pause_dirty_st);
				pthread_mutex_lock(&vm->lock);
			}
			v->acked_seq = seq;
			/* Atomic: vm_pause() polls it without the lock. */
			__atomic_store_n(&vm->nr_acked, vm->nr_acked + 1, __ATOMIC_RELEASE);
			/* Only the last one: each wake-up costs the owner a context switch. */
			if (vm->nr_acked == vm->nr_vcpus)
				pthread_cond_signal(&vm->parked_cond);
			continue;
		}
		if (vm->pausing && v->work_seq != vm->work_seq) {
			uint32_t seq = vm->work_seq, chunks = vm->work_chunks;
			vm_work_fn fn = vm->work_fn;
			void *arg = vm->work_arg;

			v->work_seq = seq;
			pthread_mutex_unlock(&vm->lock);
			run_work_chunks(vm, seq, fn, arg, chunks);
			pthread_mutex_lock(&vm->lock);
			continue;
		}
		if (!vm->pausing && !v->ring_full && !stopped)
			break;
		pthread_cond_wait(&vm->resume_cond, &vm->lock);
	}
	stopping = vm->stopping;
	if (!vm->pausing && !stopping)
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&vm->lock);
	return stopping;
}

static void vcpu_stop(struct vcpu *v, enum vcpu_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void vcpu_stop(struct vcpu *v, enum vcpu_status status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->fail_reason, sizeof(v->fail_reason), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&v->vm->lock);
	v->status = status;
	vm_notify(v->vm, VM_EVENT_STOPPED);
	pthread_mutex_unlock(&v->vm->lock);
}

static void vcpu_io(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint16_t port = run->io.port;
	int is_write = run->io.direction == KVM_EXIT_IO_OUT;

	v->exits.io++;
	if (port == GUEST_PORT_SIGNAL && is_write) {
		uint32_t value = 0;

		memcpy(&value, data, run->io.size < 4 ? run->io.size : 4);
		if (value == GUEST_SIGNAL_PANIC)
			vcpu_stop(v, VCPU_FAILED, "guest panic signal");
		else if (vm->signal_fn)
			vm->signal_fn(vm->signal_opaque, v->id, value);
		return;
	}
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];

		if (port >= d->port_base && port < d->port_base + d->port_len) {
			d->ops->io(d, port, is_write, data, run->io.size, run->io.count);
			return;
		}
	}
	/* No device: reads float high, writes vanish, as on a real bus. */
	if (!is_write)
		memset(data, 0xff, (size_t)run->io.size * run->io.count);
}

static void vcpu_crash(struct vcpu *v)
{
	ioctl(v->fd, KVM_GET_REGS, &v->crash_regs);
	ioctl(v->fd, KVM_GET_SREGS, &v->crash_sregs);
	vcpu_stop(v, VCPU_CRASHED,
		  "triple fault (KVM_EXIT_SHUTDOWN) at rip=0x%llx rsp=0x%llx cr2=0x%llx",
		  (unsigned long long)v->crash_regs.rip, (unsigned long long)v->crash_regs.rsp,
		  (unsigned long long)v->crash_sregs.cr2);
}

enum exit_action {
	EXIT_CONTINUE,
	EXIT_PARK, /* wait for the owner (full dirty ring) */
	EXIT_STOP, /* the vCPU cannot go on */
};

static enum exit_action vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return v->status == VCPU_RUNNING ? EXIT_CONTINUE : EXIT_STOP;
	case KVM_EXIT_MMIO:
		/* No MMIO devices: reads return all ones, writes are dropped. */
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		v->exits.other++;
		return EXIT_CONTINUE;
	case KVM_EXIT_DIRTY_RING_FULL:
		/* Not an error: park until the owner harvested and reset the rings. */
		v->exits.ring_full++;
		pthread_mutex_lock(&v->vm->lock);
		v->ring_full = true;
		vm_notify(v->vm, VM_EVENT_RING_FULL);
		pthread_mutex_unlock(&v->vm->lock);
		return EXIT_PARK;
	case KVM_EXIT_INTR:
		v->exits.intr++;
		return EXIT_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v);
		return EXIT_STOP;
	case KVM_EXIT_HLT:
		vcpu_stop(v, VCPU_FAILED, "guest halted");
		return EXIT_STOP;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_stop(v, VCPU_FAILED, "entry failed, hardware reason 0x%llx",
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return EXIT_STOP;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_stop(v, VCPU_FAILED, "KVM internal error, suberror %u",
			  run->internal.suberror);
		return EXIT_STOP;
	default:
		vcpu_stop(v, VCPU_FAILED, "unhandled exit reason %u", run->exit_reason);
		return EXIT_STOP;
	}
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	sigset_t kick;

	/* A mask inherited from the creator must not swallow the kicks. */
	sigemptyset(&kick);
	sigaddset(&kick, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		int run = ioctl(v->fd, KVM_RUN, 0);

		/* Every return, EINTR included, stored the synced registers. */
		v->run_state_fresh = v->sync_regs;
		if (run < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (vcpu_park(v, false))
					break;
				continue;
			}
			vcpu_stop(v, VCPU_FAILED, "KVM_RUN failed: %s", strerror(errno));
			break;
		}
		switch (vcpu_handle_exit(v)) {
		case EXIT_CONTINUE:
			continue;
		case EXIT_PARK:
			if (vcpu_park(v, false))
				return NULL;
			continue;
		case EXIT_STOP:
			break;
		}
		break;
	}
	/* Stopped for good: keep acknowledging pauses until the VM goes away. */
	vcpu_park(v, true);
	return NULL;
}

static void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	pthread_kill(v->thread, SIGUSR1);
}

int vm_pause(struct vm *vm, unsigned int flags, struct vm_pause_stats *st)
{
	uint64_t t0 = clock_now_ns();
	int err = 0;

	if (!vm->started) {
		for (unsigned int i = 0; i < vm->nr_vcpus && (flags & VM_PAUSE_SAVE_STATE); i++) {
			err = vcpu_save_state(vm->vcpus[i], vm->vcpus[i]->saved);
			if (err < 0)
				return err;
		}
		return 0;
	}
	pthread_mutex_lock(&vm->lock);
	vm->pausing = true;
	vm->pause_flags = flags;
	vm->pause_seq++;
	vm->nr_acked = 0;
	/* Wake vCPUs parked on a full ring or stopped, so they acknowledge too. */
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);

	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);

	/*
	 * The guest is stopping: waiting is guest-visible downtime, and sleeping on
	 * the condition variable adds a wake-up of this thread (tens of us on a
	 * nested host). When every vCPU thread can have a CPU of its own besides
	 * this one, poll for a while first; otherwise polling would keep a vCPU
	 * thread from the CPU it needs to acknowledge.
	 */
	if (vm->pause_poll)
		for (uint64_t until = clock_now_ns() + VM_PAUSE_POLL_NS;
		     __atomic_load_n(&vm->nr_acked, __ATOMIC_ACQUIRE) < vm->nr_vcpus &&
		     clock_now_ns() < until;)
			__builtin_ia32_pause();
	pthread_mutex_lock(&vm->lock);
	while (vm->nr_acked < vm->nr_vcpus) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += VM_PAUSE_REKICK_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&vm->parked_cond, &vm->lock, &ts) != ETIMEDOUT)
			continue;
		/*
		 * A kick can only be lost if the signal reached a thread that was
		 * not running and its way back into the guest missed it: kick the
		 * stragglers again rather than wait forever.
		 */
		for (unsigned int i = 0; i < vm->nr_vcpus; i++)
			if (vm->vcpus[i]->acked_seq != vm->pause_seq) {
				vm->vcpus[i]->rekicks++;
				vcpu_kick(vm->vcpus[i]);
			}
	}
	pthread_mutex_unlock(&vm->lock);

	if (st) {
		st->kick_ns = clock_now_ns() - t0;
		st->save_ns = 0;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v->save_err < 0 && !err)
			err = v->save_err;
		/* Saves run in parallel: the slowest one is what the pause paid. */
		if (st && v->save_ns > st->save_ns)
			st->save_ns = v->save_ns;
	}
	return err;
}

void vm_resume(struct vm *vm)
{
	if (!vm->started)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->pausing = false;
	/* Rings were harvested and reset while paused: full vCPUs may go on. */
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i]->ring_full = false;
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);
}
