// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

_Static_assert(sizeof(((struct machine_state *)0)->vcpu) / sizeof(struct vcpu_state) ==
		       VM_MAX_VCPUS,
	       "machine_state holds every vCPU");
_Static_assert(sizeof(((struct machine_state *)0)->dev) / sizeof(struct device_state) ==
		       VM_MAX_DEVICES,
	       "machine_state holds every device");

int machine_save_vm(struct vm *vm, struct machine_state *ms)
{
	int r = vm_save_state(vm, &ms->vm);

	if (r < 0)
		return r;
	ms->nr_vcpus = vm->nr_vcpus;
	ms->nr_devices = vm->nr_devices;
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];
		struct device_state *ds = &ms->dev[i];

		memset(ds->name, 0, sizeof(ds->name));
		strncpy(ds->name, d->ops->name, sizeof(ds->name) - 1);
		r = d->ops->save(d, ds->data, sizeof(ds->data));
		if (r < 0)
			return r;
		ds->len = (uint32_t)r;
	}
	return 0;
}

void machine_collect_vcpus(struct vm *vm, struct machine_state *ms)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		memcpy(&ms->vcpu[i], vm->vcpus[i]->saved, sizeof(ms->vcpu[i]));
}

int machine_load(struct vm *vm, const struct machine_state *ms)
{
	uint64_t tsc;
	bool have_tsc;
	int r;

	if (ms->nr_vcpus != vm->nr_vcpus || ms->nr_devices != vm->nr_devices)
		return -EINVAL;
	r = vm_load_state(vm, &ms->vm);
	if (r < 0)
		return r;
	/* Every vCPU gets the first one's TSC, before its TSC deadline is armed. */
	have_tsc = ms->nr_vcpus > 0 && vcpu_saved_tsc(&ms->vcpu[0], &tsc) == 0;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		if (have_tsc) {
			r = vcpu_set_tsc(vm->vcpus[i], tsc);
			if (r < 0)
				return r;
		}
		r = vcpu_load_state(vm->vcpus[i], &ms->vcpu[i]);
		if (r < 0)
			return r;
	}
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];
		const struct device_state *ds = &ms->dev[i];

		if (strncmp(ds->name, d->ops->name, sizeof(ds->name)))
			return -EINVAL;
		r = d->ops->load(d, ds->data, ds->len);
		if (r < 0)
			return r;
	}
	return 0;
}
