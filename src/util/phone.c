/* phone.c -- strict E.164 validation (include/peyvand/pv_phone.h).
 *
 * ITU-T E.164 numbers have at most 15 digits (country code included) and no country
 * code starts with 0.  We also require at least 8 digits: shorter strings are service
 * codes or typos, never a reachable subscriber, and a floor keeps obviously bogus
 * numbers out of the code-sending path.  Pure function, any thread. */
#include <string.h>

#include "peyvand/pv_phone.h"

int pv_phone_normalize(const char *in, char out[PV_PHONE_MAX])
{
	if (out)
		out[0] = '\0';
	if (!in || !out || in[0] != '+' || in[1] < '1' || in[1] > '9')
		return PV_EINVAL;
	size_t n = 0;
	/* Bounded scan: stop one past the maximum so an overlong input is never read to
	 * its end. */
	for (const char *p = in + 1; *p; p++) {
		if (*p < '0' || *p > '9' || ++n > PV_PHONE_MAX_DIGITS)
			return PV_EINVAL;
	}
	if (n < PV_PHONE_MIN_DIGITS)
		return PV_EINVAL;
	memcpy(out, in, n + 1);
	out[n + 1] = '\0';
	return 0;
}

void pv_phone_mask(const char *e164, char out[PV_PHONE_MAX])
{
	char tmp[PV_PHONE_MAX];
	if (pv_phone_normalize(e164, tmp) != 0) {
		memcpy(out, "?", 2);
		return;
	}
	size_t n = strlen(tmp); /* '+' and 8..15 digits */
	for (size_t i = 0; i < n; i++)
		out[i] = (i <= 2 || i + 4 >= n) ? tmp[i] : '*';
	out[n] = '\0';
}
