/* fuzz_jid.c -- libFuzzer target for JID parsing and the PRECIS / IDNA2008 profiles behind
 * it (src/xmpp/jid.c, RFC 7622, RFC 8264/8265).  JIDs come from the network in every
 * stanza's to/from, in SASL authzids and in bind requests.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Input: the whole input is one JID candidate (not NUL-terminated, so over-reads show).
 * Properties checked when it parses:
 *   - the parts are each 1..1023 bytes, valid as their own profile, and already
 *     normalised (norm_x(part) == part), with no '@' or '/' in local/domain
 *   - bare and full are exactly "local@domain" / "bare/resource"
 *   - parse(full) == full and parse(bare) == bare: normalisation is idempotent
 *   - pv_jid_make(local, domain, resource) gives the same JID; dup/eq agree
 * Also pv_precis_opaque (SASL passwords) is idempotent on the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_log.h"

static void check_part(const char *part, char *(*norm)(const char *, size_t))
{
	if (!part)
		return;
	size_t n = strlen(part);
	if (n == 0 || n > 1023)
		abort();
	char *again = norm(part, n);
	if (!again || strcmp(again, part) != 0)
		abort(); /* a normalised part must be a fixed point of its profile */
	pv_free(again);
}

static void check_reparse(const char *s, const char *want_full)
{
	pv_jid j;
	if (pv_jid_parse_str(&j, s) != 0)
		abort(); /* what we produced must parse */
	if (strcmp(j.full, want_full) != 0)
		abort(); /* and be stable */
	pv_jid_fini(&j);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pv_log_set_level(PV_LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	pv_jid j;

	if (pv_jid_parse(&j, s, size) == 0) {
		if (!j.domain || !j.bare || !j.full)
			abort();
		if (j.local && strpbrk(j.local, "@/"))
			abort();
		if (strpbrk(j.domain, "@/"))
			abort();
		check_part(j.local, pv_jid_norm_local);
		check_part(j.domain, pv_jid_norm_domain);
		check_part(j.resource, pv_jid_norm_resource);

		char *bare = j.local ? pv_sprintf("%s@%s", j.local, j.domain) : pv_strdup(j.domain);
		char *full = j.resource ? pv_sprintf("%s/%s", bare, j.resource) : pv_strdup(bare);
		if (strcmp(bare, j.bare) != 0 || strcmp(full, j.full) != 0)
			abort();
		pv_free(bare);
		pv_free(full);

		check_reparse(j.full, j.full);
		check_reparse(j.bare, j.bare);

		pv_jid m, d;
		if (pv_jid_make(&m, j.local, j.domain, j.resource) != 0)
			abort();
		pv_jid_dup(&d, &j);
		if (!pv_jid_eq(&m, &j) || !pv_jid_eq(&d, &j) || !pv_jid_bare_eq(&m, &d))
			abort();
		pv_jid_fini(&m);
		pv_jid_fini(&d);
		pv_jid_fini(&j);
	} else {
		/* A failed parse leaves nothing behind to free. */
		if (j.local || j.domain || j.resource || j.full || j.bare)
			abort();
	}

	/* The password profile (PRECIS OpaqueString) must be idempotent too. */
	char *pw = pv_precis_opaque(s, size);
	if (pw) {
		char *pw2 = pv_precis_opaque(pw, strlen(pw));
		if (!pw2 || strcmp(pw, pw2) != 0)
			abort();
		pv_free(pw2);
		pv_free(pw);
	}
	return 0;
}
