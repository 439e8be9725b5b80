/* SPDX-License-Identifier: MIT */
/*
 * lwIP's compiler/platform glue for builtin:kv: freestanding x86-64, no libc.
 * Diagnostics and assertions go to the guest console (kv_lwip_diag, kv_panic).
 */
#ifndef RINGFT_KV_ARCH_CC_H
#define RINGFT_KV_ARCH_CC_H

#include <stddef.h>
#include <stdint.h>

#define LWIP_NO_INTTYPES_H 1
#define LWIP_NO_CTYPE_H	   1
#define LWIP_NO_UNISTD_H   1
typedef long ssize_t; /* lwIP without <unistd.h> (Debian's etharp.h uses it) */

#define X8_F  "02x"
#define U16_F "u"
#define S16_F "d"
#define X16_F "x"
#define U32_F "u"
#define S32_F "d"
#define X32_F "x"
#define SZT_F "zu"

#define BYTE_ORDER  LITTLE_ENDIAN
#define LWIP_RAND() ((u32_t)kv_rand())

void kv_lwip_assert(const char *msg, const char *file, int line) __attribute__((noreturn));
unsigned long kv_rand(void);

#define LWIP_PLATFORM_DIAG(x)                                                                      \
	do {                                                                                       \
	} while (0)
#define LWIP_PLATFORM_ASSERT(x) kv_lwip_assert((x), __FILE__, __LINE__)

/* The few libc functions lwIP calls (memcpy, strlen, ...) are guest/lib.c's. */
#include "guest/lib.h"

#endif
