// SPDX-License-Identifier: MIT
/*
 * bench/harvest: the cost of a checkpoint's memory side, dirty ring against dirty
 * bitmap, side by side in one run.
 *
 * For every guest size (1, 4, 16 GiB), vCPU count (1, 2) and dirty page count per
 * checkpoint (100, 1000, 10000) it creates one VM per backend running
 * builtin:touch, and alternates rounds between them: the guest dirties exactly N
 * pages (split over its vCPUs) and spins; the benchmark takes a real checkpoint
 * (pause, harvest, reset, copy to staging, save state, resume) and records its
 * parts (--mem, --vcpus, --pages choose other configurations). Medians and p99
 * over the rounds are printed and written as CSV; bench/plot draws it.
 *
 * Expected shape: the ring's harvest cost follows the dirty pages only; the
 * bitmap's grows with guest memory.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest/layout.h"
#include "lib/stats.h"
#include "primary/checkpoint.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct touch_sync {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t done[VM_MAX_VCPUS];
};

struct side {
	enum dirty_mode mode;
	struct vm *vm;
	struct ckpt ckpt;
	struct touch_sync sync;
	uint64_t round;
	struct samples hrc, pause, harvest, reset, copy, kick, save, pages;
};

static void touch_hook(void *opaque, unsigned int vcpu, uint32_t value)
{
	struct touch_sync *s = opaque;

	if (value != GUEST_SIGNAL_DONE || vcpu >= VM_MAX_VCPUS)
		return;
	pthread_mutex_lock(&s->lock);
	s->done[vcpu]++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int side_open(struct side *s, enum dirty_mode mode, uint64_t mem, unsigned int vcpus,
		     uint64_t pages)
{
	struct vm_config cfg = {
		.mem_size = mem, .nr_vcpus = vcpus, .tracking = mode, .ring_entries = 16384
	};
	struct guest_params gp;
	uint64_t per_vcpu = (pages + vcpus - 1) / vcpus;
	int r;

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	pthread_mutex_init(&s->sync.lock, NULL);
	pthread_cond_init(&s->sync.cond, NULL);
	r = vm_create(&cfg, &s->vm);
	if (r == -ERANGE) { /* a kernel with a smaller ring limit */
		cfg.ring_entries = 4096;
		r = vm_create(&cfg, &s->vm);
	}
	if (r < 0)
		return r;
	loader_default_params(&gp);
	gp.touch_base_gpa = 16ULL << 20;
	gp.touch_count = (uint32_t)per_vcpu;
	gp.touch_span = (uint32_t)pow2_at_least(per_vcpu * 2);
	gp.touch_stride = (0x9e3779b1u & (gp.touch_span - 1)) | 1;
	r = loader_load(s->vm, "builtin:touch", &gp);
	if (r < 0)
		return r;
	vm_set_signal_hook(s->vm, touch_hook, &s->sync);
	r = ckpt_init(&s->ckpt, s->vm);
	if (r < 0)
		return r;
	r = vm_start(s->vm);
	if (r < 0)
		return r;
	return vm_pause(s->vm, 0, NULL); /* runs only during its own rounds */
}

static void side_close(struct side *s)
{
	ckpt_free(&s->ckpt);
	vm_free(s->vm);
	samples_free(&s->hrc);
	samples_free(&s->pause);
	samples_free(&s->harvest);
	samples_free(&s->reset);
	samples_free(&s->copy);
	samples_free(&s->kick);
	samples_free(&s->save);
	samples_free(&s->pages);
	pthread_mutex_destroy(&s->sync.lock);
	pthread_cond_destroy(&s->sync.cond);
}

/* Wait until every vCPU finished touching round s->round, checkpointing early if a ring fills. */
static int side_wait_round(struct side *s)
{
	struct vm *vm = s->vm;
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	for (;;) {
		bool all = true;
		unsigned int ev;

		pthread_mutex_lock(&s->sync.lock);
		for (unsigned int i = 0; i < vm->nr_vcpus; i++)
			all &= s->sync.done[i] > s->round;
		if (!all) {
			struct timespec shortly;

			clock_gettime(CLOCK_REALTIME, &shortly);
			shortly.tv_nsec += 1000000;
			if (shortly.tv_nsec >= 1000000000L) {
				shortly.tv_sec++;
				shortly.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->sync.cond, &s->sync.lock, &shortly);
		}
		pthread_mutex_unlock(&s->sync.lock);
		if (all)
			return 0;
		ev = vm_take_events(vm);
		if (ev & VM_EVENT_STOPPED)
			return -EIO;
		if (ev & VM_EVENT_RING_FULL)
			return -ENOSPC; /* the ring is sized so this does not happen */
		if (time(NULL) > deadline.tv_sec)
			return -ETIMEDOUT;
	}
}

