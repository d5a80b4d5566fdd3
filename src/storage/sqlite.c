/* sqlite.c -- the SQLite backend of include/peyvand/pv_store.h.
 *
 * One storage thread owns one connection to <datadir>/peyvand.sqlite (WAL,
 * synchronous=FULL, foreign_keys=ON).  Callers on any thread queue operations into a
 * FIFO (mutex + condvar); the thread takes everything queued (up to BATCH_MAX) and runs
 * it in order:
 *  - Writes of a batch share ONE transaction (BEGIN IMMEDIATE ... COMMIT: group commit,
 *    one fsync).  Each write runs inside its own SAVEPOINT, so a write that fails
 *    (PV_EEXIST, PV_ENOENT, ...) is undone alone and the others still commit.
 *  - A read runs in FIFO position, inside that transaction when one is open (so it sees
 *    every write queued before it), but its caller is woken only after the COMMIT
 *    succeeded: no caller ever acts on data that could still be rolled back.
 *  - After the COMMIT, finished asynchronous writes go to a second list and one
 *    uv_async_send wakes the loop; the async callback runs each done(ud, rc) there.
 *    The async handle is unref'd: it never keeps the loop alive by itself.
 * A failed COMMIT is fatal (logged, abort()): an fsync is never retried on the same
 * state; a restart recovers from the WAL.  If SQLite rolls a transaction back on its own
 * (disk full, I/O error), every operation of that batch so far reports PV_EIO.
 *
 * Threading and ownership:
 *  - every pv_store_* function may be called from any thread, except pv_store_open and
 *    pv_store_close with a loop, which must be called on the loop thread (or while the
 *    loop does not run: uv_async_init/uv_close are not thread-safe); no operation may be
 *    queued once pv_store_close has started, except from the done callbacks it runs;
 *  - pv_store_close must come before the loop's handles are closed (uv_walk): it closes
 *    the store's own async handle, which is freed by a later uv_run;
 *  - asynchronous writes copy all their input before returning;
 *  - reads and the synchronous writes (accounts; pv_store_s2s_epoch, which may create
 *    the epoch it returns) block the caller on a per-operation semaphore; a synchronous
 *    write runs in its batch like any write and is answered after the COMMIT; rows are
 *    collected on the storage thread and the caller's callback runs afterwards IN THE
 *    CALLER'S THREAD, so callbacks may use the store;
 *  - loop == NULL (tools): writes wait for their commit and call `done` inline.
 * uint64 values (seq, h_in, roster version, s2s seq and hwm, consent log seq) are stored
 * as their int64 bit pattern; ordering by seq is therefore correct below 2^63 (an s2s or
 * log bound above that, such as UINT64_MAX for "everything", is clamped to 2^63-1).
 * Consent (issue 4): the log's seq and SHA-256 chain are computed in run_consent_log,
 * inside the write transaction, from the head read in that same transaction; triggers
 * of schema 003 keep the log append-only (see 003_consent.sql). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <uv.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_store.h"

#define SUB "store"
#define DB_FILE "peyvand.sqlite"
#define BUSY_TIMEOUT_MS 10000 /* another process (peyvandctl) may hold the write lock */
#define BATCH_MAX 4096        /* bounds one transaction's size and its callers' latency */
/* Commit pacing: a batch is not started sooner than this after the previous one was
 * taken, unless a caller is blocked on a queued operation (a read or a synchronous write:
 * the loop thread may be the one waiting) or the store is closing.
 * Commits that come further apart than this (a quiet server) are not delayed at all;
 * back to back (load) they carry more each.  Measured with XEP-0198 clients chatting
 * at saturation, where every acknowledged message advances its sender's committed h:
 * the storage thread committed 2,200 times a second, a third of the server's CPU, most
 * of it SQLite writing the same pages again and fdatasync (bench/NOTES.md, ninth run). */
#define PACE_US 2000
#define EPOCH_BYTES 8         /* an s2s epoch is 16 hex chars: 64 random bits never repeat */

/* Generated from src/storage/schema/sqlite/NNN_*.sql (cmake/embed_schema.cmake). */
extern const char *const pv_schema_sqlite[];
extern const size_t pv_schema_sqlite_count;

/* ---- prepared statements (all prepared at open, kept for the connection's life) ---- */
enum {
	Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
	Q_USER_INSERT, Q_USER_EXISTS, Q_USER_LIST, Q_USER_DELETE,
	Q_CRED_INSERT, Q_CRED_GET, Q_CRED_DELETE_ALL,
	Q_ROSTER_ITEMS, Q_ROSTER_GROUPS, Q_ROSTER_VER_GET, Q_ROSTER_VER_SET, Q_ROSTER_VER_DELETE,
	Q_ROSTER_UPSERT, Q_ROSTER_DEL, Q_ROSTER_DELETE_ALL,
	Q_GROUPS_DEL, Q_GROUPS_INSERT, Q_GROUPS_DELETE_ALL,
	Q_OFFLINE_PUSH, Q_OFFLINE_LIST, Q_OFFLINE_DELETE, Q_OFFLINE_COUNT, Q_OFFLINE_DELETE_ALL,
	Q_KV_GET, Q_KV_PUT, Q_KV_DEL, Q_KV_DELETE_ALL,
	Q_SESS_PUT, Q_SESS_SET_H, Q_SESS_SET_EXPIRY, Q_SESS_DEL, Q_SESS_GET, Q_SESS_LIST,
	Q_SESS_DELETE_ALL,
	Q_OUTQ_APPEND, Q_OUTQ_ACK, Q_OUTQ_LIST, Q_OUTQ_DEL, Q_OUTQ_DELETE_ALL,
	Q_S2S_LINK_GET, Q_S2S_LINK_INSERT, Q_S2S_PUSH, Q_S2S_LIST, Q_S2S_ACK, Q_S2S_DROP,
	Q_S2S_QUEUES, Q_S2S_HWM_GET, Q_S2S_HWM_SET, Q_S2S_LAST_SEQ,
	Q_CPOL_GET, Q_CPOL_SET, Q_CPOL_DELETE_ALL,
	Q_CPROV_LIST, Q_CPROV_SET, Q_CPROV_DEL, Q_CPROV_DELETE_ALL,
	Q_CSEND_LIST, Q_CSEND_SET, Q_CSEND_DEL, Q_CSEND_DELETE_ALL,
	Q_CLOG_HEAD, Q_CLOG_INSERT, Q_CLOG_LIST, Q_CLOG_DELETE_ALL,
	Q_CEVID_INSERT, Q_CEVID_GET, Q_CEVID_DELETE_ALL,
	Q_REQ_HOLD, Q_REQ_LIST, Q_REQ_INFO, Q_REQ_GET, Q_REQ_COUNT, Q_REQ_DROP, Q_REQ_DELETE_ALL,
	Q_REPORT_ADD, Q_REPORT_LIST_HOST, Q_REPORT_LIST_ALL,
	Q_BLOCK_LIST, Q_BLOCK_USERS, Q_BLOCK_ADD, Q_BLOCK_DEL, Q_BLOCK_CLEAR,
	/* phone numbers (issue 6) */
	Q_PHONE_OF_USER, Q_PHONE_BY_NUMBER, Q_PHONE_INSERT, Q_PHONE_SET, Q_PHONE_FLAGS,
	Q_PHONE_DELETE_ALL, Q_PHONE_GONE_SAVE, Q_PHONE_GONE_GET, Q_PHONE_GONE_DEL,
	Q_PHONE_SEND_PRUNE, Q_PHONE_SEND_GET, Q_PHONE_SEND_SET, Q_PHONE_CODE_PRUNE,
	Q_PHONE_CODE_PUT, Q_PHONE_CODE_GET, Q_PHONE_CODE_DEL, Q_PHONE_CODE_FAIL,
	/* exchange registry and discovery (issue 6, D) */
	Q_REG_NEWER, Q_REG_DEL_OTHER, Q_REG_PUT, Q_REG_DEL, Q_REG_LOOKUP, Q_REG_COUNT,
	/* a provider's blinded index (issue 6, schema 006) */
	Q_BLIND_KEY_GET, Q_BLIND_KEY_SET, Q_BLIND_CLEAR, Q_BLIND_PRUNE, Q_BLIND_MISSING, Q_BLIND_PUT,
	Q_BLIND_DEL, Q_BLIND_LOOKUP,
	Q__N
};

