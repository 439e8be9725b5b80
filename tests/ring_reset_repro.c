// SPDX-License-Identifier: MIT
/*
 * ring_reset_repro: a self-contained reproducer for lost dirty-ring write
 * protection when KVM_RESET_DIRTY_RINGS runs on a thread with a signal pending
 * (docs/dirty-ring-reset.md). Only <linux/kvm.h>, libc and liburing; none of
 * ringft's code.
 *
 * One vCPU runs, in 64-bit mode at CPL 3, a loop that increments a counter in
 * each of NR_PAGES pages, forever. Every ROUND_US the main thread pauses it
 * (immediate_exit and a signal), walks the ring, resets it, and compares the
 * pages with its copy from the previous round: a page whose contents changed but
 * that the ring did not report was written while unprotected, a missed write.
 * Meanwhile a pest thread, every PEST_US, sends the resetting side a signal
 * (--pest signal) or completes a multishot poll on its io_uring (--pest uring).
 *
 *   ring_reset_repro [--pest none|signal|uring] [--reset caller|quiet] [--rounds N]
 *
 * --reset caller issues the reset from the main thread (which the pest aims at);
 * --reset quiet hands it to a thread created with every signal blocked that owns
 * no io_uring. Exit 0 when no write was missed, 1 when some were, 2 on setup
 * errors. On Linux 6.17 and later, "--pest signal --reset caller" misses writes;
 * "--reset quiet" never does.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <liburing.h>

#define MEM_SIZE  (64UL << 20)
#define PAGE	  4096UL
#define GDT_GPA	  0x1000UL
#define PML4_GPA  0x2000UL
#define PDPT_GPA  0x3000UL
#define PD_GPA	  0x4000UL
#define TSS_GPA	  0x5000UL
#define CODE_GPA  0x10000UL
#define DATA_GPA  0x200000UL
#define NR_PAGES  512U
#define RING_SIZE 4096U /* entries */
#define ROUND_US  2000
#define PEST_US	  20

#define die(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, "ring_reset_repro: " __VA_ARGS__);                                 \
		fprintf(stderr, "\n");                                                             \
		exit(2);                                                                           \
	} while (0)

static int vm_fd, vcpu_fd;
static struct kvm_run *run;
static uint8_t *mem;
static struct kvm_dirty_gfn *ring;
static uint32_t fetch;
static pthread_t main_thread, vcpu_thread;
static volatile int parked, go_on;

/* Quiet resetter: created with all signals blocked; no io_uring. */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static int q_request, q_result;

static void on_signal(int sig)
{
	(void)sig;
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint16_t flags)
{
	return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)(flags & 0xff) << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)((flags >> 12) & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t dpl, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = dpl;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

/* Identity-mapped long mode at CPL 3, entered directly through SET_SREGS. */
static void setup_guest(void)
{
	static const uint8_t code[] = {
		0x48,
		0xbf,
		0,
		0,
		0x20,
		0,
		0,
		0,
		0,
		0, /* 0: mov rdi, DATA_GPA */
		0xb9,
		NR_PAGES & 0xff,
		NR_PAGES >> 8,
		0,
		0, /* 10: mov ecx, NR_PAGES */
		0x48,
		0xff,
		0x07, /* 15: inc qword [rdi] */
		0x48,
		0x81,
		0xc7,
		0x00,
		0x10,
		0,
		0, /* 18: add rdi, 4096 */
		0xff,
		0xc9, /* 25: dec ecx */
		0x75,
		0xf2, /* 27: jnz 15 */
		0xeb,
		0xe1, /* 29: jmp 0 */
	};
	uint64_t *gdt = (uint64_t *)(mem + GDT_GPA), *pml4 = (uint64_t *)(mem + PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(mem + PDPT_GPA), *pd = (uint64_t *)(mem + PD_GPA);
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 0x2 | (3 << 12) };

	memcpy(mem + CODE_GPA, code, sizeof(code));
	gdt[1] = gdt_entry(0, 0xfffff, 0xa09b); /* kernel code */
	gdt[3] = gdt_entry(0, 0xfffff, 0xc0f3); /* user data */
	gdt[4] = gdt_entry(0, 0xfffff, 0xa0fb); /* user code, 64-bit */
	gdt[5] = gdt_entry(TSS_GPA, 0x67, 0x008b);
	/* Present, writable, user, accessed (and dirty for the 2 MiB leaves). */
	pml4[0] = PDPT_GPA | 0x27;
	pdpt[0] = PD_GPA | 0x27;
	for (unsigned long i = 0; i < MEM_SIZE >> 21; i++)
		pd[i] = (i << 21) | 0xe7;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS: %s", strerror(errno));
	seg(&sregs.cs, 4 << 3 | 3, 0xb, 3, true);
	seg(&sregs.ds, 3 << 3 | 3, 0x3, 3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = 5 << 3;
	sregs.tr.base = TSS_GPA;
	sregs.tr.limit = 0x67;
	sregs.tr.type = 11;
	sregs.tr.present = 1;
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = 6 * 8 - 1;
	sregs.cr0 = 0x80050033; /* PG WP NE ET MP PE */
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20;   /* PAE */
	sregs.efer = 0x501; /* LMA LME SCE */
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_[S]REGS: %s", strerror(errno));
}

static void setup_vm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), max;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL };
	struct kvm_userspace_memory_region region = { .slot = 0,
						      .flags = KVM_MEM_LOG_DIRTY_PAGES,
						      .memory_size = MEM_SIZE };

	if (kvm < 0) {
		const char *req = getenv("FT_REQUIRE_KVM");

		fprintf(stderr, "ring_reset_repro: /dev/kvm: %s\n", strerror(errno));
		exit(req && !strcmp(req, "1") ? 2 : 77); /* 77: skipped, for ctest */
	}
	vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));
	max = ioctl(vm_fd, KVM_CHECK_EXTENSION, cap.cap);
	if (max <= 0) {
		cap.cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm_fd, KVM_CHECK_EXTENSION, cap.cap);
	}
	if (max < (int)(RING_SIZE * sizeof(struct kvm_dirty_gfn)))
		die("no dirty ring of %u entries (max %d bytes)", RING_SIZE, max);
	cap.args[0] = RING_SIZE * sizeof(struct kvm_dirty_gfn);
	if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		die("KVM_ENABLE_CAP dirty ring: %s", strerror(errno));
	ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		die("KVM_CREATE_VCPU: %s", strerror(errno));
	{
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));

		c->nent = 256;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) < 0 ||
		    ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
			die("CPUID: %s", strerror(errno));
		free(c);
	}
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, vcpu_fd, 0);
	ring = mmap(NULL, RING_SIZE * sizeof(*ring), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		    KVM_DIRTY_LOG_PAGE_OFFSET * PAGE);
	if (run == MAP_FAILED || ring == MAP_FAILED)
		die("mmap vCPU: %s", strerror(errno));
	setup_guest();
}

