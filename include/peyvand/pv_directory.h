/* pv_directory.h -- keyed blinding of phone numbers for discovery across providers
 * (issue 6; docs/protocol/directory.md).
 *
 * A number leaves a provider only as HMAC-SHA256(key, e164) with the interconnect's
 * shared key (hosts.<d>.interconnect.blinding_key_file), written as lowercase RFC 4648
 * base32 without padding: 52 characters, valid as a JID localpart, so the exchange's
 * number address of a person is <blinded>@<exchange domain>.
 * Thread-safe: no state. */
#ifndef PV_DIRECTORY_H
#define PV_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>

#define PV_DIRECTORY_NS "urn:peyvand:directory:0"
#define PV_BLIND_LEN 53               /* 52 characters + NUL */
#define PV_BLIND_KEY_MIN 32           /* bytes */

/* HMAC-SHA256(key, e164) -> lowercase base32 without padding.  e164 should already be
 * normalised (pv_phone_normalize).  Returns 0, or PV_EINVAL (no key, key shorter than
 * PV_BLIND_KEY_MIN, empty number). */
int pv_blind(const unsigned char *key, size_t keylen, const char *e164, char out[PV_BLIND_LEN]);

/* Is s exactly 52 characters of the alphabet pv_blind writes (a-z, 2-7)? */
bool pv_blind_is_valid(const char *s);
/* A name for the key that reveals nothing of it (the same base32 of HMAC-SHA256(key,
 * "urn:peyvand:directory:0 key-id")): stored beside the blinded index so a new key is
 * noticed.  0 or PV_EINVAL. */
int pv_blind_key_id(const unsigned char *key, size_t keylen, char out[PV_BLIND_LEN]);

/* Read a blinding key file (raw bytes; whatever it holds is the key).  Returns 0 and a
 * new buffer in *key (caller frees with pv_free after explicit_bzero), or PV_EIO (cannot
 * read) / PV_EINVAL (shorter than PV_BLIND_KEY_MIN or larger than 4096 bytes), with
 * *err set to a message (caller frees). */
int pv_blind_key_load(const char *path, unsigned char **key, size_t *keylen, char **err);

#endif
