// SPDX-License-Identifier: MIT
/*
 * The pause protocol: how the owner thread stops every vCPU outside KVM_RUN, lends
 * the parked vCPU threads work, and lets them go again; and how a vCPU thread tells
 * the owner it has to stop. vcpu.c runs the guest and calls vcpu_park() and
 * vcpu_report() here; vm.c creates the threads and ends them through here. The
 * pause fields of struct vm and struct vcpu are under vm->lock, but for nr_acked
 * (the owner polls it) and the work ticket and count (atomics, see below).
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
 *
 *   owner                               vCPU thread (each)
 *   pausing = true, pause_seq++  ---->  (in KVM_RUN, or on its way in or out)
 *   immediate_exit = 1, SIGUSR1  ---->  KVM_RUN returns EINTR
 *   polls nr_acked, then waits          vcpu_park(): saves state if asked,
 *     on parked_cond (re-kicks            acked_seq = pause_seq, nr_acked++
 *     stragglers every 2 ms)     <----  the last one signals parked_cond
 *   vm_paused_parallel(): work_seq++,
 *     broadcast resume_cond      ---->  claims chunks alongside the owner
 *   pausing = false, broadcast   ---->  clears immediate_exit, KVM_RUN again
 *
 * Harvesting inside a pause (harvest.c says why): the last vCPU thread to park
 * runs the harvest before it acknowledges, while every other vCPU is parked and the
 * owner waits for this very thread.
 *
 * Teardown is a pause that never ends: vm->stopping, a broadcast and a kick, and
 * every thread leaves its loop; vcpu_park() returns true to tell it so.
 *
 * Events. A vCPU that parks for longer than a pause (full dirty ring, or stopped
 * for good) sets a bit in vm->events and writes vm->event_fd, which the owner
 * polls alongside its other file descriptors and reads with vm_take_events().
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "vmm/pause.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* How long the owner polls for acknowledgements before sleeping. */
#define VM_PAUSE_POLL_NS 500000ULL
/* Parallel work below this many chunks is done by the owner alone. */
#define VM_PARALLEL_MIN_CHUNKS 8
/* How long the owner waits for an acknowledgement before kicking again. */
#define VM_PAUSE_REKICK_NS 2000000L
/* A flag of vm_pause() beside VM_PAUSE_SAVE_STATE: vm_pause_lend_harvest(). */
#define VM_PAUSE_HARVEST 2u

void vm_pause_init(struct vm *vm, unsigned int nr_vcpus)
{
	pthread_condattr_t ca;
	cpu_set_t cpus;

	pthread_mutex_init(&vm->lock, NULL);
	/* vm_pause() waits with a monotonic timeout to re-kick stragglers. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->parked_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&vm->resume_cond, NULL);
	/* CPUs this process may use, not all online ones (cpusets, affinity). */
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
		vm->pause_poll = CPU_COUNT(&cpus) > (int)nr_vcpus;
}

void vm_pause_destroy(struct vm *vm)
{
	pthread_cond_destroy(&vm->parked_cond);
	pthread_cond_destroy(&vm->resume_cond);
	pthread_mutex_destroy(&vm->lock);
}

static void vcpu_kick_handler(int sig)
{
	/* Nothing: interrupting KVM_RUN (EINTR) is the point. See vm_pause(). */
	(void)sig;
}

int vm_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	return sigaction(SIGUSR1, &sa, NULL) < 0 ? -errno : 0;
}

void vcpu_unblock_kick(void)
{
	sigset_t kick;

	/* A mask inherited from the creator must not swallow the kicks. */
	sigemptyset(&kick);
	sigaddset(&kick, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
}

/* Without vm->lock: the store and the signal are what a parked thread waits out. */
static void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	pthread_kill(v->thread, SIGUSR1);
}

void vm_stop_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->stopping = true;
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->thread_started)
			vcpu_kick(vm->vcpus[i]);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v->thread_started)
			pthread_join(v->thread, NULL);
		v->thread_started = false;
	}
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

void vcpu_report(struct vcpu *v, enum vm_event event)
{
	pthread_mutex_lock(&v->vm->lock);
	/* Keeps it in vcpu_park() past the pause, until vm_resume(): rings reset. */
	if (event == VM_EVENT_RING_FULL)
		v->ring_full = true;
	vm_notify(v->vm, event);
	pthread_mutex_unlock(&v->vm->lock);
}

unsigned int vm_take_events(struct vm *vm)
{
	uint64_t v;
	unsigned int ev;

	while (read(vm->event_fd, &v, sizeof(v)) == sizeof(v))
		;
	pthread_mutex_lock(&vm->lock);
	ev = vm->events;
	vm->events = 0;
	pthread_mutex_unlock(&vm->lock);
	return ev;
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

bool vcpu_park(struct vcpu *v, bool stopped)
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
		if (ts.tv_nsec >= (long)NS_PER_S) {
			ts.tv_sec++;
			ts.tv_nsec -= (long)NS_PER_S;
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

int vm_pause_lend_harvest(struct vm *vm, unsigned int flags, struct dirty_set *out,
			  struct dirty_stats *st, struct vm_pause_stats *ps)
{
	int r;

	/* Read by the last vCPU to park; its acknowledgement publishes the result. */
	vm->pause_out = out;
	vm->pause_dirty_st = st;
	vm->pause_harvest_err = 0;
	r = vm_pause(vm, flags | VM_PAUSE_HARVEST, ps);
	vm->pause_out = NULL;
	vm->pause_dirty_st = NULL;
	return r < 0 ? r : vm->pause_harvest_err;
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
