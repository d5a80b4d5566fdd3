/* test_config.c -- unit tests for src/core/config.c: the YAML tree, dotted paths,
 * typed getters with suffixes, recorded type errors, and refusal of duplicate
 * keys, anchors/aliases, tags and syntax errors with "file:line: message". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "peyvand/pv_module.h"
#include "peyvand/pv_util.h"

static pv_conf *parse_ok(const char *text)
{
	char *err = NULL;
	pv_conf *c = pv_conf_parse(text, strlen(text), &err);
	if (!c)
		fail_msg("parse failed: %s", err ? err : "(no message)");
	assert_null(err);
	return c;
}

static const char sample[] =
	"# peyvand test config\n"
	"log_level: debug\n"
	"c2s:\n"
	"  port: 5222\n"
	"  interfaces: [\"::\", 0.0.0.0]\n"
	"  tls:\n"
	"    required: yes\n"
	"    cert: /etc/peyvand/cert.pem\n"
	"limits:\n"
	"  stanza_size: 256k\n"
	"  big: 2g\n"
	"  plain_size: 4096\n"
	"  idle: 30s\n"
	"  session_max: 2h\n"
	"  short: 500ms\n"
	"  bare_duration: 15\n"
	"  days: 3d\n"
	"  minutes: 5m\n"
	"hosts:\n"
	"  example.com:\n"
	"    role: provider\n"
	"    modules:\n"
	"      - ping\n"
	"      - roster\n"
	"  example.com.sub:\n"
	"    role: exchange\n"
	"empty:\n"
	"tilde: ~\n"
	"quoted_empty: \"\"\n"
	"negative: -42\n";

static void test_maps_lists_paths(void **state)
{
	pv_conf *c = parse_ok(sample);

	assert_int_equal(pv_conf_type_of(c), PV_CONF_MAP);
	assert_string_equal(pv_conf_str(c, "log_level", NULL), "debug");
	assert_int_equal(pv_conf_int(c, "c2s.port", 0), 5222);
	assert_true(pv_conf_bool(c, "c2s.tls.required", false));
	assert_string_equal(pv_conf_str(c, "c2s.tls.cert", NULL), "/etc/peyvand/cert.pem");

	const pv_conf *c2s = pv_conf_get(c, "c2s");
	assert_non_null(c2s);
	assert_int_equal(pv_conf_type_of(c2s), PV_CONF_MAP);
	assert_int_equal(pv_conf_len(c2s), 3);
	assert_string_equal(pv_conf_key_at(c2s, 0), "port");
	assert_string_equal(pv_conf_key_at(c2s, 1), "interfaces");
	assert_string_equal(pv_conf_key_at(c2s, 2), "tls");
	assert_null(pv_conf_key_at(c2s, 3));
	assert_int_equal(pv_conf_line(c2s), 4); /* a block map starts at its first key */
	assert_int_equal(pv_conf_line(pv_conf_get(c, "c2s.port")), 4);
	assert_int_equal(pv_conf_line(pv_conf_get(c, "log_level")), 2);

	/* Relative lookups from a subtree. */
	assert_int_equal(pv_conf_int(c2s, "port", 0), 5222);
	assert_string_equal(pv_conf_str(c2s, "tls.cert", NULL), "/etc/peyvand/cert.pem");

	const pv_conf *ifs = pv_conf_get(c, "c2s.interfaces");
	assert_int_equal(pv_conf_type_of(ifs), PV_CONF_LIST);
	assert_int_equal(pv_conf_len(ifs), 2);
	assert_string_equal(pv_conf_scalar(pv_conf_at(ifs, 0)), "::");
	assert_string_equal(pv_conf_scalar(pv_conf_at(ifs, 1)), "0.0.0.0");
	assert_null(pv_conf_at(ifs, 2));
	assert_null(pv_conf_key_at(ifs, 0)); /* lists have no keys */
	assert_true(pv_conf_list_has(ifs, "::"));
	assert_false(pv_conf_list_has(ifs, "127.0.0.1"));
	assert_false(pv_conf_list_has(c2s, "port")); /* not a list */

	/* Keys containing dots (host names) are reachable through dotted paths. */
	assert_string_equal(pv_conf_str(c, "hosts.example.com.role", NULL), "provider");
	assert_string_equal(pv_conf_str(c, "hosts.example.com.sub.role", NULL), "exchange");
	const pv_conf *mods = pv_conf_get(c, "hosts.example.com.modules");
	assert_true(pv_conf_list_has(mods, "roster"));
	assert_false(pv_conf_list_has(mods, "mam"));
	const pv_conf *hosts = pv_conf_get(c, "hosts");
	assert_int_equal(pv_conf_len(hosts), 2);
	assert_string_equal(pv_conf_key_at(hosts, 0), "example.com");
	assert_string_equal(pv_conf_str(pv_conf_at(hosts, 1), "role", NULL), "exchange");

	/* Missing paths: NULL node, defaults. */
	assert_null(pv_conf_get(c, "c2s.nope"));
	assert_null(pv_conf_get(c, "c2s.port.deeper"));
	assert_null(pv_conf_get(c, "c2"));
	assert_ptr_equal(pv_conf_get(c, ""), c);
	assert_string_equal(pv_conf_str(c, "nope", "dflt"), "dflt");
	assert_int_equal(pv_conf_int(c, "nope", 7), 7);
	assert_true(pv_conf_bool(c, "nope", true));
	assert_int_equal(pv_conf_len(pv_conf_get(c, "log_level")), 0);
	assert_null(pv_conf_scalar(c2s));

	/* Null values count as unset; a quoted empty string does not. */
	assert_string_equal(pv_conf_str(c, "empty", "d1"), "d1");
	assert_string_equal(pv_conf_str(c, "tilde", "d2"), "d2");
	assert_int_equal(pv_conf_int(c, "empty", 3), 3);
	assert_string_equal(pv_conf_str(c, "quoted_empty", "d3"), "");
	assert_int_equal(pv_conf_int(c, "negative", 0), -42);

	/* Module wrappers. */
	assert_string_equal(pv_cfg_str(c, "log_level", NULL), "debug");
	assert_int_equal(pv_cfg_int(c, "c2s.port", 1), 5222);
	assert_true(pv_cfg_bool(c, "c2s.tls.required", false));

	/* NULL-safe accessors. */
	assert_null(pv_conf_get(NULL, "x"));
	assert_string_equal(pv_conf_str(NULL, "x", "d"), "d");
	assert_int_equal(pv_conf_len(NULL), 0);
	assert_int_equal(pv_conf_line(NULL), 0);

	assert_null(pv_conf_errors(c));
	pv_conf_free(c);
}

