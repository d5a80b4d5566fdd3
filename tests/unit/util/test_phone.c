/* test_phone.c -- unit tests for src/util/phone.c: strict E.164 (pv_phone_normalize),
 * table-driven, and the digits view. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "peyvand/pv_phone.h"

static const struct {
	const char *in;
	const char *want; /* NULL: must be refused */
} cases[] = {
	/* valid */
	{"+989121234567", "+989121234567"},
	{"+12025550123", "+12025550123"},
	{"+12345678", "+12345678"},               /* 8 digits: the minimum */
	{"+123456789012345", "+123456789012345"}, /* 15 digits: the maximum */
	{"+44207946000", "+44207946000"},
	/* too short / too long */
	{"+1234567", NULL},
	{"+1", NULL},
	{"+", NULL},
	{"+1234567890123456", NULL},               /* 16 digits */
	{"+98912123456789012345678901234567890", NULL},
	/* leading 0 (no country code starts with 0), "00" instead of '+' */
	{"+0989121234567", NULL},
	{"00989121234567", NULL},
	/* missing '+' */
	{"989121234567", NULL},
	/* letters, spaces, separators, other characters */
	{"+98912abc4567", NULL},
	{"+98 912 123 4567", NULL},
	{" +989121234567", NULL},
	{"+989121234567 ", NULL},
	{"+98-912-123-4567", NULL},
	{"+98(912)1234567", NULL},
	{"++989121234567", NULL},
	{"+98912123456\n", NULL},
	{"+\xd9\xa9\xd9\xa8\xd9\xa9\xd9\xa1\xd9\xa2\xd9\xa1\xd9\xa2\xd9\xa3", NULL}, /* Arabic-Indic digits */
	{"+９８９１２１２３４５６７", NULL},     /* fullwidth digits */
	/* empty */
	{"", NULL},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[PV_PHONE_MAX];
		memset(out, 'x', sizeof(out));
		int rc = pv_phone_normalize(cases[i].in, out);
		if (cases[i].want) {
			if (rc != 0)
				fail_msg("refused valid \"%s\"", cases[i].in);
			assert_string_equal(out, cases[i].want);
		} else {
			if (rc != PV_EINVAL)
				fail_msg("accepted invalid \"%s\"", cases[i].in);
			assert_string_equal(out, "");
		}
	}
}

static void test_null_safe(void **state)
{
	char out[PV_PHONE_MAX] = "junk";
	assert_int_equal(pv_phone_normalize(NULL, out), PV_EINVAL);
	assert_string_equal(out, "");
	assert_int_equal(pv_phone_normalize("+989121234567", NULL), PV_EINVAL);
	assert_int_equal(pv_phone_normalize(NULL, NULL), PV_EINVAL);
}

static void test_max_fits(void **state)
{
	/* The longest valid number fills the buffer exactly, NUL included. */
	char out[PV_PHONE_MAX];
	assert_int_equal(pv_phone_normalize("+999999999999999", out), 0);
	assert_int_equal(strlen(out), PV_PHONE_MAX - 1);
}

static void test_mask(void **state)
{
	char out[PV_PHONE_MAX];
	pv_phone_mask("+989121234567", out);
	assert_string_equal(out, "+98******4567");
	pv_phone_mask("+12345678", out);
	assert_string_equal(out, "+12**5678");
	pv_phone_mask("not a number", out);
	assert_string_equal(out, "?");
	pv_phone_mask(NULL, out);
	assert_string_equal(out, "?");
}

static void test_digits(void **state)
{
	assert_string_equal(pv_phone_digits("+989121234567"), "989121234567");
	assert_null(pv_phone_digits(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_null_safe),
		cmocka_unit_test(test_max_fits),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_digits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
