/* test_jid.c -- unit tests for src/xmpp/jid.c: RFC 7622 section 3.5 example tables
 * (valid and invalid JIDs), case folding of localpart and domainpart but not resourcepart,
 * width mapping, NFC, IDNA2008 domains (U-label/A-label equivalence), IP literals,
 * trailing dot, PRECIS class and context rules, the bidi rule, length limits, invalid
 * UTF-8, and the pv_jid helpers (make, dup, eq, bare_eq) and pv_precis_opaque. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "peyvand/pv_jid.h"

typedef struct jcase {
	const char *in;
	const char *full; /* expected normalised form, NULL: must be rejected */
} jcase;

static const jcase valid_cases[] = {
	/* RFC 7622 3.5, Table 1 */
	{"juliet@example.com", "juliet@example.com"},
	{"juliet@example.com/foo", "juliet@example.com/foo"},
	{"juliet@example.com/foo bar", "juliet@example.com/foo bar"},
	{"juliet@example.com/foo@bar", "juliet@example.com/foo@bar"},
	{"foo\\20bar@example.com", "foo\\20bar@example.com"},
	{"fussball@example.com", "fussball@example.com"},
	{"fu\xc3\x9f" "ball@example.com", "fu\xc3\x9f" "ball@example.com"}, /* sharp s kept */
	{"\xcf\x80@example.com", "\xcf\x80@example.com"},                   /* pi */
	{"\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo"},           /* Sigma -> sigma */
	{"\xcf\x83@example.com/foo", "\xcf\x83@example.com/foo"},           /* sigma */
	{"\xcf\x82@example.com/foo", "\xcf\x82@example.com/foo"},           /* final sigma */
	{"king@example.com/\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a"}, /* chess king */
	{"example.com", "example.com"},
	{"example.com/foobar", "example.com/foobar"},
	{"a.example.com/b@example.net", "a.example.com/b@example.net"},
	/* RFC 7622 errata 4560: leading/trailing spaces are fine in a resourcepart */
	{"juliet@example.com/ foo ", "juliet@example.com/ foo "},
	/* case: local and domain folded, resource preserved */
	{"Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"},
	{"JULIET@EXAMPLE.COM", "juliet@example.com"},
	/* resource may hold '/' and '@'; first '/' splits */
	{"a@b/foo/bar", "a@b/foo/bar"},
	{"example.com/a@b", "example.com/a@b"},
	/* trailing dot stripped */
	{"example.com.", "example.com"},
	{"juliet@example.com./r", "juliet@example.com/r"},
	/* fullwidth letters in the localpart width-mapped, then lower-cased */
	{"\xef\xbc\xaa\xef\xbc\xb5\xef\xbc\xac@example.com", "jul@example.com"},
	{"\xef\xbd\x8a\xef\xbd\x95\xef\xbd\x8c@example.com", "jul@example.com"},
	/* ... but kept in the resourcepart (OpaqueString has no width mapping) */
	{"a@example.com/\xef\xbc\xa1", "a@example.com/\xef\xbc\xa1"},
	/* NFC in local and resource */
	{"e\xcc\x81@example.com/e\xcc\x81", "\xc3\xa9@example.com/\xc3\xa9"},
	/* non-ASCII space (U+3000, U+00A0) -> U+0020 in the resource */
	{"a@b/x\xe3\x80\x80y\xc2\xa0z", "a@b/x y z"},
	/* IDN domains: U-labels, A-labels and upper case all end as lowercase U-labels */
	{"\xc3\x84\xc3\x96.example", "\xc3\xa4\xc3\xb6.example"},
	{"\xc3\xa4\xc3\xb6.example", "\xc3\xa4\xc3\xb6.example"},
	{"xn--4ca0b.example", "\xc3\xa4\xc3\xb6.example"},
	{"u@XN--4CA0B.Example/R", "u@\xc3\xa4\xc3\xb6.example/R"},
	/* IP literals */
	{"user@192.168.1.1", "user@192.168.1.1"},
	{"user@[2001:DB8::1]/r", "user@[2001:db8::1]/r"},
	{"user@[2001:db8:0:0:0:0:0:1]", "user@[2001:db8::1]"},
	/* context rules: Catalan middle dot between two l's; Greek keraia before Greek */
	{"l\xc2\xb7l@example.com", "l\xc2\xb7l@example.com"},
	{"\xcd\xb5\xce\xb1@example.com", "\xcd\xb5\xce\xb1@example.com"},
	/* right-to-left localpart obeying the bidi rule */
	{"\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8@example.com",
		"\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8@example.com"},
	/* ASCII symbols and punctuation are PVALID in identifiers (except the RFC 7622 ones) */
	{"a.b-c_d+e!#$%*=?^`{|}~@example.com", "a.b-c_d+e!#$%*=?^`{|}~@example.com"},
	/* emoji resource */
	{"user@example.org/\xf0\x9f\x8d\xba", "user@example.org/\xf0\x9f\x8d\xba"},
};

