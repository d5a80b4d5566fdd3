/* s2s_origin.h -- origin proofs on stanzas relayed through an exchange
 * (urn:peyvand:relay:0, docs/protocol/exchange.md "Origin proof").
 *
 * The provider that first sends a stanza towards its exchange signs, with the private key
 * of its s2s certificate, a canonical byte string covering the stanza's kind, from, the
 * address it was sent to (possibly a number address), type, id, a timestamp and the
 * SHA-256 of its payload; the proof and the certificate (DER) ride in
 *   <origin xmlns='urn:peyvand:relay:0' to='...' ts='<unix ms>' sig='<base64>'>
 *     <cert>base64 DER</cert></origin>
 * The recipient's provider checks the certificate against the interconnect CA (or the
 * member's pin), the name against the from-domain (RFC 6125, s2s_auth.c) and the
 * signature.  The exchange relays the element untouched and cannot make one.
 * Pure computation over OpenSSL objects and element trees; thread-safe. */
#ifndef PV_XMPP_S2S_ORIGIN_H
#define PV_XMPP_S2S_ORIGIN_H

#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "peyvand/pv_util.h"
#include "peyvand/pv_xml.h"

#define PV_NS_RELAY "urn:peyvand:relay:0"

typedef struct pv_origin_signer pv_origin_signer;

/* A signer from a host's certificate and key files (PEM); NULL on error (logged). */
pv_origin_signer *pv_origin_signer_load(const char *cert_file, const char *key_file);
/* A signer from objects (takes a reference of each). */
pv_origin_signer *pv_origin_signer_new(EVP_PKEY *key, X509 *cert);
void pv_origin_signer_free(pv_origin_signer *s);

/* The canonical bytes signed for stanza element `st` (jabber:client tree, as
 * pv_stanza_new makes it): "urn:peyvand:relay:0\n" kind "\n" from "\n" to "\n" type "\n"
 * id "\n" ts "\n" hex(SHA-256(payload)), where payload is every child element except
 * <origin/> and XEP-0359 <stanza-id/>, each serialised as in a jabber:client stream.
 * Absent attributes are empty strings.  Appended to out. */
void pv_origin_canon(const pv_xml *st, const char *to, const char *ts, pv_buf *out);

/* Add a fresh <origin/> to `st` (which must carry from and to; any previous origin is
 * removed first), signed by `s` at time now_ms.  0, or PV_EINVAL. */
int pv_origin_sign(const pv_origin_signer *s, pv_xml *st, int64_t now_ms);

/* Check the <origin/> of `st`: the certificate verifies against `trust` and names the
 * domain of st's from, or its SHA-256 fingerprint equals `pin` ("sha256:AB:..", may be
 * NULL), and the signature matches.  Returns true, with *addressed (borrowed from st)
 * the address the sender used; false with *why. */
bool pv_origin_verify(const pv_xml *st, X509_STORE *trust, const char *pin, const char **addressed,
	const char **why);

#endif
