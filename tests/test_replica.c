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
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

	t_require_kvm();
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
	return T_EXIT_PASS;
}