static const char *const q_sql[Q__N] = {
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
	[Q_SAVEPOINT] = "SAVEPOINT op",
	[Q_RELEASE] = "RELEASE op",
	[Q_ROLLBACK_TO] = "ROLLBACK TO op",
	[Q_USER_INSERT] = "INSERT INTO users (host, user, created) VALUES (?1, ?2, ?3)",
	[Q_USER_EXISTS] = "SELECT 1 FROM users WHERE host = ?1 AND user = ?2",
	[Q_USER_LIST] = "SELECT user FROM users WHERE host = ?1 ORDER BY user",
	[Q_USER_DELETE] = "DELETE FROM users WHERE host = ?1 AND user = ?2",
	[Q_CRED_INSERT] = "INSERT INTO creds (host, user, mech, salt, iter, stored_key, server_key)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[Q_CRED_GET] = "SELECT salt, iter, stored_key, server_key FROM creds"
		" WHERE host = ?1 AND user = ?2 AND mech = ?3",
	[Q_CRED_DELETE_ALL] = "DELETE FROM creds WHERE host = ?1 AND user = ?2",
	[Q_ROSTER_ITEMS] = "SELECT jid, name, sub, ask, approved, in_roster, pending_in FROM roster"
		" WHERE host = ?1 AND user = ?2 ORDER BY jid",
	[Q_ROSTER_GROUPS] = "SELECT jid, name FROM roster_groups WHERE host = ?1 AND user = ?2"
		" ORDER BY jid, pos",
	[Q_ROSTER_VER_GET] = "SELECT ver FROM roster_version WHERE host = ?1 AND user = ?2",
	[Q_ROSTER_VER_SET] = "INSERT INTO roster_version (host, user, ver) VALUES (?1, ?2, ?3)"
		" ON CONFLICT (host, user) DO UPDATE SET ver = excluded.ver",
	[Q_ROSTER_VER_DELETE] = "DELETE FROM roster_version WHERE host = ?1 AND user = ?2",
	[Q_ROSTER_UPSERT] = "INSERT INTO roster"
		" (host, user, jid, name, sub, ask, approved, in_roster, pending_in)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
		" ON CONFLICT (host, user, jid) DO UPDATE SET name = excluded.name,"
		" sub = excluded.sub, ask = excluded.ask, approved = excluded.approved,"
		" in_roster = excluded.in_roster, pending_in = excluded.pending_in",
	[Q_ROSTER_DEL] = "DELETE FROM roster WHERE host = ?1 AND user = ?2 AND jid = ?3",
	[Q_ROSTER_DELETE_ALL] = "DELETE FROM roster WHERE host = ?1 AND user = ?2",
	[Q_GROUPS_DEL] = "DELETE FROM roster_groups WHERE host = ?1 AND user = ?2 AND jid = ?3",
	[Q_GROUPS_INSERT] = "INSERT INTO roster_groups (host, user, jid, pos, name)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_GROUPS_DELETE_ALL] = "DELETE FROM roster_groups WHERE host = ?1 AND user = ?2",
	[Q_OFFLINE_PUSH] = "INSERT INTO offline (host, user, stamp, xml) VALUES (?1, ?2, ?3, ?4)",
	[Q_OFFLINE_LIST] = "SELECT id, stamp, xml FROM offline WHERE host = ?1 AND user = ?2"
		" ORDER BY id",
	[Q_OFFLINE_DELETE] = "DELETE FROM offline WHERE host = ?1 AND user = ?2 AND id <= ?3",
	[Q_OFFLINE_COUNT] = "SELECT count(*) FROM offline WHERE host = ?1 AND user = ?2",
	[Q_OFFLINE_DELETE_ALL] = "DELETE FROM offline WHERE host = ?1 AND user = ?2",
	[Q_KV_GET] = "SELECT val FROM kv WHERE host = ?1 AND user = ?2 AND kind = ?3 AND name = ?4",
	[Q_KV_PUT] = "INSERT INTO kv (host, user, kind, name, val) VALUES (?1, ?2, ?3, ?4, ?5)"
		" ON CONFLICT (host, user, kind, name) DO UPDATE SET val = excluded.val",
	[Q_KV_DEL] = "DELETE FROM kv WHERE host = ?1 AND user = ?2 AND kind = ?3 AND name = ?4",
	[Q_KV_DELETE_ALL] = "DELETE FROM kv WHERE host = ?1 AND user = ?2",
	[Q_SESS_PUT] = "INSERT INTO sessions (sid, host, user, resource, sm, h_in, expires,"
		" in_base, out_base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
		" ON CONFLICT (sid) DO UPDATE SET host = excluded.host, user = excluded.user,"
		" resource = excluded.resource, sm = excluded.sm, h_in = excluded.h_in,"
		" expires = excluded.expires, in_base = excluded.in_base,"
		" out_base = excluded.out_base",
	[Q_SESS_SET_H] = "UPDATE sessions SET h_in = ?2 WHERE sid = ?1",
	[Q_SESS_SET_EXPIRY] = "UPDATE sessions SET expires = ?2 WHERE sid = ?1",
	[Q_SESS_DEL] = "DELETE FROM sessions WHERE sid = ?1",
	[Q_SESS_GET] = "SELECT sid, host, user, resource, sm, h_in, expires, in_base, out_base"
		" FROM sessions"
		" WHERE sid = ?1",
	[Q_SESS_LIST] = "SELECT sid, host, user, resource, sm, h_in, expires, in_base, out_base"
		" FROM sessions"
		" ORDER BY sid",
	[Q_SESS_DELETE_ALL] = "DELETE FROM sessions WHERE host = ?1 AND user = ?2",
	[Q_OUTQ_APPEND] = "INSERT INTO outq (sid, seq, xml) VALUES (?1, ?2, ?3)",
	[Q_OUTQ_ACK] = "DELETE FROM outq WHERE sid = ?1 AND seq <= ?2",
	[Q_OUTQ_LIST] = "SELECT seq, xml FROM outq WHERE sid = ?1 AND seq > ?2 ORDER BY seq",
	[Q_OUTQ_DEL] = "DELETE FROM outq WHERE sid = ?1",
	[Q_OUTQ_DELETE_ALL] = "DELETE FROM outq WHERE sid IN"
		" (SELECT sid FROM sessions WHERE host = ?1 AND user = ?2)",
	[Q_S2S_LINK_GET] = "SELECT epoch FROM s2s_link WHERE local = ?1 AND remote = ?2",
	[Q_S2S_LINK_INSERT] = "INSERT INTO s2s_link (local, remote, epoch) VALUES (?1, ?2, ?3)",
	[Q_S2S_PUSH] = "INSERT INTO s2s_queue (local, remote, seq, created, xml)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_S2S_LIST] = "SELECT seq, created, xml FROM s2s_queue"
		" WHERE local = ?1 AND remote = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
	[Q_S2S_ACK] = "DELETE FROM s2s_queue WHERE local = ?1 AND remote = ?2 AND seq <= ?3",
	[Q_S2S_DROP] = "DELETE FROM s2s_queue WHERE local = ?1 AND remote = ?2",
	/* Every link, with or without rows (LEFT JOIN).  "oldest" is the created stamp of
	 * the first row by seq, as pv_store.h promises (not min(created): a wall clock may
	 * step back); the subquery is one primary-key probe per link. */
	[Q_S2S_QUEUES] = "SELECT l.local, l.remote, l.epoch, count(q.seq), ifnull(min(q.seq), 0),"
		" max(l.last_seq, ifnull(max(q.seq), 0)), ifnull((SELECT f.created FROM s2s_queue f"
		" WHERE f.local = l.local AND f.remote = l.remote ORDER BY f.seq LIMIT 1), 0)"
		" FROM s2s_link l LEFT JOIN s2s_queue q ON q.local = l.local AND q.remote = l.remote"
		" GROUP BY l.local, l.remote ORDER BY l.local, l.remote",
	[Q_S2S_LAST_SEQ] = "UPDATE s2s_link SET last_seq = max(last_seq, ?3)"
		" WHERE local = ?1 AND remote = ?2",
	[Q_S2S_HWM_GET] = "SELECT epoch, hwm FROM s2s_hwm WHERE local = ?1 AND remote = ?2",
	[Q_S2S_HWM_SET] = "INSERT INTO s2s_hwm (local, remote, epoch, hwm) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (local, remote) DO UPDATE SET epoch = excluded.epoch, hwm = excluded.hwm",
	[Q_CPOL_GET] = "SELECT policy FROM consent_policy WHERE host = ?1 AND user = ?2",
	[Q_CPOL_SET] = "INSERT INTO consent_policy (host, user, policy) VALUES (?1, ?2, ?3)"
		" ON CONFLICT (host, user) DO UPDATE SET policy = excluded.policy",
	[Q_CPOL_DELETE_ALL] = "DELETE FROM consent_policy WHERE host = ?1 AND user = ?2",
	[Q_CPROV_LIST] = "SELECT domain, kind FROM consent_provider WHERE host = ?1 AND user = ?2"
		" ORDER BY domain",
	[Q_CPROV_SET] = "INSERT INTO consent_provider (host, user, domain, kind)"
		" VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (host, user, domain) DO UPDATE SET kind = excluded.kind",
	[Q_CPROV_DEL] = "DELETE FROM consent_provider WHERE host = ?1 AND user = ?2 AND domain = ?3",
	[Q_CPROV_DELETE_ALL] = "DELETE FROM consent_provider WHERE host = ?1 AND user = ?2",
	[Q_CSEND_LIST] = "SELECT jid, kind FROM consent_sender WHERE host = ?1 AND user = ?2"
		" ORDER BY jid",
	[Q_CSEND_SET] = "INSERT INTO consent_sender (host, user, jid, kind) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (host, user, jid) DO UPDATE SET kind = excluded.kind",
	[Q_CSEND_DEL] = "DELETE FROM consent_sender WHERE host = ?1 AND user = ?2 AND jid = ?3",
	[Q_CSEND_DELETE_ALL] = "DELETE FROM consent_sender WHERE host = ?1 AND user = ?2",
	[Q_CLOG_HEAD] = "SELECT seq, hash FROM consent_log WHERE host = ?1 AND user = ?2"
		" ORDER BY seq DESC LIMIT 1",
	[Q_CLOG_INSERT] = "INSERT INTO consent_log (host, user, seq, stamp, action, prev, hash)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[Q_CLOG_LIST] = "SELECT seq, stamp, action, prev, hash FROM consent_log"
		" WHERE host = ?1 AND user = ?2 AND seq > ?3 ORDER BY seq",
	/* Allowed by the consent_log_no_delete trigger only once the users row is gone:
	 * run_user_delete runs it after Q_USER_DELETE. */
	[Q_CLOG_DELETE_ALL] = "DELETE FROM consent_log WHERE host = ?1 AND user = ?2",
	[Q_CEVID_INSERT] = "INSERT INTO consent_evidence (host, user, stanza_id, sender, entry_seq,"
		" stamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_CEVID_GET] = "SELECT sender, entry_seq, stamp FROM consent_evidence"
		" WHERE host = ?1 AND user = ?2 AND stanza_id = ?3 ORDER BY id DESC LIMIT 1",
	[Q_CEVID_DELETE_ALL] = "DELETE FROM consent_evidence WHERE host = ?1 AND user = ?2",
	[Q_REQ_HOLD] = "INSERT INTO consent_request (host, user, sender, stamp, xml)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	/* One line per sender; first/last are the stamps of the first and last row by id
	 * (arrival order), not min/max(stamp): a wall clock may step back. */
	[Q_REQ_LIST] = "WITH g AS (SELECT sender, count(*) AS n, sum(length(xml)) AS b,"
		" min(id) AS f, max(id) AS l FROM consent_request WHERE host = ?1 AND user = ?2"
		" GROUP BY sender)"
		" SELECT g.sender, g.n, g.b, a.stamp, z.stamp FROM g"
		" JOIN consent_request a ON a.id = g.f JOIN consent_request z ON z.id = g.l"
		" ORDER BY g.f",
	[Q_REQ_INFO] = "WITH g AS (SELECT count(*) AS n, sum(length(xml)) AS b,"
		" min(id) AS f, max(id) AS l FROM consent_request"
		" WHERE host = ?1 AND user = ?2 AND sender = ?3)"
		" SELECT ?3, g.n, g.b, a.stamp, z.stamp FROM g"
		" JOIN consent_request a ON a.id = g.f JOIN consent_request z ON z.id = g.l",
	[Q_REQ_GET] = "SELECT id, stamp, xml FROM consent_request"
		" WHERE host = ?1 AND user = ?2 AND sender = ?3 ORDER BY id",
	[Q_REQ_COUNT] = "SELECT count(DISTINCT sender) FROM consent_request"
		" WHERE host = ?1 AND user = ?2",
	[Q_REQ_DROP] = "DELETE FROM consent_request WHERE host = ?1 AND user = ?2 AND sender = ?3",
	[Q_REQ_DELETE_ALL] = "DELETE FROM consent_request WHERE host = ?1 AND user = ?2",
	[Q_REPORT_ADD] = "INSERT INTO abuse_report (host, user, sender, stamp, reason, text,"
		" evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[Q_REPORT_LIST_HOST] = "SELECT id, stamp, host, user, sender, reason, text, evidence"
		" FROM abuse_report WHERE host = ?1 AND id > ?2 ORDER BY id",
	[Q_REPORT_LIST_ALL] = "SELECT id, stamp, host, user, sender, reason, text, evidence"
		" FROM abuse_report WHERE id > ?2 ORDER BY id",
	[Q_BLOCK_LIST] = "SELECT jid FROM blocklist WHERE host = ?1 AND user = ?2 ORDER BY jid",
	[Q_BLOCK_USERS] = "SELECT DISTINCT user FROM blocklist WHERE host = ?1",
	[Q_BLOCK_ADD] = "INSERT INTO blocklist (host, user, jid) VALUES (?1, ?2, ?3)"
		" ON CONFLICT (host, user, jid) DO NOTHING",
	[Q_BLOCK_DEL] = "DELETE FROM blocklist WHERE host = ?1 AND user = ?2 AND jid = ?3",
	[Q_BLOCK_CLEAR] = "DELETE FROM blocklist WHERE host = ?1 AND user = ?2",
	/* phone numbers (issue 6; 004_phone.sql) */
	[Q_PHONE_OF_USER] = "SELECT user, e164, findable, preferred, updated_ms FROM phone"
		" WHERE host = ?1 AND user = ?2",
	[Q_PHONE_BY_NUMBER] = "SELECT user, e164, findable, preferred, updated_ms FROM phone"
		" WHERE host = ?1 AND e164 = ?3",
	[Q_PHONE_INSERT] = "INSERT INTO phone (host, user, e164, updated_ms) VALUES (?1, ?2, ?3, ?4)",
	/* Attach or change in one statement: the old number is released only together
	 * with storing the new one (the unique index refuses a taken number). */
	[Q_PHONE_SET] = "INSERT INTO phone (host, user, e164, updated_ms) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (host, user) DO UPDATE SET e164 = excluded.e164,"
		" updated_ms = excluded.updated_ms",
	[Q_PHONE_FLAGS] = "UPDATE phone SET findable = ?3, preferred = ?4, updated_ms = ?5"
		" WHERE host = ?1 AND user = ?2",
	[Q_PHONE_DELETE_ALL] = "DELETE FROM phone WHERE host = ?1 AND user = ?2",
	[Q_PHONE_GONE_SAVE] = "INSERT OR REPLACE INTO phone_gone (host, user, e164)"
		" SELECT host, user, e164 FROM phone WHERE host = ?1 AND user = ?2",
	[Q_PHONE_GONE_GET] = "SELECT e164 FROM phone_gone WHERE host = ?1 AND user = ?2",
	[Q_PHONE_GONE_DEL] = "DELETE FROM phone_gone WHERE host = ?1 AND user = ?2",
	[Q_PHONE_SEND_PRUNE] = "DELETE FROM phone_send WHERE host = ?1 AND window_ms <= ?2",
	[Q_PHONE_SEND_GET] = "SELECT window_ms, count FROM phone_send WHERE host = ?1 AND e164 = ?3",
	[Q_PHONE_SEND_SET] = "INSERT INTO phone_send (host, e164, window_ms, count)"
		" VALUES (?1, ?3, ?4, ?5) ON CONFLICT (host, e164) DO UPDATE SET"
		" window_ms = excluded.window_ms, count = excluded.count",
	[Q_PHONE_CODE_PRUNE] = "DELETE FROM phone_code WHERE host = ?1 AND expires_ms <= ?2",
	[Q_PHONE_CODE_PUT] = "INSERT OR REPLACE INTO phone_code (host, e164, hash, expires_ms, attempts)"
		" VALUES (?1, ?3, ?4, ?5, 0)",
	[Q_PHONE_CODE_GET] = "SELECT hash, expires_ms, attempts FROM phone_code"
		" WHERE host = ?1 AND e164 = ?3",
	[Q_PHONE_CODE_DEL] = "DELETE FROM phone_code WHERE host = ?1 AND e164 = ?3",
	[Q_PHONE_CODE_FAIL] = "UPDATE phone_code SET attempts = attempts + 1"
		" WHERE host = ?1 AND e164 = ?3",
	/* exchange registry and discovery (issue 6, D): ?1 host, ?2 blinded, ?3 jid */
	[Q_REG_NEWER] = "SELECT 1 FROM registry WHERE host = ?1 AND jid = ?3 AND updated_ms > ?4",
	[Q_REG_DEL_OTHER] = "DELETE FROM registry WHERE host = ?1 AND jid = ?3 AND blinded <> ?2",
	/* A change older than the stored one (same account) is not applied. */
	[Q_REG_PUT] = "INSERT INTO registry (host, blinded, jid, provider, preferred, updated_ms)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (host, blinded, jid) DO UPDATE SET"
		" preferred = excluded.preferred, updated_ms = excluded.updated_ms"
		" WHERE excluded.updated_ms >= registry.updated_ms",
	[Q_REG_DEL] = "DELETE FROM registry WHERE host = ?1 AND jid = ?3 AND (?2 IS NULL OR blinded = ?2)",
	[Q_REG_LOOKUP] = "SELECT jid, preferred, updated_ms FROM registry WHERE host = ?1 AND blinded = ?2"
		" ORDER BY preferred DESC, updated_ms DESC, jid",
	[Q_REG_COUNT] = "SELECT count(*) FROM registry WHERE host = ?1",
	[Q_BLIND_KEY_GET] = "SELECT key_id FROM phone_blind_key WHERE host = ?1",
	[Q_BLIND_KEY_SET] = "INSERT OR REPLACE INTO phone_blind_key (host, key_id) VALUES (?1, ?2)",
	[Q_BLIND_CLEAR] = "DELETE FROM phone_blind WHERE host = ?1",
	[Q_BLIND_PRUNE] = "DELETE FROM phone_blind WHERE host = ?1 AND e164 NOT IN"
		" (SELECT e164 FROM phone WHERE host = ?1 AND findable = 1)",
	[Q_BLIND_MISSING] = "SELECT e164 FROM phone WHERE host = ?1 AND findable = 1 AND e164 NOT IN"
		" (SELECT e164 FROM phone_blind WHERE host = ?1) ORDER BY e164",
	/* OR REPLACE: a number's old row (unique by number) goes with it */
	[Q_BLIND_PUT] = "INSERT OR REPLACE INTO phone_blind (host, blinded, e164) VALUES (?1, ?2, ?3)",
	[Q_BLIND_DEL] = "DELETE FROM phone_blind WHERE host = ?1 AND e164 = ?2",
	[Q_BLIND_LOOKUP] = "SELECT e164 FROM phone_blind WHERE host = ?1 AND blinded = ?2",
};

/* ---- operations ---- */
typedef struct pv_op pv_op;
typedef int (*op_run_fn)(pv_store *st, pv_op *op);

/* Which rows an operation touches, for read_here: a write names the kinds it may
 * change, a read the kinds it reads (kinds_of; q() checks both).  K_ALL is the safe
 * default: an unmarked write holds back every read, an unmarked read waits for every
 * write.  The kinds are the reads that a busy loop must not wait for. */
enum {
	K_ACCOUNTS = 1,              /* users, creds */
	K_BLOCK = 2,                 /* blocklist */
	K_CONSENT = 4,               /* consent_policy, consent_provider, consent_sender */
	K_ROSTER = 8,                /* roster, roster_groups, roster_version */
	K_OFFLINE = 16,              /* offline */
	K_OTHER = 32,                /* every other table */
	K_ALL = 63,
	K_N = 6
};

/* One result row of a list read; which fields mean what depends on the read. */
typedef struct op_row {
	int64_t a, b;
	char *s;
	size_t len;
} op_row;

struct pv_op {
	pv_op *next;
	op_run_fn run;          /* NULL: a flush marker */
	bool write;
	bool glue;                   /* in one transaction with the next op (pv_store_batch_*) */
	bool sync;              /* a caller waits on sem */
	unsigned char kinds;    /* K_*: what it touches (kinds_of) */
	int rc;
	pv_store_done_fn done;
	void *ud;
	sem_t sem;
	/* input, owned (copied); s2s operations put local/remote into host/user */
	char *host, *user, *s1, *s2;
	char *data;
	size_t dlen;
	int64_t n1, n2;
	pv_scram_cred *creds;
	size_t ncreds;
	pv_roster_item *item;
	pv_store_sess *sess;
	/* output, owned until moved to the caller */
	op_row *rows;
	size_t nrows, caprows;
	pv_roster_item *items;
	size_t nitems, capitems;
	pv_store_sess *sessv;
	size_t nsess, capsess;
	pv_store_s2s_queue *queues;
	size_t nqueues, capqueues;
	pv_scram_cred cred;
	pv_report *report;           /* input of report_add */
	pv_consent consent;          /* output of consent_get */
	size_t capproviders, capsenders;
	pv_consent_entry *entries;
	size_t nentries, capentries;
	pv_request_info *reqs;
	size_t nreqs, capreqs;
	pv_report *reports;
	size_t nreports, capreports;
	/* phone numbers (issue 6) */
	int64_t n3;                  /* a third number input */
	pv_phone_rec phone;          /* output of the phone reads */
};

struct pv_store {
	sqlite3 *db;                 /* storage thread only (after open) */
	sqlite3_stmt *stmt[Q__N];
	uv_loop_t *loop;
	uv_async_t *async;           /* heap: it must outlive the store until its close cb */
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu;          /* guards head/tail, stop, stats */
	pthread_cond_t cv;
	pv_op *head, *tail;
	size_t nsync;                /* queued operations whose callers are blocked on them */
	uint64_t batch_us;           /* when the last batch was taken (mono_us) */
	bool stop;
	pv_store_stats stats;

	pthread_mutex_t done_mu;     /* guards the finished-writes list */
	pv_op *done_head, *done_tail;

	bool staging;                /* loop thread: inside pv_store_batch_begin/end */
	pv_op *stage_head, *stage_tail;

	/* Reads on the loop thread's own connection (see call()).  `reader` is a second
	 * pv_store of which only db, stmt and running are used; unsettled[k] counts the
	 * writes of kind 1 << k queued (or staged) and not yet committed or failed, from any
	 * thread. */
	pv_store *reader;
	pthread_t loop_thread;
	_Atomic size_t unsettled[K_N];
	const pv_op *running;        /* the operation being run on this connection (q()) */
};

static void sess_free_fields(pv_store_sess *s)
{
	pv_free(s->sid);
	pv_free(s->host);
	pv_free(s->user);
	pv_free(s->resource);
	memset(s, 0, sizeof *s);
}

static void report_fini(pv_report *r)
{
	pv_free(r->host);
	pv_free(r->user);
	pv_free(r->sender);
	pv_free(r->reason);
	pv_free(r->text);
	pv_free(r->evidence);
}

static void op_free(pv_op *op)
{
	if (!op)
		return;
	pv_free(op->host);
	pv_free(op->user);
	pv_free(op->s1);
	pv_free(op->s2);
	pv_free(op->data);
	pv_free(op->creds);
	if (op->item)
		pv_roster_items_free(op->item, 1);
	if (op->sess) {
		sess_free_fields(op->sess);
		pv_free(op->sess);
	}
	for (size_t i = 0; i < op->nrows; i++)
		pv_free(op->rows[i].s);
	pv_free(op->rows);
	pv_roster_items_free(op->items, op->nitems);
	for (size_t i = 0; i < op->nsess; i++)
		sess_free_fields(&op->sessv[i]);
	pv_free(op->sessv);
	for (size_t i = 0; i < op->nqueues; i++) {
		pv_free(op->queues[i].local);
		pv_free(op->queues[i].remote);
		pv_free(op->queues[i].epoch);
	}
	pv_free(op->queues);
	if (op->report) {
		report_fini(op->report);
		pv_free(op->report);
	}
	pv_consent_fini(&op->consent);
	for (size_t i = 0; i < op->nentries; i++)
		pv_free(op->entries[i].action);
	pv_free(op->entries);
	for (size_t i = 0; i < op->nreqs; i++)
		pv_request_info_fini(&op->reqs[i]);
	pv_free(op->reqs);
	for (size_t i = 0; i < op->nreports; i++)
		report_fini(&op->reports[i]);
	pv_free(op->reports);
	pv_phone_rec_fini(&op->phone);
	pv_free(op);
}

