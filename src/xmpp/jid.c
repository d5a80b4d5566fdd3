/* jid.c -- XMPP addresses (RFC 7622) and the PRECIS string profiles they rest on.
 *
 *   localpart    UsernameCaseMapped (RFC 8265 3.3) over IdentifierClass (RFC 8264 9.1),
 *                plus the RFC 7622 3.3.1 exclusions " & ' / : < > @
 *   domainpart   IDNA2008 (RFC 5890-5892 via libidn2, UTS #46 non-transitional mapping),
 *                stored as lowercase U-labels; IP literals in canonical text form
 *   resourcepart OpaqueString (RFC 8265 4.2) over FreeformClass (RFC 8264 9.2)
 * pv_precis_opaque() is the same OpaqueString profile, exported for SASL passwords.
 *
 * Why these libraries: Debian 12 ships no PRECIS library (libidn's stringprep is the
 * obsolete RFC 3454 nodeprep/resourceprep of RFC 6122, which RFC 7622 replaced).  PRECIS is
 * defined in terms of Unicode properties (general category, Default_Ignorable, Join_Control,
 * Hangul syllable type, joining type, bidi class, script, decomposition type) plus case
 * mapping and normalisation -- exactly what ICU provides and keeps current, so the
 * derived-property algorithm of RFC 8264 section 8 is implemented here on top of ICU.
 * Domainparts are not PRECIS but IDNA2008 (RFC 7622 3.2), which libidn2 implements.
 *
 * Threading: no mutable state (ICU normaliser instances are immutable singletons);
 * callable from any thread.  Every returned string is a new allocation. */
#include "peyvand/pv_jid.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include <idn2.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uscript.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#define PART_MAX 1023
/* RFC 7622 3.3.1: allowed by IdentifierClass but excluded from localparts (they delimit
 * JIDs, XML and URIs). */
#define LOCAL_EXCLUDED "\"&'/:<>@"
/* The mappings never shrink a code point below a third of its UTF-8 size (fullwidth
 * forms: 3 bytes -> 1), so longer input cannot normalise to PART_MAX bytes.  Bounding
 * the input first keeps hostile strings from costing more than a few KiB of work. */
#define INPUT_MAX (4 * PART_MAX)

/* ---- UTF-8 <-> UTF-16 ----------------------------------------------------------- */

/* Strict RFC 3629 check: no overlongs, no surrogates, nothing above U+10FFFF.  We do
 * this ourselves so the rule does not depend on how lenient a library version is. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			k = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

/* Growable UTF-16 buffer for the ICU steps. */
typedef struct ubuf {
	UChar *p;
	int32_t len, cap;
} ubuf;

static void ub_fini(ubuf *b)
{
	pv_free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static void ub_reserve(ubuf *b, int32_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	int32_t cap = b->cap ? b->cap : 16;
	while (cap < b->len + extra)
		cap *= 2;
	b->p = pv_realloc(b->p, (size_t)cap * sizeof(UChar));
	b->cap = cap;
}

static void ub_putc(ubuf *b, UChar32 c)
{
	ub_reserve(b, 2);
	U16_APPEND_UNSAFE(b->p, b->len, c);
}

/* Caller has validated s; n <= INPUT_MAX so the int32 lengths cannot overflow. */
static void to_u16(const char *s, size_t n, ubuf *out)
{
	UErrorCode err = U_ZERO_ERROR;
	int32_t len = 0;
	ub_reserve(out, (int32_t)n + 1);
	u_strFromUTF8(out->p, out->cap, &len, s, (int32_t)n, &err);
	PV_ASSERT(U_SUCCESS(err));
	out->len = len;
}

static char *from_u16(const UChar *s, int32_t len, size_t *outlen)
{
	UErrorCode err = U_ZERO_ERROR;
	int32_t need = 0;
	u_strToUTF8(NULL, 0, &need, s, len, &err);
	if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err))
		return NULL;
	char *out = pv_malloc((size_t)need + 1);
	err = U_ZERO_ERROR;
	u_strToUTF8(out, need + 1, &need, s, len, &err);
	if (U_FAILURE(err)) {
		pv_free(out);
		return NULL;
	}
	*outlen = (size_t)need;
	return out;
}

