// SPDX-License-Identifier: MIT
/*
 * The harvested dirty set equals exactly the set of pages the guest wrote, for
 * both tracking backends, one and several vCPUs, and with a ring so small that
 * the guest fills it many times per round (KVM_EXIT_DIRTY_RING_FULL: the vCPU
 * parks, the owner harvests early, nothing is lost).
 *
 * builtin:touch writes a known set of pages per round and nothing else; the test
 * blocks every vCPU at its READY signal to discard the set-up writes, then checks
 * each round's harvest against the computed set (plus the parameter page the
 * VMM writes to start the next round); the guest's page-table pages may be in
 * it too, as nested paging makes KVM log them (see compare()).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include <liburing.h>

#include "guest/layout.h"
#include "primary/checkpoint.h"
#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"

struct sync {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int ready;
	bool release;
	unsigned int done[GUEST_MAX_VCPUS];
};

static void sync_hook(void *opaque, unsigned int vcpu, uint32_t value)
{
	struct sync *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (value == GUEST_SIGNAL_READY) {
		s->ready++;
		pthread_cond_broadcast(&s->cond);
		/* Hold the vCPU outside KVM_RUN until the set-up writes are discarded. */
		while (!s->release)
			pthread_cond_wait(&s->cond, &s->lock);
	} else if (value == GUEST_SIGNAL_DONE && vcpu < GUEST_MAX_VCPUS) {
		s->done[vcpu]++;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
}

static bool all_done(struct sync *s, unsigned int nr_vcpus, unsigned int rounds)
{
	bool ok = true;

	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < nr_vcpus; i++)
		ok &= s->done[i] >= rounds;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

struct scenario {
	const char *name;
	enum dirty_mode mode;
	unsigned int vcpus;
	uint32_t ring_entries;
	uint32_t count;
	uint32_t span;
	unsigned int rounds;
	bool expect_ring_full;
	bool pester; /* io_uring completions and signals aimed at the harvesting thread */
};

/*
 * A pest: what the daemon's owner thread lives with. Every ~50 us another thread
 * writes an eventfd that a multishot poll on the owner's io_uring watches (each
 * completion queues task work on the owner, which KVM sees as a pending signal)
 * and sends the owner a real signal. KVM_RESET_DIRTY_RINGS issued from such a
 * thread bails out with a pending signal and loses up to 64 entries' write
 * protection (docs/dirty-ring-reset.md): later writes to those pages are never
 * logged, and the exact-set comparison reports them missing.
 */
struct pest {
	pthread_t thread, target;
	struct io_uring ring;
	int efd;
	bool stop;
	uint64_t shots;
	uint64_t completions; /* CQEs the owner reaped: task work really arrived */
};

static void pest_handler(int sig)
{
	(void)sig;
}

static void *pest_main(void *arg)
{
	struct pest *p = arg;
	struct timespec ts = { .tv_nsec = 50000 };

	while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		uint64_t one = 1;

		if (write(p->efd, &one, sizeof(one)) < 0) {
			/* The counter saturated: the poll fires on the next write anyway. */
		}
		pthread_kill(p->target, SIGUSR2);
		p->shots++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void pest_arm(struct pest *p)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

	CHECK(sqe, "pest: no SQE");
	io_uring_prep_poll_multishot(sqe, p->efd, POLLIN);
	CHECK(io_uring_submit(&p->ring) == 1, "pest: submit failed");
}

static void pest_start(struct pest *p)
{
	struct sigaction sa = { .sa_handler = pest_handler }; /* no SA_RESTART */

	memset(p, 0, sizeof(*p));
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(p->efd >= 0, "eventfd: %s", strerror(errno));
	CHECK_OK(io_uring_queue_init(256, &p->ring, 0));
	pest_arm(p);
	p->target = pthread_self();
	CHECK(pthread_create(&p->thread, NULL, pest_main, p) == 0, "pthread_create");
}

/* Reaps completions (and re-arms a poll that ended): the owner's own loop. */
static void pest_reap(struct pest *p)
{
	struct io_uring_cqe *cqe;
	uint64_t val;
	bool rearm = false;

	while (io_uring_peek_cqe(&p->ring, &cqe) == 0) {
		if (!(cqe->flags & IORING_CQE_F_MORE))
			rearm = true;
		io_uring_cqe_seen(&p->ring, cqe);
		p->completions++;
	}
	if (read(p->efd, &val, sizeof(val)) < 0) {
		/* Nothing written since the last read. */
	}
	if (rearm)
		pest_arm(p);
}

