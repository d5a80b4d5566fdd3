/* fuzz_tlsrec.c -- libFuzzer target for src/net/tlsrec.c, the TLS 1.3 record layer a
 * server runs for a client's records once the handshake is done.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Random bytes almost never pass the AEAD, so the input is mostly records to seal: a
 * client-side pv_tlsrec keyed with the mirror of the server's secrets seals them, and
 * the server's pv_tlsrec opens the stream.  That reaches what follows decryption: inner
 * content types, padding, alerts, KeyUpdate (whose answer the server seals).
 *
 * Input layout:
 *   byte 0   suite (mod 3: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305)
 *   byte 1   flags: bit 0 feed the stream in pieces of (byte 2 % 17 + 1) bytes,
 *            bit 1 flip the stream's byte at offset byte 3 * 7, bit 2 append byte 4..
 *            raw, unsealed, after the records
 *   rest     records: type, length (one byte), then that many content bytes
 * Checked: no crash, leak or UB; every byte the server hands out as application data is
 * exactly what was sealed as application data, in order; after CLOSED or FAILED
 * nothing more is opened; a FAILED that we caused has an alert and leaves one in out. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tlsrec.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

static const uint16_t suite_ids[] = {0x1301, 0x1302, 0x1303};
static const size_t hash_len[] = {32, 48, 32};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		pv_log_set_level(PV_LOG_ERROR);
		quiet = true;
	}
	if (size < 5)
		return 0;
	uint8_t csec[48], ssec[48];
	for (size_t i = 0; i < sizeof csec; i++) {
		csec[i] = (uint8_t)(i * 7 + 1);
		ssec[i] = (uint8_t)(i * 13 + 5);
	}
	unsigned s = data[0] % 3, flags = data[1];
	size_t piece = data[2] % 17 + 1, flip = (size_t)data[3] * 7;
	/* The server reads with the client's secret; the client writes with it. */
	pv_tlsrec *srv = pv_tlsrec_new(suite_ids[s], csec, ssec, hash_len[s], 0);
	pv_tlsrec *cli = pv_tlsrec_new(suite_ids[s], ssec, csec, hash_len[s], 0);
	if (!srv || !cli)
		abort();

	pv_buf wire, want, got, out;
	pv_buf_init(&wire);
	pv_buf_init(&want);
	pv_buf_init(&got);
	pv_buf_init(&out);
	size_t i = 5;
	while (i + 2 <= size) {
		uint8_t type = data[i], len = data[i + 1];
		i += 2;
		if (len > size - i)
			len = (uint8_t)(size - i);
		pv_tlsrec_seal_record(cli, &wire, type, data + i, len);
		/* Sealed as type 0, the content's last non-zero byte is the type (padding). */
		size_t n = len;
		uint8_t t = type;
		if (t == 0) {
			while (n > 0 && data[i + n - 1] == 0)
				n--;
			if (n > 0)
				t = data[i + --n];
		}
		if (t == PV_TLSREC_APPDATA)
			pv_buf_append(&want, data + i, n);
		i += len;
	}
	if (flags & 4)
		pv_buf_append(&wire, data + 4, size - 4);
	if ((flags & 2) && flip < wire.len)
		wire.data[flip] ^= 0x20;

	/* Feed it as a socket would: what arrived so far, records opened in place. */
	size_t have = 0, off = 0;
	bool done = false;
	while (!done && have < wire.len) {
		have += (flags & 1) ? piece : wire.len;
		if (have > wire.len)
			have = wire.len;
		while (!done) {
			size_t used, ptlen;
			uint8_t *pt;
			size_t before = out.len;
			pv_tlsrec_ev ev = pv_tlsrec_open(srv, (uint8_t *)wire.data + off, have - off, &used,
				&pt, &ptlen, &out);
			if (ev == PV_TLSREC_MORE) {
				if (used != 0)
					abort();
				break;
			}
			if (used > have - off)
				abort();
			off += used;
			if (ev == PV_TLSREC_DATA) {
				pv_buf_append(&got, pt, ptlen);
			} else if (ev == PV_TLSREC_CLOSED) {
				done = true;
			} else if (ev == PV_TLSREC_FAILED) {
				/* Our own alert is in out; the peer's fatal alert sends nothing. */
				if (pv_tlsrec_last_alert(srv) != 0 && out.len == before)
					abort();
				done = true;
			}
		}
	}
	/* What came out as application data is a prefix of what went in: a flipped byte
	 * or raw bytes never pass the AEAD as data. */
	if (got.len > want.len || (got.len && memcmp(got.data, want.data, got.len) != 0))
		abort();

	pv_buf_fini(&wire);
	pv_buf_fini(&want);
	pv_buf_fini(&got);
	pv_buf_fini(&out);
	pv_tlsrec_free(srv);
	pv_tlsrec_free(cli);
	return 0;
}
