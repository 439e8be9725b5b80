// SPDX-License-Identifier: MIT
/*
 * make_seeds DIR: writes the fuzzers' seed corpus (valid inputs to start
 * from) into DIR/{epoch,session,request}. The files in tests/fuzz/corpus were
 * made with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "primary/checkpoint.h"
#include "proto/epoch.h"
#include "proto/session.h"

static void put(const char *dir, const char *sub, const char *name, const void *a, size_t alen,
		const void *b, size_t blen)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen)) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* An epoch's iovecs as one buffer, after the chunking byte the fuzzer reads first. */
static void put_epoch(const char *dir, const char *name, uint8_t chunking, struct epoch_tx *tx)
{
	uint8_t *buf = malloc(tx->bytes + 1);
	size_t at = 1;

	buf[0] = chunking;
	for (unsigned int i = 0; i < tx->nr_iov; i++) {
		memcpy(buf + at, tx->iov[i].iov_base, tx->iov[i].iov_len);
		at += tx->iov[i].iov_len;
	}
	put(dir, "epoch", name, buf, at, NULL, 0);
	free(buf);
}

int main(int argc, char **argv)
{
	static const uint8_t cpuid[40];
	static const uint32_t msrs[] = { 0x10, 0x3b, 0xc0000080 };
	static const char *const requests[] = { "status",	   "metrics",
						"events",	   "failover --force",
						"switchover",	   "protect --peer 127.0.0.1:7410",
						"set interval 5ms" };
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct epoch_state st;
	struct epoch_tx tx = { 0 };
	struct epoch_opts sync = { .initial_sync = true }, ck = { 0 };
	struct hello_info h = { 0 };
	uint64_t pages[3] = { 0, 7, 63 }, zero[2] = { 1, 2 };
	uint8_t *data = calloc(3, 4096), small[SMALL_FRAME_MAX], *buf;
	size_t len;
	char name[32];

	if (argc != 2 || !ms || !data)
		return 2;
	mkdir(argv[1], 0755);
	memset(data, 0xa5, 3 * 4096);
	sync.zero_pages = zero;
	sync.nr_zero = 2;
	if (epoch_pack(&tx, 0, pages, 3, data, NULL, &sync) < 0)
		return 1;
	put_epoch(argv[1], "sync-whole", 0x00, &tx);
	put_epoch(argv[1], "sync-direct", 0x40, &tx);
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	snprintf(ms->dev[0].name, sizeof(ms->dev[0].name), "serial");
	ms->dev[0].len = 8;
	ckpt_epoch_state(ms, &st); /* as the primary sends it */
	ck.console = (const uint8_t *)"bank ok\n";
	ck.console_len = 8;
	ck.console_offset = 4096;
	ck.memory_hash = 0x1234;
	if (epoch_pack(&tx, 0, pages, 2, data, &st, &ck) < 0)
		return 1;
	put_epoch(argv[1], "checkpoint-whole", 0x00, &tx);
	put_epoch(argv[1], "checkpoint-pieces", 0x87, &tx);
	{
		/* A live batch, then the checkpoint that continues its epoch. */
		struct epoch_tx live = { 0 };
		struct epoch_sum sum = { 0 };
		uint8_t *both;

		ck.sum = &sum;
		if (epoch_pack_live(&live, &sum, 0, pages, 2, data) < 0 ||
		    epoch_pack(&tx, 0, pages + 1, 2, data, &st, &ck) < 0)
			return 1;
		both = malloc(live.bytes + tx.bytes + 1);
		if (!both)
			return 1;
		len = 1;
		both[0] = 0x40;
		for (unsigned int i = 0; i < live.nr_iov; i++, len += live.iov[i - 1].iov_len)
			memcpy(both + len, live.iov[i].iov_base, live.iov[i].iov_len);
		for (unsigned int i = 0; i < tx.nr_iov; i++, len += tx.iov[i - 1].iov_len)
			memcpy(both + len, tx.iov[i].iov_base, tx.iov[i].iov_len);
		put(argv[1], "epoch", "live-checkpoint", both, len, NULL, 0);
		free(both);
		epoch_tx_free(&live);
		epoch_sum_free(&sum);
	}
	{
		/* A checkpoint with disk records: a write, a zeroed range, a flush. */
		struct disk_log log = { 0 };

		ck.sum = NULL;
		ck.disk = &log;
		ck.disk_hash = 0x5678;
		if (disk_log_append(&log, 4096, data, 1024, 0) < 0 ||
		    disk_log_append(&log, 65536, NULL, 8192, DISK_REC_ZERO) < 0 ||
		    disk_log_append(&log, 0, NULL, 0, DISK_REC_FLUSH) < 0 ||
		    epoch_pack(&tx, 0, pages, 1, data, &st, &ck) < 0)
			return 1;
		put_epoch(argv[1], "checkpoint-disk", 0x00, &tx);
		put_epoch(argv[1], "checkpoint-disk-pieces", 0x85, &tx);
		ck.disk = NULL;
		disk_log_free(&log);
	}
	epoch_tx_free(&tx);

	h.protocol_version = RINGFT_PROTOCOL_VERSION;
	h.role = HELLO_PRIMARY;
	h.mem_size = 64ULL << 20;
	h.nr_vcpus = 2;
	h.page_size = 4096;
	h.kvm_api_version = 12;
	h.xsave_size = 4096;
	h.tracking = "ring";
	h.ring_entries = 4096;
	h.cpuid = cpuid;
	h.cpuid_len = sizeof(cpuid);
	h.msrs = msrs;
	h.nr_msrs = 3;
	h.guest = "builtin:bank";
	h.devices[h.nr_devices++] = "serial";
	if (hello_frame(&h, &buf, &len) < 0)
		return 1;
	put(argv[1], "session", "hello-ack", buf, len, small, ack_frame(small, 5, 1));
	free(buf);
	if (goodbye_frame("switchover", 42, &buf, &len) < 0)
		return 1;
	put(argv[1], "session", "goodbye", buf, len, NULL, 0);
	free(buf);
	if (refuse_frame("mem_size", "1", "2", "does not match", &buf, &len) < 0)
		return 1;
	put(argv[1], "session", "refuse", buf, len, NULL, 0);
	free(buf);
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		snprintf(name, sizeof(name), "request-%zu", i);
		put(argv[1], "request", name, requests[i], strlen(requests[i]), NULL, 0);
	}
	free(ms);
	free(data);
	return 0;
}