static void *vcpu_main(void *arg)
{
	(void)arg;
	for (;;) {
		if (ioctl(vcpu_fd, KVM_RUN, 0) < 0 && errno != EINTR)
			die("KVM_RUN: %s", strerror(errno));
		if (run->exit_reason != KVM_EXIT_INTR && run->exit_reason != 0 &&
		    run->exit_reason != KVM_EXIT_DIRTY_RING_FULL)
			die("unexpected exit %u", run->exit_reason);
		if (!__atomic_load_n(&run->immediate_exit, __ATOMIC_ACQUIRE))
			continue;
		__atomic_store_n(&parked, 1, __ATOMIC_RELEASE);
		while (!__atomic_load_n(&go_on, __ATOMIC_ACQUIRE))
			usleep(10);
		__atomic_store_n(&go_on, 0, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int reset_rings(void)
{
	int r = ioctl(vm_fd, KVM_RESET_DIRTY_RINGS, 0);

	return r < 0 ? -errno : r;
}

static void *quiet_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&q_lock);
	for (;;) {
		while (!q_request)
			pthread_cond_wait(&q_cond, &q_lock);
		q_result = reset_rings();
		q_request = 0;
		pthread_cond_broadcast(&q_cond);
	}
	return NULL;
}

static int reset_quiet(void)
{
	pthread_mutex_lock(&q_lock);
	q_request = 1;
	pthread_cond_broadcast(&q_cond);
	while (q_request)
		pthread_cond_wait(&q_cond, &q_lock);
	pthread_mutex_unlock(&q_lock);
	return q_result;
}

static int pest_mode; /* 0 none, 1 signal, 2 uring */
static int pest_efd;
static unsigned long pest_shots, pest_cqes;

static void *pest_main(void *arg)
{
	struct timespec ts = { .tv_nsec = PEST_US * 1000 };

	(void)arg;
	for (;;) {
		if (pest_mode == 1)
			pthread_kill(main_thread, SIGUSR2);
		else if (pest_mode == 2 && write(pest_efd, &(uint64_t){ 1 }, 8) < 0)
			die("eventfd write: %s", strerror(errno));
		__atomic_add_fetch(&pest_shots, 1, __ATOMIC_RELAXED);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void usage(void)
{
	fputs("Usage: ring_reset_repro [--pest none|signal|uring] [--reset caller|quiet] "
	      "[--rounds N]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "pest", required_argument, NULL, 'p' },
					      { "reset", required_argument, NULL, 'r' },
					      { "rounds", required_argument, NULL, 'n' },
					      { 0 } };
	static uint8_t snap[NR_PAGES][PAGE];
	struct sigaction sa = { .sa_handler = on_signal };
	bool quiet = false;
	unsigned long rounds = 5000, missed = 0, missed_rounds = 0, short_resets = 0;
	struct io_uring uring;
	pthread_t pest, qt;
	sigset_t all, old;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p' && !strcmp(optarg, "none"))
			pest_mode = 0;
		else if (c == 'p' && !strcmp(optarg, "signal"))
			pest_mode = 1;
		else if (c == 'p' && !strcmp(optarg, "uring"))
			pest_mode = 2;
		else if (c == 'r' && (!strcmp(optarg, "caller") || !strcmp(optarg, "quiet")))
			quiet = !strcmp(optarg, "quiet");
		else if (c == 'n')
			rounds = strtoul(optarg, NULL, 10);
		else
			usage();
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigaction(SIGUSR1, &sa, NULL); /* kicks the vCPU out of KVM_RUN */
	sigaction(SIGUSR2, &sa, NULL); /* the pest's signal */
	main_thread = pthread_self();
	setup_vm();
	if (pest_mode == 2) {
		struct io_uring_sqe *sqe;

		pest_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (pest_efd < 0 || io_uring_queue_init(64, &uring, 0) < 0)
			die("io_uring setup failed");
		sqe = io_uring_get_sqe(&uring);
		io_uring_prep_poll_multishot(sqe, pest_efd, POLLIN);
		io_uring_submit(&uring);
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_create(&qt, NULL, quiet_main, NULL); /* inherits the full mask */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_create(&vcpu_thread, NULL, vcpu_main, NULL);
	pthread_create(&pest, NULL, pest_main, NULL);

	for (unsigned long round = 0; round < rounds; round++) {
		static uint8_t seen[NR_PAGES];
		unsigned long collected = 0, reset = 0, this_round = 0;
		struct timespec ts = { .tv_nsec = ROUND_US * 1000 };

		nanosleep(&ts, NULL);
		/* Pause: the vCPU has exited KVM_RUN, so every write is in the ring. */
		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELEASE);
		pthread_kill(vcpu_thread, SIGUSR1);
		while (!__atomic_load_n(&parked, __ATOMIC_ACQUIRE))
			;
		parked = 0;
		memset(seen, 0, sizeof(seen));
		for (;;) {
			struct kvm_dirty_gfn *e = &ring[fetch & (RING_SIZE - 1)];
			uint64_t page;

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			page = e->offset - DATA_GPA / PAGE;
			if (page < NR_PAGES)
				seen[page] = 1;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			fetch++;
			collected++;
		}
		while (reset < collected) {
			int r = quiet ? reset_quiet() : reset_rings();

			if (r < 0 && r != -EINTR)
				die("KVM_RESET_DIRTY_RINGS: %s", strerror(-r));
			if (r > 0)
				reset += (unsigned long)r;
			if (reset < collected)
				short_resets++;
		}
		/* A page that changed since the last round must have been reported. */
		for (unsigned int i = 0; i < NR_PAGES; i++) {
			const uint8_t *p = mem + DATA_GPA + i * PAGE;

			if (!memcmp(p, snap[i], PAGE))
				continue;
			if (!seen[i] && round > 0)
				this_round++;
			memcpy(snap[i], p, PAGE);
		}
		missed += this_round;
		missed_rounds += this_round > 0;
		if (pest_mode == 2) {
			struct io_uring_cqe *cqe;
			uint64_t v;

			while (io_uring_peek_cqe(&uring, &cqe) == 0) {
				io_uring_cqe_seen(&uring, cqe);
				pest_cqes++;
			}
			if (read(pest_efd, &v, sizeof(v)) < 0) {
				/* nothing new */
			}
		}
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&go_on, 1, __ATOMIC_RELEASE);
	}
	printf("pest %s, reset from %s thread: %lu rounds of %u pages, %lu short resets, "
	       "%lu missed page-rounds in %lu rounds\n",
	       pest_mode == 0	? "none"
	       : pest_mode == 1 ? "signal"
				: "uring",
	       quiet ? "a quiet" : "the caller's", rounds, NR_PAGES, short_resets, missed,
	       missed_rounds);
	/*
	 * A pest that never fired proves nothing: a setup failure, not a pass. It
	 * fires more often than there are rounds, but fewer of its writes complete
	 * separately on a slow CPU: a quarter of the rounds will do, a twentieth
	 * in an emulated machine (FT_KVM_EMULATED=1, scripts/kvm-vm.sh).
	 */
	const char *emulated = getenv("FT_KVM_EMULATED");
	unsigned long cqe_floor = rounds / (emulated && !strcmp(emulated, "1") ? 20 : 4);

	if (pest_mode && (__atomic_load_n(&pest_shots, __ATOMIC_RELAXED) < rounds ||
			  (pest_mode == 2 && pest_cqes < cqe_floor)))
		die("the pest fired %lu times (%lu completions) in %lu rounds",
		    __atomic_load_n(&pest_shots, __ATOMIC_RELAXED), pest_cqes, rounds);
	return missed ? 1 : 0;
}
