// SPDX-License-Identifier: MIT
/*
 * Disk images and their logs without KVM (lib/diskimg.h, lib/disklog.h): what
 * diskimg_open refuses, block sums and reads on a sparse file (holes summed
 * without being read), the whole-image hash against an independent XXH3, a
 * log applied in order onto an image, and the promises of diskimg_apply on
 * failure: -ERANGE and -ENOSPC (a full tmpfs) change no byte and tear nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>
#include <cmocka.h>

#include "lib/diskimg.h"
#include "lib/disklog.h"

#define BLK ((uint64_t)DISK_BLOCK)
#define MiB (1ull << 20)

/* The sparse image of the sum, read and hash tests: six blocks, the last short. */
#define SPARSE_SIZE (5 * BLK + 3 * DISK_SECTOR)
#define PART_OFF    (4 * BLK + 32768) /* the one sector of data in block 4 */

struct fixture {
	char dir[128];
	char mnt[160];
	bool mounted;
	struct diskimg a, b;
	struct disk_log log;
	uint8_t *expect, *got;
};

/*
 * Every pread() of the library goes through here (the executable's definition
 * wins over libc's for the static ringft_disk), so a test can tell which bytes
 * were read: a hole must sum to 0 without being read at all.
 */
static struct {
	bool on;
	unsigned nr;
	uint64_t off[256], len[256];
} reads;

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	if (reads.on && reads.nr < 256) {
		reads.off[reads.nr] = (uint64_t)offset;
		reads.len[reads.nr++] = count;
	}
	return syscall(SYS_pread64, fd, buf, count, offset);
}

/* The same, should a fortified build route pread() through its checking twin. */
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen)
{
	if (count > buflen)
		abort();
	return pread(fd, buf, count, offset);
}

static void reads_start(void)
{
	reads.nr = 0;
	reads.on = true;
}

/* Whether some recorded read touched [off, off + len). */
static bool was_read(uint64_t off, uint64_t len)
{
	for (unsigned i = 0; i < reads.nr; i++)
		if (reads.off[i] < off + len && off < reads.off[i] + reads.len[i])
			return true;
	return false;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

/* Random bytes, none of them zero, so a block of them never sums to 0. */
static void fill(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p[i] = (uint8_t)(rng % 255 + 1);
	}
}

static void path_of(char *buf, size_t size, const char *dir, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);

	assert_true(n > 0 && (size_t)n < size);
}

