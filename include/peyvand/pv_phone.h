/* pv_phone.h -- phone numbers in strict E.164 form (ITU-T E.164: a country code and a
 * national number, at most 15 digits), the one form numbers have inside peyvand: in
 * storage, in the phone protocol (urn:peyvand:phone:0, docs/protocol/phone.md), in the
 * directory and the exchange.
 *
 * No "smart" parsing: no spaces, dashes, brackets, national prefixes or "00" for '+'.
 * A client shows numbers however it likes and sends the strict form; the server never
 * guesses a country.  Thread-safe (no state). */
#ifndef PV_PHONE_H
#define PV_PHONE_H

#include "pv_util.h"

#define PV_PHONE_MAX 17   /* '+', up to 15 digits, NUL */
#define PV_PHONE_MIN_DIGITS 8
#define PV_PHONE_MAX_DIGITS 15

/* Strict E.164: '+', first digit 1-9, 8..15 digits total after '+', nothing else (no
 * spaces).  Returns 0 and writes the number (NUL-terminated) to out, or PV_EINVAL (in or
 * out NULL, or in not of that form; out is then an empty string when not NULL). */
int pv_phone_normalize(const char *in, char out[PV_PHONE_MAX]);

/* For logs, which never carry a number in clear: the '+', the first two and the last
 * four digits, the rest as '*' ("+989121234567" -> "+98******4567").  e164 must be
 * normalised; anything else gives "?". */
void pv_phone_mask(const char *e164, char out[PV_PHONE_MAX]);

/* The digits of a normalised number (the part after '+'); borrowed from e164. */
static inline const char *pv_phone_digits(const char *e164)
{
	return e164 && e164[0] == '+' ? e164 + 1 : e164;
}

#endif