static const char *const invalid_cases[] = {
	/* RFC 7622 3.5, Table 2 */
	"\"juliet\"@example.com",
	"foo bar@example.com",
	"@example.com/",
	"henry\xe2\x85\xa3@example.com", /* ROMAN NUMERAL FOUR: HasCompat */
	"\xe2\x99\x9a@example.com",      /* symbol in localpart */
	"juliet@",
	"/foobar",
	/* empty parts */
	"",
	"@example.com",
	"example.com/",
	"a@example.com/",
	"@",
	"/",
	".",
	"a@.",
	/* separators that cannot appear */
	"a@b@example.com",
	"a&b@example.com",
	"a'b@example.com",
	"a:b@example.com",
	"a<b@example.com",
	"a>b@example.com",
	/* domains */
	"juliet@example..com",
	"juliet@.example.com",
	"juliet@example.com..",
	"juliet@-example.com",
	"juliet@example-.com",
	"juliet@exa_mple.com",
	"juliet@exa mple.com",
	"juliet@xn--zz.example",    /* A-label that is not a valid U-label image */
	"juliet@[::g]",
	"juliet@[::1",
	"juliet@[]",
	/* controls, ignorables, unassigned, private use */
	"jul\x01iet@example.com",
	"a@example.com/x\x07",
	"a\xc2\xad" "b@example.com",   /* SOFT HYPHEN: default ignorable */
	"\xcd\xb8@example.com",        /* U+0378 unassigned */
	"a@example.com/\xcd\xb8",
	"a@example.com/\xee\x80\x80",  /* U+E000 private use */
	"a@example.com/a\xe2\x80\x8b", /* ZERO WIDTH SPACE */
	"\xe1\x84\x80@example.com",    /* U+1100 old Hangul jamo */
	/* spaces in the localpart, also after width mapping */
	"a\xe3\x80\x80" "b@example.com",
	/* context rules */
	"a\xc2\xb7" "b@example.com",   /* middle dot not between l's */
	"a\xe2\x80\x8d@example.com",   /* ZWJ without virama */
	"\xd9\xa0\xdb\xb0@example.com", /* Arabic-Indic and extended digits mixed */
	/* bidi rule: LTR start with an RTL letter */
	"a\xd8\xa7@example.com",
	/* titlecase digraph: lower-cases to a HasCompat code point */
	"\xc7\x85@example.com",
	/* invalid UTF-8: truncated, overlong, surrogate, out of range, stray continuation */
	"\xc3@example.com",
	"\xc0\xaf@example.com",
	"\xed\xa0\x80@example.com",
	"\xf4\x90\x80\x80@example.com",
	"\x80@example.com",
	"a@example.com/\xff",
	"a@\xc3\x28.example",
};

static void test_valid_table(void **state)
{
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const jcase *c = &valid_cases[i];
		pv_jid j;
		int rc = pv_jid_parse_str(&j, c->in);
		if (rc != 0)
			fail_msg("rejected valid JID #%zu \"%s\"", i, c->in);
		assert_string_equal(j.full, c->full);
		/* normalisation is idempotent */
		pv_jid k;
		assert_int_equal(pv_jid_parse_str(&k, j.full), 0);
		assert_string_equal(k.full, j.full);
		assert_true(pv_jid_eq(&j, &k));
		pv_jid_fini(&k);
		pv_jid_fini(&j);
	}
}