static void test_sizes_durations(void **state)
{
	pv_conf *c = parse_ok(sample);
	assert_int_equal(pv_conf_size(c, "limits.stanza_size", 0), 256 * 1024);
	assert_int_equal(pv_conf_size(c, "limits.big", 0), 2LL * 1024 * 1024 * 1024);
	assert_int_equal(pv_conf_size(c, "limits.plain_size", 0), 4096);
	assert_int_equal(pv_conf_size(c, "limits.missing", 123), 123);
	assert_int_equal(pv_conf_ms(c, "limits.idle", 0), 30 * 1000);
	assert_int_equal(pv_conf_ms(c, "limits.session_max", 0), 2 * 3600 * 1000);
	assert_int_equal(pv_conf_ms(c, "limits.short", 0), 500);
	assert_int_equal(pv_conf_ms(c, "limits.bare_duration", 0), 15 * 1000); /* seconds */
	assert_int_equal(pv_conf_ms(c, "limits.days", 0), 3LL * 86400 * 1000);
	assert_int_equal(pv_conf_ms(c, "limits.minutes", 0), 5 * 60 * 1000);
	assert_int_equal(pv_conf_ms(c, "limits.missing", 999), 999);
	assert_null(pv_conf_errors(c));
	pv_conf_free(c);

	/* Table of scalar -> size / duration; -1 means "rejected, default returned". */
	static const struct {
		const char *v;
		int64_t size;
		int64_t ms;
	} cases[] = {
		{"0", 0, 0},
		{"1k", 1024, -1},
		{"1K", 1024, -1},
		{"1kb", 1024, -1},
		{"3m", 3 * 1024 * 1024, 3 * 60 * 1000},
		{"1g", 1024 * 1024 * 1024, -1},
		{"10", 10, 10000},
		{"10s", -1, 10000},
		{"10ms", -1, 10},
		{"1d", -1, 86400000},
		{"-1", -1, -1},
		{"1.5k", -1, -1},
		{"k", -1, -1},
		{"12x", -1, -1},
		{"99999999999999999999", -1, -1},
		{"9999999999999999g", -1, -1},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		char *text = pv_sprintf("v: \"%s\"\n", cases[i].v);
		pv_conf *t = parse_ok(text);
		int64_t s = pv_conf_size(t, "v", -1), ms = pv_conf_ms(t, "v", -1);
		if (s != cases[i].size || ms != cases[i].ms)
			fail_msg("'%s': size %lld (want %lld) ms %lld (want %lld)", cases[i].v, (long long)s,
				 (long long)cases[i].size, (long long)ms, (long long)cases[i].ms);
		bool rejected = cases[i].size == -1 || cases[i].ms == -1;
		assert_int_equal(pv_conf_errors(t) != NULL, rejected);
		pv_conf_free(t);
		pv_free(text);
	}
}