/* Run one ICU string transform (src -> dst) with the usual preflight-on-overflow. */
typedef int32_t (*icu_xform)(const UChar *src, int32_t len, UChar *dst, int32_t cap,
	UErrorCode *err);

static bool apply(icu_xform fn, ubuf *s)
{
	ubuf out = {0};
	UErrorCode err = U_ZERO_ERROR;
	ub_reserve(&out, s->len * 2 + 16);
	int32_t n = fn(s->p, s->len, out.p, out.cap, &err);
	if (err == U_BUFFER_OVERFLOW_ERROR) {
		err = U_ZERO_ERROR;
		ub_reserve(&out, n + 1);
		n = fn(s->p, s->len, out.p, out.cap, &err);
	}
	if (U_FAILURE(err)) {
		ub_fini(&out);
		return false;
	}
	out.len = n;
	ub_fini(s);
	*s = out;
	return true;
}

static int32_t x_lower(const UChar *src, int32_t len, UChar *dst, int32_t cap, UErrorCode *err)
{
	/* Root locale: the language-independent toLowerCase() of RFC 8265 3.3.2 (no Turkish
	 * dotless-i surprises depending on where the server runs). */
	return u_strToLower(dst, cap, src, len, "", err);
}

static int32_t x_nfc(const UChar *src, int32_t len, UChar *dst, int32_t cap, UErrorCode *err)
{
	const UNormalizer2 *nfc = unorm2_getNFCInstance(err);
	if (U_FAILURE(*err))
		return 0;
	return unorm2_normalize(nfc, src, len, dst, cap, err);
}

/* RFC 8265 3.3.2 width mapping rule: fullwidth and halfwidth code points are mapped to
 * their decomposition mapping (their <wide>/<narrow> compatibility decompositions). */
static bool map_width(ubuf *s)
{
	UErrorCode err = U_ZERO_ERROR;
	const UNormalizer2 *nfkc = unorm2_getNFKCInstance(&err);
	if (U_FAILURE(err))
		return false;
	ubuf out = {0};
	ub_reserve(&out, s->len + 1);
	for (int32_t i = 0; i < s->len;) {
		UChar32 c;
		U16_NEXT(s->p, i, s->len, c);
		int dt = u_getIntPropertyValue(c, UCHAR_DECOMPOSITION_TYPE);
		if (dt == U_DT_WIDE || dt == U_DT_NARROW) {
			UChar d[8];
			err = U_ZERO_ERROR;
			int32_t dn = unorm2_getRawDecomposition(nfkc, c, d, (int32_t)PV_ARRAY_LEN(d), &err);
			if (U_SUCCESS(err) && dn > 0) {
				ub_reserve(&out, dn);
				memcpy(out.p + out.len, d, (size_t)dn * sizeof(UChar));
				out.len += dn;
				continue;
			}
		}
		ub_putc(&out, c);
	}
	ub_fini(s);
	*s = out;
	return true;
}

/* OpaqueString additional mapping rule (RFC 8265 4.2.2): non-ASCII spaces -> U+0020. */
static bool map_spaces(ubuf *s)
{
	ubuf out = {0};
	ub_reserve(&out, s->len + 1);
	for (int32_t i = 0; i < s->len;) {
		UChar32 c;
		U16_NEXT(s->p, i, s->len, c);
		ub_putc(&out, u_charType(c) == U_SPACE_SEPARATOR ? 0x20 : c);
	}
	ub_fini(s);
	*s = out;
	return true;
}

/* ---- PRECIS string classes (RFC 8264 sections 8 and 9) ----------------------------- */

enum prop { P_PVALID, P_CONTEXTJ, P_CONTEXTO, P_FREE /* ID_DIS / FREE_PVAL */, P_DISALLOWED };

static bool has_compat(UChar32 c)
{
	/* HasCompat (RFC 8264 9.17): toNFKC(cp) != cp.  A one-code-point string is NFKC
	 * exactly when its NFKC form is itself. */
	UErrorCode err = U_ZERO_ERROR;
	const UNormalizer2 *nfkc = unorm2_getNFKCInstance(&err);
	UChar buf[2];
	int32_t n = 0;
	U16_APPEND_UNSAFE(buf, n, c);
	UBool ok = unorm2_isNormalized(nfkc, buf, n, &err);
	return U_FAILURE(err) || !ok;
}

