// SPDX-License-Identifier: MIT
/*
 * bench/epoch: the CPU cost of the wire format, without a network. For 100,
 * 1000 and 10000 pages it frames an epoch (epoch_pack: headers, messages, XXH3
 * over every byte) and parses it back (epoch_rx: checks, copy into staging,
 * XXH3 again; then the state into a struct machine_state, as the secondary
 * does), and prints p50/p99 and throughput. Writes CSV.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/stats.h"
#include "primary/checkpoint.h"
#include "proto/epoch.h"
#include "proto/wire.h"
#include "secondary/receiver.h"

#define GUEST_PAGES (1u << 18) /* 1 GiB */

int main(int argc, char **argv)
{
	static const uint64_t counts[] = { 100, 1000, 10000 };
	const char *csv_path = argc > 1 ? argv[1] : "epoch.csv";
	struct machine_state *ms = calloc(1, sizeof(*ms)), *back = calloc(1, sizeof(*back));
	struct epoch_shape shape;
	struct epoch_state st;
	uint8_t *data = malloc(10000ULL * WIRE_PAGE_SIZE);
	uint64_t *pages = malloc(10000 * sizeof(*pages));
	FILE *csv = fopen(csv_path, "w");

	if (!ms || !back || !data || !pages || !csv) {
		fprintf(stderr, "epoch: setup failed: %s\n", strerror(errno));
		return 1;
	}
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	ckpt_epoch_state(ms, &st);
	/* The shape a secondary's receiver is given (secondary_state_shape). */
	shape = (struct epoch_shape){ .nr_vcpus = 2,
				      .nr_devices = 1,
				      .vcpu_size = sizeof(struct vcpu_state),
				      .vm_size = sizeof(struct vm_state),
				      .device_max = DEVICE_STATE_MAX,
				      .device_name_max = sizeof(ms->dev[0].name) };
	for (size_t i = 0; i < 10000ULL * WIRE_PAGE_SIZE; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	for (uint64_t i = 0; i < 10000; i++)
		pages[i] = (i * 7919) % GUEST_PAGES;
	fprintf(csv, "pages,bytes,pack_p50_us,pack_p99_us,rx_p50_us,rx_p99_us,rx_gbps\n");
	printf("  pages      bytes | pack p50   p99 | receive p50   p99 | receive GB/s\n");
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct samples pack = { 0 }, recv = { 0 };
		struct epoch_tx tx = { 0 };
		struct epoch_rx rx;
		uint64_t bytes = 0;

		if (epoch_rx_init(&rx, GUEST_PAGES, &shape) < 0)
			return 1;
		for (int rep = 0; rep < 60; rep++) {
			uint64_t t0 = clock_now_ns(), t1;
			int epochs = 0;

			if (epoch_pack(&tx, (uint64_t)rep, pages, counts[c], data, &st, NULL) < 0)
				return 1;
			t1 = clock_now_ns();
			for (unsigned int i = 0; i < tx.nr_iov; i++) {
				const uint8_t *p = tx.iov[i].iov_base;
				size_t left = tx.iov[i].iov_len, used;

				while (left) {
					int r = epoch_rx_feed(&rx, p, left, &used);

					if (r < 0) {
						fprintf(stderr, "epoch: %s\n", rx.error);
						return 1;
					}
					epochs += r;
					p += used;
					left -= used;
				}
			}
			/* The receiver's copy of the state, as the secondary makes it. */
			if (epochs != 1 || secondary_state_load(&rx.state, back) < 0)
				return 1;
			bytes = tx.bytes;
			if (rep >= 10) { /* warm-up: staging faults in */
				samples_add(&pack, t1 - t0);
				samples_add(&recv, clock_now_ns() - t1);
			}
		}
		{
			double p50 = (double)samples_percentile(&recv, 50);
			uint64_t pk50 = samples_percentile(&pack, 50),
				 pk99 = samples_percentile(&pack, 99);
			uint64_t rx99 = samples_percentile(&recv, 99);

			printf("%7llu %10llu | %8.1f %5.1f | %11.1f %5.1f | %12.2f\n",
			       (unsigned long long)counts[c], (unsigned long long)bytes, pk50 / 1e3,
			       pk99 / 1e3, p50 / 1e3, rx99 / 1e3, (double)bytes / p50);
			fprintf(csv, "%llu,%llu,%.1f,%.1f,%.1f,%.1f,%.2f\n",
				(unsigned long long)counts[c], (unsigned long long)bytes,
				pk50 / 1e3, pk99 / 1e3, p50 / 1e3, rx99 / 1e3, (double)bytes / p50);
		}
		samples_free(&pack);
		samples_free(&recv);
		epoch_tx_free(&tx);
		epoch_rx_free(&rx);
	}
	fclose(csv);
	free(ms);
	free(back);
	free(data);
	free(pages);
	printf("CSV written to %s\n", csv_path);
	return 0;
}
