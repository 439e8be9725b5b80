// SPDX-License-Identifier: MIT
/*
 * `ftd primary` and `ftd secondary`: what one process holds whatever its role
 * (struct ftd_process: console, output buffer, signals, VM, io_uring, control
 * socket, cluster), set up and torn down in one place, and what both roles
 * say to their peer (HELLO, the TLS policy). The roles themselves: ftd_primary.c
 * (the guest runs here), ftd_secondary.c (a replica is kept here).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "daemon/events.h"
#include "daemon/metrics_http.h"
#include "daemon/role.h"
#include "daemon/run.h"
#include "lib/log.h"
#include "vmm/virtio_blk.h"
#include "vmm/vm.h"

#define OUTBUF_BYTES (16u << 20)

int local_hello(const struct ftd_options *o, struct vm *vm, const struct virtio_blk *disk,
		uint32_t role, struct hello_info *h, uint8_t **ret_cpuid)
{
	size_t len = 0;
	int r = vm_get_cpuid(vm, ret_cpuid, &len);

	if (r < 0)
		return r;
	memset(h, 0, sizeof(*h));
	h->protocol_version = RINGFT_PROTOCOL_VERSION;
	h->protocol_min = RINGFT_PROTOCOL_MIN;
	h->software_version = RINGFT_VERSION;
	h->role = role;
	h->mem_size = vm->mem_size;
	h->nr_vcpus = vm->nr_vcpus;
	h->page_size = (uint32_t)VM_PAGE_SIZE;
	h->kvm_api_version = (uint32_t)ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	h->xsave_size = vm->xsave_size;
	h->tracking = dirty_mode_name(o->tracking);
	h->ring_entries = o->tracking == DIRTY_RING ? vm->ring_entries : 0;
	h->cpuid = *ret_cpuid;
	h->cpuid_len = len;
	h->msrs = vm->msr_list;
	h->nr_msrs = vm->nr_msrs;
	h->guest = role == HELLO_PRIMARY ? o->guest : "";
	for (unsigned int i = 0; i < vm->nr_devices && i < HELLO_MAX_DEVICES; i++)
		h->devices[h->nr_devices++] = vm->devices[i]->ops->name;
	h->verify = o->verify;
	h->net_mac = o->net.enabled ? o->net.mac_text : "";
	h->disk_size = disk ? virtio_blk_size(disk) : 0;
	return 0;
}

int parse_addr_opt(const char *opt, const char *value, struct sockaddr_storage *ss, socklen_t *len)
{
	char err[160];

	if (net_parse_addr(value, ss, len, err, sizeof(err)) < 0) {
		log_error("--%s: %s", opt, err);
		return -EINVAL;
	}
	return 0;
}

int replication_tls(const struct ftd_options *o, const struct sockaddr *addr, const char *addr_text,
		    SSL_CTX **ret)
{
	char err[384];

	if (o->tls_cert[0]) {
		if (*ret)
			return 0;
		if (tls_ctx_new(o->tls_cert, o->tls_key, o->tls_ca, o->tls_peer, ret, err,
				sizeof(err)) < 0) {
			log_error("%s", err);
			return -EINVAL;
		}
		log_info("replication: mutual TLS 1.3, certificate %s, peers signed by %s%s%s",
			 o->tls_cert, o->tls_ca, o->tls_peer[0] ? " and named " : "", o->tls_peer);
		return 0;
	}
	if (net_is_loopback(addr))
		return 0;
	if (!o->insecure) {
		log_error(
			"Refusing to replicate in the clear with %s: it is not a loopback address "
			"(give --tls-cert, --tls-key and --tls-ca, or --insecure)",
			addr_text);
		return -EINVAL;
	}
	log_warning("--insecure: replication with %s is neither authenticated nor encrypted",
		    addr_text);
	return 0;
}

static void outbuf_sink(void *opaque, const uint8_t *buf, size_t len)
{
	outbuf_append(opaque, buf, len);
}

/* Opens the console (non-blocking if a pipe). Logs failures. */
static int open_console(const char *path)
{
	int fd = ftd_open_console(path);

	if (fd < 0)
		log_error("Failed to open console %s: %s", path, strerror(errno));
	return fd;
}

/*
 * A console file that an earlier process left in mid-line: the mirror's first
 * bytes then start a line of their own (outbuf_end_line).
 */
