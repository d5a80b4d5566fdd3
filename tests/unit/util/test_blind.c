/* test_blind.c -- unit tests for src/util/blind.c: keyed blinding of phone numbers
 * (HMAC-SHA256 + lowercase unpadded base32, pv_directory.h).
 *
 * The expected values were computed independently with Python's standard library:
 *   import hmac, hashlib, base64
 *   def blind(k, n): return base64.b32encode(hmac.new(k, n.encode(),
 *       hashlib.sha256).digest()).decode().lower().rstrip("=")
 * and RFC 4231 test case 6 (HMAC-SHA256 with a 131-byte key) checks the MAC itself:
 *   60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54, whose base32 is
 *   base64.b32encode(bytes.fromhex(...)).decode().lower().rstrip("="). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peyvand/pv_directory.h"
#include "peyvand/pv_util.h"

static const char KEY2[] = "peyvand-test-blinding-key-0123456789abcdef";

static const struct {
	int key; /* 1: bytes 0..31, 2: KEY2 */
	const char *number;
	const char *blinded;
} vectors[] = {
	{1, "+989121234567", "k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaa"},
	{1, "+14155550100", "yomrywcw3vptxnqzxyzkyt4k4qpsjk5wda63u6li6yhp7ezpw4xq"},
	{1, "+989121234568", "t7ql22omf43pxqpq73xskwbwie52yghmm6tojwm6ad5dos5rwoba"},
	{2, "+989121234567", "txycj246cg7ojauhxs3sqvpgbolttjovzjxhy24aan345244jkma"},
	{2, "+14155550100", "26p7zmnyya4ub2f7jpty3eofc6yurdi6kxbiayamsgtku7nesjjq"},
	{2, "+989121234568", "g6agrxij37hlile7ixkg4ntabycuk6lj44xxamcpcylvkmakvafa"},
};

static void test_vectors(void **state)
{
	unsigned char k1[32];
	for (int i = 0; i < 32; i++)
		k1[i] = (unsigned char)i;
	for (size_t i = 0; i < PV_ARRAY_LEN(vectors); i++) {
		char out[PV_BLIND_LEN];
		const unsigned char *k = vectors[i].key == 1 ? k1 : (const unsigned char *)KEY2;
		size_t kl = vectors[i].key == 1 ? sizeof(k1) : strlen(KEY2);
		assert_int_equal(pv_blind(k, kl, vectors[i].number, out), 0);
		assert_string_equal(out, vectors[i].blinded);
		assert_int_equal(strlen(out), PV_BLIND_LEN - 1);
		assert_true(pv_blind_is_valid(out));
	}
}

/* RFC 4231 4.7 (test case 6) through pv_blind: the "number" is the RFC's data. */
static void test_rfc4231(void **state)
{
	unsigned char key[131];
	memset(key, 0xaa, sizeof(key));
	char out[PV_BLIND_LEN];
	assert_int_equal(pv_blind(key, sizeof(key),
				  "Test Using Larger Than Block-Size Key - Hash Key First", out),
		0);
	assert_string_equal(out, "mdsdcwi64c3h6dmke2vmx5nxp6haxrrbg4umkfafiyca6dxdp5ka");
}

static void test_bad_input(void **state)
{
	unsigned char key[32] = {0};
	char out[PV_BLIND_LEN];
	assert_int_equal(pv_blind(key, 31, "+989121234567", out), PV_EINVAL);
	assert_int_equal(pv_blind(NULL, 32, "+989121234567", out), PV_EINVAL);
	assert_int_equal(pv_blind(key, 32, "", out), PV_EINVAL);
	assert_int_equal(pv_blind(key, 32, NULL, out), PV_EINVAL);
}

static void test_is_valid(void **state)
{
	assert_true(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaa"));
	/* 51 and 53 characters */
	assert_false(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxnga"));
	assert_false(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaaa"));
	/* upper case, '=' padding, digits outside 2-7 */
	assert_false(pv_blind_is_valid("K2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaa"));
	assert_false(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxnga="));
	assert_false(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxnga1"));
	/* the last character can only carry one bit: 'b' (0b00001) is not a possible end */
	assert_false(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngab"));
	assert_true(pv_blind_is_valid("k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaq"));
	assert_false(pv_blind_is_valid(""));
	assert_false(pv_blind_is_valid(NULL));
}

static void test_key_load(void **state)
{
	char path[] = "/tmp/pv-blind-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unsigned char *key;
	size_t kl;
	char *err;
	/* 31 bytes: too short */
	assert_int_equal(write(fd, KEY2, 31), 31);
	assert_int_equal(pv_blind_key_load(path, &key, &kl, &err), PV_EINVAL);
	assert_non_null(err);
	assert_null(key);
	pv_free(err);
	/* 42 bytes */
	assert_int_equal(write(fd, KEY2 + 31, strlen(KEY2) - 31), (ssize_t)(strlen(KEY2) - 31));
	close(fd);
	assert_int_equal(pv_blind_key_load(path, &key, &kl, &err), 0);
	assert_null(err);
	assert_int_equal(kl, strlen(KEY2));
	assert_memory_equal(key, KEY2, kl);
	pv_free(key);
	unlink(path);
	assert_int_equal(pv_blind_key_load(path, &key, &kl, &err), PV_EIO);
	assert_non_null(err);
	pv_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_rfc4231),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_is_valid),
		cmocka_unit_test(test_key_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
