/* SPDX-License-Identifier: MIT */
/*
 * Guest loaders. Built-in test guests (`builtin:NAME`) are flat images embedded in
 * the binary; the loader writes the image, page tables, GDT and the parameter page
 * into guest RAM (as tracked VMM writes) and sets every vCPU's registers to enter
 * the guest directly in 64-bit mode at CPL 3 (guest/guest_abi.h).
 */
#ifndef RINGFT_VMM_LOADER_H
#define RINGFT_VMM_LOADER_H

#include "guest/guest_abi.h"

struct vm;

/* Fills the workload parameters with their defaults (guest/README.md). */
void loader_default_params(struct guest_params *p);

/*
 * Loads guest `spec` ("builtin:bank", "builtin:dirty", "builtin:touch",
 * "builtin:kv") into a created, not yet started VM. The page tables also map the
 * virtio-mmio window (GUEST_VIRTIO_MMIO_GPA, 2 MiB, uncached) for every guest. `params` supplies
 * the workload parameters; the loader fills in magic, nr_vcpus, tsc_khz, mem_size, data_gpa,
 * data_end and net_present (a device added before this call answers in the virtio-net slot), and
 * checks that the workload fits in RAM. Returns 0, -ENOENT for an unknown guest,
 * -E2BIG if the workload does not fit (kv: its store,
 * GUEST_KV_STORE_GPA + buckets + kv_max_bytes, must end below data_end), -EINVAL
 * for inconsistent parameters (kv: kv_max_bytes outside 64 KiB..2 GiB, a
 * non-contiguous netmask, an address without a mask), or another -errno.
 */
int loader_load(struct vm *vm, const char *spec, const struct guest_params *params);

#endif
