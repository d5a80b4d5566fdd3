/* pv_util.h -- allocation, error codes, assertions and the growable byte buffer.
 *
 * Allocation never fails: the wrappers log and abort (memory is bounded by limits
 * elsewhere, not by checking every malloc).  Fallible functions return 0 or a
 * negative PV_E* code.  Thread-safe: nothing here keeps global mutable state. */
#ifndef PV_UTIL_H
#define PV_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	PV_OK = 0,
	PV_EINVAL = -1,   /* bad argument or malformed input */
	PV_ENOENT = -2,   /* no such item */
	PV_EEXIST = -3,   /* item already exists */
	PV_ENOMEM = -4,   /* a configured limit was hit */
	PV_EIO = -5,      /* storage or socket failure */
	PV_EAGAIN = -6,   /* need more input */
	PV_EPERM = -7,    /* not allowed */
	PV_ELIMIT = -8,   /* size/depth/rate limit exceeded */
};

void *pv_malloc(size_t n);
void *pv_calloc(size_t n, size_t size);
void *pv_realloc(void *p, size_t n);
char *pv_strdup(const char *s);           /* NULL in, NULL out */
char *pv_strndup(const char *s, size_t n);
char *pv_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A configured file path as it is opened: absolute as it is, relative under dir (as is
 * when dir is NULL or empty).  A new string; NULL for NULL. */
char *pv_path_under(const char *dir, const char *path);
void pv_free(void *p);

void pv_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define PV_ASSERT(e) ((e) ? (void)0 : pv_assert_fail(#e, __FILE__, __LINE__))
#define PV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Growable byte buffer; always NUL-terminated for convenience (len excludes the NUL). */
typedef struct pv_buf {
	char *data;
	size_t len;
	size_t cap;
} pv_buf;

void pv_buf_init(pv_buf *b);
void pv_buf_fini(pv_buf *b);
void pv_buf_reserve(pv_buf *b, size_t extra);
void pv_buf_append(pv_buf *b, const void *p, size_t n);
void pv_buf_puts(pv_buf *b, const char *s);
void pv_buf_printf(pv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pv_buf_consume(pv_buf *b, size_t n); /* drop n bytes from the front */
void pv_buf_reset(pv_buf *b);
char *pv_buf_take(pv_buf *b);
/* The contents as a C string; "" for a buffer that never held anything.  Borrowed. */
const char *pv_buf_str(const pv_buf *b);             /* caller owns the returned string, b is reset */

/* Monotonic milliseconds and wall-clock seconds. */
uint64_t pv_now_ms(void);
int64_t pv_wall_s(void);

/* Fill p with n cryptographically random bytes (OpenSSL RAND_bytes); aborts on failure. */
void pv_random(void *p, size_t n);
/* n random bytes as a 2n-char lowercase hex string; caller frees. */
char *pv_random_hex(size_t n);

/* Base64 (standard alphabet, padded).  decode returns length or PV_EINVAL. */
char *pv_base64_encode(const void *p, size_t n);
int pv_base64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen);

/* Constant-time comparison. */
bool pv_memeq_ct(const void *a, const void *b, size_t n);

#endif
