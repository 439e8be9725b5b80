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
 * Loads guest `spec` ("builtin:bank", "builtin:dirty", "builtin:touch") into a
 * created, not yet started VM. `params` supplies the workload parameters; the
 * loader fills in magic, nr_vcpus, tsc_khz, mem_size, data_gpa and data_end, and
 * checks that the workload fits in RAM. Returns 0, -ENOENT for an unknown guest,
 * -E2BIG if the workload does not fit, or another -errno.
 */
int loader_load(struct vm *vm, const char *spec, const struct guest_params *params);

#endif