/* A file of `size` bytes, all of it a hole. */
static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* Writes buf at off into the file, bypassing the library. */
static void put(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void get_all(struct diskimg *d, uint8_t *buf)
{
	assert_int_equal(diskimg_read(d, buf, d->size, 0), 0);
}

static uint64_t allocated(const struct diskimg *d)
{
	struct stat st;

	assert_int_equal(fstat(d->fd, &st), 0);
	return (uint64_t)st.st_blocks;
}

/* Whether the file system of path can punch holes (ext4, xfs, tmpfs can). */
static bool can_punch(const char *dir)
{
	char path[256];
	bool ok;
	int fd;

	path_of(path, sizeof(path), dir, "punch");
	make_file(path, 8192);
	put(path, 0, (uint8_t[4096]){ 1 }, 4096);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	ok = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0 &&
	     lseek(fd, 0, SEEK_DATA) < 0 && errno == ENXIO;
	close(fd);
	assert_int_equal(unlink(path), 0);
	return ok;
}

/*
 * The sparse image at `path`, its bytes in f->expect:
 *   0  data            1  hole          2  written zeros (allocated)
 *   3  hole            4  one sector of data at PART_OFF, the rest a hole
 *   5  data, 1536 bytes (the last block, short)
 */
static void make_sparse(struct fixture *f, const char *path)
{
	f->expect = calloc(1, SPARSE_SIZE);
	assert_non_null(f->expect);
	fill(f->expect, BLK);
	fill(f->expect + PART_OFF, DISK_SECTOR);
	fill(f->expect + 5 * BLK, SPARSE_SIZE - 5 * BLK);

	make_file(path, SPARSE_SIZE);
	put(path, 0, f->expect, BLK);
	put(path, 2 * BLK, f->expect + 2 * BLK, BLK);
	put(path, PART_OFF, f->expect + PART_OFF, DISK_SECTOR);
	put(path, 5 * BLK, f->expect + 5 * BLK, SPARSE_SIZE - 5 * BLK);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->a.fd = f->b.fd = -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test_diskimg.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* Runs after a failed test too: closes, unmounts and removes everything. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = 0;

	diskimg_close(&f->a);
	diskimg_close(&f->b);
	disk_log_free(&f->log);
	free(f->expect);
	free(f->got);
	if (f->mounted && umount(f->mnt) < 0 && umount2(f->mnt, MNT_DETACH) < 0) {
		fprintf(stderr, "Failed to unmount %s: %m\n", f->mnt);
		r = -1;
	}
	if (nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0) {
		fprintf(stderr, "Failed to remove %s: %m\n", f->dir);
		r = -1;
	}
	free(f);
	return r;
}

static void test_open(void **state)
{
	struct fixture *f = *state;
	char path[256];
	int flags;

	/* Each refusal leaves d->fd at -1. */
	path_of(path, sizeof(path), f->dir, "missing");
	assert_int_equal(diskimg_open(&f->a, path), -ENOENT);
	assert_int_equal(f->a.fd, -1);

	path_of(path, sizeof(path), f->dir, "empty");
	make_file(path, 0);
	assert_int_equal(diskimg_open(&f->a, path), -EINVAL);
	assert_int_equal(f->a.fd, -1);

	path_of(path, sizeof(path), f->dir, "odd");
	make_file(path, 3 * DISK_SECTOR + 100);
	assert_int_equal(diskimg_open(&f->a, path), -EINVAL);
	assert_int_equal(f->a.fd, -1);
	make_file(path, DISK_SECTOR + 1);
	assert_int_equal(diskimg_open(&f->a, path), -EINVAL);
	assert_int_equal(f->a.fd, -1);

	/* Neither a regular file nor a block device. */
	assert_int_equal(diskimg_open(&f->a, "/dev/null"), -EINVAL);
	assert_int_equal(f->a.fd, -1);
	assert_int_equal(diskimg_open(&f->a, f->dir), -EISDIR);
	assert_int_equal(f->a.fd, -1);

	path_of(path, sizeof(path), f->dir, "good");
	make_file(path, 7 * DISK_SECTOR);
	assert_int_equal(diskimg_open(&f->a, path), 0);
	assert_true(f->a.fd >= 0);
	assert_int_equal(f->a.size, 7 * DISK_SECTOR);
	assert_false(f->a.blockdev);
	assert_string_equal(f->a.path, path);
	flags = fcntl(f->a.fd, F_GETFL);
	assert_int_equal(flags & O_ACCMODE, O_RDWR);
	assert_true(fcntl(f->a.fd, F_GETFD) & FD_CLOEXEC);

	diskimg_close(&f->a);
	assert_int_equal(f->a.fd, -1);
	diskimg_close(&f->a);
	assert_int_equal(f->a.fd, -1);

	/* One sector is the smallest image. */
	path_of(path, sizeof(path), f->dir, "sector");
	make_file(path, DISK_SECTOR);
	assert_int_equal(diskimg_open(&f->b, path), 0);
	assert_int_equal(f->b.size, DISK_SECTOR);
	assert_int_equal(diskimg_blocks(f->b.size), 1);
	diskimg_close(&f->b);
}

static void test_block_sum(void **state)
{
	uint8_t buf[DISK_SECTOR + 13] = { 0 };

	assert_int_equal(diskimg_block_sum(buf, sizeof(buf)), 0);
	assert_int_equal(diskimg_block_sum(buf, 0), 0);
	/* The last byte, past the last whole 8-byte word, still counts. */
	buf[sizeof(buf) - 1] = 1;
	assert_int_equal(diskimg_block_sum(buf, sizeof(buf)), XXH3_64bits(buf, sizeof(buf)));
	assert_int_not_equal(diskimg_block_sum(buf, sizeof(buf)), 0);
	assert_int_equal(diskimg_block_sum(buf, sizeof(buf) - 1), 0);

	assert_int_equal(diskimg_blocks(1), 1);
	assert_int_equal(diskimg_blocks(BLK), 1);
	assert_int_equal(diskimg_blocks(BLK + DISK_SECTOR), 2);
}

static void test_sums(void **state)
{
	struct fixture *f = *state;
	uint64_t sums[8], part[2];
	char path[256];

	path_of(path, sizeof(path), f->dir, "sparse");
	make_sparse(f, path);
	assert_int_equal(diskimg_open(&f->a, path), 0);
	assert_int_equal(f->a.size, SPARSE_SIZE);
	assert_int_equal(diskimg_blocks(f->a.size), 6);

	for (int i = 0; i < 8; i++)
		sums[i] = 0xdeadbeef;
	reads_start();
	assert_int_equal(diskimg_sums(&f->a, 0, 6, sums), 0);
	reads.on = false;

	assert_int_equal(sums[0], XXH3_64bits(f->expect, BLK));
	assert_int_equal(sums[0], diskimg_block_sum(f->expect, BLK));
	assert_int_not_equal(sums[0], 0);
	assert_int_equal(sums[1], 0);
	assert_int_equal(sums[2], 0);
	assert_int_equal(sums[3], 0);
	assert_int_equal(sums[4], XXH3_64bits(f->expect + 4 * BLK, BLK));
	/* The short last block sums over its 1536 bytes, not a zero-padded block. */
	assert_int_equal(sums[5], XXH3_64bits(f->expect + 5 * BLK, SPARSE_SIZE - 5 * BLK));
	f->got = calloc(1, BLK);
	assert_non_null(f->got);
	memcpy(f->got, f->expect + 5 * BLK, SPARSE_SIZE - 5 * BLK);
	assert_int_not_equal(sums[5], XXH3_64bits(f->got, BLK));
	assert_int_equal(sums[6], 0xdeadbeef);

	/* Data (and allocated zeros) read, holes not; nothing read past the end. */
	assert_true(was_read(0, BLK));
	assert_true(was_read(2 * BLK, BLK));
	assert_true(was_read(PART_OFF, DISK_SECTOR));
	assert_false(was_read(BLK, BLK));
	assert_false(was_read(3 * BLK, BLK));
	assert_false(was_read(SPARSE_SIZE, UINT64_MAX - SPARSE_SIZE));

	/* A range starting mid-image, and a lone hole that reads nothing. */
	assert_int_equal(diskimg_sums(&f->a, 4, 2, part), 0);
	assert_int_equal(part[0], sums[4]);
	assert_int_equal(part[1], sums[5]);
	part[0] = 0xdeadbeef;
	reads_start();
	assert_int_equal(diskimg_sums(&f->a, 3, 1, part), 0);
	reads.on = false;
	assert_int_equal(part[0], 0);
	assert_int_equal(reads.nr, 0);

	/* Beyond the image, and ranges that wrap around. */
	sums[0] = 0xdeadbeef;
	assert_int_equal(diskimg_sums(&f->a, 6, 1, sums), -ERANGE);
	assert_int_equal(diskimg_sums(&f->a, 0, 7, sums), -ERANGE);
	assert_int_equal(diskimg_sums(&f->a, 5, 2, sums), -ERANGE);
	assert_int_equal(diskimg_sums(&f->a, UINT64_MAX, 1, sums), -ERANGE);
	assert_int_equal(diskimg_sums(&f->a, 1, UINT64_MAX, sums), -ERANGE);
	assert_int_equal(sums[0], 0xdeadbeef);

	/* Holes by SEEK_DATA: whole hole blocks, and the hole up to block 4's sector. */
	assert_true(diskimg_is_hole(&f->a, BLK, BLK));
	assert_true(diskimg_is_hole(&f->a, 3 * BLK, BLK));
	assert_true(diskimg_is_hole(&f->a, 3 * BLK, PART_OFF - 3 * BLK));
	assert_false(diskimg_is_hole(&f->a, 3 * BLK, PART_OFF - 3 * BLK + DISK_SECTOR));
	assert_false(diskimg_is_hole(&f->a, 0, BLK));
	assert_false(diskimg_is_hole(&f->a, 0, DISK_SECTOR));
	assert_false(diskimg_is_hole(&f->a, 2 * BLK, BLK));
	assert_false(diskimg_is_hole(&f->a, PART_OFF, DISK_SECTOR));
	assert_false(diskimg_is_hole(&f->a, 5 * BLK, DISK_SECTOR));
}

static void test_read(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[2 * DISK_SECTOR];
	char path[256];

	path_of(path, sizeof(path), f->dir, "sparse");
	make_sparse(f, path);
	assert_int_equal(diskimg_open(&f->a, path), 0);

	f->got = malloc(SPARSE_SIZE);
	assert_non_null(f->got);
	memset(f->got, 0xee, SPARSE_SIZE);
	get_all(&f->a, f->got);
	assert_memory_equal(f->got, f->expect, SPARSE_SIZE);

	/* A hole reads as zeros over whatever the buffer held. */
	memset(f->got, 0xee, BLK);
	assert_int_equal(diskimg_read(&f->a, f->got, BLK, 3 * BLK), 0);
	for (uint64_t i = 0; i < BLK; i++)
		assert_int_equal(f->got[i], 0);

	/* Across the edge of data and hole, and the image's last sector. */
	assert_int_equal(diskimg_read(&f->a, buf, sizeof(buf), BLK - DISK_SECTOR), 0);
	assert_memory_equal(buf, f->expect + BLK - DISK_SECTOR, sizeof(buf));
	assert_int_equal(diskimg_read(&f->a, buf, DISK_SECTOR, SPARSE_SIZE - DISK_SECTOR), 0);
	assert_memory_equal(buf, f->expect + SPARSE_SIZE - DISK_SECTOR, DISK_SECTOR);
	assert_int_equal(diskimg_read(&f->a, buf, 0, SPARSE_SIZE), 0);

	/* Past the end, wholly or in part. */
	assert_int_equal(diskimg_read(&f->a, buf, sizeof(buf), SPARSE_SIZE - DISK_SECTOR), -EIO);
	assert_int_equal(diskimg_read(&f->a, buf, DISK_SECTOR, SPARSE_SIZE), -EIO);
	assert_int_equal(diskimg_read(&f->a, buf, 1, SPARSE_SIZE), -EIO);
	assert_int_equal(diskimg_read(&f->a, buf, DISK_SECTOR, SPARSE_SIZE + MiB), -EIO);
}

static void test_hash(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 2 * MiB + 3 * DISK_SECTOR; /* three 1 MiB chunks, the last short */
	uint8_t *big;
	uint64_t h;
	char path[256];

	path_of(path, sizeof(path), f->dir, "sparse");
	make_sparse(f, path);
	assert_int_equal(diskimg_open(&f->a, path), 0);
	assert_int_equal(diskimg_hash(&f->a, &h), 0);
	assert_int_equal(h, XXH3_64bits(f->expect, SPARSE_SIZE));
	diskimg_close(&f->a);

	/* Data across the hasher's chunk boundary and in the last sector, holes between. */
	f->got = calloc(1, size);
	assert_non_null(f->got);
	big = f->got;
	fill(big + MiB - 4096, 8192);
	fill(big + size - DISK_SECTOR, DISK_SECTOR);
	path_of(path, sizeof(path), f->dir, "big");
	make_file(path, size);
	put(path, MiB - 4096, big + MiB - 4096, 8192);
	put(path, size - DISK_SECTOR, big + size - DISK_SECTOR, DISK_SECTOR);
	assert_int_equal(diskimg_open(&f->b, path), 0);
	assert_int_equal(diskimg_hash(&f->b, &h), 0);
	assert_int_equal(h, XXH3_64bits(big, size));

	/* One byte anywhere, even in a hole, changes it. */
	big[MiB + 65536] = 0x5a;
	put(path, MiB + 65536, &big[MiB + 65536], 1);
	assert_int_equal(diskimg_hash(&f->b, &h), 0);
	assert_int_equal(h, XXH3_64bits(big, size));
	assert_int_not_equal(h, XXH3_64bits(big, size - 1));
}

static void test_log(void **state)
{
	struct fixture *f = *state;
	struct disk_log *log = &f->log, other = { 0 };
	uint8_t *data = malloc(DISK_REC_MAX + 2 * DISK_SECTOR);
	struct disk_rec *r;

	assert_non_null(data);
	fill(data, DISK_REC_MAX + 2 * DISK_SECTOR);

	assert_int_equal(disk_log_append(log, 4096, data, 1024, 0), 0);
	assert_int_equal(log->nr, 1);
	assert_int_equal(log->recs[0].offset, 4096);
	assert_int_equal(log->recs[0].len, 1024);
	assert_int_equal(log->recs[0].flags, 0);
	assert_memory_equal(disk_rec_data(log, &log->recs[0]), data, 1024);
	assert_int_equal(disk_log_bytes(log), 1024);
	assert_false(log->flush);

	/* Longer than a record: split at DISK_REC_MAX, the data in order. */
	assert_int_equal(disk_log_append(log, MiB, data, DISK_REC_MAX + 2 * DISK_SECTOR, 0), 0);
	assert_int_equal(log->nr, 3);
	r = &log->recs[1];
	assert_int_equal(r[0].offset, MiB);
	assert_int_equal(r[0].len, DISK_REC_MAX);
	assert_int_equal(r[1].offset, MiB + DISK_REC_MAX);
	assert_int_equal(r[1].len, 2 * DISK_SECTOR);
	assert_memory_equal(disk_rec_data(log, &r[0]), data, DISK_REC_MAX);
	assert_memory_equal(disk_rec_data(log, &r[1]), data + DISK_REC_MAX, 2 * DISK_SECTOR);
	assert_int_equal(disk_log_bytes(log), 1024 + DISK_REC_MAX + 2 * DISK_SECTOR);

	/* Zero records are split too and carry no data; a flush is a bare record. */
	assert_int_equal(
		disk_log_append(log, 0, NULL, 2ull * DISK_REC_MAX + DISK_SECTOR, DISK_REC_ZERO), 0);
	assert_int_equal(disk_log_append(log, 0, NULL, 0, DISK_REC_FLUSH), 0);
	assert_int_equal(log->nr, 7);
	for (int i = 3; i < 6; i++) {
		assert_int_equal(log->recs[i].flags, DISK_REC_ZERO);
		assert_int_equal(log->recs[i].offset, (uint64_t)(i - 3) * DISK_REC_MAX);
	}
	assert_int_equal(log->recs[5].len, DISK_SECTOR);
	assert_int_equal(log->recs[6].flags, DISK_REC_FLUSH);
	assert_int_equal(log->recs[6].len, 0);
	assert_true(log->flush);
	assert_int_equal(disk_log_bytes(log), 1024 + DISK_REC_MAX + 2 * DISK_SECTOR);

	/* Refusals add nothing. */
	assert_int_equal(disk_log_append(log, 100, data, DISK_SECTOR, 0), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, data, 100, 0), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, data, 0, 0), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, NULL, DISK_SECTOR, 0), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, NULL, 0, DISK_REC_ZERO), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, NULL, DISK_SECTOR, DISK_REC_FLUSH), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, data, DISK_SECTOR, 4), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, NULL, 0, DISK_REC_FLAGS), -EINVAL);
	assert_int_equal(disk_log_append(log, 0, NULL, DISK_SECTOR, DISK_REC_FLAGS), -EINVAL);
	/* A range past 2^64 would split into records that wrap to offset 0. */
	assert_int_equal(
		disk_log_append(log, UINT64_MAX - 511, NULL, 2 * DISK_REC_MAX, DISK_REC_ZERO),
		-EINVAL);
	assert_int_equal(disk_log_append(log, UINT64_MAX - 511, data, DISK_SECTOR, 0), -EINVAL);
	assert_int_equal(log->nr, 7);
	assert_int_equal(disk_log_bytes(log), 1024 + DISK_REC_MAX + 2 * DISK_SECTOR);

	/* Swap hands the whole log over; clear keeps the buffers for reuse. */
	disk_log_swap(log, &other);
	assert_int_equal(log->nr, 0);
	assert_null(log->recs);
	assert_int_equal(other.nr, 7);
	assert_true(other.flush);
	r = other.recs;
	disk_log_clear(&other);
	assert_int_equal(other.nr, 0);
	assert_int_equal(disk_log_bytes(&other), 0);
	assert_false(other.flush);
	assert_ptr_equal(other.recs, r);
	assert_true(other.cap >= 7);
	assert_int_equal(disk_log_append(&other, 0, data + 512, DISK_SECTOR, 0), 0);
	assert_int_equal(other.recs[0].data_off, 0);
	assert_memory_equal(disk_rec_data(&other, &other.recs[0]), data + 512, DISK_SECTOR);
	disk_log_free(&other);
	assert_null(other.recs);
	assert_null(other.data);
	assert_int_equal(other.nr + other.cap + other.data_len + other.data_cap, 0);
	disk_log_free(&other); /* twice is harmless */
	free(data);
}

