/* util.c -- allocation wrappers, assertions, the growable byte buffer, clocks,
 * random bytes, base64 (RFC 4648 section 4, standard alphabet, padded) and
 * constant-time comparison.
 *
 * Threading: no global mutable state; every function is safe to call from any
 * thread.  Allocation never fails: on OOM we log one line and abort (memory is
 * bounded by configured limits elsewhere, not by checking every malloc). */
#include "peyvand/pv_util.h"
#include "peyvand/pv_log.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---- allocation ---------------------------------------------------------- */

static void __attribute__((noreturn)) oom(size_t n)
{
	/* pv_log formats into a stack buffer, so it is safe to call here. */
	pv_log(PV_LOG_ERROR, "util", "out of memory allocating %zu bytes, aborting", n);
	abort();
}

void *pv_malloc(size_t n)
{
	/* malloc(0) may return NULL legitimately; always ask for at least one byte so
	 * NULL means OOM and callers never see NULL. */
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *pv_calloc(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		oom(SIZE_MAX);
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *pv_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *pv_strdup(const char *s)
{
	if (!s)
		return NULL;
	return pv_strndup(s, strlen(s));
}

char *pv_strndup(const char *s, size_t n)
{
	if (!s)
		return NULL;
	size_t len = strnlen(s, n);
	char *d = pv_malloc(len + 1);
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static char *vformat(const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	PV_ASSERT(n >= 0);
	char *s = pv_malloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

char *pv_path_under(const char *dir, const char *path)
{
	if (!path)
		return NULL;
	if (path[0] == '/' || !dir || !*dir)
		return pv_strdup(path);
	return pv_sprintf("%s/%s", dir, path);
}

char *pv_sprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = vformat(fmt, ap);
	va_end(ap);
	return s;
}

void pv_free(void *p)
{
	free(p);
}

void pv_assert_fail(const char *expr, const char *file, int line)
{
	pv_log(PV_LOG_ERROR, "assert", "assertion failed: %s at %s:%d", expr, file, line);
	abort();
}

/* ---- pv_buf -------------------------------------------------------------- */

/* An empty buffer has data == NULL; the first reserve allocates.  Every mutator
 * keeps data[len] == '\0' once data exists. */

void pv_buf_init(pv_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void pv_buf_fini(pv_buf *b)
{
	pv_free(b->data);
	pv_buf_init(b);
}

void pv_buf_reserve(pv_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		oom(SIZE_MAX);
	size_t need = b->len + extra + 1; /* +1 for the NUL */
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = pv_realloc(b->data, cap);
	b->cap = cap;
	b->data[b->len] = '\0';
}

void pv_buf_append(pv_buf *b, const void *p, size_t n)
{
	pv_buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void pv_buf_puts(pv_buf *b, const char *s)
{
	pv_buf_append(b, s, strlen(s));
}

void pv_buf_printf(pv_buf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	PV_ASSERT(n >= 0);
	pv_buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void pv_buf_consume(pv_buf *b, size_t n)
{
	if (n >= b->len) {
		pv_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void pv_buf_reset(pv_buf *b)
{
	/* Keep the allocation: a reset buffer is usually refilled soon. */
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *pv_buf_take(pv_buf *b)
{
	/* Callers expect a string even from an empty buffer. */
	char *s = b->data ? b->data : pv_strdup("");
	pv_buf_init(b);
	return s;
}

/* ---- clocks ---------------------------------------------------------------- */

uint64_t pv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t pv_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* ---- randomness -------------------------------------------------------------- */

/* Small requests (ids, nonces, salts) are served from a per-thread block of
 * RAND_bytes output, drawn RAND_BLOCK bytes at a time.  Each RAND_bytes call in
 * OpenSSL 3.0 takes the DRBG's lock, builds parameters and asks getpid(2) for its
 * fork check; a login made six of them for its own ids (perf: 1.2 % of the login's
 * CPU).  A byte handed out is wiped from the block.  A forked child must not repeat
 * its parent's bytes: pthread_atfork empties the block in the child. */
#define RAND_BLOCK 256
#define RAND_SMALL 64
static _Thread_local unsigned char t_rand[RAND_BLOCK];
static _Thread_local size_t t_rand_left;
static pthread_once_t rand_fork_once = PTHREAD_ONCE_INIT;

static void rand_after_fork(void)
{
	/* Only the forking thread exists in the child. */
	OPENSSL_cleanse(t_rand, sizeof t_rand);
	t_rand_left = 0;
}

static void rand_fork_hook(void)
{
	pthread_atfork(NULL, NULL, rand_after_fork);
}

static void rand_draw(void *p, size_t n)
{
	unsigned char *u = p;
	/* RAND_bytes takes an int length. */
	while (n > 0) {
		int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
		if (RAND_bytes(u, chunk) != 1) {
			/* Without randomness we cannot make ids, nonces or keys safely. */
			pv_log(PV_LOG_ERROR, "util", "RAND_bytes failed, aborting");
			abort();
		}
		u += chunk;
		n -= (size_t)chunk;
	}
}

void pv_random(void *p, size_t n)
{
	if (n > RAND_SMALL) {
		rand_draw(p, n);
		return;
	}
	if (t_rand_left < n) {
		pthread_once(&rand_fork_once, rand_fork_hook);
		rand_draw(t_rand, sizeof t_rand);
		t_rand_left = sizeof t_rand;
	}
	unsigned char *from = t_rand + sizeof t_rand - t_rand_left;
	memcpy(p, from, n);
	OPENSSL_cleanse(from, n);
	t_rand_left -= n;
}

char *pv_random_hex(size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (n > (SIZE_MAX - 1) / 2)
		oom(SIZE_MAX);
	unsigned char *raw = pv_malloc(n);
	char *s = pv_malloc(2 * n + 1);
	pv_random(raw, n);
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = hex[raw[i] >> 4];
		s[2 * i + 1] = hex[raw[i] & 0x0f];
	}
	s[2 * n] = '\0';
	OPENSSL_cleanse(raw, n); /* may be used as a token */
	pv_free(raw);
	return s;
}

/* ---- base64 -------------------------------------------------------------------- */

char *pv_base64_encode(const void *p, size_t n)
{
	const unsigned char *in = p;
	if (n > (SIZE_MAX / 4) * 3 - 3)
		oom(SIZE_MAX);
	size_t outlen = 4 * ((n + 2) / 3);
	char *out = pv_malloc(outlen + 1);
	size_t o = 0;
	/* EVP_EncodeBlock takes an int; feed it multiples of 3 so only the last
	 * chunk carries padding. */
	const size_t step = (size_t)3 * 1024 * 1024;
	while (n > 0) {
		size_t chunk = n > step ? step : n;
		int w = EVP_EncodeBlock((unsigned char *)out + o, in, (int)chunk);
		o += (size_t)w;
		in += chunk;
		n -= chunk;
	}
	out[o] = '\0';
	return out;
}

static bool b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
	       c == '/';
}

/* EVP_DecodeBlock skips leading/trailing whitespace, tolerates some junk and
 * returns a length that counts padding as zero bytes, so we validate the input
 * strictly first (RFC 6120 section 6.4.2 forbids whitespace in SASL base64) and
 * compute the real length ourselves. */
int pv_base64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t pad = 0;

	*out = NULL;
	*outlen = 0;
	if (slen % 4 != 0)
		return PV_EINVAL;
	/* Result length must fit the int return value. */
	if (slen / 4 * 3 > (size_t)INT_MAX)
		return PV_EINVAL;
	if (slen > 0 && u[slen - 1] == '=')
		pad = (u[slen - 2] == '=') ? 2 : 1;
	for (size_t i = 0; i < slen - pad; i++)
		if (!b64_char(u[i]))
			return PV_EINVAL;

	size_t len = slen / 4 * 3 - pad;
	unsigned char *buf = pv_malloc(slen / 4 * 3 + 1);
	size_t o = 0;
	/* EVP_DecodeBlock takes an int; decode in chunks of whole 4-char groups. */
	const size_t step = (size_t)4 * 1024 * 1024;
	for (size_t i = 0; i < slen; i += step) {
		size_t chunk = slen - i > step ? step : slen - i;
		int r = EVP_DecodeBlock(buf + o, u + i, (int)chunk);
		if (r < 0) {
			pv_free(buf);
			return PV_EINVAL;
		}
		o += (size_t)r;
	}
	PV_ASSERT(o == slen / 4 * 3);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return (int)len;
}

bool pv_memeq_ct(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

const char *pv_buf_str(const pv_buf *b)
{
	return b->data ? b->data : "";
}
