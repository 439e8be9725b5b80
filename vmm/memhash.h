/* SPDX-License-Identifier: MIT */
/*
 * A hash of all guest memory, for --verify: XXH3-64 over the XXH3-64 of every
 * 2 MiB chunk of RAM in page-index order. Chunked so that the parked vCPU
 * threads can hash alongside the owner while the guest is paused; the result
 * does not depend on how the chunks were shared out.
 */
#ifndef RINGFT_VMM_MEMHASH_H
#define RINGFT_VMM_MEMHASH_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/*
 * With `paused` the VM must be paused (owner only) and the parked vCPU threads
 * help; otherwise the caller's thread hashes alone (a VM whose vCPUs never run).
 * Returns 0 (hash in *ret) or -ENOMEM.
 */
int vm_memory_hash(struct vm *vm, bool paused, uint64_t *ret);

#endif