/* Appends a record to f->log and makes the same change to f->expect. */
static void log_op(struct fixture *f, uint64_t off, uint64_t len, uint32_t flags)
{
	uint8_t *data = NULL;

	if (!flags) {
		data = malloc(len);
		assert_non_null(data);
		fill(data, len);
		memcpy(f->expect + off, data, len);
	} else if (flags & DISK_REC_ZERO) {
		memset(f->expect + off, 0, len);
	}
	assert_int_equal(disk_log_append(&f->log, off, data, len, flags), 0);
	free(data);
}

/* Applies f->log to f->b and checks that it now holds f->expect exactly. */
static void apply_ok(struct fixture *f, bool durable)
{
	bool torn = true;

	assert_int_equal(diskimg_apply(&f->b, &f->log, durable, &torn), 0);
	assert_false(torn);
	memset(f->got, 0xee, f->b.size);
	get_all(&f->b, f->got);
	assert_memory_equal(f->got, f->expect, f->b.size);
}

/* Applies f->log to f->b, which must fail with err without changing a byte. */
static void apply_refused(struct fixture *f, int err)
{
	uint64_t blocks = allocated(&f->b);
	bool torn = true;

	assert_int_equal(diskimg_apply(&f->b, &f->log, true, &torn), err);
	assert_false(torn);
	get_all(&f->b, f->got);
	assert_memory_equal(f->got, f->expect, f->b.size);
	if (err == -ERANGE) /* checked before any space is reserved */
		assert_int_equal(allocated(&f->b), blocks);
}