/*
 * One round on one side. The other side's VM stays paused meanwhile: its vCPUs
 * would otherwise spin on the same two host cores and every kick would wait a
 * scheduler tick for a CPU.
 */
static int side_round(struct side *s, bool record)
{
	struct ckpt_timing t;
	int r;

	vm_resume(s->vm);
	r = side_wait_round(s);
	if (r == 0)
		r = ckpt_capture(&s->ckpt, &t);
	if (r == 0) {
		s->round++;
		/* Release the next round; this VMM write is part of the next checkpoint. */
		r = vm_write_guest(s->vm, GUEST_PARAMS_GPA + offsetof(struct guest_params, go),
				   &s->round, sizeof(s->round));
	}
	if (r == 0)
		r = vm_pause(s->vm, 0, NULL);
	if (r < 0 || !record)
		return r;
	samples_add(&s->hrc, t.harvest_ns + t.reset_ns + t.copy_ns);
	samples_add(&s->pause, t.pause_ns);
	samples_add(&s->harvest, t.harvest_ns);
	samples_add(&s->reset, t.reset_ns);
	samples_add(&s->copy, t.copy_ns);
	samples_add(&s->kick, t.kick_ns);
	samples_add(&s->save, t.save_ns);
	samples_add(&s->pages, t.pages);
	return 0;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void report(FILE *csv, uint64_t mem, unsigned int vcpus, uint64_t pages, struct side *s)
{
	uint64_t hrc50 = samples_percentile(&s->hrc, 50), hrc99 = samples_percentile(&s->hrc, 99);
	uint64_t p50 = samples_percentile(&s->pause, 50), p99 = samples_percentile(&s->pause, 99);
	uint64_t h50 = samples_percentile(&s->harvest, 50), r50 = samples_percentile(&s->reset, 50);
	uint64_t c50 = samples_percentile(&s->copy, 50), k50 = samples_percentile(&s->kick, 50);
	uint64_t pg = samples_percentile(&s->pages, 50), s50 = samples_percentile(&s->save, 50);

	printf("%4lluG %5u %6llu %-6s | %9.1f %9.1f | %9.1f %9.1f | %8.1f %8.1f %8.1f %8.1f "
	       "(%5.1f) | %6llu\n",
	       (unsigned long long)(mem >> 30), vcpus, (unsigned long long)pages,
	       dirty_mode_name(s->mode), us(hrc50), us(hrc99), us(p50), us(p99), us(h50), us(r50),
	       us(c50), us(k50), us(s50), (unsigned long long)pg);
	fprintf(csv, "%llu,%u,%llu,%s,%zu,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%llu,%.1f\n",
		(unsigned long long)(mem >> 30), vcpus, (unsigned long long)pages,
		dirty_mode_name(s->mode), s->pause.n, us(hrc50), us(hrc99), us(p50), us(p99),
		us(h50), us(r50), us(c50), us(k50), (unsigned long long)pg, us(s50));
	fflush(stdout);
	fflush(csv);
}

static int bench_config(FILE *csv, uint64_t mem, unsigned int vcpus, uint64_t pages,
			unsigned int reps)
{
	struct side sides[2];
	int r;

	r = side_open(&sides[0], DIRTY_RING, mem, vcpus, pages);
	if (r == 0)
		r = side_open(&sides[1], DIRTY_BITMAP, mem, vcpus, pages);
	else
		sides[1] = (struct side){ 0 };
	/* Warm-up: fault the pages in, settle the shadow page tables. */
	for (unsigned int i = 0; r == 0 && i < 3; i++)
		for (int k = 0; k < 2 && r == 0; k++)
			r = side_round(&sides[k], false);
	/* Alternate the backends round by round: both see the same machine noise. */
	for (unsigned int i = 0; r == 0 && i < reps; i++)
		for (int k = 0; k < 2 && r == 0; k++)
			r = side_round(&sides[(i + k) & 1], true);
	if (r == 0) {
		report(csv, mem, vcpus, pages, &sides[0]);
		report(csv, mem, vcpus, pages, &sides[1]);
	}
	side_close(&sides[0]);
	if (sides[1].vm)
		side_close(&sides[1]);
	return r;
}

static void usage(FILE *out)
{
	fputs("Usage: harvest [--reps N] [--csv FILE] [--quick] [--mem LIST] [--vcpus LIST]\n"
	      "               [--pages LIST]\n"
	      "  --reps N      measured checkpoints per configuration and backend (default 50)\n"
	      "  --csv FILE    CSV output (default harvest.csv)\n"
	      "  --quick       only 1 GiB and 16 GiB, 1000 pages (a smoke run)\n"
	      "  --mem LIST    guest sizes in GiB, comma separated (default 1,4,16)\n"
	      "  --vcpus LIST  vCPU counts (default 1,2)\n"
	      "  --pages LIST  dirty pages per checkpoint (default 100,1000,10000)\n",
	      out);
}

/* "1,4,16" into v[], each within lo..hi; the count, or -EINVAL. */
static int parse_list(const char *arg, uint64_t *v, int max, uint64_t lo, uint64_t hi)
{
	const char *at = arg;
	int n = 0;

	for (;;) {
		char *end;
		unsigned long long x;

		if (n == max || *at < '0' || *at > '9')
			return -EINVAL;
		errno = 0;
		x = strtoull(at, &end, 10);
		if (errno || x < lo || x > hi)
			return -EINVAL;
		v[n++] = x;
		if (*end == '\0')
			return n;
		if (*end != ',')
			return -EINVAL;
		at = end + 1;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reps", required_argument, NULL, 'r' },
		{ "csv", required_argument, NULL, 'c' },
		{ "quick", no_argument, NULL, 'q' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "pages", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t mems[16] = { 1, 4, 16 }, pagesv[16] = { 100, 1000, 10000 }, vcpusv[16] = { 1, 2 };
	int nmems = 3, npages = 3, nvcpus = 2;
	const char *csv_path = "harvest.csv";
	unsigned int reps = 50;
	FILE *csv;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			reps = (unsigned int)strtoul(optarg, NULL, 10);
			if (reps < 1 || reps > 100000) {
				fprintf(stderr, "harvest: --reps: '%s' is not 1..100000\n", optarg);
				return 2;
			}
			break;
		case 'c':
			csv_path = optarg;
			break;
		case 'q':
			mems[1] = 16;
			nmems = 2;
			pagesv[0] = 1000;
			npages = 1;
			break;
		case 'm':
			nmems = parse_list(optarg, mems, 16, 1, 64);
			if (nmems < 0) {
				fprintf(stderr, "harvest: --mem: '%s' is not a list of 1..64 GiB\n",
					optarg);
				return 2;
			}
			break;
		case 'v':
			nvcpus = parse_list(optarg, vcpusv, 16, 1, VM_MAX_VCPUS);
			if (nvcpus < 0) {
				fprintf(stderr, "harvest: --vcpus: '%s' is not a list of 1..%d\n",
					optarg, VM_MAX_VCPUS);
				return 2;
			}
			break;
		case 'p':
			npages = parse_list(optarg, pagesv, 16, 1, 12000);
			if (npages < 0) {
				fprintf(stderr,
					"harvest: --pages: '%s' is not a list of 1..12000\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* As ftd does: the thread that pauses must not wait a tick for a CPU. */
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO,
				  &(struct sched_param){ .sched_priority = 1 }))
		fprintf(stderr,
			"harvest: no real-time priority; pauses may include scheduler delays\n");
	csv = fopen(csv_path, "w");
	if (!csv) {
		fprintf(stderr, "harvest: cannot write %s: %s\n", csv_path, strerror(errno));
		return 1;
	}
	fprintf(csv, "mem_gib,vcpus,dirty_pages,backend,rounds,harvest_reset_copy_p50_us,"
		     "harvest_reset_copy_p99_us,pause_p50_us,pause_p99_us,harvest_p50_us,"
		     "reset_p50_us,copy_p50_us,kick_p50_us,pages_per_ckpt,save_p50_us\n");
	printf("%d rounds per backend and configuration, medians and p99 in microseconds\n"
	       "  mem vcpus  pages mode   | h+r+c p50 h+r+c p99 | pause p50 pause p99 | "
	       " harvest    reset     copy     kick (save) | pages\n",
	       reps);
	for (int m = 0; m < nmems; m++)
		for (int v = 0; v < nvcpus; v++)
			for (int p = 0; p < npages; p++) {
				unsigned int vcpus = (unsigned int)vcpusv[v];
				int r = bench_config(csv, mems[m] << 30, vcpus, pagesv[p], reps);

				if (r < 0) {
					fprintf(stderr,
						"harvest: %lluG, %u vCPUs, %llu pages failed: %s\n",
						(unsigned long long)mems[m], vcpus,
						(unsigned long long)pagesv[p], strerror(-r));
					fclose(csv);
					return 1;
				}
			}
	fclose(csv);
	printf("CSV written to %s (plots: bench/plot %s)\n", csv_path, csv_path);
	return 0;
}
