// SPDX-License-Identifier: MIT
/*
 * The VM: KVM fds, guest RAM and memslots, devices, VMM-written pages; creating
 * and destroying it with its vCPUs (vcpu.c runs them, pause.c stops them).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest/guest_abi.h"
#include "vmm/pause.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* Where KVM on VMX keeps its real-mode TSS and identity page table: in the PCI hole. */
#define VM_TSS_GPA	    0xfeffd000ULL
#define VM_IDENTITY_MAP_GPA 0xfeffc000ULL

static int vm_check_config(const struct vm_config *cfg)
{
	if (cfg->mem_size < VM_MIN_MEM || cfg->mem_size > VM_MAX_MEM ||
	    cfg->mem_size % (2ULL << 20))
		return -EINVAL;
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS)
		return -EINVAL;
	if (cfg->ring_entries && (cfg->ring_entries & (cfg->ring_entries - 1)))
		return -EINVAL;
	return 0;
}

static int vm_add_slot(struct vm *vm, uint64_t gpa, uint64_t size, uint64_t offset)
{
	unsigned int i = vm->nr_slots;
	struct kvm_userspace_memory_region region = {
		.slot = i,
		.flags = KVM_MEM_LOG_DIRTY_PAGES | vm->dirty->slot_flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)(vm->mem + offset),
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return -errno;
	vm->slots[i] = (struct vm_slot){ .id = i,
					 .gpa = gpa,
					 .size = size,
					 .first_page = offset / VM_PAGE_SIZE,
					 .host = vm->mem + offset };
	vm->slot_first_page[i] = offset / VM_PAGE_SIZE;
	vm->slot_pages[i] = size / VM_PAGE_SIZE;
	vm->nr_slots++;
	return 0;
}

static int vm_setup_memory(struct vm *vm)
{
	uint64_t low = vm->mem_size < VM_LOW_MEM_END ? vm->mem_size : VM_LOW_MEM_END;
	void *mem;
	int r;

	/*
	 * MAP_NORESERVE anonymous memory: a 16 GiB guest that touches little costs
	 * little. No transparent huge pages: tracking is 4 KiB granular anyway and a
	 * huge page would be split on the first write-protect.
	 */
	mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	vm->mem = mem;
	madvise(mem, vm->mem_size, MADV_NOHUGEPAGE);

	r = vm_add_slot(vm, 0, low, 0);
	if (r < 0)
		return r;
	if (vm->mem_size > low)
		r = vm_add_slot(vm, VM_HIGH_MEM_GPA, vm->mem_size - low, low);
	return r;
}

int vm_create(const struct vm_config *cfg, struct vm **ret_vm)
{
	struct kvm_pit_config pit = { .flags = 0 };
	struct vm *vm;
	int r;

	r = vm_check_config(cfg);
	if (r < 0)
		return r;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->kvm_fd = vm->vm_fd = vm->event_fd = vm->device_fd = -1;
	vm->cfg = *cfg;
	vm->mem_size = cfg->mem_size;
	vm->nr_pages = cfg->mem_size / VM_PAGE_SIZE;
	vm->ring_entries = cfg->ring_entries ? cfg->ring_entries : VM_DEFAULT_RING_ENTRIES;
	vm->dirty = dirty_ops_for(cfg->tracking);
	vm_pause_init(vm, cfg->nr_vcpus);
	pthread_mutex_init(&vm->vmm_dirty_lock, NULL);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = -errno;
		goto fail;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		r = vm->run_size < 0 ? -errno : -EIO;
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		goto fail;
	}
	/* 0 without KVM_CAP_XSAVE2: state.c then uses KVM_GET_XSAVE (4 KiB). */
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	vm->xsave_size = r > 0 ? (uint32_t)r : 0;

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, VM_TSS_GPA) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ VM_IDENTITY_MAP_GPA }) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = -errno;
		goto fail;
	}
	/* Dirty ring capability must be enabled before the first vCPU exists. */
	r = vm->dirty->vm_init(vm);
	if (r < 0)
		goto fail;
	r = vm_setup_memory(vm);
	if (r < 0)
		goto fail;
	r = dirty_set_init(&vm->vmm_dirty, vm->nr_pages);
	if (r < 0)
		goto fail;
	r = dirty_set_init(&vm->touched, vm->nr_pages);
	if (r < 0)
		goto fail;
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0) {
		r = -errno;
		goto fail;
	}
	vm->device_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->device_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = vm_install_kick_handler();
	if (r < 0)
		goto fail;
	r = vm_harvest_thread_start(vm);
	if (r < 0)
		goto fail;

	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		r = vcpu_create(vm, i, &vm->vcpus[i]);
		if (r < 0)
			goto fail;
		vm->nr_vcpus++;
	}
	r = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);
	if (r <= 0) {
		r = r < 0 ? -errno : -EIO;
		goto fail;
	}
	vm->tsc_khz = (uint64_t)r;
	r = vcpu_probe_msrs(vm->vcpus[0], &vm->msr_list, &vm->nr_msrs);
	if (r < 0)
		goto fail;

	*ret_vm = vm;
	return 0;