/* The derived property of RFC 8264 section 8, evaluated in its order (the order
 * matters: Join_Control code points are also Default_Ignorable). */
static enum prop derive(UChar32 c)
{
	/* Exceptions (RFC 5892 2.6, adopted by RFC 8264 9.6). */
	switch (c) {
	case 0x00DF: case 0x03C2: case 0x06FD: case 0x06FE: case 0x0F0B: case 0x3007:
		return P_PVALID;
	case 0x00B7: case 0x0375: case 0x05F3: case 0x05F4: case 0x30FB:
		return P_CONTEXTO;
	case 0x0640: case 0x07FA: case 0x302E: case 0x302F: case 0x3031: case 0x3032:
	case 0x3033: case 0x3034: case 0x3035: case 0x303B:
		return P_DISALLOWED;
	default:
		break;
	}
	if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9))
		return P_CONTEXTO;
	/* BackwardCompatible is empty. */
	int gc = u_charType(c);
	bool nonchar = u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT);
	if (gc == U_UNASSIGNED && !nonchar)
		return P_DISALLOWED; /* UNASSIGNED */
	if (c >= 0x21 && c <= 0x7E)
		return P_PVALID; /* ASCII7 */
	if (u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL))
		return P_CONTEXTJ;
	int hst = u_getIntPropertyValue(c, UCHAR_HANGUL_SYLLABLE_TYPE);
	if (hst == U_HST_LEADING_JAMO || hst == U_HST_VOWEL_JAMO || hst == U_HST_TRAILING_JAMO)
		return P_DISALLOWED; /* OldHangulJamo */
	if (nonchar || u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT))
		return P_DISALLOWED; /* PrecisIgnorableProperties */
	if (gc == U_CONTROL_CHAR)
		return P_DISALLOWED;
	if (has_compat(c))
		return P_FREE;
	switch (gc) {
	case U_LOWERCASE_LETTER: case U_UPPERCASE_LETTER: case U_OTHER_LETTER:
	case U_DECIMAL_DIGIT_NUMBER: case U_MODIFIER_LETTER: case U_NON_SPACING_MARK:
	case U_COMBINING_SPACING_MARK:
		return P_PVALID; /* LetterDigits */
	case U_TITLECASE_LETTER: case U_LETTER_NUMBER: case U_OTHER_NUMBER:
	case U_ENCLOSING_MARK: /* OtherLetterDigits */
	case U_SPACE_SEPARATOR: /* Spaces */
	case U_MATH_SYMBOL: case U_CURRENCY_SYMBOL: case U_MODIFIER_SYMBOL:
	case U_OTHER_SYMBOL: /* Symbols */
	case U_CONNECTOR_PUNCTUATION: case U_DASH_PUNCTUATION: case U_START_PUNCTUATION:
	case U_END_PUNCTUATION: case U_INITIAL_PUNCTUATION: case U_FINAL_PUNCTUATION:
	case U_OTHER_PUNCTUATION: /* Punctuation */
		return P_FREE;
	default:
		return P_DISALLOWED;
	}
}

static int script_of(UChar32 c)
{
	UErrorCode err = U_ZERO_ERROR;
	int sc = uscript_getScript(c, &err);
	return U_SUCCESS(err) ? sc : USCRIPT_INVALID_CODE;
}

static int joining(UChar32 c)
{
	return u_getIntPropertyValue(c, UCHAR_JOINING_TYPE);
}

#define VIRAMA 9 /* Canonical_Combining_Class value */