/* Exactly n bytes plus a NUL (wire data carries its length; it is not cut at a NUL). */
static char *bytes_dup(const char *p, size_t n)
{
	char *d = pv_malloc(n + 1);
	if (n)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

static unsigned kinds_of(op_run_fn run);

static pv_op *op_new(op_run_fn run, bool write, const char *host, const char *user)
{
	pv_op *op = pv_calloc(1, sizeof *op);
	op->run = run;
	op->write = write;
	op->kinds = (unsigned char)kinds_of(run);
	op->host = pv_strdup(host);
	op->user = pv_strdup(user);
	return op;
}

/* ---- SQLite helpers (storage thread) ---- */

/* Maps an SQLite error to PV_*; unexpected ones are logged (no values: they may be
 * message bodies). */
static int sqlerr(pv_store *st, int rc, int qid)
{
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return PV_EEXIST;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return PV_EINVAL;
	pv_error(SUB, "sqlite error query=%d rc=%d err=\"%s\"", qid, rc, sqlite3_errmsg(st->db));
	return PV_EIO;
}

/* The kind of rows a statement touches (see K_*). */
static unsigned kind_of(int qid)
{
	switch (qid) {
	case Q_USER_INSERT: case Q_USER_EXISTS: case Q_USER_LIST: case Q_USER_DELETE:
	case Q_CRED_INSERT: case Q_CRED_GET: case Q_CRED_DELETE_ALL:
		return K_ACCOUNTS;
	case Q_BLOCK_LIST: case Q_BLOCK_USERS: case Q_BLOCK_ADD: case Q_BLOCK_DEL:
	case Q_BLOCK_CLEAR:
		return K_BLOCK;
	case Q_CPOL_GET: case Q_CPOL_SET: case Q_CPOL_DELETE_ALL: case Q_CPROV_LIST:
	case Q_CPROV_SET: case Q_CPROV_DEL: case Q_CPROV_DELETE_ALL: case Q_CSEND_LIST:
	case Q_CSEND_SET: case Q_CSEND_DEL: case Q_CSEND_DELETE_ALL:
		return K_CONSENT;
	case Q_ROSTER_ITEMS: case Q_ROSTER_GROUPS: case Q_ROSTER_VER_GET: case Q_ROSTER_VER_SET:
	case Q_ROSTER_VER_DELETE: case Q_ROSTER_UPSERT: case Q_ROSTER_DEL:
	case Q_ROSTER_DELETE_ALL: case Q_GROUPS_DEL: case Q_GROUPS_INSERT:
	case Q_GROUPS_DELETE_ALL:
		return K_ROSTER;
	case Q_OFFLINE_PUSH: case Q_OFFLINE_LIST: case Q_OFFLINE_DELETE: case Q_OFFLINE_COUNT:
	case Q_OFFLINE_DELETE_ALL:
		return K_OFFLINE;
	default:
		return K_OTHER;
	}
}

/* A cached statement, reset and with its bindings cleared, ready to bind. */
static sqlite3_stmt *q(pv_store *st, int qid)
{
	sqlite3_stmt *s = st->stmt[qid];
	/* A write changes only rows of its kinds, a read reads only its kinds; otherwise
	 * read_here could answer from before a write still queued. */
	const pv_op *op = st->running;
	PV_ASSERT(!op || (kind_of(qid) & op->kinds) || (op->write && sqlite3_stmt_readonly(s)));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static void bind_str(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

static void bind_hu(sqlite3_stmt *s, const pv_op *op)
{
	bind_str(s, 1, op->host);
	bind_str(s, 2, op->user);
}

/* Runs a statement that returns no rows.  0, PV_EEXIST, PV_EINVAL or PV_EIO. */
static int exec_q(pv_store *st, int qid, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_DONE ? 0 : sqlerr(st, rc, qid);
	sqlite3_reset(s);
	return ret;
}

static int exec_plain(pv_store *st, int qid)
{
	return exec_q(st, qid, q(st, qid));
}

/* Copy of a text/blob column, NUL-terminated; NULL for SQL NULL. */
static char *col_dup(sqlite3_stmt *s, int i, size_t *len)
{
	if (sqlite3_column_type(s, i) == SQLITE_NULL) {
		if (len)
			*len = 0;
		return NULL;
	}
	const void *p = sqlite3_column_blob(s, i);
	size_t n = (size_t)sqlite3_column_bytes(s, i);
	char *r = pv_malloc(n + 1);
	if (n)
		memcpy(r, p, n);
	r[n] = '\0';
	if (len)
		*len = n;
	return r;
}

/* Makes room for one more element in a growable output array (arr, n, cap). */
#define GROW(arr, n, cap) \
	do { \
		if ((n) == (cap)) { \
			(cap) = (cap) ? (cap) * 2 : 16; \
			(arr) = pv_realloc((arr), (cap) * sizeof *(arr)); \
		} \
	} while (0)

static op_row *row_add(pv_op *op)
{
	if (op->nrows == op->caprows) {
		op->caprows = op->caprows ? op->caprows * 2 : 16;
		op->rows = pv_realloc(op->rows, op->caprows * sizeof *op->rows);
	}
	op_row *r = &op->rows[op->nrows++];
	memset(r, 0, sizeof *r);
	return r;
}

/* Steps a row-returning statement to its end; each row goes through fn.  Returns the
 * number of rows or <0. */
static int each_row(pv_store *st, int qid, sqlite3_stmt *s, pv_op *op,
	void (*fn)(pv_op *op, sqlite3_stmt *s))
{
	int rc, n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		fn(op, s);
		n++;
	}
	int ret = rc == SQLITE_DONE ? n : sqlerr(st, rc, qid);
	sqlite3_reset(s);
	return ret;
}

/* 1 if the statement yields a row, 0 if not, <0 on error. */
static int has_row(pv_store *st, int qid, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sqlerr(st, rc, qid);
	sqlite3_reset(s);
	return ret;
}

/* ---- accounts (storage thread) ---- */

static int put_creds(pv_store *st, pv_op *op)
{
	for (size_t i = 0; i < op->ncreds; i++) {
		const pv_scram_cred *c = &op->creds[i];
		sqlite3_stmt *s = q(st, Q_CRED_INSERT);
		bind_hu(s, op);
		bind_str(s, 3, c->mech);
		sqlite3_bind_blob(s, 4, c->salt, (int)c->salt_len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, c->iterations);
		sqlite3_bind_blob(s, 6, c->stored_key, (int)c->key_len, SQLITE_STATIC);
		sqlite3_bind_blob(s, 7, c->server_key, (int)c->key_len, SQLITE_STATIC);
		int rc = exec_q(st, Q_CRED_INSERT, s);
		if (rc == PV_EEXIST)
			return PV_EINVAL; /* the same mechanism twice in one call */
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int user_exists_q(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_USER_EXISTS);
	bind_hu(s, op);
	return has_row(st, Q_USER_EXISTS, s);
}

static int run_user_create(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_USER_INSERT);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	int rc = exec_q(st, Q_USER_INSERT, s);
	if (rc < 0)
		return rc;
	return put_creds(st, op);
}

static int run_user_set_creds(pv_store *st, pv_op *op)
{
	int rc = user_exists_q(st, op);
	if (rc <= 0)
		return rc < 0 ? rc : PV_ENOENT;
	sqlite3_stmt *s = q(st, Q_CRED_DELETE_ALL);
	bind_hu(s, op);
	if ((rc = exec_q(st, Q_CRED_DELETE_ALL, s)) < 0)
		return rc;
	return put_creds(st, op);
}

static int run_user_delete(pv_store *st, pv_op *op)
{
	/* Children first: outq rows are found through the user's sessions. */
	/* The consent log last: its trigger allows the DELETE only once the users row is
	 * gone.  Abuse reports the user filed stay (pv_store.h).  The phone number is
	 * copied to phone_gone before its row goes, so mod_phone can announce the release
	 * (pv_store_phone_gone_take). */
	static const int order[] = {
		Q_OUTQ_DELETE_ALL, Q_SESS_DELETE_ALL, Q_KV_DELETE_ALL, Q_OFFLINE_DELETE_ALL,
		Q_GROUPS_DELETE_ALL, Q_ROSTER_DELETE_ALL, Q_ROSTER_VER_DELETE, Q_CRED_DELETE_ALL,
		Q_CPOL_DELETE_ALL, Q_CPROV_DELETE_ALL, Q_CSEND_DELETE_ALL, Q_CEVID_DELETE_ALL,
		Q_REQ_DELETE_ALL, Q_BLOCK_CLEAR, Q_PHONE_GONE_SAVE, Q_PHONE_DELETE_ALL,
		Q_USER_DELETE, Q_CLOG_DELETE_ALL,
	};
	int rc = user_exists_q(st, op);
	if (rc <= 0)
		return rc < 0 ? rc : PV_ENOENT;
	for (size_t i = 0; i < PV_ARRAY_LEN(order); i++) {
		sqlite3_stmt *s = q(st, order[i]);
		bind_hu(s, op);
		if ((rc = exec_q(st, order[i], s)) < 0)
			return rc;
	}
	return 0;
}

static int run_user_exists(pv_store *st, pv_op *op)
{
	return user_exists_q(st, op);
}

static void row_user(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->s = col_dup(s, 0, &r->len);
}

static int run_user_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_USER_LIST);
	bind_str(s, 1, op->host);
	return each_row(st, Q_USER_LIST, s, op, row_user);
}

static int copy_blob(sqlite3_stmt *s, int i, unsigned char *dst, size_t cap, size_t *len)
{
	size_t n = (size_t)sqlite3_column_bytes(s, i);
	const void *p = sqlite3_column_blob(s, i);
	if (n > cap)
		return PV_EIO;
	if (n)
		memcpy(dst, p, n);
	*len = n;
	return 0;
}

static int run_user_get_cred(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CRED_GET);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_DONE) {
		ret = PV_ENOENT;
	} else if (rc != SQLITE_ROW) {
		ret = sqlerr(st, rc, Q_CRED_GET);
	} else {
		pv_scram_cred *c = &op->cred;
		size_t klen2 = 0;
		snprintf(c->mech, sizeof c->mech, "%s", op->s1);
		int64_t iter = sqlite3_column_int64(s, 1);
		if (copy_blob(s, 0, c->salt, sizeof c->salt, &c->salt_len) < 0
			|| copy_blob(s, 2, c->stored_key, sizeof c->stored_key, &c->key_len) < 0
			|| copy_blob(s, 3, c->server_key, sizeof c->server_key, &klen2) < 0
			|| klen2 != c->key_len || iter <= 0 || iter > UINT32_MAX) {
			pv_error(SUB, "corrupt credential row mech=%s", op->s1);
			ret = PV_EIO;
		}
		c->iterations = (uint32_t)iter;
	}
	sqlite3_reset(s);
	return ret;
}

/* ---- roster (storage thread) ---- */

static int set_roster_ver(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_ROSTER_VER_SET);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return exec_q(st, Q_ROSTER_VER_SET, s);
}

static int del_groups(pv_store *st, pv_op *op, const char *jid)
{
	sqlite3_stmt *s = q(st, Q_GROUPS_DEL);
	bind_hu(s, op);
	bind_str(s, 3, jid);
	return exec_q(st, Q_GROUPS_DEL, s);
}

static int run_roster_put(pv_store *st, pv_op *op)
{
	const pv_roster_item *it = op->item;
	sqlite3_stmt *s = q(st, Q_ROSTER_UPSERT);
	bind_hu(s, op);
	bind_str(s, 3, it->jid);
	bind_str(s, 4, it->name);
	sqlite3_bind_int(s, 5, (int)it->sub);
	sqlite3_bind_int(s, 6, it->ask);
	sqlite3_bind_int(s, 7, it->approved);
	sqlite3_bind_int(s, 8, it->in_roster);
	bind_str(s, 9, it->pending_in);
	int rc = exec_q(st, Q_ROSTER_UPSERT, s);
	if (rc < 0 || (rc = del_groups(st, op, it->jid)) < 0)
		return rc;
	for (size_t i = 0; i < it->ngroups; i++) {
		s = q(st, Q_GROUPS_INSERT);
		bind_hu(s, op);
		bind_str(s, 3, it->jid);
		sqlite3_bind_int64(s, 4, (int64_t)i);
		bind_str(s, 5, it->groups[i]);
		if ((rc = exec_q(st, Q_GROUPS_INSERT, s)) < 0)
			return rc;
	}
	return set_roster_ver(st, op);
}

static int run_roster_del(pv_store *st, pv_op *op)
{
	int rc = del_groups(st, op, op->s1);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = q(st, Q_ROSTER_DEL);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	if ((rc = exec_q(st, Q_ROSTER_DEL, s)) < 0)
		return rc;
	return set_roster_ver(st, op);
}

static void row_roster_item(pv_op *op, sqlite3_stmt *s)
{
	if (op->nitems == op->capitems) {
		op->capitems = op->capitems ? op->capitems * 2 : 16;
		op->items = pv_realloc(op->items, op->capitems * sizeof *op->items);
	}
	pv_roster_item *it = &op->items[op->nitems++];
	memset(it, 0, sizeof *it);
	it->jid = col_dup(s, 0, NULL);
	it->name = col_dup(s, 1, NULL);
	int sub = sqlite3_column_int(s, 2);
	it->sub = sub >= PV_SUB_NONE && sub <= PV_SUB_BOTH ? (pv_sub)sub : PV_SUB_NONE;
	it->ask = sqlite3_column_int(s, 3) != 0;
	it->approved = sqlite3_column_int(s, 4) != 0;
	it->in_roster = sqlite3_column_int(s, 5) != 0;
	it->pending_in = col_dup(s, 6, NULL);
}

static int run_roster_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_ROSTER_ITEMS);
	bind_hu(s, op);
	int rc = each_row(st, Q_ROSTER_ITEMS, s, op, row_roster_item);
	if (rc < 0)
		return rc;

	/* Groups of all items in one pass: both lists are sorted by jid (BINARY order,
	 * which strcmp reproduces), so a single cursor into the items suffices. */
	s = q(st, Q_ROSTER_GROUPS);
	bind_hu(s, op);
	size_t i = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *jid = (const char *)sqlite3_column_text(s, 0);
		while (i < op->nitems && strcmp(op->items[i].jid, jid) < 0)
			i++;
		if (i == op->nitems || strcmp(op->items[i].jid, jid) != 0)
			continue; /* orphan group row (cannot happen with foreign keys on) */
		pv_roster_item *it = &op->items[i];
		it->groups = pv_realloc(it->groups, (it->ngroups + 1) * sizeof *it->groups);
		it->groups[it->ngroups++] = col_dup(s, 1, NULL);
	}
	int ret = rc == SQLITE_DONE ? 0 : sqlerr(st, rc, Q_ROSTER_GROUPS);
	sqlite3_reset(s);
	if (ret < 0)
		return ret;

	s = q(st, Q_ROSTER_VER_GET);
	bind_hu(s, op);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		op->n1 = sqlite3_column_int64(s, 0);
	else if (rc == SQLITE_DONE)
		op->n1 = 0;
	else
		ret = sqlerr(st, rc, Q_ROSTER_VER_GET);
	sqlite3_reset(s);
	return ret;
}

/* ---- offline (storage thread) ---- */

/* The number a count query over one user's rows (?1 host, ?2 user) gives. */
static int count_hu(pv_store *st, int qid, pv_op *op)
{
	sqlite3_stmt *s = q(st, qid);
	bind_hu(s, op);
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_ROW ? (int)sqlite3_column_int64(s, 0) : sqlerr(st, rc, qid);
	sqlite3_reset(s);
	return ret;
}

static int run_offline_count(pv_store *st, pv_op *op)
{
	return count_hu(st, Q_OFFLINE_COUNT, op);
}

static int run_offline_push(pv_store *st, pv_op *op)
{
	if (op->n2 >= 0) {
		int n = run_offline_count(st, op);
		if (n < 0)
			return n;
		if (n >= op->n2)
			return PV_ELIMIT;
	}
	sqlite3_stmt *s = q(st, Q_OFFLINE_PUSH);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	sqlite3_bind_text64(s, 4, op->data, op->dlen, SQLITE_STATIC, SQLITE_UTF8);
	return exec_q(st, Q_OFFLINE_PUSH, s);
}

static void row_offline(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->a = sqlite3_column_int64(s, 0);
	r->b = sqlite3_column_int64(s, 1);
	r->s = col_dup(s, 2, &r->len);
}

static int run_offline_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OFFLINE_LIST);
	bind_hu(s, op);
	return each_row(st, Q_OFFLINE_LIST, s, op, row_offline);
}

static int run_offline_delete(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OFFLINE_DELETE);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return exec_q(st, Q_OFFLINE_DELETE, s);
}

/* ---- kv (storage thread) ---- */

static int run_kv_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_KV_GET);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	bind_str(s, 4, op->s2);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_ROW) {
		op_row *r = row_add(op);
		r->s = col_dup(s, 0, &r->len);
		if (!r->s)
			r->s = pv_strdup("");
	} else {
		ret = rc == SQLITE_DONE ? PV_ENOENT : sqlerr(st, rc, Q_KV_GET);
	}
	sqlite3_reset(s);
	return ret;
}

static int run_kv_put(pv_store *st, pv_op *op)
{
	int qid = op->data ? Q_KV_PUT : Q_KV_DEL;
	sqlite3_stmt *s = q(st, qid);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	bind_str(s, 4, op->s2);
	if (op->data)
		sqlite3_bind_blob64(s, 5, op->data, op->dlen, SQLITE_STATIC);
	return exec_q(st, qid, s);
}

/* ---- sessions and outbound queue (storage thread) ---- */

static int run_sess_put(pv_store *st, pv_op *op)
{
	const pv_store_sess *ss = op->sess;
	sqlite3_stmt *s = q(st, Q_SESS_PUT);
	bind_str(s, 1, ss->sid);
	bind_str(s, 2, ss->host);
	bind_str(s, 3, ss->user);
	bind_str(s, 4, ss->resource);
	sqlite3_bind_int(s, 5, ss->sm);
	sqlite3_bind_int64(s, 6, (int64_t)ss->h_in);
	sqlite3_bind_int64(s, 7, ss->expires);
	sqlite3_bind_int64(s, 8, (int64_t)ss->in_base);
	sqlite3_bind_int64(s, 9, (int64_t)ss->out_base);
	return exec_q(st, Q_SESS_PUT, s);
}

static int update_sess(pv_store *st, pv_op *op, int qid)
{
	sqlite3_stmt *s = q(st, qid);
	bind_str(s, 1, op->s1);
	sqlite3_bind_int64(s, 2, op->n1);
	int rc = exec_q(st, qid, s);
	if (rc == 0 && sqlite3_changes(st->db) == 0)
		rc = PV_ENOENT;
	return rc;
}

