// SPDX-License-Identifier: MIT
/*
 * Checkpoints applied to a replica in the same process, then promotion. The
 * primary runs builtin:bank and is checkpointed every few milliseconds; every
 * epoch is framed (epoch_pack), parsed and verified (epoch_rx) and applied to a
 * second VM whose vCPUs never ran. Console output is held
 * back per epoch and released only once the replica applied that epoch (output
 * commit). Then the primary is destroyed and the replica promoted:
 *  - the replica's memory equals, byte for byte, the primary's memory at the
 *    last checkpoint (copied while the primary was paused);
 *  - the released console followed by the promoted replica's console is one
 *    continuous bank stream, every line ok, nothing lost or repeated.
 * Every other epoch is taken with a live harvest half-way: its live batch
 * goes over the wire first and pages written again after it come twice (the
 * replica keeps the last copy). Also: epochs out of order and pages outside
 * memory are refused untouched.
 *
 * The replicated disk, on another replica: epochs with disk records (a sync
 * epoch without pages, then checkpoints with pages, writes, zeroings and a
 * flush) applied disk first, the image byte-equal to what the records say;
 * a file system that runs out of space (a 1 MiB tmpfs in a private mount
 * namespace) refuses the epoch and leaves image and replica untouched; a
 * failure after a write leaves a replica that cannot be promoted.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include "lib/diskimg.h"

#include "primary/checkpoint.h"
#include "proto/epoch.h"
#include "secondary/receiver.h"
#include "secondary/replica.h"
#include "tests/kvm_helpers.h"
#include "vmm/loader.h"

#define EPOCHS 300

struct commit {
	struct t_console *console;   /* everything the primary's guest wrote */
	size_t boundary[EPOCHS + 1]; /* console length at each checkpoint */
	uint8_t *snapshot;	     /* primary memory at the last checkpoint */
	uint64_t snapshot_epoch;
	struct vm *vm;
};

/* While the primary is paused for epoch N: its output so far belongs to N. */
static void mark_epoch(void *opaque, uint64_t epoch)
{
	struct commit *c = opaque;

	pthread_mutex_lock(&c->console->lock);
	c->boundary[epoch] = c->console->len;
	pthread_mutex_unlock(&c->console->lock);
	if (epoch == c->snapshot_epoch)
		memcpy(c->snapshot, c->vm->mem, c->vm->mem_size);
}

/* Feeds a packed tx to the receiver; returns the epochs it completed. */
static int feed(struct epoch_rx *rx, const struct epoch_tx *tx, uint64_t e)
{
	int epochs = 0;

	for (unsigned int i = 0; i < tx->nr_iov; i++) {
		const uint8_t *p = tx->iov[i].iov_base;
		size_t left = tx->iov[i].iov_len, used;

		while (left) {
			int r = epoch_rx_feed(rx, p, left, &used);

			CHECK(r >= 0, "epoch %llu refused: %s", (unsigned long long)e, rx->error);
			epochs += r;
			p += used;
			left -= used;
		}
	}
	return epochs;
}

/* ---- the replicated disk ------------------------------------------------------ */

#define IMG_SIZE (8u << 20)

struct disk_case {
	struct vm *vm;
	struct replica rep;
	struct epoch_rx rx;
	struct machine_state *state, *incoming;
	uint8_t *want; /* what the image must hold */
	uint64_t epoch;
};

/* What a log does to an image, done to a buffer. */
static void model_apply(uint8_t *img, const struct disk_log *log)
{
	for (size_t i = 0; i < log->nr; i++) {
		const struct disk_rec *r = &log->recs[i];

		if (r->flags & DISK_REC_ZERO)
			memset(img + r->offset, 0, r->len);
		else if (!r->flags)
			memcpy(img + r->offset, disk_rec_data(log, r), r->len);
	}
}