/* Contextual rules of RFC 5892 Appendix A for CONTEXTJ / CONTEXTO code point cp[i]. */
static bool context_ok(const UChar32 *cp, size_t n, size_t i)
{
	UChar32 c = cp[i];
	switch (c) {
	case 0x200C: { /* ZERO WIDTH NON-JOINER (A.1) */
		if (i > 0 && u_getCombiningClass(cp[i - 1]) == VIRAMA)
			return true;
		/* (Joining_Type:{L,D})(Joining_Type:T)* ZWNJ (Joining_Type:T)*(Joining_Type:{R,D}) */
		size_t j = i;
		while (j > 0 && joining(cp[j - 1]) == U_JT_TRANSPARENT)
			j--;
		if (j == 0)
			return false;
		int jt = joining(cp[j - 1]);
		if (jt != U_JT_LEFT_JOINING && jt != U_JT_DUAL_JOINING)
			return false;
		size_t k = i + 1;
		while (k < n && joining(cp[k]) == U_JT_TRANSPARENT)
			k++;
		if (k == n)
			return false;
		jt = joining(cp[k]);
		return jt == U_JT_RIGHT_JOINING || jt == U_JT_DUAL_JOINING;
	}
	case 0x200D: /* ZERO WIDTH JOINER (A.2) */
		return i > 0 && u_getCombiningClass(cp[i - 1]) == VIRAMA;
	case 0x00B7: /* MIDDLE DOT (A.3): only between two 'l' (Catalan l·l) */
		return i > 0 && i + 1 < n && cp[i - 1] == 0x6C && cp[i + 1] == 0x6C;
	case 0x0375: /* GREEK LOWER NUMERAL SIGN (A.4) */
		return i + 1 < n && script_of(cp[i + 1]) == USCRIPT_GREEK;
	case 0x05F3: case 0x05F4: /* HEBREW GERESH / GERSHAYIM (A.5, A.6) */
		return i > 0 && script_of(cp[i - 1]) == USCRIPT_HEBREW;
	case 0x30FB: /* KATAKANA MIDDLE DOT (A.7) */
		for (size_t j = 0; j < n; j++) {
			int sc = script_of(cp[j]);
			if (sc == USCRIPT_HIRAGANA || sc == USCRIPT_KATAKANA || sc == USCRIPT_HAN)
				return true;
		}
		return false;
	default:
		break;
	}
	/* ARABIC-INDIC DIGITS (A.8) and EXTENDED ARABIC-INDIC DIGITS (A.9) must not mix. */
	bool ext = c >= 0x06F0;
	for (size_t j = 0; j < n; j++) {
		if (!ext && cp[j] >= 0x06F0 && cp[j] <= 0x06F9)
			return false;
		if (ext && cp[j] >= 0x0660 && cp[j] <= 0x0669)
			return false;
	}
	return true;
}

/* RFC 5893 section 2 "Bidi Rule", required by UsernameCaseMapped (RFC 8265 3.3.3 step 5)
 * for strings that contain right-to-left code points. */
static bool bidi_ok(const UChar32 *cp, size_t n)
{
	bool rtl_any = false;
	for (size_t i = 0; i < n; i++) {
		int d = u_charDirection(cp[i]);
		if (d == U_RIGHT_TO_LEFT || d == U_RIGHT_TO_LEFT_ARABIC || d == U_ARABIC_NUMBER)
			rtl_any = true;
	}
	if (!rtl_any)
		return true;
	int d0 = u_charDirection(cp[0]);
	bool rtl;
	if (d0 == U_LEFT_TO_RIGHT)
		rtl = false;
	else if (d0 == U_RIGHT_TO_LEFT || d0 == U_RIGHT_TO_LEFT_ARABIC)
		rtl = true;
	else
		return false;
	bool en = false, an = false;
	for (size_t i = 0; i < n; i++) {
		int d = u_charDirection(cp[i]);
		switch (d) {
		case U_EUROPEAN_NUMBER: en = true; break;
		case U_ARABIC_NUMBER: an = true; break;
		case U_EUROPEAN_NUMBER_SEPARATOR: case U_COMMON_NUMBER_SEPARATOR:
		case U_EUROPEAN_NUMBER_TERMINATOR: case U_OTHER_NEUTRAL: case U_BOUNDARY_NEUTRAL:
		case U_DIR_NON_SPACING_MARK:
			break;
		case U_LEFT_TO_RIGHT:
			if (rtl)
				return false;
			break;
		case U_RIGHT_TO_LEFT: case U_RIGHT_TO_LEFT_ARABIC:
			if (!rtl)
				return false;
			break;
		default:
			return false;
		}
		if (d == U_ARABIC_NUMBER && !rtl)
			return false;
	}
	if (rtl && en && an)
		return false;
	size_t end = n;
	while (end > 0 && u_charDirection(cp[end - 1]) == U_DIR_NON_SPACING_MARK)
		end--;
	if (end == 0)
		return false;
	int dl = u_charDirection(cp[end - 1]);
	if (rtl)
		return dl == U_RIGHT_TO_LEFT || dl == U_RIGHT_TO_LEFT_ARABIC ||
		       dl == U_EUROPEAN_NUMBER || dl == U_ARABIC_NUMBER;
	return dl == U_LEFT_TO_RIGHT || dl == U_EUROPEAN_NUMBER;
}