static int run_sess_set_h(pv_store *st, pv_op *op)
{
	return update_sess(st, op, Q_SESS_SET_H);
}

static int run_sess_set_expiry(pv_store *st, pv_op *op)
{
	return update_sess(st, op, Q_SESS_SET_EXPIRY);
}

static int run_sess_del(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OUTQ_DEL);
	bind_str(s, 1, op->s1);
	int rc = exec_q(st, Q_OUTQ_DEL, s);
	if (rc < 0)
		return rc;
	s = q(st, Q_SESS_DEL);
	bind_str(s, 1, op->s1);
	return exec_q(st, Q_SESS_DEL, s);
}

static void row_sess(pv_op *op, sqlite3_stmt *s)
{
	if (op->nsess == op->capsess) {
		op->capsess = op->capsess ? op->capsess * 2 : 16;
		op->sessv = pv_realloc(op->sessv, op->capsess * sizeof *op->sessv);
	}
	pv_store_sess *ss = &op->sessv[op->nsess++];
	memset(ss, 0, sizeof *ss);
	ss->sid = col_dup(s, 0, NULL);
	ss->host = col_dup(s, 1, NULL);
	ss->user = col_dup(s, 2, NULL);
	ss->resource = col_dup(s, 3, NULL);
	ss->sm = sqlite3_column_int(s, 4) != 0;
	ss->h_in = (uint64_t)sqlite3_column_int64(s, 5);
	ss->expires = sqlite3_column_int64(s, 6);
	ss->in_base = (uint64_t)sqlite3_column_int64(s, 7);
	ss->out_base = (uint64_t)sqlite3_column_int64(s, 8);
}

static int run_sess_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_SESS_GET);
	bind_str(s, 1, op->s1);
	int rc = each_row(st, Q_SESS_GET, s, op, row_sess);
	return rc < 0 ? rc : rc == 0 ? PV_ENOENT : 0;
}

static int run_sess_list(pv_store *st, pv_op *op)
{
	return each_row(st, Q_SESS_LIST, q(st, Q_SESS_LIST), op, row_sess);
}

static int run_outq_append(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OUTQ_APPEND);
	bind_str(s, 1, op->s1);
	sqlite3_bind_int64(s, 2, op->n1);
	sqlite3_bind_text64(s, 3, op->data, op->dlen, SQLITE_STATIC, SQLITE_UTF8);
	return exec_q(st, Q_OUTQ_APPEND, s);
}

static int run_outq_ack(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OUTQ_ACK);
	bind_str(s, 1, op->s1);
	sqlite3_bind_int64(s, 2, op->n1);
	return exec_q(st, Q_OUTQ_ACK, s);
}

static void row_outq(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->a = sqlite3_column_int64(s, 0);
	r->s = col_dup(s, 1, &r->len);
}

static int run_outq_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_OUTQ_LIST);
	bind_str(s, 1, op->s1);
	sqlite3_bind_int64(s, 2, op->n1);
	return each_row(st, Q_OUTQ_LIST, s, op, row_outq);
}

/* ---- server-to-server links (storage thread) ---- */

/* The link's epoch, creating it if the link has none.  *out (if out) gets a copy. */
static int link_epoch(pv_store *st, pv_op *op, char **out)
{
	sqlite3_stmt *s = q(st, Q_S2S_LINK_GET);
	bind_hu(s, op);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_ROW) {
		if (out)
			*out = col_dup(s, 0, NULL);
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_DONE)
		ret = sqlerr(st, rc, Q_S2S_LINK_GET);
	sqlite3_reset(s);
	if (ret < 0)
		return ret;
	/* Made here, inside the write transaction, so two callers racing for a new link
	 * cannot end up with different epochs: the second one finds the first one's row. */
	char *e = pv_random_hex(EPOCH_BYTES);
	s = q(st, Q_S2S_LINK_INSERT);
	bind_hu(s, op);
	bind_str(s, 3, e);
	ret = exec_q(st, Q_S2S_LINK_INSERT, s);
	if (ret == 0 && out)
		*out = e;
	else
		pv_free(e);
	return ret;
}

static int run_s2s_epoch(pv_store *st, pv_op *op)
{
	op_row *r = row_add(op);
	return link_epoch(st, op, &r->s);
}

static int run_s2s_push(pv_store *st, pv_op *op)
{
	/* A link's first row gives it an epoch (pv_store.h), so pv_store_s2s_queues sees
	 * every link that holds rows even if the sender never asked for the epoch. */
	int rc = link_epoch(st, op, NULL);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = q(st, Q_S2S_PUSH);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	sqlite3_bind_int64(s, 4, op->n2);
	sqlite3_bind_blob64(s, 5, op->data, op->dlen, SQLITE_STATIC);
	rc = exec_q(st, Q_S2S_PUSH, s);
	if (rc < 0)
		return rc;
	s = q(st, Q_S2S_LAST_SEQ);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return exec_q(st, Q_S2S_LAST_SEQ, s);
}

static void row_s2s(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->a = sqlite3_column_int64(s, 0);
	r->b = sqlite3_column_int64(s, 1);
	r->s = col_dup(s, 2, &r->len);
}

static int run_s2s_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_S2S_LIST);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	sqlite3_bind_int64(s, 4, op->n2);
	return each_row(st, Q_S2S_LIST, s, op, row_s2s);
}

static int run_s2s_ack(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_S2S_ACK);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return exec_q(st, Q_S2S_ACK, s);
}

static int run_s2s_drop(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_S2S_DROP);
	bind_hu(s, op);
	return exec_q(st, Q_S2S_DROP, s);
}

static void row_s2s_queue(pv_op *op, sqlite3_stmt *s)
{
	if (op->nqueues == op->capqueues) {
		op->capqueues = op->capqueues ? op->capqueues * 2 : 16;
		op->queues = pv_realloc(op->queues, op->capqueues * sizeof *op->queues);
	}
	pv_store_s2s_queue *qu = &op->queues[op->nqueues++];
	memset(qu, 0, sizeof *qu);
	qu->local = col_dup(s, 0, NULL);
	qu->remote = col_dup(s, 1, NULL);
	qu->epoch = col_dup(s, 2, NULL);
	qu->count = (size_t)sqlite3_column_int64(s, 3);
	qu->first_seq = (uint64_t)sqlite3_column_int64(s, 4);
	qu->last_seq = (uint64_t)sqlite3_column_int64(s, 5);
	qu->oldest = sqlite3_column_int64(s, 6);
}

static int run_s2s_queues(pv_store *st, pv_op *op)
{
	return each_row(st, Q_S2S_QUEUES, q(st, Q_S2S_QUEUES), op, row_s2s_queue);
}

static int run_s2s_hwm_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_S2S_HWM_GET);
	bind_hu(s, op);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_ROW) {
		op_row *r = row_add(op);
		r->s = col_dup(s, 0, NULL);
		r->a = sqlite3_column_int64(s, 1);
	} else {
		ret = rc == SQLITE_DONE ? PV_ENOENT : sqlerr(st, rc, Q_S2S_HWM_GET);
	}
	sqlite3_reset(s);
	return ret;
}

static int run_s2s_hwm_set(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_S2S_HWM_SET);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	sqlite3_bind_int64(s, 4, op->n1);
	return exec_q(st, Q_S2S_HWM_SET, s);
}

/* ---- consent (storage thread, except chain_hash) ---- */

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define HASH_HEX 64

/* The chain hash of one log entry, as pv_store.h defines it, into out (64 lowercase hex
 * chars and a NUL).  prev is HASH_HEX chars.  Any thread (verification runs in the
 * caller's). */
static int chain_hash(const char *prev, uint64_t seq, int64_t stamp, const char *action,
	char out[HASH_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	char head[HASH_HEX + 48]; /* prev, two decimal 64-bit numbers, three newlines */
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int n = snprintf(head, sizeof head, "%s\n%" PRIu64 "\n%" PRId64 "\n", prev, seq, stamp);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && n > 0 && (size_t)n < sizeof head
		&& EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1
		&& EVP_DigestUpdate(ctx, head, (size_t)n) == 1
		&& EVP_DigestUpdate(ctx, action, strlen(action)) == 1
		&& EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen * 2 == HASH_HEX;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		pv_error(SUB, "SHA-256 of a consent log entry failed");
		return PV_EIO;
	}
	for (unsigned int i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[HASH_HEX] = '\0';
	return 0;
}

static void rule_add(pv_consent_rule **v, size_t *n, size_t *cap, sqlite3_stmt *s)
{
	GROW(*v, *n, *cap);
	pv_consent_rule *r = &(*v)[(*n)++];
	r->subject = col_dup(s, 0, NULL);
	r->kind = sqlite3_column_int(s, 1);
}

static void row_cprov(pv_op *op, sqlite3_stmt *s)
{
	rule_add(&op->consent.providers, &op->consent.nproviders, &op->capproviders, s);
}

static void row_csend(pv_op *op, sqlite3_stmt *s)
{
	rule_add(&op->consent.senders, &op->consent.nsenders, &op->capsenders, s);
}

static int run_consent_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CPOL_GET);
	bind_hu(s, op);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_ROW)
		op->consent.policy = (pv_consent_policy)sqlite3_column_int(s, 0); /* CHECKed */
	else if (rc != SQLITE_DONE)
		ret = sqlerr(st, rc, Q_CPOL_GET);
	sqlite3_reset(s);
	if (ret < 0)
		return ret;
	s = q(st, Q_CPROV_LIST);
	bind_hu(s, op);
	if ((ret = each_row(st, Q_CPROV_LIST, s, op, row_cprov)) < 0)
		return ret;
	s = q(st, Q_CSEND_LIST);
	bind_hu(s, op);
	ret = each_row(st, Q_CSEND_LIST, s, op, row_csend);
	return ret < 0 ? ret : 0;
}

static int run_consent_set_policy(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CPOL_SET);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return exec_q(st, Q_CPOL_SET, s);
}

/* A provider or sender rule: set (n1 >= 0) or remove (n1 < 0) the rule for op->s1. */
static int set_rule(pv_store *st, pv_op *op, int q_set, int q_del)
{
	int qid = op->n1 < 0 ? q_del : q_set;
	sqlite3_stmt *s = q(st, qid);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	if (op->n1 >= 0)
		sqlite3_bind_int64(s, 4, op->n1);
	return exec_q(st, qid, s);
}

static int run_consent_set_provider(pv_store *st, pv_op *op)
{
	return set_rule(st, op, Q_CPROV_SET, Q_CPROV_DEL);
}

static int run_consent_set_sender(pv_store *st, pv_op *op)
{
	return set_rule(st, op, Q_CSEND_SET, Q_CSEND_DEL);
}

static int run_consent_log(pv_store *st, pv_op *op)
{
	int rc = user_exists_q(st, op);
	if (rc <= 0)
		return rc < 0 ? rc : PV_ENOENT;
	/* The head is read inside the write transaction that appends after it: this thread
	 * is the only writer of the connection, and BEGIN IMMEDIATE holds the database's
	 * write lock against other processes, so no append can come in between (and the
	 * consent_log_extend trigger would refuse one that did). */
	uint64_t seq = 1;
	char prev[HASH_HEX + 1] = ZERO_HASH, hash[HASH_HEX + 1];
	sqlite3_stmt *s = q(st, Q_CLOG_HEAD);
	bind_hu(s, op);
	int ret = 0;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *h = sqlite3_column_text(s, 1);
		if (!h || sqlite3_column_bytes(s, 1) != HASH_HEX) {
			pv_error(SUB, "corrupt consent log head host=%s", op->host);
			ret = PV_EIO;
		} else {
			memcpy(prev, h, HASH_HEX);
			seq = (uint64_t)sqlite3_column_int64(s, 0) + 1;
		}
	} else if (rc != SQLITE_DONE) {
		ret = sqlerr(st, rc, Q_CLOG_HEAD);
	}
	sqlite3_reset(s);
	if (ret < 0 || (ret = chain_hash(prev, seq, op->n1, op->s1, hash)) < 0)
		return ret;
	s = q(st, Q_CLOG_INSERT);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, (int64_t)seq);
	sqlite3_bind_int64(s, 4, op->n1);
	bind_str(s, 5, op->s1);
	sqlite3_bind_text(s, 6, prev, HASH_HEX, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 7, hash, HASH_HEX, SQLITE_TRANSIENT);
	return exec_q(st, Q_CLOG_INSERT, s);
}

/* A stored hash column as 64 hex chars, or "" if it is not that long (corrupt: verify
 * then reports it rather than comparing a cut-down value). */
static void col_hash(sqlite3_stmt *s, int i, char out[HASH_HEX + 1])
{
	const unsigned char *t = sqlite3_column_text(s, i);
	out[0] = '\0';
	if (t && sqlite3_column_bytes(s, i) == HASH_HEX) {
		memcpy(out, t, HASH_HEX);
		out[HASH_HEX] = '\0';
	}
}

static void row_clog(pv_op *op, sqlite3_stmt *s)
{
	GROW(op->entries, op->nentries, op->capentries);
	pv_consent_entry *e = &op->entries[op->nentries++];
	memset(e, 0, sizeof *e);
	e->seq = (uint64_t)sqlite3_column_int64(s, 0);
	e->stamp = sqlite3_column_int64(s, 1);
	e->action = col_dup(s, 2, NULL);
	if (!e->action)
		e->action = pv_strdup("");
	col_hash(s, 3, e->prev);
	col_hash(s, 4, e->hash);
}

static int run_consent_log_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CLOG_LIST);
	bind_hu(s, op);
	sqlite3_bind_int64(s, 3, op->n1);
	return each_row(st, Q_CLOG_LIST, s, op, row_clog);
}

static int run_consent_log_head(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CLOG_HEAD);
	bind_hu(s, op);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_ROW)
		op->n2 = sqlite3_column_int64(s, 0);
	else if (rc == SQLITE_DONE)
		op->n2 = 0;
	else
		ret = sqlerr(st, rc, Q_CLOG_HEAD);
	sqlite3_reset(s);
	return ret;
}

static int run_consent_evidence(pv_store *st, pv_op *op)
{
	int64_t stamp = op->n2;
	int rc = run_consent_log_head(st, op); /* the head into n2 */
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = q(st, Q_CEVID_INSERT);
	bind_hu(s, op);
	bind_str(s, 3, op->s2);
	bind_str(s, 4, op->s1);
	sqlite3_bind_int64(s, 5, op->n2);
	sqlite3_bind_int64(s, 6, stamp);
	return exec_q(st, Q_CEVID_INSERT, s);
}

static void row_evidence(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->s = col_dup(s, 0, &r->len);
	r->a = sqlite3_column_int64(s, 1);
	r->b = sqlite3_column_int64(s, 2);
}

static int run_consent_evidence_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_CEVID_GET);
	bind_hu(s, op);
	bind_str(s, 3, op->s2);
	int rc = each_row(st, Q_CEVID_GET, s, op, row_evidence);
	return rc < 0 ? rc : rc == 0 ? PV_ENOENT : 0;
}

/* ---- message requests, reports, blocking (storage thread) ---- */

static int run_request_hold(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_REQ_HOLD);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	sqlite3_bind_int64(s, 4, op->n1);
	/* A blob, so that length() in the summaries counts bytes. */
	sqlite3_bind_blob64(s, 5, op->data, op->dlen, SQLITE_STATIC);
	return exec_q(st, Q_REQ_HOLD, s);
}

static void row_request_info(pv_op *op, sqlite3_stmt *s)
{
	GROW(op->reqs, op->nreqs, op->capreqs);
	pv_request_info *r = &op->reqs[op->nreqs++];
	r->sender = col_dup(s, 0, NULL);
	r->count = (size_t)sqlite3_column_int64(s, 1);
	r->bytes = (size_t)sqlite3_column_int64(s, 2);
	r->first = sqlite3_column_int64(s, 3);
	r->last = sqlite3_column_int64(s, 4);
}

static int run_request_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_REQ_LIST);
	bind_hu(s, op);
	return each_row(st, Q_REQ_LIST, s, op, row_request_info);
}

static int run_request_info(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_REQ_INFO);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	int rc = each_row(st, Q_REQ_INFO, s, op, row_request_info);
	return rc < 0 ? rc : rc == 0 ? PV_ENOENT : 0;
}

static int run_request_get(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_REQ_GET);
	bind_hu(s, op);
	bind_str(s, 3, op->s1);
	return each_row(st, Q_REQ_GET, s, op, row_offline); /* id, stamp, xml */
}

static int run_request_count(pv_store *st, pv_op *op)
{
	return count_hu(st, Q_REQ_COUNT, op);
}

/* A per-user write keyed by op->s1 (may be unused by the statement). */
static int user_key_write(pv_store *st, pv_op *op, int qid)
{
	sqlite3_stmt *s = q(st, qid);
	bind_hu(s, op);
	if (op->s1)
		bind_str(s, 3, op->s1);
	return exec_q(st, qid, s);
}

static int run_request_drop(pv_store *st, pv_op *op)
{
	return user_key_write(st, op, Q_REQ_DROP);
}

static int run_report_add(pv_store *st, pv_op *op)
{
	const pv_report *r = op->report;
	sqlite3_stmt *s = q(st, Q_REPORT_ADD);
	bind_str(s, 1, r->host);
	bind_str(s, 2, r->user);
	bind_str(s, 3, r->sender);
	sqlite3_bind_int64(s, 4, r->stamp);
	bind_str(s, 5, r->reason);
	bind_str(s, 6, r->text);
	bind_str(s, 7, r->evidence);
	return exec_q(st, Q_REPORT_ADD, s);
}