static void test_apply(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 3 * MiB;
	bool punch = can_punch(f->dir);
	char path[256];

	f->expect = malloc(size);
	f->got = malloc(size);
	assert_non_null(f->expect);
	assert_non_null(f->got);
	fill(f->expect, size);
	path_of(path, sizeof(path), f->dir, "target");
	make_file(path, size);
	put(path, 0, f->expect, size);
	assert_int_equal(diskimg_open(&f->b, path), 0);

	log_op(f, 0, 3 * BLK, 0);
	log_op(f, BLK, 8192, 0);		    /* over the first: this one wins */
	log_op(f, 0, 0, DISK_REC_FLUSH);	    /* changes no byte */
	log_op(f, 2 * BLK, 2 * BLK, DISK_REC_ZERO); /* over both writes */
	log_op(f, 3 * BLK + 4096, DISK_SECTOR, 0);  /* data inside the zeroed range */
	log_op(f, MiB, MiB + 4096, 0);		    /* two records */
	log_op(f, size - DISK_SECTOR, DISK_SECTOR, DISK_REC_ZERO); /* the last sector */
	assert_int_equal(f->log.nr, 8);
	assert_true(f->log.flush);
	assert_int_equal(disk_log_bytes(&f->log), 3 * BLK + 8192 + DISK_SECTOR + MiB + 4096);
	apply_ok(f, false);

	/* The zeroed range is a hole again, up to the sector written into it. */
	if (punch) {
		assert_true(diskimg_is_hole(&f->b, 2 * BLK, BLK + 4096));
		assert_int_equal(lseek(f->b.fd, 2 * BLK, SEEK_DATA), 3 * BLK + 4096);
		assert_false(diskimg_is_hole(&f->b, 3 * BLK + 4096, DISK_SECTOR));
	} else {
		print_message("%s cannot punch holes: zero records not checked for holes\n",
			      f->dir);
	}

	/* Durably, and an empty log. */
	disk_log_clear(&f->log);
	log_op(f, 5 * BLK, DISK_SECTOR, 0);
	log_op(f, 0, 0, DISK_REC_FLUSH);
	log_op(f, 5 * BLK + DISK_SECTOR, DISK_SECTOR, DISK_REC_ZERO);
	apply_ok(f, true);
	disk_log_clear(&f->log);
	apply_ok(f, true);

	/* A flush is a point in the order, not a place: its offset is not the image's. */
	log_op(f, 6 * BLK, DISK_SECTOR, 0);
	log_op(f, size + MiB, 0, DISK_REC_FLUSH);
	apply_ok(f, true);
	disk_log_clear(&f->log);

	/*
	 * A record beyond the image, after good ones: nothing written, no space
	 * reserved (the first record lies in the hole punched above).
	 */
	{
		const uint64_t bad[][2] = {
			{ size, DISK_SECTOR },			 /* just past the end */
			{ size - DISK_SECTOR, 2 * DISK_SECTOR }, /* across the end */
			{ size + MiB, DISK_SECTOR },		 /* far past it */
			{ UINT64_MAX - 511, DISK_SECTOR },	 /* wrapping around */
		};
		uint8_t sector[DISK_SECTOR];

		fill(sector, sizeof(sector));
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			for (uint32_t flags = 0; flags <= DISK_REC_ZERO; flags++) {
				uint8_t *data = flags ? NULL : malloc(bad[i][1]);

				disk_log_clear(&f->log);
				assert_int_equal(disk_log_append(&f->log, 2 * BLK, sector,
								 sizeof(sector), 0),
						 0);
				assert_int_equal(disk_log_append(&f->log, 0, NULL, DISK_SECTOR,
								 DISK_REC_ZERO),
						 0);
				if (!flags) {
					assert_non_null(data);
					fill(data, bad[i][1]);
				}
				/* Placed by hand: disk_log_append refuses a range that wraps. */
				assert_int_equal(
					disk_log_append(&f->log, 0, data, bad[i][1], flags), 0);
				f->log.recs[f->log.nr - 1].offset = bad[i][0];
				free(data);
				apply_refused(f, -ERANGE);
			}
		}
	}
}

