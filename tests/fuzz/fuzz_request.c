// SPDX-License-Identifier: MIT
/*
 * libFuzzer: the control socket's request parser (daemon/request.c) on
 * arbitrary lines. Nothing may crash; whatever it accepts must be one of the
 * known requests with its argument parsed, and every refusal says why.
 */
#include <stdint.h>
#include <string.h>

#include "daemon/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request req;
	char err[256] = "";

	if (request_parse((const char *)data, size, &req, err, sizeof(err)) < 0) {
		if (!err[0])
			__builtin_trap(); /* refused without saying why */
		return 0;
	}
	if (req.kind > REQ_START || strlen(req.text) != size)
		__builtin_trap();
	if (req.kind == REQ_SET_INTERVAL && !req.interval_auto &&
	    (req.interval_ns < 1000000ULL || req.interval_ns > 60000000000ULL))
		__builtin_trap();
	if (req.kind == REQ_PROTECT && !req.peer_len)
		__builtin_trap();
	return 0;
}