static void row_report(pv_op *op, sqlite3_stmt *s)
{
	GROW(op->reports, op->nreports, op->capreports);
	pv_report *r = &op->reports[op->nreports++];
	r->id = sqlite3_column_int64(s, 0);
	r->stamp = sqlite3_column_int64(s, 1);
	r->host = col_dup(s, 2, NULL);
	r->user = col_dup(s, 3, NULL);
	r->sender = col_dup(s, 4, NULL);
	r->reason = col_dup(s, 5, NULL);
	r->text = col_dup(s, 6, NULL);
	r->evidence = col_dup(s, 7, NULL);
}

static int run_report_list(pv_store *st, pv_op *op)
{
	int qid = op->host ? Q_REPORT_LIST_HOST : Q_REPORT_LIST_ALL;
	sqlite3_stmt *s = q(st, qid);
	if (op->host)
		bind_str(s, 1, op->host);
	sqlite3_bind_int64(s, 2, op->n1);
	return each_row(st, qid, s, op, row_report);
}

static int run_block_list(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_BLOCK_LIST);
	bind_hu(s, op);
	return each_row(st, Q_BLOCK_LIST, s, op, row_user);
}

static int run_block_users(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_BLOCK_USERS);
	bind_str(s, 1, op->host);
	return each_row(st, Q_BLOCK_USERS, s, op, row_user);
}

static int run_block_set(pv_store *st, pv_op *op)
{
	return user_key_write(st, op, op->n1 ? Q_BLOCK_ADD : Q_BLOCK_DEL);
}

static int run_block_clear(pv_store *st, pv_op *op)
{
	return user_key_write(st, op, Q_BLOCK_CLEAR);
}

/* ---- phone numbers (issue 6; storage thread) ---- */

static void row_phone(pv_op *op, sqlite3_stmt *s)
{
	pv_phone_rec_fini(&op->phone);
	op->phone.user = col_dup(s, 0, NULL);
	op->phone.e164 = col_dup(s, 1, NULL);
	op->phone.findable = sqlite3_column_int(s, 2) != 0;
	op->phone.preferred = sqlite3_column_int(s, 3) != 0;
	op->phone.updated_ms = sqlite3_column_int64(s, 4);
}

/* A phone statement with ?1 host, ?2 user, ?3 number (NULL when absent; statements
 * that do not use ?2 still have its slot, as they use ?3). */
static sqlite3_stmt *phone_q(pv_store *st, int qid, const pv_op *op)
{
	sqlite3_stmt *s = q(st, qid);
	bind_str(s, 1, op->host);
	if (op->user)
		bind_str(s, 2, op->user);
	if (op->s1)
		bind_str(s, 3, op->s1);
	return s;
}

static int run_phone_get(pv_store *st, pv_op *op)
{
	int qid = op->user ? Q_PHONE_OF_USER : Q_PHONE_BY_NUMBER;
	int n = each_row(st, qid, phone_q(st, qid, op), op, row_phone);
	return n < 0 ? n : n == 0 ? PV_ENOENT : 0;
}

static int run_user_create_phone(pv_store *st, pv_op *op)
{
	/* Which of the two is taken is told apart here, where both checks see the same
	 * transaction; the INSERTs' unique constraints remain the real guard. */
	int taken = has_row(st, Q_PHONE_BY_NUMBER, phone_q(st, Q_PHONE_BY_NUMBER, op));
	if (taken != 0) {
		op->n3 = taken > 0;
		return taken > 0 ? PV_EEXIST : taken;
	}
	int rc = run_user_create(st, op);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = phone_q(st, Q_PHONE_INSERT, op);
	sqlite3_bind_int64(s, 4, op->n2);
	rc = exec_q(st, Q_PHONE_INSERT, s);
	if (rc == PV_EEXIST)
		op->n3 = 1;
	return rc;
}

static int run_phone_set(pv_store *st, pv_op *op)
{
	int rc = user_exists_q(st, op);
	if (rc <= 0)
		return rc < 0 ? rc : PV_ENOENT;
	sqlite3_stmt *s = phone_q(st, Q_PHONE_SET, op);
	sqlite3_bind_int64(s, 4, op->n1);
	return exec_q(st, Q_PHONE_SET, s);
}

static int run_phone_release(pv_store *st, pv_op *op)
{
	int rc = exec_q(st, Q_PHONE_DELETE_ALL, phone_q(st, Q_PHONE_DELETE_ALL, op));
	if (rc < 0)
		return rc;
	return sqlite3_changes(st->db) > 0 ? 0 : PV_ENOENT;
}

static int run_phone_set_flags(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = phone_q(st, Q_PHONE_FLAGS, op);
	sqlite3_bind_int(s, 3, (op->n1 & 1) != 0);
	sqlite3_bind_int(s, 4, (op->n1 & 2) != 0);
	sqlite3_bind_int64(s, 5, op->n2);
	int rc = exec_q(st, Q_PHONE_FLAGS, s);
	if (rc < 0)
		return rc;
	return sqlite3_changes(st->db) > 0 ? 0 : PV_ENOENT;
}

static int run_phone_gone_take(pv_store *st, pv_op *op)
{
	int n = each_row(st, Q_PHONE_GONE_GET, phone_q(st, Q_PHONE_GONE_GET, op), op, row_user);
	if (n <= 0)
		return n < 0 ? n : PV_ENOENT;
	return exec_q(st, Q_PHONE_GONE_DEL, phone_q(st, Q_PHONE_GONE_DEL, op));
}

/* n1 now, n2 window, n3 max. */
static int run_phone_send_count(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = phone_q(st, Q_PHONE_SEND_PRUNE, op);
	sqlite3_bind_int64(s, 2, op->n1 - op->n2);
	int rc = exec_q(st, Q_PHONE_SEND_PRUNE, s);
	if (rc < 0)
		return rc;
	/* Codes a day past their expiry are of no use even to tell "expired" apart. */
	s = phone_q(st, Q_PHONE_CODE_PRUNE, op);
	sqlite3_bind_int64(s, 2, op->n1 - 86400000);
	if ((rc = exec_q(st, Q_PHONE_CODE_PRUNE, s)) < 0)
		return rc;
	int64_t window = op->n1, count = 0;
	s = phone_q(st, Q_PHONE_SEND_GET, op);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		window = sqlite3_column_int64(s, 0);
		count = sqlite3_column_int64(s, 1);
	} else if (rc != SQLITE_DONE) {
		rc = sqlerr(st, rc, Q_PHONE_SEND_GET);
		sqlite3_reset(s);
		return rc;
	}
	sqlite3_reset(s);
	if (count >= op->n3)
		return PV_ELIMIT;
	s = phone_q(st, Q_PHONE_SEND_SET, op);
	sqlite3_bind_int64(s, 4, window);
	sqlite3_bind_int64(s, 5, count + 1);
	return exec_q(st, Q_PHONE_SEND_SET, s);
}

static int run_phone_code_put(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = phone_q(st, Q_PHONE_CODE_PUT, op);
	sqlite3_bind_blob(s, 4, op->data, (int)op->dlen, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, op->n1);
	return exec_q(st, Q_PHONE_CODE_PUT, s);
}

/* n1 now, n2 max attempts; the pv_code_result goes to n3 (an output: a write that
 * returns < 0 is rolled back, and a failed attempt must stay counted). */
static int run_phone_code_check(pv_store *st, pv_op *op)
{
	unsigned char stored[PV_PHONE_HASH_LEN];
	size_t len = 0;
	int64_t expires = 0, attempts = 0;
	sqlite3_stmt *s = phone_q(st, Q_PHONE_CODE_GET, op);
	int rc = sqlite3_step(s), ret = 0;
	if (rc == SQLITE_DONE) {
		op->n3 = PV_CODE_NONE;
	} else if (rc != SQLITE_ROW) {
		ret = sqlerr(st, rc, Q_PHONE_CODE_GET);
	} else {
		ret = copy_blob(s, 0, stored, sizeof stored, &len);
		expires = sqlite3_column_int64(s, 1);
		attempts = sqlite3_column_int64(s, 2);
		if (ret == 0 && len != PV_PHONE_HASH_LEN)
			ret = PV_EIO;
	}
	sqlite3_reset(s);
	if (ret < 0 || rc == SQLITE_DONE)
		return ret;
	int qid = -1;
	if (expires <= op->n1) {
		op->n3 = PV_CODE_EXPIRED;
		qid = Q_PHONE_CODE_DEL;
	} else if (attempts >= op->n2) {
		op->n3 = PV_CODE_EXHAUSTED;
	} else if (CRYPTO_memcmp(stored, op->data, PV_PHONE_HASH_LEN) == 0) {
		op->n3 = PV_CODE_OK;
		qid = Q_PHONE_CODE_DEL; /* used: never again */
	} else {
		op->n3 = PV_CODE_WRONG;
		qid = Q_PHONE_CODE_FAIL;
	}
	OPENSSL_cleanse(stored, sizeof stored);
	return qid < 0 ? 0 : exec_q(st, qid, phone_q(st, qid, op));
}

/* ---- the storage thread ---- */

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Hands a finished operation to whoever waits for it.  Returns true if the loop must be
 * woken. */
static bool finish(pv_store *st, pv_op *op)
{
	op->next = NULL;
	if (op->sync) {
		sem_post(&op->sem); /* the caller owns op from here on */
		return false;
	}
	if (!op->done) {
		op_free(op);
		return false;
	}
	pthread_mutex_lock(&st->done_mu);
	if (st->done_tail)
		st->done_tail->next = op;
	else
		st->done_head = op;
	st->done_tail = op;
	pthread_mutex_unlock(&st->done_mu);
	return true;
}

static bool finish_list(pv_store *st, pv_op *list, int force_rc)
{
	bool wake = false;
	for (pv_op *op = list, *next; op; op = next) {
		next = op->next;
		if (force_rc)
			op->rc = force_rc;
		wake |= finish(st, op);
	}
	return wake;
}

/* A failure inside the batch transaction that cannot be contained: a failed ROLLBACK TO
 * leaves the transaction in an unknown state, a failed COMMIT may mean the fsync failed. */
static void __attribute__((noreturn)) fatal(pv_store *st, const char *what)
{
	pv_error(SUB, "%s failed, aborting (restart recovers from the WAL) err=\"%s\"", what,
		sqlite3_errmsg(st->db));
	abort();
}

/* Adds what a batch counted so far to the store's stats and clears it.  Called before
 * anyone the counts cover is answered: a caller woken by pv_store_flush, or by its own
 * read, must find its operation in pv_store_get_stats. */
static void publish(pv_store *st, pv_store_stats *delta)
{
	pthread_mutex_lock(&st->mu);
	st->stats.commits += delta->commits;
	st->stats.writes += delta->writes;
	st->stats.reads += delta->reads;
	st->stats.fsync_us_total += delta->fsync_us_total;
	pthread_mutex_unlock(&st->mu);
	memset(delta, 0, sizeof(*delta));
}

/* finish for an op answered before the end of its batch (publish first). */
static bool finish_now(pv_store *st, pv_store_stats *delta, pv_op *op)
{
	publish(st, delta);
	return finish(st, op);
}

static void run_batch(pv_store *st, pv_op *list)
{
	pv_store_stats counts = {0}, *delta = &counts;
	pv_op *pend = NULL, **pend_tail = &pend; /* answered after the COMMIT */
	bool txn = false, wake = false, begin_failed = false;
	size_t writes[K_N] = {0}; /* of this batch by kind, settled at its end */

	for (pv_op *op = list, *next; op; op = next) {
		next = op->next;
		op->next = NULL;
		if (op->write) {
			for (int k = 0; k < K_N; k++)
				writes[k] += (op->kinds >> k) & 1;
			delta->writes++;
			/* After one failed BEGIN (the write lock stayed busy for BUSY_TIMEOUT_MS)
			 * the rest of the batch fails at once instead of waiting again per write. */
			if (!txn && (begin_failed || exec_plain(st, Q_BEGIN) < 0)) {
				begin_failed = true;
				op->rc = PV_EIO;
				wake |= finish_now(st, delta, op);
				continue;
			}
			txn = true;
			if (exec_plain(st, Q_SAVEPOINT) < 0) {
				op->rc = PV_EIO;
			} else {
				st->running = op;
				op->rc = op->run(st, op);
				st->running = NULL;
				if (!sqlite3_get_autocommit(st->db)) {
					if (op->rc < 0 && exec_plain(st, Q_ROLLBACK_TO) < 0)
						fatal(st, "ROLLBACK TO");
					if (exec_plain(st, Q_RELEASE) < 0)
						fatal(st, "RELEASE");
				}
			}
		} else if (op->run) {
			delta->reads++;
			st->running = op;
			op->rc = op->run(st, op);
			st->running = NULL;
		} else {
			op->rc = 0; /* flush marker */
		}

		if (txn && sqlite3_get_autocommit(st->db)) {
			/* SQLite rolled the whole transaction back by itself (disk full, I/O
			 * error): everything this batch did so far is gone. */
			pv_error(SUB, "transaction rolled back by sqlite, failing the batch so far");
			publish(st, delta);
			wake |= finish_list(st, pend, PV_EIO);
			pend = NULL;
			pend_tail = &pend;
			txn = false;
			if (op->rc >= 0)
				op->rc = PV_EIO;
			wake |= finish(st, op);
			continue;
		}
		if (txn) {
			*pend_tail = op;
			pend_tail = &op->next;
		} else {
			/* a read or flush marker outside a write transaction of this batch */
			wake |= finish_now(st, delta, op);
		}
	}

	if (txn) {
		uint64_t t0 = mono_us();
		int rc = sqlite3_step(q(st, Q_COMMIT));
		if (rc != SQLITE_DONE)
			fatal(st, "COMMIT");
		sqlite3_reset(st->stmt[Q_COMMIT]);
		delta->fsync_us_total += mono_us() - t0;
		delta->commits++;
	}
	publish(st, delta);
	/* Committed (or failed): a read on another connection now sees them. */
	for (int k = 0; k < K_N; k++)
		atomic_fetch_sub_explicit(&st->unsettled[k], writes[k], memory_order_release);
	wake |= finish_list(st, pend, 0);
	if (wake && st->async)
		uv_async_send(st->async);
}

static void *store_thread(void *arg)
{
	pv_store *st = arg;
	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (!st->head && !st->stop)
			pthread_cond_wait(&st->cv, &st->mu);
		if (!st->head)
			break; /* stopping and drained */
		if (!st->stop && !st->nsync && mono_us() - st->batch_us < PACE_US) {
			/* Pacing (PACE_US): wait for more, woken early by a blocked caller. */
			uint64_t due = st->batch_us + PACE_US;
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000),
				.tv_nsec = (long)(due % 1000000) * 1000};
			pthread_cond_timedwait(&st->cv, &st->mu, &ts);
			if (mono_us() < due && !st->nsync && !st->stop)
				continue; /* a spurious wake-up */
		}
		st->batch_us = mono_us();
		pv_op *list = st->head, *last = list;
		st->nsync -= list->sync;
		for (size_t n = 1; (n < BATCH_MAX || last->glue) && last->next; n++) {
			last = last->next;
			st->nsync -= last->sync;
		}
		st->head = last->next;
		if (!st->head)
			st->tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&st->mu);

		run_batch(st, list);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* ---- queueing (any thread) ---- */

static void enqueue(pv_store *st, pv_op *op)
{
	for (int k = 0; op->write && k < K_N; k++)
		if ((op->kinds >> k) & 1)
			atomic_fetch_add_explicit(&st->unsettled[k], 1, memory_order_relaxed);
	if (st->staging && !op->sync) {
		/* Held back until pv_store_batch_end queues the whole group at once. */
		op->next = NULL;
		if (st->stage_tail) {
			st->stage_tail->glue = true;
			st->stage_tail->next = op;
		} else {
			st->stage_head = op;
		}
		st->stage_tail = op;
		return;
	}
	pthread_mutex_lock(&st->mu);
	PV_ASSERT(!st->stop); /* queued after pv_store_close finished draining */
	op->next = NULL;
	if (op->sync)
		st->nsync++;
	if (st->tail) {
		st->tail->next = op;
		if (op->sync)
			pthread_cond_signal(&st->cv); /* it may be pacing (PACE_US) */
	} else {
		st->head = op;
		pthread_cond_signal(&st->cv); /* the thread sleeps only on an empty queue */
	}
	st->tail = op;
	pthread_mutex_unlock(&st->mu);
}

void pv_store_batch_begin(pv_store *st)
{
	PV_ASSERT(!st->staging);
	st->staging = st->loop != NULL; /* inline mode runs every write at once anyway */
}

void pv_store_batch_end(pv_store *st)
{
	st->staging = false;
	if (!st->stage_head)
		return;
	pthread_mutex_lock(&st->mu);
	if (st->tail) {
		st->tail->next = st->stage_head;
	} else {
		st->head = st->stage_head;
		pthread_cond_signal(&st->cv);
	}
	st->tail = st->stage_tail;
	pthread_mutex_unlock(&st->mu);
	st->stage_head = st->stage_tail = NULL;
}

