/* blind.c -- keyed blinding of E.164 numbers (pv_directory.h; issue 6).
 *
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) via OpenSSL's one-shot HMAC(), then RFC 4648
 * section 6 base32 in lowercase without the '=' padding: 32 bytes -> 52 characters
 * (256 bits / 5, rounded up; the last character carries 1 bit and four zero bits).
 * Why a keyed hash and what it does not protect: docs/protocol/directory.md,
 * "Security and privacy considerations".
 * Thread-safe: no state; the key stays with the caller. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "peyvand/pv_directory.h"
#include "peyvand/pv_util.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

int pv_blind(const unsigned char *key, size_t keylen, const char *e164, char out[PV_BLIND_LEN])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	if (!key || keylen < PV_BLIND_KEY_MIN || !e164 || !*e164)
		return PV_EINVAL;
	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)e164, strlen(e164), mac,
		  &maclen) ||
	    maclen != 32)
		return PV_EINVAL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (unsigned i = 0; i < maclen; i++) {
		acc = (acc << 8) | mac[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = 0;
	PV_ASSERT(o == PV_BLIND_LEN - 1);
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

int pv_blind_key_id(const unsigned char *key, size_t keylen, char out[PV_BLIND_LEN])
{
	return pv_blind(key, keylen, "urn:peyvand:directory:0 key-id", out);
}

bool pv_blind_is_valid(const char *s)
{
	if (!s)
		return false;
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
			return false;
		if (n >= PV_BLIND_LEN - 1)
			return false;
	}
	if (n != PV_BLIND_LEN - 1)
		return false;
	/* The last character carries one bit of the MAC and four zero bits. */
	const char *last = strchr(b32, s[n - 1]);
	return last && ((last - b32) & 15) == 0;
}

int pv_blind_key_load(const char *path, unsigned char **key, size_t *keylen, char **err)
{
	unsigned char buf[4097];
	*key = NULL;
	*keylen = 0;
	*err = NULL;
	FILE *f = path ? fopen(path, "rb") : NULL;
	if (!f) {
		*err = pv_sprintf("cannot read the blinding key %s: %s", path ? path : "(none)",
				  path ? strerror(errno) : "interconnect.blinding_key_file is not set");
		return PV_EIO;
	}
	size_t n = fread(buf, 1, sizeof(buf), f);
	bool bad = ferror(f);
	fclose(f);
	if (bad) {
		*err = pv_sprintf("cannot read the blinding key %s", path);
		explicit_bzero(buf, sizeof(buf));
		return PV_EIO;
	}
	if (n < PV_BLIND_KEY_MIN || n > 4096) {
		*err = pv_sprintf("the blinding key %s has %zu bytes; it needs %d to 4096 random "
				  "bytes",
				  path, n, PV_BLIND_KEY_MIN);
		explicit_bzero(buf, sizeof(buf));
		return PV_EINVAL;
	}
	*key = pv_malloc(n);
	memcpy(*key, buf, n);
	*keylen = n;
	explicit_bzero(buf, sizeof(buf));
	return 0;
}