static void pest_stop(struct pest *p)
{
	__atomic_store_n(&p->stop, true, __ATOMIC_RELEASE);
	pthread_join(p->thread, NULL);
	io_uring_queue_exit(&p->ring);
	close(p->efd);
	signal(SIGUSR2, SIG_IGN);
}

static void expected_set(struct vm *vm, const struct guest_params *gp, unsigned int round,
			 struct dirty_set *exp)
{
	uint64_t page;

	dirty_set_clear(exp);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		uint64_t base = guest_touch_base(gp, i);

		for (uint64_t k = 0; k < gp->touch_count; k++) {
			uint64_t off = (k * gp->touch_stride) & (gp->touch_span - 1);

			CHECK_OK(vm_gpa_to_page(vm, base + off * GUEST_PAGE_SIZE, &page));
			dirty_set_add(exp, page);
		}
	}
	/* The VMM bumped params->go to start this round. */
	if (round > 0) {
		CHECK_OK(vm_gpa_to_page(vm, GUEST_PARAMS_GPA, &page));
		dirty_set_add(exp, page);
	}
}

/*
 * The guest's page tables, written by the CPU's page walk rather than by the
 * guest: with nested paging (AMD NPT; Intel EPT with its A/D flags) a walk's
 * accesses to guest page tables count as writes, so KVM logs those pages even
 * though their A/D bits are preset. Shadow paging (kvm_pvm) does not. They may
 * or may not be in a harvest; any other page beyond the expected set is a
 * real extra.
 */
static bool is_page_table(const struct vm *vm, uint64_t page)
{
	uint64_t first, last;

	CHECK_OK(vm_gpa_to_page(vm, GUEST_PT_GPA, &first));
	CHECK_OK(vm_gpa_to_page(vm, GUEST_PT_END - 1, &last));
	return page >= first && page <= last;
}

static uint64_t page_tables_in(const struct vm *vm, const struct dirty_set *set)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < set->count; i++)
		n += is_page_table(vm, set->pages[i]);
	return n;
}

/*
 * vCPU i's exception page, written by its handler when it retried a spurious
 * page fault (guest/README.md, "Exceptions"): never on a correct CPU, but the
 * emulated machine raises some; the guest then wrote it, so it belongs in the set.
 */
static bool is_retry_report(const struct vm *vm, uint64_t page)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		uint64_t p;

		CHECK_OK(vm_gpa_to_page(vm, GUEST_EXC_STACK_GPA + i * GUEST_PAGE_SIZE, &p));
		if (p == page && vm->vcpus[i]->exits.faults_retried)
			return true;
	}
	return false;
}

static void compare(const struct scenario *sc, const struct vm *vm, unsigned int round,
		    struct dirty_set *got, struct dirty_set *exp)
{
	uint64_t missing = 0, extra = 0, first_missing = 0, first_extra = 0;

	for (uint64_t i = 0; i < exp->count; i++)
		if (!dirty_set_test(got, exp->pages[i]) && !missing++)
			first_missing = exp->pages[i];
	for (uint64_t i = 0; i < got->count; i++) {
		uint64_t page = got->pages[i];

		if (!dirty_set_test(exp, page) && !is_page_table(vm, page) &&
		    !is_retry_report(vm, page) && !extra++)
			first_extra = page;
	}
	CHECK(!missing && !extra,
	      "%s round %u: harvested %llu pages, expected %llu: %llu missing (first page "
	      "%llu), %llu extra (first page %llu)",
	      sc->name, round, (unsigned long long)got->count, (unsigned long long)exp->count,
	      (unsigned long long)missing, (unsigned long long)first_missing,
	      (unsigned long long)extra, (unsigned long long)first_extra);
}