/* A read may run on the loop thread's own connection when no write it could see is
 * waiting to be committed: it then sees exactly what a read queued behind those writes
 * would see (WAL readers see every committed transaction, and no queued write changes
 * the rows it reads: kinds, checked by q()).  This skips the round trip to the storage
 * thread: two context switches and ~7 futex calls per login (the scheduler alone was
 * 4.4 % of a login's CPU; 0.492 -> 0.474 ms per login, bench/NOTES.md).  Under load
 * some write is always in flight, and a read queued behind it costs a commit of its
 * own and stalls the loop for it: once per message to an offline user before reads of
 * accounts had a kind (bench/NOTES.md, tenth run).  Other threads, and reads that
 * would see a queued write, queue as before. */
static bool read_here(pv_store *st, const pv_op *op)
{
	if (!st->reader || op->write || !op->run || !pthread_equal(pthread_self(), st->loop_thread))
		return false;
	for (int k = 0; k < K_N; k++)
		if (((op->kinds >> k) & 1)
			&& atomic_load_explicit(&st->unsettled[k], memory_order_acquire) != 0)
			return false;
	return true;
}

/* Queues op and waits until it is answered.  The caller still owns op. */
static int call(pv_store *st, pv_op *op)
{
	if (read_here(st, op)) {
		st->reader->running = op;
		op->rc = op->run(st->reader, op);
		st->reader->running = NULL;
		pthread_mutex_lock(&st->mu);
		st->stats.reads++;
		st->stats.reads_loop++;
		pthread_mutex_unlock(&st->mu);
		return op->rc;
	}
	op->sync = true;
	PV_ASSERT(sem_init(&op->sem, 0, 0) == 0);
	enqueue(st, op);
	while (sem_wait(&op->sem) != 0)
		PV_ASSERT(errno == EINTR);
	sem_destroy(&op->sem);
	return op->rc;
}

/* Queues an asynchronous write (takes ownership of op).  Without a loop it waits for the
 * commit and calls done inline. */
static void submit(pv_store *st, pv_op *op, pv_store_done_fn done, void *ud)
{
	op->done = done;
	op->ud = ud;
	if (st->loop) {
		enqueue(st, op);
		return;
	}
	int rc = call(st, op);
	op_free(op);
	if (done)
		done(ud, rc);
}

/* Runs the done callbacks of finished writes (loop thread).  Returns how many ran. */
static size_t run_done(pv_store *st)
{
	pthread_mutex_lock(&st->done_mu);
	pv_op *list = st->done_head;
	st->done_head = st->done_tail = NULL;
	pthread_mutex_unlock(&st->done_mu);
	size_t n = 0;
	for (pv_op *op = list, *next; op; op = next) {
		next = op->next;
		op->done(op->ud, op->rc);
		op_free(op);
		n++;
	}
	return n;
}

static void on_async(uv_async_t *h)
{
	pv_store *st = h->data;
	if (st)
		run_done(st);
}

static void on_async_closed(uv_handle_t *h)
{
	pv_free(h);
}

/* ---- open / close ---- */

static int exec_sql(sqlite3 *db, const char *sql, const char *what)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
		return 0;
	pv_error(SUB, "%s failed err=\"%s\"", what, err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	return PV_EIO;
}

static int64_t pragma_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int set_wal(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int ret = PV_EIO;
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL) == SQLITE_OK
		&& sqlite3_step(s) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(s, 0);
		if (mode && strcmp(mode, "wal") == 0)
			ret = 0;
		else
			pv_error(SUB, "cannot enable WAL journal mode=%s", mode ? mode : "?");
	} else {
		pv_error(SUB, "PRAGMA journal_mode failed err=\"%s\"", sqlite3_errmsg(db));
	}
	sqlite3_finalize(s);
	return ret;
}

/* Applies every migration above PRAGMA user_version, each in its own transaction. */
static int migrate(sqlite3 *db, const char *path)
{
	for (;;) {
		if (exec_sql(db, "BEGIN IMMEDIATE", "BEGIN") < 0)
			return PV_EIO;
		/* Read inside the write lock: another process may have migrated meanwhile. */
		int64_t ver = pragma_int(db, "PRAGMA user_version");
		if (ver < 0 || (uint64_t)ver > pv_schema_sqlite_count) {
			pv_error(SUB, "database schema version unknown to this build path=%s version=%lld"
				" known=%zu", path, (long long)ver, pv_schema_sqlite_count);
			goto fail;
		}
		if ((size_t)ver == pv_schema_sqlite_count) {
			if (exec_sql(db, "COMMIT", "COMMIT") < 0)
				goto fail;
			return 0;
		}
		char *setver = pv_sprintf("PRAGMA user_version = %lld", (long long)ver + 1);
		int rc = exec_sql(db, pv_schema_sqlite[ver], "migration");
		if (rc == 0)
			rc = exec_sql(db, setver, "set user_version");
		pv_free(setver);
		if (rc < 0 || exec_sql(db, "COMMIT", "COMMIT") < 0)
			goto fail;
		pv_info(SUB, "schema migrated path=%s version=%lld", path, (long long)ver + 1);
	}
fail:
	if (!sqlite3_get_autocommit(db))
		exec_sql(db, "ROLLBACK", "ROLLBACK");
	return PV_EIO;
}

static int prepare_all(pv_store *c)
{
	for (int i = 0; i < Q__N; i++) {
		if (sqlite3_prepare_v3(c->db, q_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
			NULL) != SQLITE_OK) {
			pv_error(SUB, "cannot prepare query=%d err=\"%s\"", i, sqlite3_errmsg(c->db));
			return PV_EIO;
		}
	}
	return 0;
}

static void conn_close(pv_store *c)
{
	for (int i = 0; i < Q__N; i++)
		sqlite3_finalize(c->stmt[i]);
	if (sqlite3_close(c->db) != SQLITE_OK)
		pv_error(SUB, "sqlite3_close failed err=\"%s\"", sqlite3_errmsg(c->db));
	c->db = NULL;
}

/* The loop thread's read-only connection (call()).  Opened after the writer has set WAL
 * mode and migrated, so it only ever sees the current schema. */
static pv_store *reader_open(const char *path)
{
	pv_store *r = pv_calloc(1, sizeof *r);
	int rc = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		pv_error(SUB, "cannot open reader path=%s err=\"%s\"", path,
			r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
		sqlite3_close(r->db);
		pv_free(r);
		return NULL;
	}
	sqlite3_extended_result_codes(r->db, 1);
	sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);
	if (prepare_all(r) < 0) {
		conn_close(r);
		pv_free(r);
		return NULL;
	}
	return r;
}

pv_store *pv_store_open(const char *datadir, struct uv_loop_s *loop)
{
	pv_store *st = pv_calloc(1, sizeof *st);
	char *path = NULL;
	bool locks = false;

	if (!datadir || !*datadir) {
		pv_error(SUB, "no data directory given");
		goto fail;
	}
	if (mkdir(datadir, 0700) != 0 && errno != EEXIST) {
		pv_error(SUB, "cannot create data directory path=%s err=\"%s\"", datadir,
			strerror(errno));
		goto fail;
	}
	path = pv_sprintf("%s/%s", datadir, DB_FILE);
	/* NOMUTEX: the connection is used by one thread at a time (this one during open,
	 * then only the storage thread). */
	int rc = sqlite3_open_v2(path, &st->db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		pv_error(SUB, "cannot open database path=%s err=\"%s\"", path,
			st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	if (set_wal(st->db) < 0
		|| exec_sql(st->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "PRAGMA") < 0
		|| migrate(st->db, path) < 0)
		goto fail;
	if (pragma_int(st->db, "PRAGMA foreign_keys") != 1) {
		pv_error(SUB, "sqlite built without foreign key support");
		goto fail;
	}
	if (prepare_all(st) < 0)
		goto fail;
	if (loop && !(st->reader = reader_open(path)))
		goto fail;
	st->loop_thread = pthread_self();

	pthread_mutex_init(&st->mu, NULL);
	pthread_mutex_init(&st->done_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* PACE_US waits on mono_us's clock */
	pthread_cond_init(&st->cv, &ca);
	pthread_condattr_destroy(&ca);
	locks = true;
	st->loop = loop;
	if (loop) {
		st->async = pv_calloc(1, sizeof *st->async);
		if (uv_async_init(loop, st->async, on_async) != 0) {
			pv_free(st->async);
			st->async = NULL;
			pv_error(SUB, "uv_async_init failed");
			goto fail;
		}
		st->async->data = st;
		uv_unref((uv_handle_t *)st->async);
	}

	/* Signals belong to the loop threads, never to the storage thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&st->thread, NULL, store_thread, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pv_error(SUB, "cannot start storage thread err=\"%s\"", strerror(rc));
		goto fail;
	}
	st->thread_started = true;
	pthread_setname_np(st->thread, "pv-store");
	pv_info(SUB, "opened path=%s schema=%zu", path, pv_schema_sqlite_count);
	pv_free(path);
	return st;

fail:
	if (st->async) {
		st->async->data = NULL;
		uv_close((uv_handle_t *)st->async, on_async_closed);
	}
	if (st->reader) {
		conn_close(st->reader);
		pv_free(st->reader);
	}
	conn_close(st);
	if (locks) {
		pthread_mutex_destroy(&st->mu);
		pthread_mutex_destroy(&st->done_mu);
		pthread_cond_destroy(&st->cv);
	}
	pv_free(path);
	pv_free(st);
	return NULL;
}

void pv_store_flush(pv_store *st)
{
	pv_op *op = pv_calloc(1, sizeof *op);
	call(st, op);
	op_free(op);
}

void pv_store_close(pv_store *st)
{
	if (!st)
		return;
	/* Done callbacks may queue more writes (an ack that deletes rows...): drain until a
	 * round neither finds queued work nor runs a callback. */
	for (;;) {
		pv_store_flush(st);
		size_t ran = st->loop ? run_done(st) : 0;
		pthread_mutex_lock(&st->mu);
		if (ran == 0 && !st->head) {
			st->stop = true;
			pthread_cond_signal(&st->cv);
		}
		bool stopping = st->stop;
		pthread_mutex_unlock(&st->mu);
		if (stopping)
			break;
	}
	pthread_join(st->thread, NULL);

	if (st->reader) {
		conn_close(st->reader);
		pv_free(st->reader);
	}
	for (int i = 0; i < Q__N; i++) {
		sqlite3_finalize(st->stmt[i]);
		st->stmt[i] = NULL;
	}
	/* Keeps the query planner's statistics fresh for the next start (cheap). */
	exec_sql(st->db, "PRAGMA optimize", "PRAGMA optimize");
	conn_close(st);
	if (st->async) {
		st->async->data = NULL;
		uv_close((uv_handle_t *)st->async, on_async_closed);
	}
	pthread_mutex_destroy(&st->mu);
	pthread_mutex_destroy(&st->done_mu);
	pthread_cond_destroy(&st->cv);
	pv_info(SUB, "closed commits=%llu writes=%llu", (unsigned long long)st->stats.commits,
		(unsigned long long)st->stats.writes);
	pv_free(st);
}

void pv_store_get_stats(pv_store *st, pv_store_stats *out)
{
	pthread_mutex_lock(&st->mu);
	*out = st->stats;
	pthread_mutex_unlock(&st->mu);
}

/* ---- public operations (any thread) ---- */

/* pv_store_barrier's write, which writes nothing. */
static int run_barrier(pv_store *st, pv_op *op)
{
	return 0;
}

/* The kinds of rows each operation touches (K_*).  Each read a busy loop makes often
 * gets a kind of its own; the writes made under load are marked with theirs, so those
 * reads need not wait for them.  Anything not listed is K_ALL. */
static unsigned kinds_of(op_run_fn run)
{
	static const struct {
		op_run_fn run;
		unsigned kinds;
	} t[] = {
		/* routing to a user with no session, logins */
		{run_user_exists, K_ACCOUNTS}, {run_user_get_cred, K_ACCOUNTS},
		{run_user_create, K_ACCOUNTS}, {run_user_set_creds, K_ACCOUNTS},
		{run_user_create_phone, K_ACCOUNTS | K_OTHER},
		/* mod_blocking's and mod_consent's caches, filled per recipient */
		{run_block_list, K_BLOCK}, {run_block_users, K_BLOCK}, {run_block_set, K_BLOCK},
		{run_block_clear, K_BLOCK},
		{run_consent_get, K_CONSENT}, {run_consent_set_policy, K_CONSENT},
		{run_consent_set_provider, K_CONSENT}, {run_consent_set_sender, K_CONSENT},
		/* every login's presence (its roster, its offline messages), and mod_consent's
		 * check of a held sender */
		{run_roster_get, K_ROSTER}, {run_roster_put, K_ROSTER}, {run_roster_del, K_ROSTER},
		{run_offline_list, K_OFFLINE}, {run_offline_count, K_OFFLINE},
		{run_offline_push, K_OFFLINE}, {run_offline_delete, K_OFFLINE},
		/* the writes of a busy server */
		{run_outq_append, K_OTHER}, {run_outq_ack, K_OTHER}, {run_sess_put, K_OTHER},
		{run_sess_set_h, K_OTHER}, {run_sess_set_expiry, K_OTHER}, {run_sess_del, K_OTHER},
		{run_s2s_push, K_OTHER}, {run_s2s_ack, K_OTHER}, {run_s2s_hwm_set, K_OTHER},
		{run_consent_evidence, K_OTHER}, {run_consent_log, K_OTHER},
		{run_kv_put, K_OTHER},
		{run_barrier, K_OTHER}, /* writes nothing */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(t); i++)
		if (t[i].run == run)
			return t[i].kinds;
	return K_ALL;
}

static pv_scram_cred *creds_dup(const pv_scram_cred *creds, size_t n)
{
	if (!n)
		return NULL;
	pv_scram_cred *c = pv_malloc(n * sizeof *c);
	memcpy(c, creds, n * sizeof *c);
	return c;
}

static int creds_check(const pv_scram_cred *creds, size_t n)
{
	if (n && !creds)
		return PV_EINVAL;
	for (size_t i = 0; i < n; i++) {
		const pv_scram_cred *c = &creds[i];
		if (!memchr(c->mech, '\0', sizeof c->mech) || !c->mech[0]
			|| c->salt_len > sizeof c->salt || c->key_len > sizeof c->stored_key
			|| c->iterations == 0)
			return PV_EINVAL;
	}
	return 0;
}

static int account_write(pv_store *st, op_run_fn run, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds)
{
	if (!host || !user || creds_check(creds, ncreds) < 0)
		return PV_EINVAL;
	pv_op *op = op_new(run, true, host, user);
	op->creds = creds_dup(creds, ncreds);
	op->ncreds = ncreds;
	op->n1 = pv_wall_s();
	int rc = call(st, op);
	op_free(op);
	return rc;
}

int pv_store_user_create(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds)
{
	return account_write(st, run_user_create, host, user, creds, ncreds);
}

int pv_store_user_set_creds(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds)
{
	return account_write(st, run_user_set_creds, host, user, creds, ncreds);
}

int pv_store_user_delete(pv_store *st, const char *host, const char *user)
{
	return account_write(st, run_user_delete, host, user, NULL, 0);
}

int pv_store_user_get_cred(pv_store *st, const char *host, const char *user,
	const char *mech, pv_scram_cred *out)
{
	if (!host || !user || !mech || !out)
		return PV_EINVAL;
	pv_op *op = op_new(run_user_get_cred, false, host, user);
	op->s1 = pv_strdup(mech);
	int rc = call(st, op);
	if (rc == 0)
		*out = op->cred;
	op_free(op);
	return rc;
}

int pv_store_user_exists(pv_store *st, const char *host, const char *user)
{
	if (!host || !user)
		return PV_EINVAL;
	pv_op *op = op_new(run_user_exists, false, host, user);
	int rc = call(st, op);
	op_free(op);
	return rc;
}

/* A read whose rows are one string each, handed to cb in order. */
static int read_strings(pv_store *st, op_run_fn run, const char *host, const char *user,
	void (*cb)(void *ud, const char *s), void *ud)
{
	pv_op *op = op_new(run, false, host, user);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, op->rows[i].s);
	op_free(op);
	return rc;
}

int pv_store_user_list(pv_store *st, const char *host,
	void (*cb)(void *ud, const char *user), void *ud)
{
	return host ? read_strings(st, run_user_list, host, NULL, cb, ud) : PV_EINVAL;
}

static pv_roster_item *item_dup(const pv_roster_item *it)
{
	pv_roster_item *c = pv_calloc(1, sizeof *c);
	c->jid = pv_strdup(it->jid);
	c->name = pv_strdup(it->name);
	c->sub = it->sub;
	c->ask = it->ask;
	c->approved = it->approved;
	c->in_roster = it->in_roster;
	c->pending_in = pv_strdup(it->pending_in);
	if (it->ngroups) {
		c->groups = pv_calloc(it->ngroups, sizeof *c->groups);
		for (size_t i = 0; i < it->ngroups; i++)
			c->groups[i] = pv_strdup(it->groups[i]);
		c->ngroups = it->ngroups;
	}
	return c;
}

int pv_store_roster_get(pv_store *st, const char *host, const char *user,
	pv_roster_item **items, size_t *n, uint64_t *ver)
{
	if (!host || !user || !items || !n)
		return PV_EINVAL;
	*items = NULL;
	*n = 0;
	if (ver)
		*ver = 0;
	pv_op *op = op_new(run_roster_get, false, host, user);
	int rc = call(st, op);
	if (rc >= 0) {
		*items = op->items;
		*n = op->nitems;
		if (ver)
			*ver = (uint64_t)op->n1;
		op->items = NULL;
		op->nitems = 0;
		rc = 0;
	}
	op_free(op);
	return rc;
}

void pv_roster_items_free(pv_roster_item *items, size_t n)
{
	if (!items)
		return;
	for (size_t i = 0; i < n; i++) {
		pv_free(items[i].jid);
		pv_free(items[i].name);
		pv_free(items[i].pending_in);
		for (size_t j = 0; j < items[i].ngroups; j++)
			pv_free(items[i].groups[j]);
		pv_free(items[i].groups);
	}
	pv_free(items);
}

void pv_store_roster_put(pv_store *st, const char *host, const char *user,
	const pv_roster_item *it, uint64_t ver, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && it && it->jid && it->sub <= PV_SUB_BOTH);
	PV_ASSERT(it->ngroups == 0 || it->groups);
	for (size_t i = 0; i < it->ngroups; i++)
		PV_ASSERT(it->groups[i]);
	pv_op *op = op_new(run_roster_put, true, host, user);
	op->item = item_dup(it);
	op->n1 = (int64_t)ver;
	submit(st, op, done, ud);
}

void pv_store_roster_del(pv_store *st, const char *host, const char *user,
	const char *jid, uint64_t ver, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && jid);
	pv_op *op = op_new(run_roster_del, true, host, user);
	op->s1 = pv_strdup(jid);
	op->n1 = (int64_t)ver;
	submit(st, op, done, ud);
}