static void test_invalid_table(void **state)
{
	for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		pv_jid j;
		int rc = pv_jid_parse_str(&j, invalid_cases[i]);
		if (rc != PV_EINVAL)
			fail_msg("accepted invalid JID #%zu \"%s\" as \"%s\"", i, invalid_cases[i],
				j.full ? j.full : "(null)");
		assert_null(j.full);
		assert_null(j.domain);
	}
}

static void test_parts(void **state)
{
	pv_jid j;
	assert_int_equal(pv_jid_parse_str(&j, "Juliet@Example.com/Balcony/Left@x"), 0);
	assert_string_equal(j.local, "juliet");
	assert_string_equal(j.domain, "example.com");
	assert_string_equal(j.resource, "Balcony/Left@x");
	assert_string_equal(j.bare, "juliet@example.com");
	assert_string_equal(j.full, "juliet@example.com/Balcony/Left@x");
	pv_jid_fini(&j);
	assert_null(j.full);

	assert_int_equal(pv_jid_parse_str(&j, "example.com"), 0);
	assert_null(j.local);
	assert_null(j.resource);
	assert_string_equal(j.bare, "example.com");
	assert_string_equal(j.full, "example.com");
	pv_jid_fini(&j);

	assert_int_equal(pv_jid_parse_str(&j, "example.com/r"), 0);
	assert_null(j.local);
	assert_string_equal(j.resource, "r");
	assert_string_equal(j.bare, "example.com");
	pv_jid_fini(&j);
}

static void test_length_limits(void **state)
{
	char buf[4200];
	pv_jid j;

	/* localpart: 1023 bytes ok, 1024 not */
	memset(buf, 'a', 1023);
	strcpy(buf + 1023, "@example.com");
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	assert_int_equal(strlen(j.local), 1023);
	pv_jid_fini(&j);
	memset(buf, 'a', 1024);
	strcpy(buf + 1024, "@example.com");
	assert_int_equal(pv_jid_parse_str(&j, buf), PV_EINVAL);

	/* the limit applies after normalisation: 341 fullwidth letters (1023 bytes) map to
	 * 341 bytes; 342 of them plus 700 ASCII (1726 bytes in) map to 1042 bytes */
	size_t o = 0;
	for (int i = 0; i < 341; i++) {
		memcpy(buf + o, "\xef\xbc\xa1", 3);
		o += 3;
	}
	strcpy(buf + o, "@example.com");
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	assert_int_equal(strlen(j.local), 341);
	pv_jid_fini(&j);
	o = 0;
	for (int i = 0; i < 342; i++) {
		memcpy(buf + o, "\xef\xbc\xa1", 3);
		o += 3;
	}
	memset(buf + o, 'b', 700);
	o += 700;
	strcpy(buf + o, "@example.com");
	assert_int_equal(pv_jid_parse_str(&j, buf), PV_EINVAL);

	/* resourcepart */
	strcpy(buf, "a@b/");
	memset(buf + 4, 'r', 1023);
	buf[4 + 1023] = '\0';
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	assert_int_equal(strlen(j.resource), 1023);
	pv_jid_fini(&j);
	memset(buf + 4, 'r', 1024);
	buf[4 + 1024] = '\0';
	assert_int_equal(pv_jid_parse_str(&j, buf), PV_EINVAL);

	/* domainpart: labels of 63 octets, 64 rejected */
	memset(buf, 'd', 63);
	strcpy(buf + 63, ".example");
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	pv_jid_fini(&j);
	memset(buf, 'd', 64);
	strcpy(buf + 64, ".example");
	assert_int_equal(pv_jid_parse_str(&j, buf), PV_EINVAL);

	/* domainpart of exactly 1023 bytes: 16 labels of 63 plus 15 dots */
	o = 0;
	for (int i = 0; i < 16; i++) {
		if (i)
			buf[o++] = '.';
		memset(buf + o, 'x', 63);
		o += 63;
	}
	buf[o] = '\0';
	assert_int_equal(o, 1023);
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	pv_jid_fini(&j);
	/* ... with a trailing dot it is still 1023 after stripping */
	strcpy(buf + o, ".");
	assert_int_equal(pv_jid_parse_str(&j, buf), 0);
	pv_jid_fini(&j);
	/* 1025 bytes */
	memmove(buf + 2, buf, o + 1);
	memcpy(buf, "y.", 2);
	buf[o + 2] = '\0';
	assert_int_equal(pv_jid_parse_str(&j, buf), PV_EINVAL);
}