/* diskimg_apply(f->b, f->log) with writes at or past `limit` failing (-EFBIG). */
static int apply_below(struct fixture *f, uint64_t limit, bool *torn)
{
	struct rlimit old, lim;
	void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN);
	int r;

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = limit;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	r = diskimg_apply(&f->b, &f->log, false, torn);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_xfsz);
	return r;
}

/*
 * A failure after a write reached the image is a tear, one before is not: a
 * file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails a write past it with
 * -EFBIG after the write before it landed. The same way, test_replica tears
 * a replica's image.
 */
static void test_torn(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = MiB;
	uint8_t *want = malloc(size), *got = malloc(size), sector[DISK_SECTOR];
	char path[256];
	bool torn = false;

	assert_non_null(want);
	assert_non_null(got);
	fill(want, size);
	path_of(path, sizeof(path), f->dir, "torn");
	make_file(path, size);
	put(path, 0, want, size);
	assert_int_equal(diskimg_open(&f->b, path), 0);
	memset(sector, 0x5a, sizeof(sector));
	assert_int_equal(disk_log_append(&f->log, 4096, sector, sizeof(sector), 0), 0);
	assert_int_equal(disk_log_append(&f->log, size / 2 + 4096, sector, sizeof(sector), 0), 0);

	assert_int_equal(apply_below(f, size / 2, &torn), -EFBIG);
	assert_true(torn);
	memcpy(want + 4096, sector, sizeof(sector)); /* the first landed, the second did not */
	get_all(&f->b, got);
	assert_memory_equal(got, want, size);

	/* Failing on its first record, with nothing written: no tear. */
	disk_log_clear(&f->log);
	assert_int_equal(disk_log_append(&f->log, size / 2 + 4096, sector, sizeof(sector), 0), 0);
	torn = true;
	assert_int_equal(apply_below(f, size / 2, &torn), -EFBIG);
	assert_false(torn);
	get_all(&f->b, got);
	assert_memory_equal(got, want, size);
	free(want);
	free(got);
}