/* Every code point must be allowed by the class: IdentifierClass when ident, else
 * FreeformClass.  Contextual code points must satisfy their rule. */
static bool class_ok(const ubuf *s, bool ident, bool bidi)
{
	if (s->len == 0)
		return false;
	UChar32 *cp = pv_malloc((size_t)s->len * sizeof(UChar32));
	size_t n = 0;
	bool ok = false;
	for (int32_t i = 0; i < s->len;) {
		UChar32 c;
		U16_NEXT(s->p, i, s->len, c);
		cp[n++] = c;
	}
	for (size_t i = 0; i < n; i++) {
		switch (derive(cp[i])) {
		case P_PVALID:
			break;
		case P_FREE:
			if (ident)
				goto out;
			break;
		case P_CONTEXTJ:
		case P_CONTEXTO:
			if (!context_ok(cp, n, i))
				goto out;
			break;
		case P_DISALLOWED:
			goto out;
		}
	}
	ok = !bidi || bidi_ok(cp, n);
out:
	pv_free(cp);
	return ok;
}

static bool ub_eq(const ubuf *a, const ubuf *b)
{
	return a->len == b->len && memcmp(a->p, b->p, (size_t)a->len * sizeof(UChar)) == 0;
}

/* Apply a profile's rules until the result is stable.  RFC 8264 section 7 asks to reject
 * input that does not stabilise after the rules are reapplied three more times. */
static bool apply_stable(ubuf *s, bool (*rules)(ubuf *))
{
	for (int round = 0; round < 4; round++) {
		ubuf prev = {0};
		ub_reserve(&prev, s->len + 1);
		memcpy(prev.p, s->p, (size_t)s->len * sizeof(UChar));
		prev.len = s->len;
		bool ok = rules(s);
		bool same = ok && ub_eq(&prev, s);
		ub_fini(&prev);
		if (!ok)
			return false;
		if (same)
			return true;
	}
	return false;
}

/* UsernameCaseMapped (RFC 8265 3.3.3): width, (no additional), case, NFC. */
static bool rules_username(ubuf *s)
{
	return map_width(s) && apply(x_lower, s) && apply(x_nfc, s);
}

/* OpaqueString (RFC 8265 4.2.3): (no width), spaces, (no case), NFC. */
static bool rules_opaque(ubuf *s)
{
	return map_spaces(s) && apply(x_nfc, s);
}

/* Printable ASCII needs none of the machinery below, and nearly every address is
 * printable ASCII: in IdentifierClass every code point 0x21..0x7E is PVALID (ASCII7,
 * RFC 8264 9.11), FreeformClass also allows the space; width mapping, the OpaqueString
 * space mapping and NFC leave such strings as they are, and the Bidi Rule only
 * constrains strings that hold right-to-left characters.  So UsernameCaseMapped is
 * "lowercase A-Z" and OpaqueString is the identity.  Writes the n-byte result to out;
 * false when the string is not of that kind (the full path then decides).  ICU was
 * 5 % of the server's CPU per routed message before this (perf, bench chat). */
static bool precis_ascii(const char *s, size_t n, bool ident, char *out)
{
	unsigned char lo = ident ? 0x21 : 0x20;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < lo || c > 0x7E)
			return false;
		out[i] = ident && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : (char)c;
	}
	return true;
}

static char *precis(const char *s, size_t n, size_t max, bool ident)
{
	ubuf u = {0};
	char *out = NULL;
	size_t outlen = 0;
	if (!s || n == 0 || n > max || !utf8_valid((const unsigned char *)s, n))
		return NULL;
	out = pv_malloc(n + 1);
	if (precis_ascii(s, n, ident, out)) {
		out[n] = '\0';
		return out;
	}
	pv_free(out);
	out = NULL;
	to_u16(s, n, &u);
	if (!apply_stable(&u, ident ? rules_username : rules_opaque))
		goto fail;
	if (!class_ok(&u, ident, ident))
		goto fail;
	out = from_u16(u.p, u.len, &outlen);
	if (out && outlen == 0) {
		pv_free(out);
		out = NULL;
	}
fail:
	ub_fini(&u);
	return out;
}