static void check_image(const char *path, const uint8_t *want, const char *when)
{
	uint8_t *got = malloc(IMG_SIZE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(got && fd >= 0, "%s: %s", path, strerror(errno));
	CHECK(pread(fd, got, IMG_SIZE, 0) == (ssize_t)IMG_SIZE, "reading %s", path);
	for (size_t i = 0; i < IMG_SIZE; i++)
		CHECK(got[i] == want[i], "%s: image byte %zu is %u, expected %u", when, i, got[i],
		      want[i]);
	close(fd);
	free(got);
}

/*
 * Epoch d->epoch through the wire (pages, disk records, state unless sync)
 * and applied as the secondary does: disk first, memory only if that worked.
 */
static int disk_epoch(struct disk_case *d, bool sync, const uint64_t *pages, uint64_t nr,
		      const uint8_t *data, const struct disk_log *log, bool *ret_torn)
{
	struct epoch_opts opts = { .initial_sync = sync, .disk = log };
	struct epoch_tx tx = { 0 };
	struct epoch_state st;
	int r;

	ckpt_epoch_state(d->state, &st);
	CHECK_OK(epoch_pack(&tx, d->epoch, pages, nr, data, sync ? NULL : &st, &opts));
	CHECK(feed(&d->rx, &tx, d->epoch) == 1, "disk epoch %llu did not arrive whole",
	      (unsigned long long)d->epoch);
	epoch_tx_free(&tx);
	r = replica_apply_disk(&d->rep, d->rx.epoch, &d->rx.disk, d->rx.disk.flush, ret_torn);
	d->epoch++;
	if (r < 0)
		return r;
	if (sync) {
		CHECK_OK(replica_apply_sync(&d->rep, d->rx.epoch, d->rx.pages, d->rx.nr_pages,
					    d->rx.data, NULL, 0));
	} else {
		CHECK_OK(secondary_state_load(&d->rx.state, d->incoming));
		CHECK_OK(replica_apply(&d->rep, d->rx.epoch, d->rx.pages, d->rx.nr_pages,
				       d->rx.data, d->incoming));
	}
	return 0;
}

static void fill(uint8_t *p, size_t len)
{
	static uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/* Epochs with disk records applied to an image in dir; the image ends byte-equal. */
static void disk_byte_equal(struct disk_case *d, const char *dir)
{
	uint8_t *buf = malloc(2u << 20), *pages_data = malloc(2 * VM_PAGE_SIZE);
	const uint64_t pages[2] = { 3, 1000 };
	struct disk_log log = { 0 };
	struct diskimg img;
	char path[256];
	uint64_t hash;
	bool torn;
	int fd;

	CHECK(buf && pages_data, "out of memory");
	snprintf(path, sizeof(path), "%s/image", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, IMG_SIZE) == 0, "%s: %s", path, strerror(errno));
	close(fd);
	CHECK_OK(diskimg_open(&img, path));
	CHECK(img.size == IMG_SIZE, "image of %llu bytes", (unsigned long long)img.size);
	d->rep.disk = &img;
	epoch_rx_set_disk(&d->rx, img.size);

	/* A sync epoch with records only: the disk's initial copy. */
	fill(buf, 2u << 20);
	CHECK_OK(disk_log_append(&log, 0, buf, 1536u << 10, 0));
	CHECK_OK(disk_log_append(&log, IMG_SIZE - 4096, buf + 4096, 4096, 0));
	CHECK_OK(disk_epoch(d, true, NULL, 0, NULL, &log, &torn));
	model_apply(d->want, &log);
	check_image(path, d->want, "after the sync epoch");
	CHECK(!d->rep.has_checkpoint, "a sync epoch made a checkpoint");

	/* A checkpoint: pages, overlapping writes, a zeroing, a flush. */
	disk_log_clear(&log);
	fill(buf, 2u << 20);
	fill(pages_data, 2 * VM_PAGE_SIZE);
	CHECK_OK(disk_log_append(&log, 512, buf, 8192, 0));
	CHECK_OK(disk_log_append(&log, 1u << 20, NULL, 256u << 10, DISK_REC_ZERO));
	CHECK_OK(disk_log_append(&log, (1u << 20) + 4096, buf + 8192, 512, 0));
	CHECK_OK(disk_log_append(&log, 0, NULL, 0, DISK_REC_FLUSH));
	CHECK_OK(disk_log_append(&log, 4u << 20, buf + 65536, 1u << 20, 0));
	CHECK_OK(disk_epoch(d, false, pages, 2, pages_data, &log, &torn));
	model_apply(d->want, &log);
	check_image(path, d->want, "after checkpoint 1");
	CHECK(d->rep.has_checkpoint && d->rep.checkpoint == 1, "checkpoint 1 not applied");
	CHECK(!memcmp(vm_page_hva(d->vm, 1000), pages_data + VM_PAGE_SIZE, VM_PAGE_SIZE),
	      "checkpoint 1's memory not applied");
	CHECK_OK(diskimg_hash(&img, &hash));
	CHECK(hash == XXH3_64bits(d->want, IMG_SIZE), "the image hash differs from the model's");

	/* Out of order: refused, nothing written. */
	CHECK(replica_apply_disk(&d->rep, d->epoch + 1, &log, false, &torn) == -EPROTO && !torn,
	      "a disk epoch out of order was applied");

	/*
	 * A write that fails after the one before it reached the image (a file
	 * size limit below the second: -EFBIG, as test_diskimg's test_torn): torn,
	 * not promotable. The first writes the bytes the image holds already, so
	 * the image stays the model's.
	 */
	{
		struct replica other = d->rep;
		struct rlimit old, lim;
		void (*old_xfsz)(int);
		int r;

		disk_log_clear(&log);
		CHECK_OK(disk_log_append(&log, 0, d->want, 4096, 0));
		CHECK_OK(
			disk_log_append(&log, IMG_SIZE - 4096, d->want + IMG_SIZE - 4096, 4096, 0));
		other.disk = &img;
		CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit: %s", strerror(errno));
		lim = old;
		lim.rlim_cur = IMG_SIZE / 2;
		old_xfsz = signal(SIGXFSZ, SIG_IGN);
		CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
		r = replica_apply_disk(&other, d->epoch, &log, false, &torn);
		CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0, "setrlimit: %s", strerror(errno));
		signal(SIGXFSZ, old_xfsz);
		CHECK(r == -EFBIG && torn, "a write failing after one landed: %d, torn %d", r,
		      torn);
		CHECK(!other.has_checkpoint && other.disk_torn,
		      "a torn image left a promotable replica");
		CHECK(replica_promote(&other) == -ENODATA, "a torn replica was promoted");
	}
	check_image(path, d->want, "after the refusals");
	diskimg_close(&img);
	d->rep.disk = NULL;
	disk_log_free(&log);
	free(buf);
	free(pages_data);
}