fail:
	vm_free(vm);
	return r;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	vm_stop_vcpus(vm);
	vm_harvest_thread_stop(vm);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		vcpu_free(vm->vcpus[i]);
	for (unsigned int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->ops->free)
			vm->devices[i]->ops->free(vm->devices[i]);
	if (vm->dirty && vm->dirty->vm_free)
		vm->dirty->vm_free(vm);
	dirty_set_free(&vm->vmm_dirty);
	dirty_set_free(&vm->touched);
	free(vm->msr_list);
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->device_fd >= 0)
		close(vm->device_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm_pause_destroy(vm);
	pthread_mutex_destroy(&vm->vmm_dirty_lock);
	free(vm);
}

int vm_add_device(struct vm *vm, struct device *dev)
{
	if (vm->started)
		return -EBUSY;
	if (vm->nr_devices == VM_MAX_DEVICES)
		return -ENOSPC;
	for (unsigned int i = 0; dev->mmio_len && i < vm->nr_devices; i++) {
		const struct device *d = vm->devices[i];

		if (d->mmio_len && dev->mmio_base < d->mmio_base + d->mmio_len &&
		    d->mmio_base < dev->mmio_base + dev->mmio_len)
			return -EEXIST;
	}
	vm->devices[vm->nr_devices++] = dev;
	return 0;
}

int vm_device_fd(struct vm *vm)
{
	return vm->device_fd;
}

void vm_devices_kick(struct vm *vm)
{
	uint64_t one = 1;

	/* Can only fail with EAGAIN at a counter of 2^64-2: readable anyway. */
	if (write(vm->device_fd, &one, sizeof(one)) < 0)
		return;
}

int vm_devices_poll(struct vm *vm)
{
	uint64_t n;
	int ret = 0;

	/* Drain first: work that arrives while the devices run wakes us again. */
	if (read(vm->device_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return -errno;
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];
		int r;

		if (!d->ops->poll)
			continue;
		r = d->ops->poll(d);
		if (r < 0 && !ret)
			ret = r;
	}
	return ret;
}

void vm_set_device_dirty_marking(struct vm *vm, bool on)
{
	vm->device_dirty_off = !on;
}

void vm_set_notice_hook(struct vm *vm, vm_notice_fn fn, void *opaque)
{
	vm->notice_fn = fn;
	vm->notice_opaque = opaque;
}

void vm_notice_once(struct vm *vm, enum vm_notice kind, const char *msg)
{
	unsigned int before = __atomic_fetch_or(&vm->notices_sent, kind, __ATOMIC_RELAXED);

	if (!(before & kind) && vm->notice_fn)
		vm->notice_fn(vm->notice_opaque, msg);
}

void vm_set_signal_hook(struct vm *vm, vm_signal_fn fn, void *opaque)
{
	vm->signal_fn = fn;
	vm->signal_opaque = opaque;
}