static void note_console_tail(const char *path, struct outbuf *ob)
{
	struct stat st;
	uint8_t c;
	int fd;

	if (!strcmp(path, "-"))
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    pread(fd, &c, 1, st.st_size - 1) == 1)
		outbuf_set_last(ob, c);
	close(fd);
}

int ftd_process_open(struct ftd_process *pr, const struct ftd_options *o, const char *addr_opt,
		     const char *addr, bool load_guest, bool send_zc)
{
	int status, r;

	*pr = (struct ftd_process){ .o = o, .sig_fd = -1, .console_fd = -1, .booted = load_guest };
	snprintf(pr->guest, sizeof(pr->guest), "%s", o->guest);
	signal(SIGPIPE, SIG_IGN);
	event_set_notify(o->notify_command[0] ? o->notify_command : NULL);
	if (parse_addr_opt(addr_opt, addr, &pr->addr, &pr->addr_len) < 0 ||
	    replication_tls(o, (struct sockaddr *)&pr->addr, addr, &pr->tls) < 0)
		return 2;
	pr->console_fd = open_console(o->console);
	if (pr->console_fd < 0)
		return 1;
	r = outbuf_init(&pr->out, OUTBUF_BYTES);
	if (r == 0)
		note_console_tail(o->console, &pr->out);
	commit_init(&pr->commit);
	if (r == 0)
		r = commit_add_channel(&pr->commit, &pr->out);
	/* Room for the bound and the frame that finds it reached. */
	if (r == 0 && o->net.enabled)
		r = outbuf_init(&pr->frames, o->net.hold_max + 2 * OUTBUF_RECORD_MAX);
	if (r == 0 && o->net.enabled)
		r = commit_add_channel(&pr->commit, &pr->frames);
	pr->sig_fd = ftd_signalfd();
	if (r < 0 || pr->sig_fd < 0) {
		log_error("Failed to set up the output buffer and signals");
		return 1;
	}
	/* A secondary's replica writes the same buffer: the guest writes it once promoted. */
	status = ftd_make_vm(o, outbuf_sink, &pr->out, load_guest, &pr->net, &pr->disk, &pr->vm);
	if (status)
		return status;
	r = netloop_init(&pr->nl, send_zc);
	if (r < 0) {
		log_error("Failed to set up io_uring: %s", strerror(-r));
		return 1;
	}
	pr->nl_ok = true;
	return 0;
}

int ftd_process_serve(struct ftd_process *pr, control_fn fn, void *opaque)
{
	const struct ftd_options *o = pr->o;
	int r = control_open(&pr->nl, o->control, fn, opaque, &pr->ctl);

	if (r == 0 && o->metrics_listen[0])
		r = metrics_http_open(o->metrics_listen, fn, opaque, &pr->mh);
	if (r < 0)
		return r;
	stale_marker_clear(o);
	return o->cluster[0] ? ftd_cluster_open(&pr->fc, o->cluster, pr->ctl) : 0;
}

void ftd_process_close(struct ftd_process *pr)
{
	metrics_http_close(pr->mh);
	cluster_close(pr->fc.c);
	control_close(pr->ctl);
	if (pr->sec) {
		secondary_free(pr->sec);
		free(pr->sec);
	}
	if (pr->nl_ok) {
		netloop_drain(&pr->nl, NS_PER_S); /* the control socket's accept, its clients */
		netloop_free(&pr->nl);
	}
	vm_free(pr->vm);
	if (pr->out.buf) {
		/* Whatever was acknowledged (or unprotected) leaves; the rest never existed. */
		outbuf_flush(&pr->out, pr->console_fd);
		if (pr->booted && outbuf_held(&pr->out))
			log_info("%llu console bytes of unacknowledged checkpoints withheld",
				 (unsigned long long)outbuf_held(&pr->out));
		outbuf_free(&pr->out);
	}
	if (pr->frames.buf) {
		if (pr->booted && outbuf_records_held(&pr->frames))
			log_info("%llu frames of unacknowledged checkpoints withheld",
				 (unsigned long long)outbuf_records_held(&pr->frames));
		outbuf_free(&pr->frames);
	}
	if (pr->sig_fd >= 0)
		close(pr->sig_fd);
	if (pr->console_fd >= 0)
		close(pr->console_fd);
	tls_ctx_free(pr->tls);
}