/*
 * A full file system: the epoch's writes are reserved first, so running out
 * of space changes no byte of the image, and the replica stays where it was.
 * Returns false if no private mount namespace could be made.
 */
static bool disk_enospc(struct disk_case *d)
{
	char dir[] = "/tmp/ringft-enospc-XXXXXX", path[64];
	uint8_t *buf = malloc(2u << 20), *before = malloc(IMG_SIZE);
	const uint64_t pages[1] = { 7 };
	struct disk_log log = { 0 };
	struct diskimg img;
	uint64_t epoch, checkpoint;
	bool torn;
	int fd, r;

	CHECK(buf && before, "out of memory");
	if (unshare(CLONE_NEWNS) < 0) {
		fprintf(stderr, "ENOSPC case: cannot make a mount namespace: %s\n",
			strerror(errno));
		free(buf);
		free(before);
		return false;
	}
	/* Private first: the tmpfs must not propagate to the host's mounts. */
	CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "private /: %s",
	      strerror(errno));
	CHECK(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	CHECK(mount("tmpfs", dir, "tmpfs", 0, "size=1m") == 0, "tmpfs on %s: %s", dir,
	      strerror(errno));
	snprintf(path, sizeof(path), "%s/image", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, IMG_SIZE) == 0, "%s: %s", path, strerror(errno));
	/* 512 KiB of the 1 MiB already hold data. */
	fill(buf, 512u << 10);
	CHECK(pwrite(fd, buf, 512u << 10, 0) == 512 << 10, "filling %s", path);
	close(fd);
	memset(before, 0, IMG_SIZE);
	memcpy(before, buf, 512u << 10);
	CHECK_OK(diskimg_open(&img, path));
	d->rep.disk = &img;
	epoch = d->rep.epoch;
	checkpoint = d->rep.checkpoint;

	/* A checkpoint whose writes overwrite data (fits) and fill holes (does not). */
	fill(buf, 2u << 20);
	CHECK_OK(disk_log_append(&log, 0, buf, 64u << 10, 0));
	CHECK_OK(disk_log_append(&log, 2u << 20, buf, 1u << 20, 0));
	CHECK_OK(disk_log_append(&log, 0, NULL, 0, DISK_REC_FLUSH));
	r = disk_epoch(d, false, pages, 1, buf, &log, &torn);
	CHECK(r == -ENOSPC && !torn, "a full file system: %d (%s), torn %d", r, strerror(-r), torn);
	check_image(path, before, "after ENOSPC");
	CHECK(d->rep.epoch == epoch && d->rep.has_checkpoint && d->rep.checkpoint == checkpoint &&
		      !d->rep.disk_torn,
	      "ENOSPC moved the replica");
	CHECK(memcmp(vm_page_hva(d->vm, 7), buf, VM_PAGE_SIZE), "ENOSPC: memory was applied");

	diskimg_close(&img);
	d->rep.disk = NULL;
	umount(dir);
	rmdir(dir);
	disk_log_free(&log);
	free(buf);
	free(before);
	return true;
}

