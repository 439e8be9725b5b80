// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proto/tls.h"

struct link_tls {
	SSL *ssl;
	BIO *rbio; /* ciphertext from the peer, for OpenSSL to read */
	BIO *wbio; /* ciphertext OpenSSL wrote, for the socket */
	bool ready;
};

/* The last OpenSSL error as text (and the queue cleared). */
static void ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[160] = "unknown error";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf);
}

int tls_ctx_new(const char *cert, const char *key, const char *ca, const char *peer_name,
		SSL_CTX **ret, char *err, size_t errlen)
{
	struct stat st;
	SSL_CTX *ctx;

	if (stat(key, &st) < 0) {
		snprintf(err, errlen, "TLS key %s: %s", key, strerror(errno));
		return -errno;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "TLS key %s is readable by others (mode %04o): refusing it (chmod 600)",
			 key, (unsigned int)(st.st_mode & 07777));
		return -EPERM;
	}
	ctx = SSL_CTX_new(TLS_method());
	if (!ctx) {
		ssl_error(err, errlen, "TLS context");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_error(err, errlen, cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ssl_error(err, errlen, key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_error(err, errlen, "TLS key does not match the certificate");
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		ssl_error(err, errlen, ca);
		goto fail;
	}
	if (peer_name && peer_name[0] &&
	    X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), peer_name, 0) != 1) {
		ssl_error(err, errlen, "TLS peer name");
		goto fail;
	}
	/* Mutual: a peer without a certificate from our CA gets nothing. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* No resumption: every session starts with a full, fresh handshake. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	*ret = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -EINVAL;
}

void tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

int tls_new(SSL_CTX *ctx, bool server, struct link_tls **ret)
{
	struct link_tls *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		SSL_free(t->ssl);
		free(t);
		return -ENOMEM;
	}
	BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more to come", not EOF */
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	*ret = t;
	return 0;
}

void tls_free(struct link_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* frees the BIOs too */
	free(t);
}

bool tls_ready(const struct link_tls *t)
{
	return t->ready;
}

int tls_handshake(struct link_tls *t, char *err, size_t errlen)
{
	int r = SSL_do_handshake(t->ssl), e;
	long v;

	if (r == 1) {
		t->ready = true;
		return 1;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		snprintf(err, errlen, "TLS: the peer's certificate is not accepted: %s",
			 X509_verify_cert_error_string(v));
		ERR_clear_error();
		return -EACCES;
	}
	ssl_error(err, errlen, "TLS handshake failed");
	return -EPROTO;
}

int tls_encrypt(struct link_tls *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		int n = SSL_write(t->ssl, p, len > (1u << 30) ? 1 << 30 : (int)len);

		if (n <= 0)
			return -EIO; /* memory BIOs do not block: out of memory */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t tls_pending_out(const struct link_tls *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t tls_take_out(struct link_tls *t, void *buf, size_t len)
{
	int n = BIO_read(t->wbio, buf, len > (1u << 30) ? 1 << 30 : (int)len);

	return n > 0 ? (size_t)n : 0;
}

int tls_feed(struct link_tls *t, const void *buf, size_t len)
{
	return BIO_write(t->rbio, buf, (int)len) == (int)len ? 0 : -ENOMEM;
}

long tls_decrypt(struct link_tls *t, void *buf, size_t len, char *err, size_t errlen)
{
	int n = SSL_read(t->ssl, buf, len > (1u << 30) ? 1 << 30 : (int)len), e;

	if (n > 0)
		return n;
	e = SSL_get_error(t->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		return -ECONNRESET;
	ssl_error(err, errlen, "TLS record refused");
	return -EBADMSG;
}