int vm_prealloc(struct vm *vm)
{
	volatile uint8_t *mem = vm->mem;

	if (madvise(vm->mem, vm->mem_size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno; /* ENOMEM, EFAULT, ...: the host cannot back it */
	/* Before Linux 5.14: touch every page (a write of what is there, zero). */
	for (uint64_t off = 0; off < vm->mem_size; off += VM_PAGE_SIZE)
		mem[off] = mem[off];
	return 0;
}

int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level ? 1 : 0 };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

int vm_start(struct vm *vm)
{
	if (vm->started)
		return -EALREADY;
	struct sched_param normal = { .sched_priority = 0 };
	pthread_attr_t attr;
	int r;

	/*
	 * vCPU threads run with the normal policy whatever their creator's: a vCPU
	 * spinning in the guest at a real-time priority would keep the owner (and
	 * with it every pause) off the CPU for good.
	 */
	r = pthread_attr_init(&attr);
	if (r)
		return -r;
	pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
	pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
	pthread_attr_setschedparam(&attr, &normal);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		r = vcpu_start(vm->vcpus[i], &attr);
		if (r < 0) {
			pthread_attr_destroy(&attr);
			vm_stop_vcpus(vm);
			return r;
		}
	}
	pthread_attr_destroy(&attr);
	vm->started = true;
	return 0;
}

int vm_get_cpuid(struct vm *vm, uint8_t **ret_buf, size_t *ret_len)
{
	struct kvm_cpuid2 *c;
	size_t len;
	int r = vcpu_cpuid(vm, 0, &c);

	if (r < 0)
		return r;
	len = c->nent * sizeof(struct kvm_cpuid_entry2);
	*ret_buf = malloc(len ? len : 1);
	if (!*ret_buf) {
		free(c);
		return -ENOMEM;
	}
	memcpy(*ret_buf, c->entries, len);
	*ret_len = len;
	free(c);
	return 0;
}

void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < vm->nr_slots; i++) {
		const struct vm_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa <= s->size && len <= s->size - (gpa - s->gpa))
			return s->host + (gpa - s->gpa);
	}
	return NULL;
}

int vm_gpa_to_page(const struct vm *vm, uint64_t gpa, uint64_t *ret_page)
{
	for (unsigned int i = 0; i < vm->nr_slots; i++) {
		const struct vm_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa < s->size) {
			*ret_page = s->first_page + (gpa - s->gpa) / VM_PAGE_SIZE;
			return 0;
		}
	}
	return -EFAULT;
}

uint64_t vm_page_to_gpa(const struct vm *vm, uint64_t page)
{
	for (unsigned int i = 0; i < vm->nr_slots; i++) {
		const struct vm_slot *s = &vm->slots[i];

		if (page >= s->first_page && page < s->first_page + s->size / VM_PAGE_SIZE)
			return s->gpa + (page - s->first_page) * VM_PAGE_SIZE;
	}
	return UINT64_MAX;
}

void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t first, last;

	if (!len || vm_gpa_to_page(vm, gpa, &first) < 0 ||
	    vm_gpa_to_page(vm, gpa + len - 1, &last) < 0)
		return;
	pthread_mutex_lock(&vm->vmm_dirty_lock);
	for (uint64_t p = first; p <= last; p++)
		dirty_set_add(&vm->vmm_dirty, p);
	pthread_mutex_unlock(&vm->vmm_dirty_lock);
}

int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	void *hva = vm_gpa_to_hva(vm, gpa, len);

	if (!hva)
		return -EFAULT;
	memcpy(hva, src, len);
	vm_mark_dirty(vm, gpa, len);
	return 0;
}

void vm_requeue_dirty(struct vm *vm, const struct dirty_set *pages)
{
	pthread_mutex_lock(&vm->vmm_dirty_lock);
	dirty_set_merge(&vm->vmm_dirty, pages);
	pthread_mutex_unlock(&vm->vmm_dirty_lock);
}