/* Returns false if the ENOSPC case could not run (no mount namespace). */
static bool disk_cases(void)
{
	struct vm_config cfg = { .mem_size = VM_MIN_MEM, .nr_vcpus = 1, .tracking = DIRTY_RING };
	struct t_console console;
	struct disk_case d = { .epoch = 0 };
	struct epoch_shape shape;
	char dir[] = "/tmp/ringft-disk-XXXXXX", path[64];
	bool enospc;

	t_console_init(&console);
	d.vm = t_vm_new(&cfg, NULL, NULL, &console);
	d.state = calloc(1, sizeof(*d.state));
	d.incoming = calloc(1, sizeof(*d.incoming));
	d.want = calloc(1, IMG_SIZE);
	CHECK(d.state && d.incoming && d.want, "out of memory");
	d.state->nr_vcpus = d.vm->nr_vcpus;
	d.state->nr_devices = d.vm->nr_devices;
	for (uint32_t i = 0; i < d.vm->nr_devices; i++)
		snprintf(d.state->dev[i].name, sizeof(d.state->dev[i].name), "dev%u", i);
	CHECK_OK(replica_init(&d.rep, d.vm));
	secondary_state_shape(d.vm, &shape);
	CHECK_OK(epoch_rx_init(&d.rx, d.vm->nr_pages, &shape));
	CHECK(mkdtemp(dir), "mkdtemp: %s", strerror(errno));

	disk_byte_equal(&d, dir);
	snprintf(path, sizeof(path), "%s/image", dir);
	unlink(path);
	rmdir(dir);
	enospc = disk_enospc(&d);

	epoch_rx_free(&d.rx);
	replica_free(&d.rep);
	vm_free(d.vm);
	free(d.state);
	free(d.incoming);
	free(d.want);
	t_console_free(&console);
	printf("ok: disk epochs applied disk first, image byte-equal%s\n",
	       enospc ? "; ENOSPC left image and replica untouched" : "");
	return enospc;
}

