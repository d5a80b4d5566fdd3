/* pv_jid.h -- JIDs per RFC 7622.
 *
 * Parsing validates and normalises in one step:
 *   localpart    PRECIS IdentifierClass, UsernameCaseMapped profile (RFC 8265 3.3):
 *                width-map, case-fold (lower), NFC; excluded "&'/:<>@ and spaces
 *   domainpart   IDNA2008 (libidn2, non-transitional, NFC input) -> lowercase U-label form;
 *                IP literals kept as-is; trailing dot stripped
 *   resourcepart PRECIS FreeformClass, OpaqueString profile (RFC 8265 4.2): non-ASCII
 *                spaces mapped to U+0020, NFC; no case change
 * Each part is 1..1023 bytes.  Invalid input returns PV_EINVAL.
 * A pv_jid owns its strings (one allocation; only pv_jid_fini frees them, never a
 * single field; pv_jid_dup_in's copy lives in memory of its caller's); copy with
 * pv_jid_dup.  A stanza's to/from may be such copies: never take them over, dup them.
 * Thread-safe (no shared state). */
#ifndef PV_JID_H
#define PV_JID_H

#include <stdbool.h>

#include "pv_util.h"

typedef struct pv_jid {
	char *local;    /* NULL if absent */
	char *domain;   /* never NULL in a valid JID */
	char *resource; /* NULL if absent */
	char *full;     /* normalised string form "local@domain/resource" */
	char *bare;     /* normalised "local@domain" (or "domain") */
} pv_jid;

/* Parse and normalise `s` (n bytes, need not be NUL-terminated) into out. */
int pv_jid_parse(pv_jid *out, const char *s, size_t n);
int pv_jid_parse_str(pv_jid *out, const char *s);
/* Build from normalised-or-not parts (local/resource may be NULL). */
int pv_jid_make(pv_jid *out, const char *local, const char *domain, const char *resource);
void pv_jid_fini(pv_jid *j);
void pv_jid_dup(pv_jid *dst, const pv_jid *src);
/* pv_jid_dup into the pv_jid_block_size(src) bytes at mem, which the caller owns and
 * frees: dst must not be given to pv_jid_fini.  (A stanza puts its addresses in its
 * message's allocation this way, pv_stanza.h.) */
size_t pv_jid_block_size(const pv_jid *src);
void pv_jid_dup_in(pv_jid *dst, const pv_jid *src, void *mem);
bool pv_jid_eq(const pv_jid *a, const pv_jid *b);       /* full comparison */
bool pv_jid_bare_eq(const pv_jid *a, const pv_jid *b);  /* local@domain comparison */
/* Normalise a single part; returns a new string or NULL when invalid. */
char *pv_jid_norm_local(const char *s, size_t n);
char *pv_jid_norm_domain(const char *s, size_t n);
char *pv_jid_norm_resource(const char *s, size_t n);
/* PRECIS OpaqueString (RFC 8265 4.2) of s (n bytes): the preparation SASL applies to
 * passwords.  Returns a new NUL-terminated string, or NULL when invalid or empty. */
char *pv_precis_opaque(const char *s, size_t n);

#endif