static void test_bools(void **state)
{
	static const struct {
		const char *v;
		int want; /* 1 true, 0 false, -1 rejected */
	} cases[] = {
		{"yes", 1},   {"no", 0},   {"true", 1}, {"false", 0}, {"True", 1},
		{"FALSE", 0}, {"on", 1},   {"off", 0},  {"1", -1},    {"maybe", -1},
		{"\"yes\"", 1}, {"[yes]", -1},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		char *text = pv_sprintf("flag: %s\n", cases[i].v);
		pv_conf *c = parse_ok(text);
		if (cases[i].want >= 0) {
			assert_int_equal(pv_conf_bool(c, "flag", !cases[i].want), cases[i].want);
			assert_int_equal(pv_conf_bool(c, "flag", cases[i].want), cases[i].want);
			assert_null(pv_conf_errors(c));
		} else {
			assert_true(pv_conf_bool(c, "flag", true));
			assert_false(pv_conf_bool(c, "flag", false));
			assert_non_null(pv_conf_errors(c));
			assert_non_null(strstr(pv_conf_errors(c), "expected a boolean"));
		}
		pv_conf_free(c);
		pv_free(text);
	}
}

static void test_wrong_types_recorded(void **state)
{
	pv_conf *c = parse_ok("c2s:\n"
			      "  port: abc\n"
			      "  tls: [a, b]\n"
			      "limit: 5x\n"
			      "ints:\n"
			      "  big: 9223372036854775808\n"
			      "  max: 9223372036854775807\n"
			      "  min: -9223372036854775808\n");
	assert_null(pv_conf_errors(c));

	assert_int_equal(pv_conf_int(c, "c2s.port", 5222), 5222);
	const char *e = pv_conf_errors(c);
	assert_non_null(e);
	assert_non_null(strstr(e, "<config>:2: c2s.port: expected an integer"));

	assert_string_equal(pv_conf_str(c, "c2s.tls", "d"), "d");
	assert_string_equal(pv_conf_str(c, "c2s", "d"), "d");
	assert_int_equal(pv_conf_size(c, "limit", 1), 1);
	assert_int_equal(pv_conf_int(c, "ints.big", 2), 2);
	assert_int_equal(pv_conf_int(c, "ints.max", 0), INT64_MAX);
	assert_int_equal(pv_conf_int(c, "ints.min", 0), INT64_MIN);

	/* Asking again does not repeat the message. */
	assert_int_equal(pv_conf_int(c, "c2s.port", 1), 1);

	e = pv_conf_errors(c);
	assert_non_null(strstr(e, "<config>:3: c2s.tls: expected a string"));
	assert_non_null(strstr(e, "c2s: expected a string"));
	assert_non_null(strstr(e, "<config>:4: limit: expected a size"));
	assert_non_null(strstr(e, "ints.big: expected an integer"));
	size_t lines = 1;
	for (const char *p = e; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 5);
	assert_null(strstr(strstr(e, "c2s.port") + 1, "c2s.port")); /* once only */

	/* List items name their index. */
	pv_conf *l = parse_ok("ports: [1, x]\n");
	const pv_conf *ports = pv_conf_get(l, "ports");
	assert_int_equal(pv_conf_int(pv_conf_at(ports, 0), NULL, 0), 1);
	assert_int_equal(pv_conf_int(pv_conf_at(ports, 1), NULL, 0), 0);
	assert_non_null(strstr(pv_conf_errors(l), "ports[1]: expected an integer"));
	pv_conf_free(l);
	pv_conf_free(c);
}