static void test_length_counted_input(void **state)
{
	/* wire data carries its length: parse must not read past n nor stop at n */
	const char s[] = "juliet@example.com/balconyXXXX";
	pv_jid j;
	assert_int_equal(pv_jid_parse(&j, s, strlen("juliet@example.com/balcony")), 0);
	assert_string_equal(j.full, "juliet@example.com/balcony");
	pv_jid_fini(&j);
	assert_int_equal(pv_jid_parse(&j, s, strlen("juliet@example.com")), 0);
	assert_string_equal(j.full, "juliet@example.com");
	pv_jid_fini(&j);
	/* an embedded NUL is a control character, not a terminator */
	const char z[] = "jul\0iet@example.com";
	assert_int_equal(pv_jid_parse(&j, z, sizeof(z) - 1), PV_EINVAL);
	const char zd[] = "juliet@exam\0ple.com";
	assert_int_equal(pv_jid_parse(&j, zd, sizeof(zd) - 1), PV_EINVAL);
}

static void test_compare_and_dup(void **state)
{
	pv_jid a, b, c, d;
	assert_int_equal(pv_jid_parse_str(&a, "JULIET@\xc3\x84\xc3\x96.example/Home"), 0);
	assert_int_equal(pv_jid_parse_str(&b, "juliet@xn--4ca0b.example./Home"), 0);
	assert_int_equal(pv_jid_parse_str(&c, "juliet@xn--4ca0b.example/home"), 0);
	assert_true(pv_jid_eq(&a, &b));
	assert_false(pv_jid_eq(&a, &c)); /* resource is case-sensitive */
	assert_true(pv_jid_bare_eq(&a, &c));

	pv_jid_dup(&d, &a);
	assert_true(pv_jid_eq(&a, &d));
	assert_ptr_not_equal(d.full, a.full);
	assert_string_equal(d.local, "juliet");
	assert_string_equal(d.resource, "Home");
	pv_jid_fini(&d);

	pv_jid e = {0};
	assert_false(pv_jid_eq(&a, &e));
	assert_false(pv_jid_bare_eq(&e, &e));
	pv_jid_fini(&a);
	pv_jid_fini(&b);
	pv_jid_fini(&c);
}

static void test_make(void **state)
{
	pv_jid j;
	assert_int_equal(pv_jid_make(&j, "Romeo", "Example.NET.", "Orchard"), 0);
	assert_string_equal(j.full, "romeo@example.net/Orchard");
	assert_string_equal(j.bare, "romeo@example.net");
	pv_jid_fini(&j);
	assert_int_equal(pv_jid_make(&j, NULL, "example.net", NULL), 0);
	assert_string_equal(j.full, "example.net");
	pv_jid_fini(&j);
	/* make validates each part on its own, so separators inside parts are errors */
	assert_int_equal(pv_jid_make(&j, "a@b", "example.net", NULL), PV_EINVAL);
	assert_int_equal(pv_jid_make(&j, "", "example.net", NULL), PV_EINVAL);
	assert_int_equal(pv_jid_make(&j, "a", "exa/mple.net", NULL), PV_EINVAL);
	assert_int_equal(pv_jid_make(&j, "a", NULL, NULL), PV_EINVAL);
	assert_int_equal(pv_jid_make(&j, "a", "example.net", ""), PV_EINVAL);
	/* but a resource may hold '/' and '@' */
	assert_int_equal(pv_jid_make(&j, "a", "example.net", "x/y@z"), 0);
	assert_string_equal(j.full, "a@example.net/x/y@z");
	pv_jid_fini(&j);
}

static void test_norm_parts(void **state)
{
	char *s;
	s = pv_jid_norm_local("User", 4);
	assert_string_equal(s, "user");
	pv_free(s);
	assert_null(pv_jid_norm_local("us@er", 5));
	assert_null(pv_jid_norm_local("us/er", 5));
	assert_null(pv_jid_norm_local("", 0));
	s = pv_jid_norm_domain("EXAMPLE.com", 11);
	assert_string_equal(s, "example.com");
	pv_free(s);
	s = pv_jid_norm_resource("Res", 3);
	assert_string_equal(s, "Res");
	pv_free(s);
}

