// SPDX-License-Identifier: MIT
/*
 * What a complete, verified epoch does on the secondary: machine state from
 * the wire's blobs into struct machine_state, the epoch's disk records
 * written to the image (disk.c), then its memory and state applied to the
 * replica (secondary/replica.c), the --verify hashes compared, the ACK sent,
 * and the console bytes the checkpoint committed handed on.
 *
 * So an ACK for epoch N means memory, state and disk of checkpoint N are
 * here, the disk on stable storage (fdatasync) when N carried a guest flush.
 * An epoch whose disk writes fail is never acknowledged: the session ends.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "proto/epoch.h"
#include "secondary/receiver.h"
#include "secondary/receiver_internal.h"
#include "vmm/memhash.h"
#include "vmm/state.h"
#include "vmm/vm.h"

void secondary_state_shape(const struct vm *vm, struct epoch_shape *ret)
{
	*ret = (struct epoch_shape){
		.nr_vcpus = vm->nr_vcpus,
		.nr_devices = vm->nr_devices,
		.vcpu_size = sizeof(struct vcpu_state),
		.vm_size = sizeof(struct vm_state),
		.device_max = DEVICE_STATE_MAX,
		.device_name_max = sizeof(((struct device_state *)0)->name),
	};
}

int secondary_state_load(const struct epoch_state *st, struct machine_state *ms)
{
	/* epoch_rx checked the shape already; this keeps the copy safe on its own. */
	if (st->nr_vcpus > sizeof(ms->vcpu) / sizeof(ms->vcpu[0]) ||
	    st->nr_devices > sizeof(ms->dev) / sizeof(ms->dev[0]) || st->vm.len != sizeof(ms->vm))
		return -EINVAL;
	for (uint32_t i = 0; i < st->nr_vcpus; i++)
		if (st->vcpu[i].len != sizeof(ms->vcpu[i]))
			return -EINVAL;
	for (uint32_t i = 0; i < st->nr_devices; i++)
		if (st->dev[i].state.len > sizeof(ms->dev[i].data) || !st->dev[i].name ||
		    strlen(st->dev[i].name) >= sizeof(ms->dev[i].name))
			return -EINVAL;
	ms->nr_vcpus = st->nr_vcpus;
	ms->nr_devices = st->nr_devices;
	memcpy(&ms->vm, st->vm.data, sizeof(ms->vm));
	for (uint32_t i = 0; i < st->nr_vcpus; i++)
		memcpy(&ms->vcpu[i], st->vcpu[i].data, sizeof(ms->vcpu[i]));
	for (uint32_t i = 0; i < st->nr_devices; i++) {
		memset(&ms->dev[i], 0, sizeof(ms->dev[i]));
		snprintf(ms->dev[i].name, sizeof(ms->dev[i].name), "%s", st->dev[i].name);
		ms->dev[i].len = (uint32_t)st->dev[i].state.len;
		if (ms->dev[i].len) /* empty bytes may be NULL */
			memcpy(ms->dev[i].data, st->dev[i].state.data, ms->dev[i].len);
	}
	return 0;
}

int sconn_apply(struct sconn *c)
{
	struct secondary *s = c->s;
	struct epoch_rx *rx = &c->rx;
	uint64_t t0 = clock_now_ns(), hash = 0;
	uint8_t ack[SMALL_FRAME_MAX];
	uint32_t verify = 0, disk_verify;
	bool disk_moved = false;
	int r = 0;

	/*
	 * The state is converted before the disk moves: once the image holds
	 * epoch N's writes, memory must follow (replica_apply cannot fail on an
	 * epoch that epoch_rx and replica_apply_disk accepted).
	 */
	if (!rx->initial_sync)
		r = secondary_state_load(&rx->state, s->incoming);
	if (r == 0) {
		if (sconn_apply_disk(c) < 0)
			return -EIO; /* the session is over: nothing more of this epoch */
		disk_moved = rx->disk.nr > 0;
	}
	if (r == 0 && rx->initial_sync) {
		r = replica_apply_sync(&s->replica, rx->epoch, rx->pages, rx->nr_pages, rx->data,
				       rx->zero_pages, rx->nr_zero);
		s->st.sync_pages += rx->nr_pages + rx->nr_zero;
	} else if (r == 0) {
		r = replica_apply(&s->replica, rx->epoch, rx->pages, rx->nr_pages, rx->data,
				  s->incoming);
	}
	if (r < 0 && disk_moved)
		replica_disk_torn(&s->replica); /* the image is at N, memory is not */
	if (r < 0) {
		char why[96];

		snprintf(why, sizeof(why), "epoch %llu cannot be applied: %s",
			 (unsigned long long)rx->epoch, strerror(-r));
		sconn_reject(c, why);
		return r;
	}
	s->st.epochs++;
	s->replica_changed = true;
	if (!rx->initial_sync) {
		if (s->state != SECONDARY_REPLICATING)
			log_info("Replica holds checkpoint %llu: the guest is protected",
				 (unsigned long long)rx->epoch);
		s->state = SECONDARY_REPLICATING;
		s->st.checkpoints++;
		if (s->console_fn) {
			s->console_fn(s->console_opaque, rx->console_offset, rx->console,
				      rx->console_len);
			/*
			 * Output the checkpoint could not carry: the stream goes on
			 * from its true end (the console shows the jump).
			 */
			if (rx->console_end != rx->console_offset + rx->console_len)
				s->console_fn(s->console_opaque, rx->console_end, rx->console, 0);
		}
		s->st.last_apply_ns = t0;
		if (rx->memory_hash) {
			r = vm_memory_hash(s->vm, false, &hash);
			if (r == 0 && hash == rx->memory_hash) {
				verify = 1;
			} else {
				verify = 2;
				log_error("Checkpoint %llu: replica memory hash %016llx, primary's "
					  "%016llx",
					  (unsigned long long)rx->epoch, (unsigned long long)hash,
					  (unsigned long long)rx->memory_hash);
			}
		}
		/* Memory and disk are one verdict: either differing is a mismatch. */
		disk_verify = sconn_verify_disk(c);
		if (disk_verify > verify)
			verify = disk_verify;
		if (verify == 1)
			s->st.verified++;
		else if (verify == 2)
			s->st.mismatches++;
	}
	link_send_copy(c->link, ack, ack_frame(ack, rx->epoch, verify));
	t0 = clock_now_ns() - t0;
	s->st.apply_ns += t0;
	if (t0 > s->st.apply_max_ns)
		s->st.apply_max_ns = t0;
	return 0;
}

uint64_t secondary_replica_hash(struct secondary *s)
{
	uint64_t h = 0;

	return vm_memory_hash(s->vm, false, &h) < 0 ? 0 : h;
}