static void run_scenario(const struct scenario *sc)
{
	struct vm_config cfg = { .mem_size = 256ULL << 20,
				 .nr_vcpus = sc->vcpus,
				 .tracking = sc->mode,
				 .ring_entries = sc->ring_entries };
	struct sync s = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct t_console console;
	struct guest_params gp;
	struct dirty_set got, exp;
	uint64_t early = 0, ring_full_exits = 0, deadline;
	struct pest pest;
	struct vm *vm;

	t_console_init(&console);
	loader_default_params(&gp);
	gp.touch_base_gpa = 16ULL << 20;
	gp.touch_count = sc->count;
	gp.touch_span = sc->span;
	gp.touch_stride = (0x9e3779b1u & (sc->span - 1)) | 1;
	gp.touch_rounds = 0;
	vm = t_vm_new(&cfg, "builtin:touch", &gp, &console);
	vm_set_signal_hook(vm, sync_hook, &s);
	CHECK_OK(dirty_set_init(&got, vm->nr_pages));
	CHECK_OK(dirty_set_init(&exp, vm->nr_pages));
	CHECK_OK(vm_start(vm));

	deadline = t_now_ns() + 20000000000ULL;
	pthread_mutex_lock(&s.lock);
	while (s.ready < sc->vcpus) {
		pthread_mutex_unlock(&s.lock);
		CHECK(t_now_ns() < deadline, "%s: vCPUs never signalled READY", sc->name);
		t_sleep_ms(1);
		pthread_mutex_lock(&s.lock);
	}
	/* Every vCPU is parked in the hook, outside KVM_RUN: discard set-up writes. */
	CHECK_OK(vm_harvest(vm, &got, NULL));
	dirty_set_clear(&got);
	s.release = true;
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	if (sc->pester)
		pest_start(&pest);

	for (unsigned int round = 0; round < sc->rounds; round++) {
		deadline = t_now_ns() + 30000000000ULL;
		while (!all_done(&s, sc->vcpus, round + 1)) {
			struct pollfd pfd = { .fd = vm->event_fd, .events = POLLIN };
			unsigned int ev;

			CHECK(t_now_ns() < deadline, "%s round %u: guest did not finish", sc->name,
			      round);
			poll(&pfd, 1, 5);
			if (sc->pester)
				pest_reap(&pest);
			ev = vm_take_events(vm);
			CHECK(!(ev & VM_EVENT_STOPPED), "%s: %s", sc->name, t_stopped_reason(vm));
			if (ev & VM_EVENT_RING_FULL) {
				/* The early checkpoint: harvest what the full rings hold. */
				early++;
				CHECK_OK(vm_pause(vm, 0, NULL));
				CHECK_OK(vm_harvest(vm, &got, NULL));
				vm_resume(vm);
			}
		}
		/* Both quiet places: the last vCPU to park, and the harvest thread. */
		if (round % 2) {
			CHECK_OK(vm_pause_harvest(vm, 0, &got, NULL, NULL));
		} else {
			CHECK_OK(vm_pause(vm, 0, NULL));
			CHECK_OK(vm_harvest(vm, &got, NULL));
		}
		expected_set(vm, &gp, round, &exp);
		compare(sc, vm, round, &got, &exp);
		dirty_set_clear(&got);
		/* Start the next round: a VMM write, tracked like any other. */
		CHECK_OK(vm_write_guest(vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
					&(uint64_t){ round + 1 }, sizeof(uint64_t)));
		vm_resume(vm);
	}
	if (sc->pester) {
		pest_stop(&pest);
		/* Else the scenario proved nothing: the harvests were never under fire. */
		CHECK(pest.shots >= sc->rounds && pest.completions >= sc->rounds,
		      "%s: the pest fired %llu times, %llu completions reaped, in %u rounds",
		      sc->name, (unsigned long long)pest.shots,
		      (unsigned long long)pest.completions, sc->rounds);
		printf("    (pest: %llu eventfd writes and signals at the harvesting thread, "
		       "%llu completions)\n",
		       (unsigned long long)pest.shots, (unsigned long long)pest.completions);
	}
	/*
	 * Pages ever touched (what an initial sync reads): every page of the last
	 * round, and nothing of the untouched half of each vCPU's span.
	 */
	for (uint64_t i = 0; i < exp.count; i++)
		CHECK(vm_page_touched(vm, exp.pages[i]), "%s: page %llu written but not touched",
		      sc->name, (unsigned long long)exp.pages[i]);
	for (unsigned int i = 0; i < vm->nr_vcpus && sc->count < sc->span; i++) {
		uint64_t base, page, untouched = 0;

		CHECK_OK(vm_gpa_to_page(vm, guest_touch_base(&gp, i), &base));
		for (page = base; page < base + sc->span; page++)
			untouched += !vm_page_touched(vm, page);
		CHECK(untouched == sc->span - sc->count,
		      "%s: vCPU %u: %llu pages of its span untouched, expected %u", sc->name, i,
		      (unsigned long long)untouched, sc->span - sc->count);
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		ring_full_exits += vm->vcpus[i]->exits.ring_full;
	if (sc->expect_ring_full)
		CHECK(ring_full_exits > 0 && early > 0, "%s: the ring never filled (%llu exits)",
		      sc->name, (unsigned long long)ring_full_exits);
	printf("ok: %-28s %u vCPU(s), %u rounds of %u pages/vCPU, exact; "
	       "ring-full exits %llu, early harvests %llu\n",
	       sc->name, sc->vcpus, sc->rounds, sc->count, (unsigned long long)ring_full_exits,
	       (unsigned long long)early);
	vm_free(vm);
	dirty_set_free(&got);
	dirty_set_free(&exp);
	t_console_free(&console);
}

/*
 * builtin:touch on `vcpus` vCPUs, with a ring big enough for a round, its
 * vCPUs never held at READY (the first capture also takes the set-up writes),
 * an expected-set buffer and a checkpoint capture: what the capture and live
 * scenarios share. Not started.
 */
static struct vm *touch_capture_vm(unsigned int vcpus, uint32_t count, uint32_t span,
				   struct sync *s, struct guest_params *gp,
				   struct t_console *console, struct dirty_set *exp,
				   struct ckpt *ckpt)
{
	struct vm_config cfg = { .mem_size = 256ULL << 20,
				 .nr_vcpus = vcpus,
				 .tracking = DIRTY_RING,
				 .ring_entries = 16384 };
	struct vm *vm;

	t_console_init(console);
	loader_default_params(gp);
	gp->touch_base_gpa = 16ULL << 20;
	gp->touch_count = count;
	gp->touch_span = span;
	gp->touch_stride = (0x9e3779b1u & (span - 1)) | 1;
	vm = t_vm_new(&cfg, "builtin:touch", gp, console);
	vm_set_signal_hook(vm, sync_hook, s);
	s->release = true;
	CHECK_OK(dirty_set_init(exp, vm->nr_pages));
	CHECK_OK(ckpt_init(ckpt, vm));
	return vm;
}

/*
 * The same through a real checkpoint capture: the epoch's page list is exact, and
 * the staging buffer (filled by the owner and the parked vCPU threads together)
 * holds each page as the guest left it: the touch guest writes round + 1 into
 * every page it touches, then only reads while waiting.
 */
static void capture_scenario(unsigned int vcpus, uint32_t count, uint32_t span)
{
	struct sync s = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct t_console console;
	struct guest_params gp;
	struct dirty_set exp;
	struct ckpt ckpt;
	struct ckpt_timing t;
	struct vm *vm = touch_capture_vm(vcpus, count, span, &s, &gp, &console, &exp, &ckpt);

	CHECK_OK(vm_start(vm));
	for (unsigned int round = 0; round < 4; round++) {
		uint64_t deadline = t_now_ns() + 30000000000ULL, identical = 0;

		while (!all_done(&s, vcpus, round + 1)) {
			CHECK(t_now_ns() < deadline, "capture round %u: guest did not finish",
			      round);
			CHECK(!(vm_take_events(vm) & VM_EVENT_STOPPED), "%s", t_stopped_reason(vm));
			t_sleep_ms(1);
		}
		CHECK_OK(ckpt_capture(&ckpt, &t));
		if (round > 0) {
			expected_set(vm, &gp, round, &exp);
			compare(&(struct scenario){ .name = "capture" }, vm, round, &ckpt.dirty,
				&exp);
		}
		CHECK(ckpt.batch == 0 && ckpt.staged == ckpt.dirty.count,
		      "capture round %u: %llu slots from %llu for %llu pages", round,
		      (unsigned long long)ckpt.staged, (unsigned long long)ckpt.batch,
		      (unsigned long long)ckpt.dirty.count);
		for (uint64_t k = 0; k < ckpt.staged; k++) {
			const uint8_t *staged = ckpt.staging + k * VM_PAGE_SIZE;

			identical += !memcmp(staged, vm_page_hva(vm, ckpt.list[k]), VM_PAGE_SIZE);
		}
		CHECK(identical == ckpt.dirty.count,
		      "capture round %u: %llu of %llu staged pages differ from guest memory", round,
		      (unsigned long long)(ckpt.dirty.count - identical),
		      (unsigned long long)ckpt.dirty.count);
		for (unsigned int i = 0; i < vcpus; i++) {
			uint64_t page, word;

			CHECK_OK(vm_gpa_to_page(vm, guest_touch_base(&gp, i), &page));
			memcpy(&word, vm_page_hva(vm, page), sizeof(word));
			CHECK(word == round + 1, "vCPU %u wrote %llu in round %u", i,
			      (unsigned long long)word, round);
		}
		CHECK_OK(vm_write_guest(vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
					&(uint64_t){ round + 1 }, sizeof(uint64_t)));
	}
	printf("ok: capture, %u vCPU(s), %u pages/vCPU: page lists exact, staged copies "
	       "identical to guest memory\n",
	       vcpus, count);
	ckpt_free(&ckpt);
	vm_free(vm);
	dirty_set_free(&exp);
	t_console_free(&console);
}

/*
 * Live harvests between captures: round r's pages are harvested and copied while
 * the guest runs, then the guest writes them all again (round r + 1) and the
 * capture copies them again, into later staging slots. Each checkpoint's page
 * set is exactly both rounds' pages (plus the `go` page), the live batch and
 * the pause's batch each hold all of them, the last copy of every page in
 * staging order (what the secondary ends up with) equals guest memory, and a
 * capture takes one live batch only.
 */
static void wait_rounds(struct sync *s, unsigned int vcpus, unsigned int rounds)
{
	uint64_t deadline = t_now_ns() + 30000000000ULL;

	while (!all_done(s, vcpus, rounds)) {
		CHECK(t_now_ns() < deadline, "guest did not finish round %u", rounds);
		t_sleep_ms(1);
	}
}

/* Whether the last staged copy of every page (wire order) equals guest memory. */
static uint64_t last_copies_differ(struct vm *vm, const struct ckpt *ckpt)
{
	uint64_t *last = calloc(vm->nr_pages, sizeof(*last)), differ = 0;

	CHECK(last, "out of memory");
	for (uint64_t k = 0; k < ckpt->staged; k++)
		last[ckpt->list[k]] = k + 1;
	for (uint64_t k = 0; k < ckpt->dirty.count; k++) {
		uint64_t page = ckpt->dirty.pages[k];

		CHECK(last[page], "page %llu is in the checkpoint but not staged",
		      (unsigned long long)page);
		differ += !!memcmp(ckpt->staging + (last[page] - 1) * VM_PAGE_SIZE,
				   vm_page_hva(vm, page), VM_PAGE_SIZE);
	}
	free(last);
	return differ;
}

static void live_scenario(unsigned int vcpus, uint32_t count, uint32_t span)
{
	struct sync s = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct t_console console;
	struct guest_params gp;
	struct dirty_set exp;
	struct ckpt ckpt;
	struct ckpt_timing t;
	uint64_t go = 0, live_total = 0;
	struct vm *vm = touch_capture_vm(vcpus, count, span, &s, &gp, &console, &exp, &ckpt);

	CHECK_OK(vm_start(vm));
	wait_rounds(&s, vcpus, 1);
	CHECK_OK(ckpt_capture(&ckpt, &t)); /* set-up writes and round 0 */
	for (unsigned int cp = 1; cp <= 4; cp++) {
		uint64_t differ;
		int n;

		/* Round 2cp-1, harvested live while the guest spins. */
		CHECK_OK(vm_write_guest(vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
					&(uint64_t){ ++go }, sizeof(uint64_t)));
		wait_rounds(&s, vcpus, 2 * cp);
		n = ckpt_live_harvest(&ckpt);
		CHECK(n >= 0 && (uint64_t)n - page_tables_in(vm, &ckpt.fresh) == count * vcpus + 1,
		      "live harvest %u: %d pages (%llu of them page tables), expected %u", cp, n,
		      (unsigned long long)page_tables_in(vm, &ckpt.fresh), count * vcpus + 1);
		CHECK(ckpt.batch == 0 && ckpt.staged == (uint64_t)n,
		      "live batch in slots %llu-%llu, expected 0-%d",
		      (unsigned long long)ckpt.batch, (unsigned long long)ckpt.staged, n);
		CHECK(ckpt_live_harvest(&ckpt) == -EBUSY, "a second live batch for one capture");
		/* Round 2cp writes the same pages again: the capture copies them anew. */
		CHECK_OK(vm_write_guest(vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
					&(uint64_t){ ++go }, sizeof(uint64_t)));
		wait_rounds(&s, vcpus, 2 * cp + 1);
		CHECK_OK(ckpt_capture(&ckpt, &t));
		expected_set(vm, &gp, 1, &exp);
		compare(&(struct scenario){ .name = "live" }, vm, cp, &ckpt.dirty, &exp);
		CHECK(t.live_pages == 0, "checkpoint %u: %llu live pages not copied again", cp,
		      (unsigned long long)t.live_pages);
		CHECK(ckpt.batch == (uint64_t)n &&
			      ckpt.staged - ckpt.batch ==
				      exp.count + page_tables_in(vm, &ckpt.fresh),
		      "checkpoint %u: pause batch in slots %llu-%llu, expected %d-%llu", cp,
		      (unsigned long long)ckpt.batch, (unsigned long long)ckpt.staged, n,
		      (unsigned long long)(n + exp.count));
		differ = last_copies_differ(vm, &ckpt);
		CHECK(!differ,
		      "checkpoint %u: %llu of %llu pages' last copies differ from guest memory", cp,
		      (unsigned long long)differ, (unsigned long long)ckpt.dirty.count);
		live_total += (uint64_t)n;
	}
	/* Pages harvested live and then forgotten come back in the next capture. */
	CHECK_OK(vm_write_guest(vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
				&(uint64_t){ ++go }, sizeof(uint64_t)));
	wait_rounds(&s, vcpus, 10);
	CHECK(ckpt_live_harvest(&ckpt) > 0, "no live pages before forgetting");
	ckpt_live_forget(&ckpt);
	CHECK_OK(ckpt_capture(&ckpt, &t));
	expected_set(vm, &gp, 1, &exp);
	compare(&(struct scenario){ .name = "live, forgotten" }, vm, 5, &ckpt.dirty, &exp);
	printf("ok: live harvest, %u vCPU(s), %u pages/vCPU: %llu pages harvested live, "
	       "rewritten pages copied again after them, page sets exact, last copies "
	       "identical\n",
	       vcpus, count, (unsigned long long)live_total);
	ckpt_free(&ckpt);
	vm_free(vm);
	dirty_set_free(&exp);
	t_console_free(&console);
}

int main(void)
{
	static const struct scenario scenarios[] = {
		{ "ring, 1 vCPU", DIRTY_RING, 1, 4096, 300, 1024, 5, false, false },
		{ "ring, 3 vCPUs", DIRTY_RING, 3, 4096, 500, 1024, 5, false, false },
		{ "bitmap, 1 vCPU", DIRTY_BITMAP, 1, 0, 300, 1024, 5, false, false },
		{ "bitmap, 3 vCPUs", DIRTY_BITMAP, 3, 0, 500, 1024, 5, false, false },
		/* 256 entries (soft limit 192) against 3000 pages a round: many full exits. */
		{ "ring overflow, 1 vCPU", DIRTY_RING, 1, 256, 3000, 4096, 3, true, false },
		{ "ring overflow, 2 vCPUs", DIRTY_RING, 2, 256, 3000, 4096, 3, true, false },
		{ "bitmap large, 2 vCPUs", DIRTY_BITMAP, 2, 0, 3000, 4096, 3, false, false },
		/*
		 * The reset must not be interruptible by what the caller's thread
		 * receives: many short rounds, every harvest under fire.
		 */
		{ "ring pestered, 1 vCPU", DIRTY_RING, 1, 4096, 400, 1024, 400, false, true },
		{ "ring pestered, 2 vCPUs", DIRTY_RING, 2, 4096, 400, 1024, 400, false, true },
		{ "bitmap pestered, 2 vCPUs", DIRTY_BITMAP, 2, 0, 400, 1024, 100, false, true },
	};

	t_require_kvm();
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_scenario(&scenarios[i]);
	capture_scenario(1, 3000, 4096);
	capture_scenario(2, 3000, 4096);
	capture_scenario(3, 100, 256);
	live_scenario(1, 1000, 2048);
	live_scenario(2, 300, 1024);
	return T_EXIT_PASS;
}