char *pv_precis_opaque(const char *s, size_t n)
{
	/* Passwords have no RFC length limit; the cap only bounds our work. */
	return precis(s, n, 64 * 1024, false);
}

/* ---- the three parts ---------------------------------------------------------------- */

static char *check_len(char *s)
{
	if (s && strlen(s) > PART_MAX) {
		pv_free(s);
		return NULL;
	}
	return s;
}

char *pv_jid_norm_local(const char *s, size_t n)
{
	char *out = check_len(precis(s, n, INPUT_MAX, true));
	if (out && strpbrk(out, LOCAL_EXCLUDED)) {
		pv_free(out);
		return NULL;
	}
	return out;
}

char *pv_jid_norm_resource(const char *s, size_t n)
{
	return check_len(precis(s, n, INPUT_MAX, false));
}

/* Strict LDH (RFC 1034 preferred name syntax, RFC 5890 NR-LDH / A-labels): letters,
 * digits and hyphen; labels of 1..63 octets that neither start nor end with a hyphen.
 * s is already lowercase. */
static bool ldh_ok(const char *s)
{
	size_t lab = 0;
	char prev = '.';
	for (const char *p = s;; p++) {
		char c = *p;
		if (c == '.' || c == '\0') {
			if (lab == 0 || lab > 63 || prev == '-')
				return false;
			if (c == '\0')
				return true;
			lab = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			lab++;
		} else if (c == '-') {
			if (lab == 0)
				return false;
			lab++;
		} else {
			return false;
		}
		prev = c;
	}
}

static bool has_alabel(const char *s)
{
	for (const char *p = s; p; p = strchr(p, '.')) {
		if (*p == '.')
			p++;
		if (strncmp(p, "xn--", 4) == 0)
			return true;
	}
	return false;
}

/* "[IPv6]" -> canonical RFC 5952 text inside brackets, or NULL. */
static char *ip6_literal(const char *s, size_t n)
{
	char in[INET6_ADDRSTRLEN + 1], out[INET6_ADDRSTRLEN];
	struct in6_addr a;
	if (n < 3 || s[n - 1] != ']' || n - 2 > INET6_ADDRSTRLEN)
		return NULL;
	memcpy(in, s + 1, n - 2);
	in[n - 2] = '\0';
	if (inet_pton(AF_INET6, in, &a) != 1 || !inet_ntop(AF_INET6, &a, out, sizeof(out)))
		return NULL;
	return pv_sprintf("[%s]", out);
}