static void test_precis_opaque(void **state)
{
	char *s;
	s = pv_precis_opaque("pencil", 6);
	assert_string_equal(s, "pencil");
	pv_free(s);
	/* case and width preserved, non-ASCII spaces mapped, NFC applied */
	s = pv_precis_opaque("Pa\xc2\xa0\xef\xbc\xa1" "e\xcc\x81", 10);
	assert_string_equal(s, "Pa \xef\xbc\xa1\xc3\xa9");
	pv_free(s);
	s = pv_precis_opaque("correct horse battery staple", 28);
	assert_string_equal(s, "correct horse battery staple");
	pv_free(s);
	assert_null(pv_precis_opaque("", 0));
	assert_null(pv_precis_opaque("a\tb", 3));
	assert_null(pv_precis_opaque("\xff", 1));
}

/* Every ASCII byte in every part: printable ASCII takes jid.c's fast path, the rest the
 * full PRECIS/IDNA path, and both must give what RFC 7622 / RFC 8265 say.  The same byte
 * is also tried beside a non-ASCII letter, which forces the full path for that part, so
 * the two paths are checked against each other. */
static void test_ascii_every_byte(void **state)
{
	for (int c = 1; c < 128; c++) {
		char in[64], want[64];
		pv_jid j;
		bool printable = c >= 0x21 && c <= 0x7E;
		bool excluded = c && strchr("\"&'/:<>@", c) != NULL;
		char lc = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);

		/* localpart: printable ASCII minus the exclusions; case folded */
		snprintf(in, sizeof(in), "a%cb@example.com", c);
		int rc = pv_jid_parse_str(&j, in);
		if (c == '@' || c == '/') {
			/* a separator: parses as another split (or fails), never as a local char */
			pv_jid_fini(&j);
		} else if (printable && !excluded) {
			assert_int_equal(rc, 0);
			snprintf(want, sizeof(want), "a%cb", lc);
			assert_string_equal(j.local, want);
			pv_jid_fini(&j);
			/* the same with a non-ASCII letter (full path) */
			snprintf(in, sizeof(in), "\xc3\xa9%c@example.com", c);
			assert_int_equal(pv_jid_parse_str(&j, in), 0);
			snprintf(want, sizeof(want), "\xc3\xa9%c", lc);
			assert_string_equal(j.local, want);
			pv_jid_fini(&j);
		} else {
			assert_int_equal(rc, PV_EINVAL);
			snprintf(in, sizeof(in), "\xc3\xa9%c@example.com", c);
			assert_int_equal(pv_jid_parse_str(&j, in), PV_EINVAL);
		}

		/* resourcepart: printable ASCII and the space, unchanged (no case folding) */
		snprintf(in, sizeof(in), "a@example.com/x%cY", c);
		rc = pv_jid_parse_str(&j, in);
		if (c >= 0x20 && c <= 0x7E) {
			assert_int_equal(rc, 0);
			snprintf(want, sizeof(want), "x%cY", c);
			assert_string_equal(j.resource, want);
			pv_jid_fini(&j);
			snprintf(in, sizeof(in), "a@example.com/\xc3\xa9%cY", c);
			assert_int_equal(pv_jid_parse_str(&j, in), 0);
			snprintf(want, sizeof(want), "\xc3\xa9%cY", c);
			assert_string_equal(j.resource, want);
			pv_jid_fini(&j);
		} else {
			assert_int_equal(rc, PV_EINVAL);
		}

		/* domainpart: LDH only, lowercased; anything else is refused */
		snprintf(in, sizeof(in), "a@ex%cmple.com", c);
		rc = pv_jid_parse_str(&j, in);
		if (isalnum(c) || c == '-' || c == '.') {
			assert_int_equal(rc, 0);
			snprintf(want, sizeof(want), "ex%cmple.com", lc);
			assert_string_equal(j.domain, want);
			pv_jid_fini(&j);
		} else if (c != '/' && c != '@') {
			assert_int_equal(rc, PV_EINVAL);
		} else if (rc == 0) {
			pv_jid_fini(&j);
		}
	}
}

