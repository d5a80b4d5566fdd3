/* fuzz_origin.c -- libFuzzer target for origin proofs on relayed stanzas
 * (src/xmpp/s2s_origin.c, docs/protocol/exchange.md "Origin proof").  A provider reads
 * <origin/> -- base64, a DER certificate, a signature -- from stanzas an exchange relays,
 * so all of it is network input.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Input: one stanza as XML (parsed with pv_xml_parse, as a relayed stanza's tree would
 * be).  Properties:
 *   - pv_origin_canon never fails and is deterministic (same tree, same bytes);
 *   - pv_origin_verify against an empty trust store and no pin never says yes: no input
 *     can make a proof verify without a trusted certificate. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_xml.h"
#include "xmpp/s2s_origin.h"

static X509_STORE *empty;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pv_log_set_level(PV_LOG_ERROR);
	empty = X509_STORE_new();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pv_xml *st = pv_xml_parse((const char *)data, size);
	if (!st)
		return 0;
	pv_buf a, b;
	pv_buf_init(&a);
	pv_buf_init(&b);
	pv_origin_canon(st, "to@example", "1", &a);
	pv_origin_canon(st, "to@example", "1", &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	pv_buf_fini(&a);
	pv_buf_fini(&b);
	const char *addressed = NULL, *why = NULL;
	if (pv_origin_verify(st, empty, NULL, &addressed, &why))
		abort();
	pv_xml_free(st);
	return 0;
}