void pv_store_offline_push(pv_store *st, const char *host, const char *user,
	const char *xml, size_t len, int max, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && xml);
	pv_op *op = op_new(run_offline_push, true, host, user);
	op->data = bytes_dup(xml, len);
	op->dlen = len;
	op->n1 = pv_wall_s(); /* arrival time, not commit time */
	op->n2 = max;
	submit(st, op, done, ud);
}

int pv_store_offline_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len), void *ud)
{
	if (!host || !user)
		return PV_EINVAL;
	pv_op *op = op_new(run_offline_list, false, host, user);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, op->rows[i].a, op->rows[i].b, op->rows[i].s, op->rows[i].len);
	op_free(op);
	return rc;
}

void pv_store_offline_delete(pv_store *st, const char *host, const char *user,
	int64_t upto, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user);
	pv_op *op = op_new(run_offline_delete, true, host, user);
	op->n1 = upto;
	submit(st, op, done, ud);
}

int pv_store_offline_count(pv_store *st, const char *host, const char *user)
{
	if (!host || !user)
		return PV_EINVAL;
	pv_op *op = op_new(run_offline_count, false, host, user);
	int rc = call(st, op);
	op_free(op);
	return rc;
}

int pv_store_kv_get(pv_store *st, const char *host, const char *user,
	const char *kind, const char *key, char **val, size_t *len)
{
	if (!host || !user || !kind || !key || !val)
		return PV_EINVAL;
	*val = NULL;
	if (len)
		*len = 0;
	pv_op *op = op_new(run_kv_get, false, host, user);
	op->s1 = pv_strdup(kind);
	op->s2 = pv_strdup(key);
	int rc = call(st, op);
	if (rc == 0) {
		*val = op->rows[0].s;
		if (len)
			*len = op->rows[0].len;
		op->rows[0].s = NULL;
	}
	op_free(op);
	return rc;
}

void pv_store_kv_put(pv_store *st, const char *host, const char *user,
	const char *kind, const char *key, const char *val, size_t len,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && kind && key);
	pv_op *op = op_new(run_kv_put, true, host, user);
	op->s1 = pv_strdup(kind);
	op->s2 = pv_strdup(key);
	if (val) {
		op->data = bytes_dup(val, len);
		op->dlen = len;
	}
	submit(st, op, done, ud);
}

void pv_store_sess_put(pv_store *st, const pv_store_sess *s, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(s && s->sid && s->host && s->user);
	pv_op *op = op_new(run_sess_put, true, NULL, NULL);
	op->sess = pv_malloc(sizeof *op->sess);
	*op->sess = *s;
	op->sess->sid = pv_strdup(s->sid);
	op->sess->host = pv_strdup(s->host);
	op->sess->user = pv_strdup(s->user);
	op->sess->resource = pv_strdup(s->resource);
	submit(st, op, done, ud);
}

static pv_op *sid_op(op_run_fn run, bool write, const char *sid, int64_t n)
{
	pv_op *op = op_new(run, write, NULL, NULL);
	op->s1 = pv_strdup(sid);
	op->n1 = n;
	return op;
}

void pv_store_sess_set_h(pv_store *st, const char *sid, uint64_t h_in,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(sid);
	submit(st, sid_op(run_sess_set_h, true, sid, (int64_t)h_in), done, ud);
}

void pv_store_sess_set_expiry(pv_store *st, const char *sid, int64_t expires,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(sid);
	submit(st, sid_op(run_sess_set_expiry, true, sid, expires), done, ud);
}

void pv_store_sess_del(pv_store *st, const char *sid, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(sid);
	submit(st, sid_op(run_sess_del, true, sid, 0), done, ud);
}

int pv_store_sess_get(pv_store *st, const char *sid, pv_store_sess *out)
{
	if (!sid || !out)
		return PV_EINVAL;
	memset(out, 0, sizeof *out);
	pv_op *op = sid_op(run_sess_get, false, sid, 0);
	int rc = call(st, op);
	if (rc == 0) {
		*out = op->sessv[0];
		memset(&op->sessv[0], 0, sizeof op->sessv[0]);
	}
	op_free(op);
	return rc;
}

void pv_store_sess_fini(pv_store_sess *s)
{
	if (s)
		sess_free_fields(s);
}

int pv_store_sess_list(pv_store *st, void (*cb)(void *ud, const pv_store_sess *s), void *ud)
{
	pv_op *op = op_new(run_sess_list, false, NULL, NULL);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nsess; i++)
			cb(ud, &op->sessv[i]);
	op_free(op);
	return rc;
}

void pv_store_barrier(pv_store *st, pv_store_done_fn done, void *ud)
{
	submit(st, op_new(run_barrier, true, NULL, NULL), done, ud);
}

void pv_store_outq_append(pv_store *st, const char *sid, uint64_t seq,
	const char *xml, size_t len, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(sid && xml);
	pv_op *op = sid_op(run_outq_append, true, sid, (int64_t)seq);
	op->data = bytes_dup(xml, len);
	op->dlen = len;
	submit(st, op, done, ud);
}

void pv_store_outq_ack(pv_store *st, const char *sid, uint64_t upto,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(sid);
	submit(st, sid_op(run_outq_ack, true, sid, (int64_t)upto), done, ud);
}

int pv_store_outq_list(pv_store *st, const char *sid, uint64_t after,
	void (*cb)(void *ud, uint64_t seq, const char *xml, size_t len), void *ud)
{
	if (!sid)
		return PV_EINVAL;
	pv_op *op = sid_op(run_outq_list, false, sid, (int64_t)after);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, (uint64_t)op->rows[i].a, op->rows[i].s, op->rows[i].len);
	op_free(op);
	return rc;
}

/* A uint64 bound (after, upto) as an SQL integer: stored seqs are int64 bit patterns,
 * so a bound above 2^63-1 ("everything") must not turn negative. */
static int64_t seq_bound(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static pv_op *link_op(op_run_fn run, bool write, const char *local, const char *remote,
	int64_t n)
{
	pv_op *op = op_new(run, write, local, remote);
	op->n1 = n;
	return op;
}

void pv_store_s2s_push(pv_store *st, const char *local, const char *remote, uint64_t seq,
	int64_t created, const char *xml, size_t len, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(local && remote && xml);
	pv_op *op = link_op(run_s2s_push, true, local, remote, (int64_t)seq);
	op->n2 = created;
	op->data = bytes_dup(xml, len);
	op->dlen = len;
	submit(st, op, done, ud);
}

int pv_store_s2s_list(pv_store *st, const char *local, const char *remote, uint64_t after,
	size_t limit, void (*cb)(void *ud, uint64_t seq, int64_t created, const char *xml, size_t len),
	void *ud)
{
	if (!local || !remote)
		return PV_EINVAL;
	pv_op *op = link_op(run_s2s_list, false, local, remote, seq_bound(after));
	/* The count is returned as an int: more rows than that is no limit at all. */
	op->n2 = limit > (size_t)INT_MAX ? INT_MAX : (int64_t)limit;
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, (uint64_t)op->rows[i].a, op->rows[i].b, op->rows[i].s, op->rows[i].len);
	op_free(op);
	return rc;
}

void pv_store_s2s_ack(pv_store *st, const char *local, const char *remote, uint64_t upto,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(local && remote);
	submit(st, link_op(run_s2s_ack, true, local, remote, seq_bound(upto)), done, ud);
}

void pv_store_s2s_drop(pv_store *st, const char *local, const char *remote,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(local && remote);
	submit(st, link_op(run_s2s_drop, true, local, remote, 0), done, ud);
}

int pv_store_s2s_queues(pv_store *st, void (*cb)(void *ud, const pv_store_s2s_queue *q), void *ud)
{
	pv_op *op = op_new(run_s2s_queues, false, NULL, NULL);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nqueues; i++)
			cb(ud, &op->queues[i]);
	op_free(op);
	return rc;
}

int pv_store_s2s_epoch(pv_store *st, const char *local, const char *remote, char **epoch)
{
	if (!local || !remote || !epoch)
		return PV_EINVAL;
	*epoch = NULL;
	/* A synchronous write: it may create the epoch, and the caller stamps stanzas with
	 * it, so it is answered only once the batch that holds it has committed. */
	pv_op *op = link_op(run_s2s_epoch, true, local, remote, 0);
	int rc = call(st, op);
	if (rc == 0) {
		*epoch = op->rows[0].s;
		op->rows[0].s = NULL;
	}
	op_free(op);
	return rc;
}

int pv_store_s2s_hwm_get(pv_store *st, const char *local, const char *remote, char **epoch,
	uint64_t *hwm)
{
	if (!local || !remote || !epoch || !hwm)
		return PV_EINVAL;
	*epoch = NULL;
	*hwm = 0;
	pv_op *op = link_op(run_s2s_hwm_get, false, local, remote, 0);
	int rc = call(st, op);
	if (rc == 0) {
		*epoch = op->rows[0].s;
		*hwm = (uint64_t)op->rows[0].a;
		op->rows[0].s = NULL;
	}
	op_free(op);
	return rc;
}

void pv_store_s2s_hwm_set(pv_store *st, const char *local, const char *remote,
	const char *epoch, uint64_t hwm, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(local && remote && epoch);
	pv_op *op = link_op(run_s2s_hwm_set, true, local, remote, (int64_t)hwm);
	op->s1 = pv_strdup(epoch);
	submit(st, op, done, ud);
}

/* ---- consent (issue 4) ---- */

int pv_store_consent_get(pv_store *st, const char *host, const char *user, pv_consent *out)
{
	if (!host || !user || !out)
		return PV_EINVAL;
	memset(out, 0, sizeof *out);
	pv_op *op = op_new(run_consent_get, false, host, user);
	int rc = call(st, op);
	if (rc == 0) {
		*out = op->consent;
		memset(&op->consent, 0, sizeof op->consent);
	}
	op_free(op);
	return rc;
}

static void rules_free(pv_consent_rule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pv_free(v[i].subject);
	pv_free(v);
}

void pv_consent_fini(pv_consent *c)
{
	if (!c)
		return;
	rules_free(c->providers, c->nproviders);
	rules_free(c->senders, c->nsenders);
	memset(c, 0, sizeof *c);
}

void pv_store_consent_set_policy(pv_store *st, const char *host, const char *user,
	pv_consent_policy p, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && p >= PV_CONSENT_OFF && p <= PV_CONSENT_EVERYONE);
	pv_op *op = op_new(run_consent_set_policy, true, host, user);
	op->n1 = (int64_t)p;
	submit(st, op, done, ud);
}

void pv_store_consent_set_provider(pv_store *st, const char *host, const char *user,
	const char *domain, int kind, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && domain && kind <= PV_CONSENT_EVERYONE);
	pv_op *op = op_new(run_consent_set_provider, true, host, user);
	op->s1 = pv_strdup(domain);
	op->n1 = kind < 0 ? -1 : kind;
	submit(st, op, done, ud);
}

void pv_store_consent_set_sender(pv_store *st, const char *host, const char *user,
	const char *jid, int kind, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && jid && kind <= 1);
	pv_op *op = op_new(run_consent_set_sender, true, host, user);
	op->s1 = pv_strdup(jid);
	op->n1 = kind < 0 ? -1 : kind;
	submit(st, op, done, ud);
}

void pv_store_consent_log(pv_store *st, const char *host, const char *user, const char *action,
	int64_t stamp, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && action);
	/* Only the action and stamp travel: seq and the hashes are made on the storage
	 * thread, in the transaction that appends (pv_store.h). */
	pv_op *op = op_new(run_consent_log, true, host, user);
	op->s1 = pv_strdup(action);
	op->n1 = stamp;
	submit(st, op, done, ud);
}

/* The entries with seq > after, left in op->entries.  The caller frees op. */
static pv_op *log_entries(pv_store *st, const char *host, const char *user, uint64_t after,
	int *rc)
{
	pv_op *op = op_new(run_consent_log_list, false, host, user);
	op->n1 = seq_bound(after);
	*rc = call(st, op);
	return op;
}

int pv_store_consent_log_list(pv_store *st, const char *host, const char *user, uint64_t after,
	void (*cb)(void *ud, const pv_consent_entry *e), void *ud)
{
	if (!host || !user)
		return PV_EINVAL;
	int rc;
	pv_op *op = log_entries(st, host, user, after, &rc);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nentries; i++)
			cb(ud, &op->entries[i]);
	op_free(op);
	return rc;
}

int pv_store_consent_log_head(pv_store *st, const char *host, const char *user, uint64_t *seq)
{
	if (!host || !user || !seq)
		return PV_EINVAL;
	*seq = 0;
	pv_op *op = op_new(run_consent_log_head, false, host, user);
	int rc = call(st, op);
	if (rc == 0)
		*seq = (uint64_t)op->n2;
	op_free(op);
	return rc;
}

int pv_store_consent_log_verify(pv_store *st, const char *host, const char *user,
	uint64_t *bad_seq)
{
	if (!host || !user || !bad_seq)
		return PV_EINVAL;
	*bad_seq = 0;
	int rc;
	pv_op *op = log_entries(st, host, user, 0, &rc);
	if (rc < 0)
		goto out;
	/* Recomputed here, in the caller's thread: hashing a long log must not hold up the
	 * storage thread.  Each entry is checked against the previous entry's stored hash,
	 * which was itself just checked, so the first mismatch is the first bad entry. */
	char prev[HASH_HEX + 1] = ZERO_HASH, hash[HASH_HEX + 1];
	rc = 0;
	for (size_t i = 0; i < op->nentries; i++) {
		const pv_consent_entry *e = &op->entries[i];
		uint64_t want = (uint64_t)i + 1;
		if (e->seq == want && (rc = chain_hash(prev, want, e->stamp, e->action, hash)) < 0)
			goto out;
		if (e->seq != want || strcmp(e->prev, prev) != 0 || strcmp(e->hash, hash) != 0) {
			*bad_seq = want; /* missing (seq skips it) or altered */
			rc = PV_EINVAL;
			goto out;
		}
		memcpy(prev, e->hash, sizeof prev);
	}
out:
	op_free(op);
	return rc;
}

void pv_store_consent_evidence(pv_store *st, const char *host, const char *user,
	const char *sender, const char *stanza_id, int64_t stamp, pv_store_done_fn done,
	void *ud)
{
	PV_ASSERT(host && user && sender && stanza_id);
	pv_op *op = op_new(run_consent_evidence, true, host, user);
	op->s1 = pv_strdup(sender);
	op->s2 = pv_strdup(stanza_id);
	op->n2 = stamp;
	submit(st, op, done, ud);
}

int pv_store_consent_evidence_get(pv_store *st, const char *host, const char *user,
	const char *stanza_id, char **sender, uint64_t *entry_seq, int64_t *stamp)
{
	if (sender)
		*sender = NULL;
	if (!host || !user || !stanza_id)
		return PV_EINVAL;
	pv_op *op = op_new(run_consent_evidence_get, false, host, user);
	op->s2 = pv_strdup(stanza_id);
	int rc = call(st, op);
	if (rc == 0) {
		if (sender) {
			*sender = op->rows[0].s;
			op->rows[0].s = NULL;
		}
		if (entry_seq)
			*entry_seq = (uint64_t)op->rows[0].a;
		if (stamp)
			*stamp = op->rows[0].b;
	}
	op_free(op);
	return rc;
}

/* ---- message requests ---- */

static pv_op *sender_op(op_run_fn run, bool write, const char *host, const char *user,
	const char *sender)
{
	pv_op *op = op_new(run, write, host, user);
	op->s1 = pv_strdup(sender);
	return op;
}

void pv_store_request_hold(pv_store *st, const char *host, const char *user, const char *sender,
	int64_t stamp, const char *xml, size_t len, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && sender && xml);
	pv_op *op = sender_op(run_request_hold, true, host, user, sender);
	op->n1 = stamp;
	op->data = bytes_dup(xml, len);
	op->dlen = len;
	submit(st, op, done, ud);
}

int pv_store_request_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const pv_request_info *r), void *ud)
{
	if (!host || !user)
		return PV_EINVAL;
	pv_op *op = op_new(run_request_list, false, host, user);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nreqs; i++)
			cb(ud, &op->reqs[i]);
	op_free(op);
	return rc;
}

