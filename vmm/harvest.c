// SPDX-License-Identifier: MIT
/*
 * Where dirty harvests run, and why there.
 *
 * KVM_RESET_DIRTY_RINGS walks the harvested entries of every ring, gathers
 * neighbouring pages of a slot into a 64-page mask and write-protects each mask
 * once it is complete. Since Linux 6.17 (49005a2a, "KVM: Bail from the dirty
 * ring reset flow if a signal is pending") the walk returns as soon as the
 * calling thread has a signal pending, and the mask it was gathering is dropped:
 * those entries count as reset but their pages are never write-protected again,
 * so later guest writes to them are not logged at all. io_uring completion work
 * queued for the calling thread counts as a pending signal (TIF_NOTIFY_SIGNAL),
 * and the count the ioctl returns can be complete even when a mask was dropped.
 * docs/dirty-ring-reset.md has the measurements and tests/ring_reset_repro.c a
 * minimal reproducer. The bitmap backend is not affected: KVM_CLEAR_DIRTY_LOG
 * re-protects each range before it looks at signals.
 *
 * So a ring reset is only ever issued from a quiet thread: one that blocks every
 * signal and owns no io_uring (what remains are stop and freeze requests for the
 * whole process, see the document). Two threads qualify:
 *  - during a pause, the last vCPU thread to park. Every other vCPU is parked and
 *    the owner is waiting for this very thread, which is awake anyway: the
 *    harvest costs no extra wake-up. vCPU threads never own an io_uring; they
 *    block their kick signal around the harvest (a re-kick may arrive then).
 *  - otherwise (harvests while the guest runs, of a VM that never ran, or by a
 *    caller that asks for one), the VM's harvest thread, started with every
 *    signal blocked, which does nothing else.
 * Pages the VMM wrote itself are not KVM's business: the caller's thread merges
 * them afterwards.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "lib/clock.h"
#include "vmm/pause.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct harvest_req {
	struct dirty_set *out;
	struct dirty_stats *st;
	int ret;
};

/* Runs the backend's harvest with every signal blocked, on the calling thread. */
int vm_harvest_quiet(struct vm *vm, struct dirty_set *out, struct dirty_stats *st)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = vm->dirty->harvest(vm, out, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

static void *harvest_thread_main(void *arg)
{
	struct vm *vm = arg;

	pthread_mutex_lock(&vm->hv_lock);
	for (;;) {
		struct harvest_req *req;

		while (!vm->hv_req && !vm->hv_stop)
			pthread_cond_wait(&vm->hv_cond, &vm->hv_lock);
		if (vm->hv_stop)
			break;
		req = vm->hv_req;
		pthread_mutex_unlock(&vm->hv_lock);
		/* Its mask blocks everything already, from birth. */
		req->ret = vm->dirty->harvest(vm, req->out, req->st);
		pthread_mutex_lock(&vm->hv_lock);
		vm->hv_req = NULL;
		pthread_cond_broadcast(&vm->hv_done_cond);
	}
	pthread_mutex_unlock(&vm->hv_lock);
	return NULL;
}

int vm_harvest_thread_start(struct vm *vm)
{
	sigset_t all, old;
	int r;

	pthread_mutex_init(&vm->hv_lock, NULL);
	pthread_cond_init(&vm->hv_cond, NULL);
	pthread_cond_init(&vm->hv_done_cond, NULL);
	vm->hv_init = true;
	if (!vm->dirty->quiet_harvest)
		return 0;
	/* Created with every signal blocked: no signal can be pending on it, ever. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&vm->hv_thread, NULL, harvest_thread_main, vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		return r;
	pthread_setname_np(vm->hv_thread, "harvest");
	vm->hv_started = true;
	return 0;
}

void vm_harvest_thread_stop(struct vm *vm)
{
	if (!vm->hv_init)
		return;
	if (vm->hv_started) {
		pthread_mutex_lock(&vm->hv_lock);
		vm->hv_stop = true;
		pthread_cond_broadcast(&vm->hv_cond);
		pthread_mutex_unlock(&vm->hv_lock);
		pthread_join(vm->hv_thread, NULL);
		vm->hv_started = false;
	}
	pthread_cond_destroy(&vm->hv_done_cond);
	pthread_cond_destroy(&vm->hv_cond);
	pthread_mutex_destroy(&vm->hv_lock);
	vm->hv_init = false;
}

/*
 * Adds the VMM's own writes since the last harvest to *out, and everything in
 * *out to the pages ever touched (a bit test per page: a few ns).
 */
static void vm_take_vmm_dirty(struct vm *vm, struct dirty_set *out, struct dirty_stats *st)
{
	pthread_mutex_lock(&vm->vmm_dirty_lock);
	for (uint64_t i = 0; i < vm->vmm_dirty.count; i++)
		if (dirty_set_add(out, vm->vmm_dirty.pages[i]) && st)
			st->pages++;
	dirty_set_clear(&vm->vmm_dirty);
	pthread_mutex_unlock(&vm->vmm_dirty_lock);
	for (uint64_t i = 0; i < out->count; i++)
		vm_mark_touched(vm, out->pages[i]);
}

int vm_harvest(struct vm *vm, struct dirty_set *out, struct dirty_stats *st)
{
	struct harvest_req req = { .out = out, .st = st };
	int r;

	if (!vm->hv_started) {
		r = vm->dirty->harvest(vm, out, st);
	} else {
		/* One harvest at a time: the owner is the only caller. */
		pthread_mutex_lock(&vm->hv_lock);
		vm->hv_req = &req;
		pthread_cond_signal(&vm->hv_cond);
		while (vm->hv_req)
			pthread_cond_wait(&vm->hv_done_cond, &vm->hv_lock);
		pthread_mutex_unlock(&vm->hv_lock);
		r = req.ret;
	}
	if (r < 0)
		return r;
	vm_take_vmm_dirty(vm, out, st);
	return 0;
}

int vm_pause_harvest(struct vm *vm, unsigned int flags, struct dirty_set *out,
		     struct dirty_stats *st, struct vm_pause_stats *ps)
{
	struct dirty_stats local = { 0 };
	int r;

	if (!st)
		st = &local;
	if (!vm->started) {
		/* No vCPU thread to lend: pause (saving state if asked), then harvest. */
		r = vm_pause(vm, flags, ps);
		return r < 0 ? r : vm_harvest(vm, out, st);
	}
	r = vm_pause_lend_harvest(vm, flags, out, st, ps);
	if (ps) {
		/* The last vCPU harvested before acknowledging: not kick time. */
		uint64_t h = st->harvest_ns + st->reset_ns;

		ps->kick_ns = ps->kick_ns > h ? ps->kick_ns - h : 0;
	}
	if (r < 0)
		return r;
	vm_take_vmm_dirty(vm, out, st);
	return 0;
}

int vm_harvest_paused(struct vm *vm, struct dirty_set *out)
{
	int r = vm_pause_harvest(vm, 0, out, NULL, NULL);

	vm_resume(vm);
	return r;
}
