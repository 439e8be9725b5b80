/* SPDX-License-Identifier: MIT */
/*
 * Mutual TLS for replication links (OpenSSL, TLS 1.3 only). The records go
 * through memory BIOs: the link hands ciphertext to io_uring and received
 * ciphertext to OpenSSL, so the transport stays the same ring-driven one on
 * kernels without kernel TLS. Both sides present a certificate signed by the
 * configured CA and verify the other's; nothing moves before that.
 */
#ifndef RINGFT_PROTO_TLS_H
#define RINGFT_PROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ssl_ctx_st SSL_CTX;
struct link_tls;

/*
 * A context from PEM files: this side's certificate (chain) and key, and the
 * CA that signs its peers; with peer_name (else NULL), the peer's certificate
 * must also name it (subjectAltName DNS, else the common name). The key file
 * must not be readable by group or others. Returns 0 or -errno with a message in err naming the
 * file.
 */
int tls_ctx_new(const char *cert, const char *key, const char *ca, const char *peer_name,
		SSL_CTX **ret, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* Per-link state (proto/link.c drives it). */
int tls_new(SSL_CTX *ctx, bool server, struct link_tls **ret);
void tls_free(struct link_tls *t);
/* Whether the handshake is complete (peer verified). */
bool tls_ready(const struct link_tls *t);
/*
 * Advances the handshake. Returns 1 when complete, 0 when it needs more
 * bytes, or -EACCES (peer not verified) / -EPROTO with the reason in err.
 */
int tls_handshake(struct link_tls *t, char *err, size_t errlen);
/* Plaintext in (all of it, into records), ciphertext out. */
int tls_encrypt(struct link_tls *t, const void *buf, size_t len);
size_t tls_pending_out(const struct link_tls *t);
size_t tls_take_out(struct link_tls *t, void *buf, size_t len);
/* Ciphertext in, plaintext out: >0 bytes, 0 need more, -ECONNRESET closed, -EBADMSG bad record. */
int tls_feed(struct link_tls *t, const void *buf, size_t len);
long tls_decrypt(struct link_tls *t, void *buf, size_t len, char *err, size_t errlen);

#endif