static void test_enospc(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 8 * MiB; /* on a 1 MiB file system */
	char path[256];

	path_of(f->mnt, sizeof(f->mnt), f->dir, "mnt");
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("tmpfs", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") < 0) {
		print_message("Cannot mount a tmpfs (%m): -ENOSPC not tested\n");
		skip();
	}
	f->mounted = true;

	f->expect = calloc(1, size);
	f->got = malloc(size);
	assert_non_null(f->expect);
	assert_non_null(f->got);
	fill(f->expect, BLK);
	fill(f->expect + 5 * MiB, 4096);
	path_of(path, sizeof(path), f->mnt, "image");
	make_file(path, size);
	put(path, 0, f->expect, BLK);
	put(path, 5 * MiB, f->expect + 5 * MiB, 4096);
	assert_int_equal(diskimg_open(&f->b, path), 0);

	/*
	 * Records that would change bytes if written before the space is known
	 * (a zero range, an overwrite of allocated data), then 2 MiB that cannot
	 * fit: nothing may change.
	 */
	memcpy(f->got, f->expect, size);
	log_op(f, BLK / 2, BLK / 2, DISK_REC_ZERO);
	log_op(f, 0, 4096, 0);
	log_op(f, 0, 0, DISK_REC_FLUSH);
	log_op(f, MiB, 2 * MiB, 0);
	assert_int_equal(f->log.nr, 5);
	memcpy(f->expect, f->got, size); /* the image as it was, not as the log would make it */
	apply_refused(f, -ENOSPC);

	/* The file system is not wedged: what fits still applies. */
	disk_log_clear(&f->log);
	log_op(f, 6 * MiB, 8192, 0);
	log_op(f, 0, 4096, DISK_REC_ZERO);
	apply_ok(f, true);

	diskimg_close(&f->b);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(umount(f->mnt), 0);
	f->mounted = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
		cmocka_unit_test(test_block_sum),
		cmocka_unit_test_setup_teardown(test_sums, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
