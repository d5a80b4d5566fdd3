/* test_util.c -- unit tests for src/util/util.c: pv_buf, base64 (RFC 4648 test
 * vectors, section 10, and strict rejection of malformed input), random hex,
 * constant-time comparison, allocation helpers and log level parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

static void test_buf_basic(void **state)
{
	pv_buf b;
	pv_buf_init(&b);
	assert_int_equal(b.len, 0);

	pv_buf_puts(&b, "hello");
	pv_buf_append(&b, ", ", 2);
	pv_buf_printf(&b, "%s %d", "world", 42);
	assert_string_equal(b.data, "hello, world 42");
	assert_int_equal(b.len, strlen("hello, world 42"));
	assert_true(b.cap > b.len);

	pv_buf_consume(&b, 7);
	assert_string_equal(b.data, "world 42");
	assert_int_equal(b.len, 8);

	pv_buf_consume(&b, 100); /* more than len empties it */
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");

	pv_buf_puts(&b, "again");
	pv_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");

	pv_buf_puts(&b, "taken");
	char *s = pv_buf_take(&b);
	assert_string_equal(s, "taken");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	pv_free(s);

	s = pv_buf_take(&b); /* empty buffer still yields a string */
	assert_string_equal(s, "");
	pv_free(s);
	pv_buf_fini(&b);
}

static void test_buf_growth_binary(void **state)
{
	pv_buf b;
	pv_buf_init(&b);
	unsigned char chunk[1000];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (unsigned char)i; /* includes NUL bytes */
	for (int i = 0; i < 100; i++)
		pv_buf_append(&b, chunk, sizeof(chunk));
	assert_int_equal(b.len, 100000);
	assert_int_equal(b.data[b.len], '\0');
	for (int i = 0; i < 100; i++)
		assert_memory_equal(b.data + i * 1000, chunk, sizeof(chunk));

	pv_buf_reserve(&b, 1 << 20);
	assert_true(b.cap >= b.len + (1 << 20) + 1);
	pv_buf_append(&b, "", 0);
	assert_int_equal(b.len, 100000);
	pv_buf_fini(&b);
	assert_null(b.data);
}

static void test_alloc_helpers(void **state)
{
	char *s = pv_strdup("abc");
	assert_string_equal(s, "abc");
	pv_free(s);
	assert_null(pv_strdup(NULL));

	s = pv_strndup("abcdef", 3);
	assert_string_equal(s, "abc");
	pv_free(s);
	s = pv_strndup("ab", 10);
	assert_string_equal(s, "ab");
	pv_free(s);

	s = pv_sprintf("%d-%s", 7, "x");
	assert_string_equal(s, "7-x");
	pv_free(s);

	int *z = pv_calloc(16, sizeof(int));
	for (int i = 0; i < 16; i++)
		assert_int_equal(z[i], 0);
	z = pv_realloc(z, 32 * sizeof(int));
	assert_int_equal(z[15], 0);
	pv_free(z);
	pv_free(pv_malloc(0)); /* never NULL, freeable */
}

/* RFC 4648 section 10 test vectors. */
static const struct {
	const char *raw;
	const char *b64;
} b64_vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

static void test_base64_vectors(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(b64_vectors); i++) {
		const char *raw = b64_vectors[i].raw, *enc = b64_vectors[i].b64;
		char *e = pv_base64_encode(raw, strlen(raw));
		assert_string_equal(e, enc);
		pv_free(e);

		unsigned char *d = NULL;
		size_t dl = 99;
		int r = pv_base64_decode(enc, strlen(enc), &d, &dl);
		assert_int_equal(r, (int)strlen(raw));
		assert_int_equal(dl, strlen(raw));
		assert_non_null(d);
		assert_memory_equal(d, raw, dl);
		assert_int_equal(d[dl], '\0');
		pv_free(d);
	}
}

static void test_base64_roundtrip_binary(void **state)
{
	unsigned char raw[259];
	for (size_t n = 0; n <= sizeof(raw); n++) {
		pv_random(raw, n);
		char *e = pv_base64_encode(raw, n);
		assert_int_equal(strlen(e), 4 * ((n + 2) / 3));
		unsigned char *d;
		size_t dl;
		assert_int_equal(pv_base64_decode(e, strlen(e), &d, &dl), (int)n);
		assert_int_equal(dl, n);
		if (n)
			assert_memory_equal(d, raw, n);
		pv_free(d);
		pv_free(e);
	}
}

static void test_base64_invalid(void **state)
{
	static const char *const bad[] = {
		"Zg",         /* missing padding */
		"Zg=",        /* short padding */
		"Zm9",        /* length not a multiple of 4 */
		"Zm9v ",      /* trailing space */
		" Zm9v",      /* leading space */
		"Zm9v\nYmFy", /* embedded newline */
		"Zm 9",       /* space in a group */
		"Zm9v\r\n",
		"Zg==Zg==",   /* padding in the middle */
		"Z===",       /* too much padding */
		"====",
		"=Zm9",
		"Zm=v",
		"Zm9-",       /* URL-safe alphabet is not ours */
		"Zm9_",
		"Zm9v!A==",
		"\tZm9",
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
		unsigned char *d = (unsigned char *)"sentinel";
		size_t dl = 5;
		int r = pv_base64_decode(bad[i], strlen(bad[i]), &d, &dl);
		if (r != PV_EINVAL)
			fail_msg("accepted invalid base64 [%zu] '%s'", i, bad[i]);
		assert_null(d);
		assert_int_equal(dl, 0);
	}

	/* An embedded NUL inside the given length is invalid, not a terminator. */
	unsigned char *d;
	size_t dl;
	assert_int_equal(pv_base64_decode("Zm\0v", 4, &d, &dl), PV_EINVAL);
	/* The length bounds the input: trailing garbage beyond slen is ignored. */
	assert_int_equal(pv_base64_decode("Zm9v!!!", 4, &d, &dl), 3);
	assert_memory_equal(d, "foo", 3);
	pv_free(d);
}