int pv_store_request_get(pv_store *st, const char *host, const char *user, const char *sender,
	void (*cb)(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len), void *ud)
{
	if (!host || !user || !sender)
		return PV_EINVAL;
	pv_op *op = sender_op(run_request_get, false, host, user, sender);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, op->rows[i].a, op->rows[i].b, op->rows[i].s, op->rows[i].len);
	op_free(op);
	return rc;
}

int pv_store_request_info(pv_store *st, const char *host, const char *user, const char *sender,
	pv_request_info *out)
{
	if (!host || !user || !sender || !out)
		return PV_EINVAL;
	memset(out, 0, sizeof *out);
	pv_op *op = sender_op(run_request_info, false, host, user, sender);
	int rc = call(st, op);
	if (rc == 0) {
		*out = op->reqs[0];
		memset(&op->reqs[0], 0, sizeof op->reqs[0]);
	}
	op_free(op);
	return rc;
}

int pv_store_request_count(pv_store *st, const char *host, const char *user)
{
	if (!host || !user)
		return PV_EINVAL;
	pv_op *op = op_new(run_request_count, false, host, user);
	int rc = call(st, op);
	op_free(op);
	return rc;
}

void pv_store_request_drop(pv_store *st, const char *host, const char *user, const char *sender,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && sender);
	submit(st, sender_op(run_request_drop, true, host, user, sender), done, ud);
}

void pv_request_info_fini(pv_request_info *r)
{
	if (!r)
		return;
	pv_free(r->sender);
	memset(r, 0, sizeof *r);
}

/* ---- abuse reports ---- */

void pv_store_report_add(pv_store *st, const pv_report *r, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(r && r->host && r->user && r->sender);
	pv_op *op = op_new(run_report_add, true, NULL, NULL);
	op->report = pv_calloc(1, sizeof *op->report);
	op->report->stamp = r->stamp;
	op->report->host = pv_strdup(r->host);
	op->report->user = pv_strdup(r->user);
	op->report->sender = pv_strdup(r->sender);
	op->report->reason = pv_strdup(r->reason);
	op->report->text = pv_strdup(r->text);
	op->report->evidence = pv_strdup(r->evidence);
	submit(st, op, done, ud);
}

int pv_store_report_list(pv_store *st, const char *host, int64_t after,
	void (*cb)(void *ud, const pv_report *r), void *ud)
{
	pv_op *op = op_new(run_report_list, false, host, NULL);
	op->n1 = after;
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nreports; i++)
			cb(ud, &op->reports[i]);
	op_free(op);
	return rc;
}

/* ---- blocking (XEP-0191) ---- */

int pv_store_block_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const char *jid), void *ud)
{
	return host && user ? read_strings(st, run_block_list, host, user, cb, ud) : PV_EINVAL;
}

int pv_store_block_users(pv_store *st, const char *host,
	void (*cb)(void *ud, const char *user), void *ud)
{
	return host ? read_strings(st, run_block_users, host, NULL, cb, ud) : PV_EINVAL;
}

void pv_store_block_set(pv_store *st, const char *host, const char *user, const char *jid,
	bool blocked, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && jid);
	pv_op *op = sender_op(run_block_set, true, host, user, jid);
	op->n1 = blocked;
	submit(st, op, done, ud);
}

void pv_store_block_clear(pv_store *st, const char *host, const char *user,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user);
	submit(st, op_new(run_block_clear, true, host, user), done, ud);
}

/* ---- phone numbers (issue 6) ---- */

void pv_phone_rec_fini(pv_phone_rec *r)
{
	if (!r)
		return;
	pv_free(r->user);
	pv_free(r->e164);
	memset(r, 0, sizeof *r);
}

static int phone_read(pv_store *st, const char *host, const char *user, const char *e164,
	pv_phone_rec *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (!host || (!user && !e164) || !out)
		return PV_EINVAL;
	pv_op *op = op_new(run_phone_get, false, host, user);
	op->s1 = user ? NULL : pv_strdup(e164);
	int rc = call(st, op);
	if (rc == 0) {
		*out = op->phone;
		memset(&op->phone, 0, sizeof op->phone);
	}
	op_free(op);
	return rc;
}

int pv_store_phone_of_user(pv_store *st, const char *host, const char *user, pv_phone_rec *out)
{
	return user ? phone_read(st, host, user, NULL, out) : PV_EINVAL;
}

int pv_store_phone_by_number(pv_store *st, const char *host, const char *e164, pv_phone_rec *out)
{
	return e164 ? phone_read(st, host, NULL, e164, out) : PV_EINVAL;
}

int pv_store_user_create_phone(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds, const char *e164, int64_t updated_ms,
	bool *number_taken)
{
	if (number_taken)
		*number_taken = false;
	if (!host || !user || !e164 || creds_check(creds, ncreds) < 0)
		return PV_EINVAL;
	pv_op *op = op_new(run_user_create_phone, true, host, user);
	op->creds = creds_dup(creds, ncreds);
	op->ncreds = ncreds;
	op->n1 = pv_wall_s();
	op->n2 = updated_ms;
	op->s1 = pv_strdup(e164);
	int rc = call(st, op);
	if (number_taken)
		*number_taken = op->n3 != 0;
	op_free(op);
	return rc;
}

void pv_store_phone_set(pv_store *st, const char *host, const char *user, const char *e164,
	int64_t updated_ms, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user && e164);
	pv_op *op = op_new(run_phone_set, true, host, user);
	op->s1 = pv_strdup(e164);
	op->n1 = updated_ms;
	submit(st, op, done, ud);
}

void pv_store_phone_release(pv_store *st, const char *host, const char *user,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user);
	submit(st, op_new(run_phone_release, true, host, user), done, ud);
}

void pv_store_phone_set_flags(pv_store *st, const char *host, const char *user,
	bool findable, bool preferred, int64_t updated_ms, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && user);
	pv_op *op = op_new(run_phone_set_flags, true, host, user);
	op->n1 = (findable ? 1 : 0) | (preferred ? 2 : 0);
	op->n2 = updated_ms;
	submit(st, op, done, ud);
}

int pv_store_phone_gone_take(pv_store *st, const char *host, const char *user, char **e164)
{
	if (e164)
		*e164 = NULL;
	if (!host || !user || !e164)
		return PV_EINVAL;
	pv_op *op = op_new(run_phone_gone_take, true, host, user);
	int rc = call(st, op);
	if (rc == 0 && op->nrows) {
		*e164 = op->rows[0].s;
		op->rows[0].s = NULL;
	}
	op_free(op);
	return rc;
}

int pv_store_phone_send_count(pv_store *st, const char *host, const char *e164,
	int64_t now_ms, int64_t window_ms, unsigned max)
{
	if (!host || !e164 || window_ms <= 0)
		return PV_EINVAL;
	pv_op *op = op_new(run_phone_send_count, true, host, NULL);
	op->s1 = pv_strdup(e164);
	op->n1 = now_ms;
	op->n2 = window_ms;
	op->n3 = max;
	int rc = call(st, op);
	op_free(op);
	return rc;
}

void pv_store_phone_code_put(pv_store *st, const char *host, const char *e164,
	const unsigned char hash[PV_PHONE_HASH_LEN], int64_t expires_ms,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && e164 && hash);
	pv_op *op = op_new(run_phone_code_put, true, host, NULL);
	op->s1 = pv_strdup(e164);
	op->data = bytes_dup((const char *)hash, PV_PHONE_HASH_LEN);
	op->dlen = PV_PHONE_HASH_LEN;
	op->n1 = expires_ms;
	submit(st, op, done, ud);
}

int pv_store_phone_code_check(pv_store *st, const char *host, const char *e164,
	const unsigned char hash[PV_PHONE_HASH_LEN], int64_t now_ms, unsigned max_attempts,
	pv_code_result *res)
{
	if (!host || !e164 || !hash || !res)
		return PV_EINVAL;
	pv_op *op = op_new(run_phone_code_check, true, host, NULL);
	op->s1 = pv_strdup(e164);
	op->data = bytes_dup((const char *)hash, PV_PHONE_HASH_LEN);
	op->dlen = PV_PHONE_HASH_LEN;
	op->n1 = now_ms;
	op->n2 = max_attempts;
	int rc = call(st, op);
	*res = (pv_code_result)op->n3;
	op_free(op);
	return rc;
}

/* Runs a list read and takes the string of its first row: 0 and *out (new string), or
 * PV_ENOENT when there is no row, or <0.  Frees op. */
static int call_first_str(pv_store *st, pv_op *op, char **out)
{
	int rc = call(st, op);
	if (rc > 0) {
		*out = op->rows[0].s;
		op->rows[0].s = NULL;
		rc = 0;
	} else if (rc == 0) {
		rc = PV_ENOENT;
	}
	op_free(op);
	return rc;
}

/* ---- exchange registry and discovery (issue 6, D) ----
 * Inputs: host, s1 = blinded, s2 = jid, user = provider, n1 = preferred, n2 = updated_ms.
 * Rows of a lookup: s = jid, a = preferred, b = updated_ms. */

static sqlite3_stmt *reg_q(pv_store *st, int qid, const pv_op *op)
{
	sqlite3_stmt *s = q(st, qid);
	bind_str(s, 1, op->host);
	bind_str(s, 2, op->s1);
	bind_str(s, 3, op->s2);
	return s;
}

static int run_registry_put(pv_store *st, pv_op *op)
{
	/* A change older than what is stored for the account (under any number) is not
	 * applied: the s2s queue keeps a provider's changes in order, so this only guards
	 * against a provider's clock going backwards. */
	sqlite3_stmt *n = reg_q(st, Q_REG_NEWER, op);
	sqlite3_bind_int64(n, 4, op->n2);
	int rc = has_row(st, Q_REG_NEWER, n);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	/* One number per account: its previous entry goes in the same transaction. */
	rc = exec_q(st, Q_REG_DEL_OTHER, reg_q(st, Q_REG_DEL_OTHER, op));
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = reg_q(st, Q_REG_PUT, op);
	bind_str(s, 4, op->user);
	sqlite3_bind_int(s, 5, op->n1 ? 1 : 0);
	sqlite3_bind_int64(s, 6, op->n2);
	return exec_q(st, Q_REG_PUT, s);
}

static int run_registry_del(pv_store *st, pv_op *op)
{
	return exec_q(st, Q_REG_DEL, reg_q(st, Q_REG_DEL, op));
}

static void row_registry(pv_op *op, sqlite3_stmt *s)
{
	op_row *r = row_add(op);
	r->s = col_dup(s, 0, &r->len);
	r->a = sqlite3_column_int(s, 1);
	r->b = sqlite3_column_int64(s, 2);
}

static int run_registry_lookup(pv_store *st, pv_op *op)
{
	return each_row(st, Q_REG_LOOKUP, reg_q(st, Q_REG_LOOKUP, op), op, row_registry);
}

static int run_registry_count(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = q(st, Q_REG_COUNT);
	bind_str(s, 1, op->host);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		op->n1 = sqlite3_column_int64(s, 0);
	int ret = rc == SQLITE_ROW ? 0 : sqlerr(st, rc, Q_REG_COUNT);
	sqlite3_reset(s);
	return ret;
}

void pv_store_registry_put(pv_store *st, const char *exchange_host, const char *blinded,
	const char *jid, const char *provider, bool preferred, int64_t updated_ms,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(exchange_host && blinded && jid && provider);
	pv_op *op = op_new(run_registry_put, true, exchange_host, provider);
	op->s1 = pv_strdup(blinded);
	op->s2 = pv_strdup(jid);
	op->n1 = preferred;
	op->n2 = updated_ms;
	submit(st, op, done, ud);
}

void pv_store_registry_del(pv_store *st, const char *exchange_host, const char *blinded,
	const char *jid, pv_store_done_fn done, void *ud)
{
	PV_ASSERT(exchange_host && jid);
	pv_op *op = op_new(run_registry_del, true, exchange_host, NULL);
	op->s1 = pv_strdup(blinded);
	op->s2 = pv_strdup(jid);
	submit(st, op, done, ud);
}

int pv_store_registry_lookup(pv_store *st, const char *exchange_host, const char *blinded,
	void (*cb)(void *ud, const pv_registry_entry *e), void *ud)
{
	if (!exchange_host || !blinded)
		return PV_EINVAL;
	pv_op *op = op_new(run_registry_lookup, false, exchange_host, NULL);
	op->s1 = pv_strdup(blinded);
	int rc = call(st, op);
	if (rc >= 0 && cb) {
		for (size_t i = 0; i < op->nrows; i++) {
			pv_registry_entry e = {.jid = op->rows[i].s, .preferred = op->rows[i].a != 0,
				.updated_ms = op->rows[i].b};
			cb(ud, &e);
		}
	}
	op_free(op);
	return rc;
}

int pv_store_registry_preferred(pv_store *st, const char *exchange_host, const char *blinded,
	char **jid)
{
	*jid = NULL;
	if (!exchange_host || !blinded)
		return PV_EINVAL;
	pv_op *op = op_new(run_registry_lookup, false, exchange_host, NULL);
	op->s1 = pv_strdup(blinded);
	/* Ordered preferred first, then newest: the first row is the answer either way. */
	return call_first_str(st, op, jid);
}

int64_t pv_store_registry_count(pv_store *st, const char *exchange_host)
{
	pv_op *op = op_new(run_registry_count, false, exchange_host, NULL);
	int rc = call(st, op);
	int64_t n = rc < 0 ? rc : op->n1;
	op_free(op);
	return n;
}


/* ---- a provider's blinded index (issue 6, schema 006) ----
 * Inputs: host, s1 = key_id or blinded, s2 = e164.  n1 (key check): 1 when emptied. */

static sqlite3_stmt *blind_q(pv_store *st, int qid, const pv_op *op)
{
	sqlite3_stmt *s = q(st, qid);
	bind_str(s, 1, op->host);
	return s;
}

static int run_blind_key(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = blind_q(st, Q_BLIND_KEY_GET, op);
	int rc = sqlite3_step(s);
	bool same = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), op->s1) == 0;
	int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlerr(st, rc, Q_BLIND_KEY_GET);
	sqlite3_reset(s);
	if (ret < 0 || same)
		return ret;
	op->n1 = 1;
	if ((ret = exec_q(st, Q_BLIND_CLEAR, blind_q(st, Q_BLIND_CLEAR, op))) < 0)
		return ret;
	s = blind_q(st, Q_BLIND_KEY_SET, op);
	bind_str(s, 2, op->s1);
	return exec_q(st, Q_BLIND_KEY_SET, s);
}

static int run_blind_repair(pv_store *st, pv_op *op)
{
	int rc = exec_q(st, Q_BLIND_PRUNE, blind_q(st, Q_BLIND_PRUNE, op));
	if (rc < 0)
		return rc;
	return each_row(st, Q_BLIND_MISSING, blind_q(st, Q_BLIND_MISSING, op), op, row_user);
}

static int run_blind_put(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = blind_q(st, Q_BLIND_PUT, op);
	bind_str(s, 2, op->s1);
	bind_str(s, 3, op->s2);
	return exec_q(st, Q_BLIND_PUT, s);
}

static int run_blind_del(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = blind_q(st, Q_BLIND_DEL, op);
	bind_str(s, 2, op->s2);
	return exec_q(st, Q_BLIND_DEL, s);
}

static int run_blind_lookup(pv_store *st, pv_op *op)
{
	sqlite3_stmt *s = blind_q(st, Q_BLIND_LOOKUP, op);
	bind_str(s, 2, op->s1);
	return each_row(st, Q_BLIND_LOOKUP, s, op, row_user);
}

int pv_store_blind_key(pv_store *st, const char *host, const char *key_id)
{
	if (!host || !key_id)
		return PV_EINVAL;
	pv_op *op = op_new(run_blind_key, true, host, NULL);
	op->s1 = pv_strdup(key_id);
	int rc = call(st, op);
	if (rc >= 0)
		rc = op->n1 ? 1 : 0;
	op_free(op);
	return rc;
}

int pv_store_blind_repair(pv_store *st, const char *host, void (*cb)(void *ud, const char *e164),
	void *ud)
{
	if (!host)
		return PV_EINVAL;
	pv_op *op = op_new(run_blind_repair, true, host, NULL);
	int rc = call(st, op);
	if (rc >= 0 && cb)
		for (size_t i = 0; i < op->nrows; i++)
			cb(ud, op->rows[i].s);
	op_free(op);
	return rc;
}

void pv_store_blind_put(pv_store *st, const char *host, const char *blinded, const char *e164,
	pv_store_done_fn done, void *ud)
{
	PV_ASSERT(host && blinded && e164);
	pv_op *op = op_new(run_blind_put, true, host, NULL);
	op->s1 = pv_strdup(blinded);
	op->s2 = pv_strdup(e164);
	submit(st, op, done, ud);
}

void pv_store_blind_del(pv_store *st, const char *host, const char *e164, pv_store_done_fn done,
	void *ud)
{
	PV_ASSERT(host && e164);
	pv_op *op = op_new(run_blind_del, true, host, NULL);
	op->s2 = pv_strdup(e164);
	submit(st, op, done, ud);
}

int pv_store_blind_lookup(pv_store *st, const char *host, const char *blinded, char **e164)
{
	*e164 = NULL;
	if (!host || !blinded)
		return PV_EINVAL;
	pv_op *op = op_new(run_blind_lookup, false, host, NULL);
	op->s1 = pv_strdup(blinded);
	return call_first_str(st, op, e164);
}