char *pv_jid_norm_domain(const char *s, size_t n)
{
	char *in = NULL, *ascii = NULL, *uni = NULL, *out = NULL;
	bool all_ascii = true;

	if (!s)
		return NULL;
	/* RFC 7622 3.2: a final label separator is stripped before anything else. */
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > INPUT_MAX || memchr(s, '\0', n) ||
	    !utf8_valid((const unsigned char *)s, n))
		return NULL;
	if (s[0] == '[')
		return ip6_literal(s, n);

	in = pv_strndup(s, n);
	for (char *p = in; *p; p++) {
		if ((unsigned char)*p >= 0x80)
			all_ascii = false;
		else if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	if (all_ascii) {
		struct in_addr a4;
		char buf[INET_ADDRSTRLEN];
		if (inet_pton(AF_INET, in, &a4) == 1) {
			if (inet_ntop(AF_INET, &a4, buf, sizeof(buf)))
				out = pv_strdup(buf);
			goto done;
		}
		if (!ldh_ok(in))
			goto done;
		if (!has_alabel(in)) {
			out = in;
			in = NULL;
			goto done;
		}
		/* A-labels must become U-labels (RFC 7622 3.2.1): fall through to IDNA. */
	}

	/* IDNA2008 with the UTS #46 non-transitional mapping: this performs the case and
	 * width mapping RFC 7622 3.2.2 asks for, validates the labels (libidn2 also
	 * round-trips A-labels) and yields the A-label form, which must be strict LDH. */
	if (idn2_to_ascii_8z(in, &ascii, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK)
		goto done;
	for (char *p = ascii; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!ldh_ok(ascii))
		goto done;
	if (idn2_to_unicode_8z8z(ascii, &uni, 0) != IDN2_OK)
		goto done;
	/* The U-label form must map back to the same A-labels, otherwise the input held an
	 * A-label that is not the image of a valid U-label. */
	{
		char *again = NULL;
		int rc = idn2_to_ascii_8z(uni, &again, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
		bool same = rc == IDN2_OK && strcmp(again, ascii) == 0;
		idn2_free(again);
		if (!same)
			goto done;
	}
	{
		size_t ulen = strlen(uni);
		if (ulen == 0 || ulen > PART_MAX || !utf8_valid((const unsigned char *)uni, ulen))
			goto done;
	}
	out = pv_strdup(uni);
done:
	idn2_free(ascii);
	idn2_free(uni);
	pv_free(in);
	return check_len(out);
}

/* ---- pv_jid ------------------------------------------------------------------------- */

/* A pv_jid is one allocation: "full\0bare\0local\0domain\0resource\0", every field
 * pointing into it and `full` at its start, so routing a stanza costs one malloc per
 * address instead of five (two of them through printf). */
static void build(pv_jid *j, const char *l, size_t ln, const char *d, size_t dn,
	const char *r, size_t rn)
{
	size_t bare_n = (l ? ln + 1 : 0) + dn;
	size_t full_n = bare_n + (r ? rn + 1 : 0);
	char *b = pv_malloc(full_n + 1 + bare_n + 1 + (l ? ln + 1 : 0) + dn + 1 + (r ? rn + 1 : 0));
	char *p = b;

	j->full = p;
	if (l) {
		memcpy(p, l, ln);
		p += ln;
		*p++ = '@';
	}
	memcpy(p, d, dn);
	p += dn;
	if (r) {
		*p++ = '/';
		memcpy(p, r, rn);
		p += rn;
	}
	*p++ = '\0';
	j->bare = p;
	memcpy(p, b, bare_n);
	p += bare_n;
	*p++ = '\0';
	j->local = NULL;
	if (l) {
		j->local = p;
		memcpy(p, b, ln);
		p += ln;
		*p++ = '\0';
	}
	j->domain = p;
	memcpy(p, b + (l ? ln + 1 : 0), dn);
	p += dn;
	*p++ = '\0';
	j->resource = NULL;
	if (r) {
		j->resource = p;
		memcpy(p, b + bare_n + 1, rn);
		p[rn] = '\0';
	}
}

/* The common case without allocation: an ASCII LDH domain that is neither an IP
 * literal nor holds A-labels comes out lowercased and is otherwise unchanged
 * (what pv_jid_norm_domain does for it, without the copies). */
static bool domain_ascii(const char *s, size_t n, char *out)
{
	bool letter = false;
	if (n == 0 || n > PART_MAX || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c >= 'a' && c <= 'z')
			letter = true;
		else if (!(c >= '0' && c <= '9') && c != '-' && c != '.')
			return false;
		out[i] = c;
	}
	out[n] = '\0';
	/* All digits and dots may be an IPv4 literal, which has its own canonical form. */
	return letter && ldh_ok(out) && !has_alabel(out);
}

/* The localpart's fast path: precis_ascii plus the RFC 7622 3.3.1 exclusions. */
static bool local_ascii(const char *s, size_t n, char *out)
{
	if (n > PART_MAX || !precis_ascii(s, n, true, out))
		return false;
	out[n] = '\0';
	return !strpbrk(out, LOCAL_EXCLUDED);
}

static int make_parts(pv_jid *out, const char *l, size_t ln, const char *d, size_t dn,
	const char *r, size_t rn)
{
	char lb[PART_MAX + 1], db[PART_MAX + 1], rb[PART_MAX + 1];
	char *lh = NULL, *dh = NULL, *rh = NULL;
	const char *lp = lb, *dp = db, *rp = rb;
	int rc = PV_EINVAL;

	memset(out, 0, sizeof(*out));
	/* Each part takes the printable-ASCII fast path or the full normalisation. */
	if (l && !local_ascii(l, ln, lb)) {
		if (!(lh = pv_jid_norm_local(l, ln)))
			goto out;
		lp = lh;
		ln = strlen(lh);
	}
	if (!domain_ascii(d, dn, db)) {
		if (!(dh = pv_jid_norm_domain(d, dn)))
			goto out;
		dp = dh;
		dn = strlen(dh);
	}
	if (r && !(rn <= PART_MAX && precis_ascii(r, rn, false, rb))) {
		if (!(rh = pv_jid_norm_resource(r, rn)))
			goto out;
		rp = rh;
		rn = strlen(rh);
	}
	build(out, l ? lp : NULL, ln, dp, dn, r ? rp : NULL, rn);
	rc = 0;
out:
	pv_free(lh);
	pv_free(dh);
	pv_free(rh);
	return rc;
}

int pv_jid_parse(pv_jid *out, const char *s, size_t n)
{
	const char *l = NULL, *r = NULL;
	size_t ln = 0, rn = 0;

	memset(out, 0, sizeof(*out));
	if (!s)
		return PV_EINVAL;
	/* RFC 7622 3.1: the first '/' starts the resourcepart (which may itself hold '/' and
	 * '@'); in what precedes it, the first '@' ends the localpart. */
	const char *slash = memchr(s, '/', n);
	size_t head = slash ? (size_t)(slash - s) : n;
	if (slash) {
		r = slash + 1;
		rn = n - head - 1;
		if (rn == 0)
			return PV_EINVAL;
	}
	const char *at = memchr(s, '@', head);
	const char *d = s;
	size_t dn = head;
	if (at) {
		l = s;
		ln = (size_t)(at - s);
		if (ln == 0)
			return PV_EINVAL;
		d = at + 1;
		dn = head - ln - 1;
	}
	return make_parts(out, l, ln, d, dn, r, rn);
}

int pv_jid_parse_str(pv_jid *out, const char *s)
{
	if (!s) {
		memset(out, 0, sizeof(*out));
		return PV_EINVAL;
	}
	return pv_jid_parse(out, s, strlen(s));
}

int pv_jid_make(pv_jid *out, const char *local, const char *domain, const char *resource)
{
	if (!domain) {
		memset(out, 0, sizeof(*out));
		return PV_EINVAL;
	}
	return make_parts(out, local, local ? strlen(local) : 0, domain, strlen(domain), resource,
		resource ? strlen(resource) : 0);
}

void pv_jid_fini(pv_jid *j)
{
	if (!j)
		return;
	pv_free(j->full); /* the block every field points into */
	memset(j, 0, sizeof(*j));
}

size_t pv_jid_block_size(const pv_jid *src)
{
	if (!src->full)
		return 0;
	/* build()'s block ends with the last part */
	const char *last = src->resource ? src->resource : src->domain;
	return (size_t)(last - src->full) + strlen(last) + 1;
}

/* The n-byte block of build() at src, copied whole to b; every pointer keeps its
 * offset. */
static void copy_block(pv_jid *dst, const pv_jid *src, char *b, size_t n)
{
	memset(dst, 0, sizeof(*dst));
	if (!src->full)
		return;
	memcpy(b, src->full, n);
	dst->full = b;
	dst->bare = b + (src->bare - src->full);
	dst->local = src->local ? b + (src->local - src->full) : NULL;
	dst->domain = b + (src->domain - src->full);
	dst->resource = src->resource ? b + (src->resource - src->full) : NULL;
}

void pv_jid_dup(pv_jid *dst, const pv_jid *src)
{
	size_t n = pv_jid_block_size(src);
	copy_block(dst, src, n ? pv_malloc(n) : NULL, n);
}

void pv_jid_dup_in(pv_jid *dst, const pv_jid *src, void *mem)
{
	copy_block(dst, src, mem, pv_jid_block_size(src));
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Parts are normalised at construction, so comparison is plain byte equality. */
bool pv_jid_eq(const pv_jid *a, const pv_jid *b)
{
	return a && b && str_eq(a->full, b->full);
}

bool pv_jid_bare_eq(const pv_jid *a, const pv_jid *b)
{
	return a && b && str_eq(a->bare, b->bare);
}