/* The ASCII domain fast path must leave the special forms to the full path. */
static void test_ascii_domain_forms(void **state)
{
	pv_jid j;
	assert_int_equal(pv_jid_parse_str(&j, "a@127.0.0.1/r"), 0);   /* IPv4 literal */
	assert_string_equal(j.domain, "127.0.0.1");
	pv_jid_fini(&j);
	assert_int_equal(pv_jid_parse_str(&j, "a@Example.COM./r"), 0); /* trailing dot */
	assert_string_equal(j.full, "a@example.com/r");
	pv_jid_fini(&j);
	assert_int_equal(pv_jid_parse_str(&j, "a@xn--4ca0b.example"), 0); /* A-label */
	assert_string_equal(j.domain, "\xc3\xa4\xc3\xb6.example");
	pv_jid_fini(&j);
	assert_int_equal(pv_jid_parse_str(&j, "a@-bad.example"), PV_EINVAL);
	assert_int_equal(pv_jid_parse_str(&j, "a@bad-.example"), PV_EINVAL);
	assert_int_equal(pv_jid_parse_str(&j, "a@bad..example"), PV_EINVAL);
	assert_int_equal(pv_jid_parse_str(&j, "a@[::1]/r"), 0);
	assert_string_equal(j.domain, "[::1]");
	pv_jid_fini(&j);
}

/* All five strings live in one block, which pv_jid_fini frees as a whole. */
static void test_one_block(void **state)
{
	pv_jid j, d;
	assert_int_equal(pv_jid_parse_str(&j, "Juliet@Example.com/Balcony"), 0);
	assert_string_equal(j.full, "juliet@example.com/Balcony");
	assert_string_equal(j.bare, "juliet@example.com");
	assert_string_equal(j.local, "juliet");
	assert_string_equal(j.domain, "example.com");
	assert_string_equal(j.resource, "Balcony");
	assert_true(j.bare > j.full && j.local > j.bare && j.domain > j.local &&
		    j.resource > j.domain);
	pv_jid_dup(&d, &j);
	pv_jid_fini(&j);
	assert_string_equal(d.full, "juliet@example.com/Balcony");
	assert_string_equal(d.resource, "Balcony");
	pv_jid_fini(&d);
	assert_null(d.full);
	assert_int_equal(pv_jid_parse_str(&j, "example.com"), 0);
	assert_null(j.local);
	assert_null(j.resource);
	assert_string_equal(j.bare, "example.com");
	pv_jid_dup(&d, &j);
	assert_string_equal(d.full, "example.com");
	assert_string_equal(d.bare, "example.com");
	assert_string_equal(d.domain, "example.com");
	assert_null(d.local);
	assert_null(d.resource);
	pv_jid_fini(&d);
	pv_jid_fini(&j);
	/* dup copies the block whole: each shape keeps every field (the original is
	 * freed first, so a pointer left in it would show under ASan). */
	static const char *const shapes[][5] = {
		/* input, local, domain, resource, bare */
		{"u@example.com", "u", "example.com", NULL, "u@example.com"},
		{"example.com/r/x@y", NULL, "example.com", "r/x@y", "example.com"},
		{"u@example.com/r", "u", "example.com", "r", "u@example.com"},
	};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		assert_int_equal(pv_jid_parse_str(&j, shapes[i][0]), 0);
		pv_jid_dup(&d, &j);
		pv_jid_fini(&j);
		assert_string_equal(d.full, shapes[i][0]);
		assert_string_equal(d.domain, shapes[i][2]);
		assert_string_equal(d.bare, shapes[i][4]);
		if (shapes[i][1])
			assert_string_equal(d.local, shapes[i][1]);
		else
			assert_null(d.local);
		if (shapes[i][3])
			assert_string_equal(d.resource, shapes[i][3]);
		else
			assert_null(d.resource);
		pv_jid_fini(&d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_table),
		cmocka_unit_test(test_invalid_table),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_length_counted_input),
		cmocka_unit_test(test_compare_and_dup),
		cmocka_unit_test(test_make),
		cmocka_unit_test(test_norm_parts),
		cmocka_unit_test(test_precis_opaque),
		cmocka_unit_test(test_ascii_every_byte),
		cmocka_unit_test(test_ascii_domain_forms),
		cmocka_unit_test(test_one_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