int main(void)
{
	struct vm_config cfg = { .mem_size = 128ULL << 20, .nr_vcpus = 2, .tracking = DIRTY_RING };
	struct t_console pconsole, sconsole;
	struct commit commit = { .console = &pconsole, .snapshot_epoch = EPOCHS - 1 };
	struct guest_params gp;
	struct replica rep;
	struct ckpt ckpt;
	struct ckpt_timing t;
	struct epoch_tx tx = { 0 };
	struct epoch_sum sum = { 0 };
	struct epoch_rx rx;
	struct epoch_shape shape;
	struct epoch_state st;
	struct machine_state *incoming = calloc(1, sizeof(*incoming));
	uint64_t twice = 0, live_epochs = 0;
	int epochs, n;
	struct vm *primary, *secondary;
	struct t_bank b;
	uint64_t bad_page = 1ULL << 40, before[GUEST_MAX_VCPUS] = { 0 }, deadline;
	size_t released;
	char *text;
	bool disk_ok;

	t_require_kvm();
	disk_ok = disk_cases();
	t_console_init(&pconsole);
	t_console_init(&sconsole);
	loader_default_params(&gp);
	gp.bank_check_ms = 2;
	primary = t_vm_new(&cfg, "builtin:bank", &gp, &pconsole);
	secondary = t_vm_new(&cfg, NULL, NULL, &sconsole);
	CHECK(incoming, "out of memory");
	CHECK_OK(replica_init(&rep, secondary));
	secondary_state_shape(secondary, &shape);
	CHECK_OK(epoch_rx_init(&rx, secondary->nr_pages, &shape));
	commit.vm = primary;
	commit.snapshot = mmap(NULL, cfg.mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(commit.snapshot != MAP_FAILED, "mmap");
	CHECK_OK(ckpt_init(&ckpt, primary));
	ckpt.paused_fn = mark_epoch;
	ckpt.paused_opaque = &commit;
	CHECK_OK(vm_start(primary));

	/*
	 * Epoch 0 is the whole initial state: both VMs started with zeroed memory,
	 * and the first harvest holds every page written since (loader included).
	 */
	for (uint64_t e = 0; e < EPOCHS; e++) {
		uint64_t live_pages = 0;

		if (e % 2) {
			/* Half-way, the pages dirtied so far go out while the guest runs. */
			t_sleep_ms(2);
			n = ckpt_live_harvest(&ckpt);
			CHECK(n >= 0, "live harvest of epoch %llu: %d", (unsigned long long)e, n);
			if (n > 0) {
				CHECK_OK(epoch_pack_live(&tx, &sum, e, ckpt.list, (uint64_t)n,
							 ckpt.staging));
				CHECK(feed(&rx, &tx, e) == 0, "a live batch completed epoch %llu",
				      (unsigned long long)e);
				live_pages = (uint64_t)n;
				live_epochs++;
			}
			t_sleep_ms(1);
		} else {
			t_sleep_ms(3);
		}
		CHECK_OK(ckpt_capture(&ckpt, &t));
		CHECK(ckpt.epoch == e, "epoch %llu captured as %llu", (unsigned long long)e,
		      (unsigned long long)ckpt.epoch);
		if (e == 5) {
			/* Hostile epochs are refused and change nothing. */
			CHECK(replica_apply(&rep, e + 1, ckpt.dirty.pages, ckpt.dirty.count,
					    ckpt.staging, ckpt.state) == -EPROTO,
			      "an epoch out of order was applied");
			CHECK(replica_apply(&rep, e, &bad_page, 1, ckpt.staging, ckpt.state) ==
				      -ERANGE,
			      "a page outside memory was applied");
			CHECK(rep.epoch == e - 1, "a refused epoch moved the replica");
		}
		/* Through the wire format: framed, parsed, verified, then applied. */
		CHECK(ckpt.batch == live_pages, "epoch %llu: the pause's pages start at slot %llu",
		      (unsigned long long)e, (unsigned long long)ckpt.batch);
		ckpt_epoch_state(ckpt.state, &st);
		CHECK_OK(epoch_pack(&tx, e, ckpt.list + ckpt.batch, ckpt.staged - ckpt.batch,
				    ckpt.staging + ckpt.batch * VM_PAGE_SIZE, &st,
				    &(struct epoch_opts){ .sum = &sum }));
		epochs = feed(&rx, &tx, e);
		twice += rx.nr_pages - ckpt.dirty.count;
		CHECK(epochs == 1 && rx.epoch == e, "epoch %llu did not arrive whole",
		      (unsigned long long)e);
		CHECK_OK(secondary_state_load(&rx.state, incoming));
		CHECK_OK(replica_apply(&rep, rx.epoch, rx.pages, rx.nr_pages, rx.data, incoming));
	}
	released = commit.boundary[EPOCHS - 1];

	/*
	 * The primary goes on past its last checkpoint, printing lines the replica
	 * never saw: output commit must keep them back. Then its host dies.
	 */
	t_sleep_ms(50);
	vm_free(primary);
	CHECK(pconsole.len > released, "the primary printed nothing after its last checkpoint");
	CHECK(!memcmp(commit.snapshot, secondary->mem, cfg.mem_size),
	      "replica memory differs from the primary's at the last checkpoint");

	CHECK_OK(replica_promote(&rep));
	text = strndup(pconsole.buf ? pconsole.buf : "", released);
	CHECK(text, "out of memory");
	t_bank_parse(text, 2, &b);
	CHECK(!b.bad, "released output: %s", b.first_bad);
	memcpy(before, b.lines, sizeof(b.lines));
	deadline = t_now_ns() + 20000000000ULL;
	for (;;) {
		char *all = strdup(text);
		bool enough;

		CHECK(all, "out of memory");
		t_console_append_raw(&sconsole, &all);
		t_bank_parse(all, 2, &b);
		if (b.bad)
			fprintf(stderr, "stream after failover:\n%s\n", all + released);
		free(all);
		CHECK(!b.bad, "%s", b.first_bad);
		enough = b.lines[0] >= before[0] + 5 && b.lines[1] >= before[1] + 5;
		if (enough)
			break;
		CHECK(t_now_ns() < deadline, "the promoted replica printed no bank lines");
		t_sleep_ms(5);
	}
	CHECK(live_epochs >= EPOCHS / 4, "only %llu epochs had a live batch",
	      (unsigned long long)live_epochs);
	printf("ok: %d epochs applied (%llu with a live batch, %llu pages sent twice), replica "
	       "byte-identical at epoch %d, promoted: bank went on from iter %llu/%llu, "
	       "released %zu console bytes, nothing lost or repeated\n",
	       EPOCHS, (unsigned long long)live_epochs, (unsigned long long)twice, EPOCHS - 1,
	       (unsigned long long)before[0], (unsigned long long)before[1], released);
	free(text);
	ckpt_free(&ckpt);
	epoch_tx_free(&tx);
	epoch_sum_free(&sum);
	epoch_rx_free(&rx);
	replica_free(&rep);
	free(incoming);
	vm_free(secondary);
	munmap(commit.snapshot, cfg.mem_size);
	t_console_free(&pconsole);
	t_console_free(&sconsole);
	if (!disk_ok) {
		const char *req = getenv("FT_REQUIRE_KVM");

		CHECK(!req || strcmp(req, "1"), "FT_REQUIRE_KVM=1: the ENOSPC case must run");
		printf("skip: the ENOSPC case needs a private mount namespace\n");
		return T_EXIT_SKIP;
	}
	return T_EXIT_PASS;
}