/* Documents that must be refused, with the line and a phrase the message must contain. */
static void test_refused(void **state)
{
	static const struct {
		const char *text;
		const char *want; /* expected prefix+fragment */
		const char *fragment;
	} cases[] = {
		{"a: 1\nb: 2\na: 3\n", "<config>:3:", "duplicate key 'a' (first at line 1)"},
		{"x:\n  y: 1\n  z: 2\n  y: 3\n", "<config>:4:", "duplicate key 'y'"},
		{"base: &b\n  k: 1\nother: *b\n", "<config>:1:", "anchors (&b) are not supported"},
		{"other: *b\n", "<config>:1:", "aliases (*b) are not supported"},
		{"a: !include other.yaml\n", "<config>:1:", "tags"},
		{"a: 1\n  b: 2\n", "<config>:2:", "mapping values are not allowed"},
		{"a: 1\nb: [1, 2\nc: 3\n", "<config>:", ""},
		{"a:\n  - 1\n - 2\n", "<config>:3:", ""},
		{"? [a, b]\n: 1\n", "<config>:1:", "map keys must be plain strings"},
		{"- a\n- b\n", "<config>:1:", "top level must be a map"},
		{"just a string\n", "<config>:1:", "top level must be a map"},
		{"a: 1\n---\nb: 2\n", "<config>:2:", "only one YAML document"},
		{"a: \"x\\0y\"\n", "<config>:1:", "NUL byte"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		char *err = NULL;
		pv_conf *c = pv_conf_parse(cases[i].text, strlen(cases[i].text), &err);
		if (c)
			fail_msg("case %zu accepted: %s", i, cases[i].text);
		assert_non_null(err);
		if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0 || !strstr(err, cases[i].fragment))
			fail_msg("case %zu: got '%s', want '%s...%s'", i, err, cases[i].want, cases[i].fragment);
		pv_free(err);
	}
}

static void test_deep_nesting_refused(void **state)
{
	pv_buf b;
	pv_buf_init(&b);
	for (int i = 0; i < 200; i++)
		pv_buf_puts(&b, "[");
	for (int i = 0; i < 200; i++)
		pv_buf_puts(&b, "]");
	char *text = pv_sprintf("a: %s\n", b.data);
	char *err = NULL;
	assert_null(pv_conf_parse(text, strlen(text), &err));
	assert_non_null(strstr(err, "nested too deeply"));
	pv_free(err);
	pv_free(text);
	pv_buf_fini(&b);
}

static void test_empty_documents(void **state)
{
	static const char *const texts[] = {"", "# only a comment\n", "---\n", "{}\n"};
	for (size_t i = 0; i < PV_ARRAY_LEN(texts); i++) {
		pv_conf *c = parse_ok(texts[i]);
		assert_int_equal(pv_conf_type_of(c), PV_CONF_MAP);
		assert_int_equal(pv_conf_len(c), 0);
		assert_int_equal(pv_conf_int(c, "x", 5), 5);
		pv_conf_free(c);
	}
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/pv_test_config_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char text[] = "server:\n  name: peyvand\n  workers: 2\n  workers: 3\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);

	char *err = NULL;
	assert_null(pv_conf_load(path, &err));
	char *want = pv_sprintf("%s:4: duplicate key 'workers'", path);
	assert_non_null(err);
	assert_memory_equal(err, want, strlen(want));
	pv_free(want);
	pv_free(err);

	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("server:\n  name: peyvand\n  workers: x\n", f);
	fclose(f);
	pv_conf *c = pv_conf_load(path, &err);
	assert_non_null(c);
	assert_null(err);
	assert_string_equal(pv_conf_str(c, "server.name", NULL), "peyvand");
	assert_int_equal(pv_conf_int(c, "server.workers", 1), 1);
	want = pv_sprintf("%s:3: server.workers: expected an integer", path);
	assert_string_equal(pv_conf_errors(c), want);
	pv_free(want);
	pv_conf_free(c);

	unlink(path);
	assert_null(pv_conf_load(path, &err));
	assert_non_null(strstr(err, "cannot open"));
	pv_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maps_lists_paths),
		cmocka_unit_test(test_sizes_durations),
		cmocka_unit_test(test_bools),
		cmocka_unit_test(test_wrong_types_recorded),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_deep_nesting_refused),
		cmocka_unit_test(test_empty_documents),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