static void test_random_hex(void **state)
{
	static const size_t lens[] = {0, 1, 8, 16, 33};
	for (size_t i = 0; i < PV_ARRAY_LEN(lens); i++) {
		char *h = pv_random_hex(lens[i]);
		assert_int_equal(strlen(h), 2 * lens[i]);
		for (size_t j = 0; h[j]; j++)
			assert_non_null(strchr("0123456789abcdef", h[j]));
		pv_free(h);
	}
	/* Two 16-byte values colliding would mean the generator is broken. */
	char *a = pv_random_hex(16), *b = pv_random_hex(16);
	assert_string_not_equal(a, b);
	pv_free(a);
	pv_free(b);
}

/* pv_random's per-thread block (util.c): every size across a refill gives fresh
 * bytes, and a forked child never repeats what its parent hands out next. */
static void test_random_block_and_fork(void **state)
{
	/* 16-byte draws of every block position, and sizes around the small limit and
	 * the block's size: no two 16-byte draws may be equal. */
	enum { DRAWS = 100 };
	unsigned char seen[DRAWS][16], big[300], zero[300] = {0};
	for (int i = 0; i < DRAWS; i++) {
		pv_random(seen[i], 16);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(seen[i], seen[j], 16);
		unsigned char odd[65];
		pv_random(odd, 1 + (size_t)i % 65); /* moves the block position around */
	}
	pv_random(big, sizeof big);
	assert_memory_not_equal(big, zero, sizeof big);

	/* The parent's next bytes and the child's first must differ: the child's block
	 * was emptied at the fork.  Three rounds: a round that finds fewer than 16 bytes
	 * left refills the parent's block, so the next round forks with a full one. */
	for (int round = 0; round < 3; round++) {
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			unsigned char c[16];
			pv_random(c, sizeof c);
			_exit(write(fds[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
		}
		unsigned char p[16], c[16];
		pv_random(p, sizeof p);
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		assert_int_equal(read(fds[0], c, sizeof c), (ssize_t)sizeof c);
		close(fds[0]);
		close(fds[1]);
		assert_memory_not_equal(p, c, sizeof p);
	}
}

static void test_memeq_ct(void **state)
{
	assert_true(pv_memeq_ct("abcdef", "abcdef", 6));
	assert_false(pv_memeq_ct("abcdef", "abcdeg", 6));
	assert_false(pv_memeq_ct("xbcdef", "abcdef", 6));
	assert_true(pv_memeq_ct("abcX", "abcY", 3));
	assert_true(pv_memeq_ct("a", "b", 0));
}

static void test_clocks(void **state)
{
	uint64_t a = pv_now_ms(), b = pv_now_ms();
	assert_true(b >= a);
	assert_true(pv_wall_s() > 1600000000); /* after 2020 */
}

static void test_log_level(void **state)
{
	static const struct {
		const char *s;
		int rc;
		pv_log_level lvl;
	} cases[] = {
		{"debug", PV_OK, PV_LOG_DEBUG}, {"info", PV_OK, PV_LOG_INFO},
		{"WARN", PV_OK, PV_LOG_WARN},   {"warning", PV_OK, PV_LOG_WARN},
		{"error", PV_OK, PV_LOG_ERROR}, {"verbose", PV_EINVAL, PV_LOG_INFO},
		{"", PV_EINVAL, PV_LOG_INFO},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_log_level l = PV_LOG_INFO;
		assert_int_equal(pv_log_level_parse(cases[i].s, &l), cases[i].rc);
		assert_int_equal(l, cases[i].lvl);
	}
	assert_int_equal(pv_log_get_level(), PV_LOG_INFO); /* the default */
	pv_log_set_level(PV_LOG_ERROR);
	assert_int_equal(pv_log_get_level(), PV_LOG_ERROR);
	pv_log_set_level(PV_LOG_INFO);
}

static void test_path_under(void **state)
{
	static const struct { const char *dir, *path, *want; } t[] = {
		{ "/var/lib/p", "certs/a.crt", "/var/lib/p/certs/a.crt" },
		{ "/var/lib/p", "/etc/key", "/etc/key" },
		{ NULL, "rel/x", "rel/x" },
		{ "", "rel/x", "rel/x" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *got = pv_path_under(t[i].dir, t[i].path);
		assert_string_equal(got, t[i].want);
		pv_free(got);
	}
	assert_null(pv_path_under("/d", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_basic),
		cmocka_unit_test(test_buf_growth_binary),
		cmocka_unit_test(test_alloc_helpers),
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_roundtrip_binary),
		cmocka_unit_test(test_base64_invalid),
		cmocka_unit_test(test_random_hex),
		cmocka_unit_test(test_random_block_and_fork),
		cmocka_unit_test(test_memeq_ct),
		cmocka_unit_test(test_clocks),
		cmocka_unit_test(test_log_level),
		cmocka_unit_test(test_path_under),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
