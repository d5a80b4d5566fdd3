/* pv_store.h -- the typed storage interface (accounts, roster, offline queue, per-user
 * key/value data, durable session state for stream management).
 *
 * One storage thread owns the database connection.  Every operation is queued to it in
 * FIFO order, so a read always sees every write queued before it.
 *  - Writes are asynchronous: they return at once; the storage thread runs all queued
 *    writes in one transaction with one fsync (group commit) and then calls each `done`
 *    callback ON THE LOOP THREAD given to pv_store_open (via uv_async).  `done` may be
 *    NULL.  rc is 0 or a negative PV_E*.  A stanza is acknowledged only from `done`.
 *  - Reads are synchronous.  On the loop thread, with no write waiting to be committed,
 *    they run at once on a read-only connection of that thread's own (same answer, no
 *    round trip); otherwise the caller blocks until the storage thread answered.
 * With loop == NULL (tools working on a stopped server's data dir) writes complete
 * before returning and `done` runs inline.
 * An fsync/commit error is fatal: the store logs it and aborts the process (never retry
 * a failed fsync on the same state; restart recovers from the WAL). */
#ifndef PV_STORE_H
#define PV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pv_util.h"

struct uv_loop_s;
typedef struct pv_store pv_store;
typedef void (*pv_store_done_fn)(void *ud, int rc);

/* Opens (creating and migrating as needed) <datadir>/peyvand.sqlite.  NULL on failure
 * (logged). */
pv_store *pv_store_open(const char *datadir, struct uv_loop_s *loop);
/* Commits everything queued, stops the thread, closes the db.  Pending `done`
 * callbacks are run before it returns. */
void pv_store_close(pv_store *st);
/* Blocks until every write queued so far is committed (done callbacks may still be
 * pending on the loop). */
void pv_store_flush(pv_store *st);
/* Writes nothing; `done` runs once every write queued before it is committed (the
 * store commits in order), e.g. to acknowledge a stanza whose fate was decided by
 * writes made elsewhere. */
void pv_store_barrier(pv_store *st, pv_store_done_fn done, void *ud);

/* ---- accounts (synchronous; rare) ---- */
typedef struct pv_scram_cred {
	char mech[24];               /* "SCRAM-SHA-1" or "SCRAM-SHA-256" */
	unsigned char salt[32];
	size_t salt_len;
	uint32_t iterations;
	unsigned char stored_key[64];
	unsigned char server_key[64];
	size_t key_len;              /* 20 for SHA-1, 32 for SHA-256 */
} pv_scram_cred;

int pv_store_user_create(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds);          /* PV_EEXIST if taken */
int pv_store_user_set_creds(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds);          /* PV_ENOENT if absent */
int pv_store_user_get_cred(pv_store *st, const char *host, const char *user,
	const char *mech, pv_scram_cred *out);              /* PV_ENOENT */
int pv_store_user_exists(pv_store *st, const char *host, const char *user); /* 1, 0 or <0 */
/* Removes the account and all its data, including its consent settings, consent log,
 * evidence, held requests and block list; abuse reports it filed stay (they are the
 * operators').  PV_ENOENT if absent. */
int pv_store_user_delete(pv_store *st, const char *host, const char *user);
/* Calls cb for each user of host, sorted.  Returns count or <0. */
int pv_store_user_list(pv_store *st, const char *host,
	void (*cb)(void *ud, const char *user), void *ud);

/* ---- roster (RFC 6121) ---- */
typedef enum { PV_SUB_NONE = 0, PV_SUB_TO, PV_SUB_FROM, PV_SUB_BOTH } pv_sub;

typedef struct pv_roster_item {
	char *jid;          /* bare, normalised */
	char *name;         /* may be NULL */
	pv_sub sub;
	bool ask;           /* pending-out: we sent subscribe, no answer yet */
	bool approved;      /* pre-approved inbound subscription */
	bool in_roster;     /* false: only a stored pending-in request, not a roster item */
	char *pending_in;   /* serialised stored subscribe presence, or NULL */
	char **groups;
	size_t ngroups;
} pv_roster_item;

/* Loads every item (in_roster or not) and the roster version.  Caller frees with
 * pv_roster_items_free. */
int pv_store_roster_get(pv_store *st, const char *host, const char *user,
	pv_roster_item **items, size_t *n, uint64_t *ver);
void pv_roster_items_free(pv_roster_item *items, size_t n);
/* Insert or replace the item for it->jid and set the roster version. */
void pv_store_roster_put(pv_store *st, const char *host, const char *user,
	const pv_roster_item *it, uint64_t ver, pv_store_done_fn done, void *ud);
void pv_store_roster_del(pv_store *st, const char *host, const char *user,
	const char *jid, uint64_t ver, pv_store_done_fn done, void *ud);

/* ---- offline messages (XEP-0160), in arrival order ---- */
/* Appends a message unless the user's queue already holds `max` (max < 0: no limit);
 * a full queue fails the write with PV_ELIMIT and stores nothing.  The count is taken
 * inside the write, in commit order, so the caller needs no read (which would wait for
 * every write queued before it) and two pushes can never both take the last place. */
void pv_store_offline_push(pv_store *st, const char *host, const char *user,
	const char *xml, size_t len, int max, pv_store_done_fn done, void *ud);
/* Calls cb for each stored message in order (id increasing).  Returns count or <0. */
int pv_store_offline_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len), void *ud);
/* Deletes messages with id <= upto. */
void pv_store_offline_delete(pv_store *st, const char *host, const char *user,
	int64_t upto, pv_store_done_fn done, void *ud);
int pv_store_offline_count(pv_store *st, const char *host, const char *user);

/* ---- per-user key/value data: private XML (XEP-0049), vcard-temp (XEP-0054) ----
 * kind names the feature ("private", "vcard"); key is feature-defined. */
int pv_store_kv_get(pv_store *st, const char *host, const char *user,
	const char *kind, const char *key, char **val, size_t *len); /* PV_ENOENT; caller frees */
/* val NULL deletes. */
void pv_store_kv_put(pv_store *st, const char *host, const char *user,
	const char *kind, const char *key, const char *val, size_t len,
	pv_store_done_fn done, void *ud);

/* ---- durable session state (XEP-0198 resumption and the outbound queue) ----
 * Every stanza that must not be lost is appended to its session's outbound queue
 * before it is written to the socket; rows leave the queue when the client acked them
 * (SM) or the socket write completed (no SM).  `seq` counts stanzas sent to the client
 * (64-bit, never wraps; XEP-0198's h is seq mod 2^32).  `h_in` counts stanzas received
 * from the client whose handling is committed. */
typedef struct pv_store_sess {
	char *sid;          /* SM resumption id (or an internal id when SM is off) */
	char *host, *user, *resource;
	bool sm;            /* resumable */
	uint64_t h_in;
	/* XEP-0198 counts from <enable/>: the client's h = (seq - out_base) mod 2^32 and
	 * ours = (h_in - in_base) mod 2^32.  Set by pv_store_sess_put. */
	uint64_t in_base, out_base;
	int64_t expires;    /* wall-clock seconds; 0 while the session is connected */
} pv_store_sess;

void pv_store_sess_put(pv_store *st, const pv_store_sess *s, pv_store_done_fn done, void *ud);
void pv_store_sess_set_h(pv_store *st, const char *sid, uint64_t h_in,
	pv_store_done_fn done, void *ud);
void pv_store_sess_set_expiry(pv_store *st, const char *sid, int64_t expires,
	pv_store_done_fn done, void *ud);
/* Deletes the session and its queue. */
void pv_store_sess_del(pv_store *st, const char *sid, pv_store_done_fn done, void *ud);
/* Loads one session (PV_ENOENT); caller frees with pv_store_sess_fini. */
int pv_store_sess_get(pv_store *st, const char *sid, pv_store_sess *out);
void pv_store_sess_fini(pv_store_sess *s);
/* Calls cb for every stored session. */
int pv_store_sess_list(pv_store *st, void (*cb)(void *ud, const pv_store_sess *s), void *ud);

void pv_store_outq_append(pv_store *st, const char *sid, uint64_t seq,
	const char *xml, size_t len, pv_store_done_fn done, void *ud);
/* Deletes queued rows with seq <= upto. */
void pv_store_outq_ack(pv_store *st, const char *sid, uint64_t upto,
	pv_store_done_fn done, void *ud);
/* Calls cb for rows with seq > after, in order. Returns count or <0. */
int pv_store_outq_list(pv_store *st, const char *sid, uint64_t after,
	void (*cb)(void *ud, uint64_t seq, const char *xml, size_t len), void *ud);

/* ---- server-to-server links (issue 3) ----
 * Outbound: one durable queue per link (local domain -> remote domain), ordered by a
 * 64-bit seq the caller assigns (monotonic per link, never reused within an epoch).  A
 * stanza is pushed before the local sender's stream acknowledges it and leaves the queue
 * when the peer acknowledged it (XEP-0198 on s2s) or it expired (bounced).
 * Each link has an epoch: a random id made when the link's first queue row is created;
 * the sender stamps stanzas with epoch:seq so the receiver can drop resends.
 * Inbound: per link (remote domain -> local domain) the receiver keeps the epoch and the
 * highest seq it committed (high-water mark); seq <= hwm in the same epoch is a duplicate. */
typedef struct pv_store_s2s_queue {
	char *local, *remote;
	char *epoch;
	uint64_t first_seq;            /* 0 when empty */
	uint64_t last_seq;             /* highest seq ever pushed on the link (even if acked) */
	size_t count;
	int64_t oldest;                /* created stamp of the first row; 0 when empty */
} pv_store_s2s_queue;

void pv_store_s2s_push(pv_store *st, const char *local, const char *remote, uint64_t seq,
	int64_t created, const char *xml, size_t len, pv_store_done_fn done, void *ud);
/* Rows with seq > after, in order, at most limit.  Returns count or <0. */
int pv_store_s2s_list(pv_store *st, const char *local, const char *remote, uint64_t after,
	size_t limit, void (*cb)(void *ud, uint64_t seq, int64_t created, const char *xml, size_t len),
	void *ud);
/* Deletes rows with seq <= upto. */
void pv_store_s2s_ack(pv_store *st, const char *local, const char *remote, uint64_t upto,
	pv_store_done_fn done, void *ud);
/* Deletes every row of the link (operator "drop"); the epoch stays. */
void pv_store_s2s_drop(pv_store *st, const char *local, const char *remote,
	pv_store_done_fn done, void *ud);
/* Calls cb for every link that has an epoch (even with an empty queue); the struct is
 * borrowed for the duration of the callback.  Returns count or <0. */
int pv_store_s2s_queues(pv_store *st, void (*cb)(void *ud, const pv_store_s2s_queue *q), void *ud);
/* Get the link's epoch, creating (and committing) a new random one if it has none.
 * Caller frees *epoch. */
int pv_store_s2s_epoch(pv_store *st, const char *local, const char *remote, char **epoch);

/* Inbound high-water mark of a link (remote -> local).  PV_ENOENT when none. */
int pv_store_s2s_hwm_get(pv_store *st, const char *local, const char *remote, char **epoch,
	uint64_t *hwm);
void pv_store_s2s_hwm_set(pv_store *st, const char *local, const char *remote,
	const char *epoch, uint64_t hwm, pv_store_done_fn done, void *ud);

/* ---- consent (issue 4): who may reach a user from other providers ----
 * Settings are small and read on every cross-provider stanza: callers cache them and
 * re-read after their own writes.  Lists are keyed by normalised bare JIDs / domains. */
typedef enum { PV_CONSENT_OFF = 0, PV_CONSENT_CONTACTS = 1, PV_CONSENT_EVERYONE = 2 } pv_consent_policy;

typedef struct pv_consent_rule {
	char *subject;        /* "eitaa.example" (a provider) or "ali@eitaa.example" (a sender) */
	int kind;             /* provider rule: a pv_consent_policy; sender rule: 1 allow, 0 deny */
} pv_consent_rule;

typedef struct pv_consent {
	pv_consent_policy policy;       /* default for providers without a rule */
	pv_consent_rule *providers;     /* per-provider policy */
	size_t nproviders;
	pv_consent_rule *senders;       /* per-sender allow (1) / deny (0) */
	size_t nsenders;
} pv_consent;

/* Loads the user's settings (defaults when none stored: policy off, no rules). */
int pv_store_consent_get(pv_store *st, const char *host, const char *user, pv_consent *out);
void pv_consent_fini(pv_consent *c);
void pv_store_consent_set_policy(pv_store *st, const char *host, const char *user,
	pv_consent_policy p, pv_store_done_fn done, void *ud);
/* Provider rule: policy for one provider domain; kind < 0 removes the rule. */
void pv_store_consent_set_provider(pv_store *st, const char *host, const char *user,
	const char *domain, int kind, pv_store_done_fn done, void *ud);
/* Sender rule: 1 allow, 0 deny, < 0 removes. */
void pv_store_consent_set_sender(pv_store *st, const char *host, const char *user,
	const char *jid, int kind, pv_store_done_fn done, void *ud);

/* Append-only, hash-chained log per user.  Each entry: seq (1, 2, ...), stamp, the
 * action text (e.g. "policy everyone", "allow ali@eitaa.example", "accept-request ...")
 * and hash = lowercase hex of SHA-256 over the bytes
 *     prev "\n" seq "\n" stamp "\n" action
 * where prev is the previous entry's hash (64 lowercase hex chars; 64 '0's for entry 1),
 * seq and stamp are decimal ASCII without leading zeros or '+' (stamp is signed: "-5"),
 * and action is its bytes up to (not including) the NUL, with nothing after it.  Only
 * the last field is free text, so an action may itself contain "\n".
 * Example: entry 1, stamp 1700000000, action "policy everyone" hashes
 * "000...000\n1\n1700000000\npolicy everyone" (64 zeros).
 * The store computes seq and hashes inside the write transaction, reading the head in
 * that transaction, so concurrent appends cannot fork the chain; the database refuses
 * UPDATE and DELETE of log rows while the account exists.  Appending for an account that
 * does not exist fails with PV_ENOENT.  To commit a settings change together with its
 * log entry, queue both between pv_store_batch_begin and pv_store_batch_end. */
typedef struct pv_consent_entry {
	uint64_t seq;
	int64_t stamp;
	char *action;
	char prev[65], hash[65];
} pv_consent_entry;

void pv_store_consent_log(pv_store *st, const char *host, const char *user, const char *action,
	int64_t stamp, pv_store_done_fn done, void *ud);
/* Entries with seq > after in order; returns count or <0. */
int pv_store_consent_log_list(pv_store *st, const char *host, const char *user, uint64_t after,
	void (*cb)(void *ud, const pv_consent_entry *e), void *ud);
/* The latest entry's seq (0 when none). */
int pv_store_consent_log_head(pv_store *st, const char *host, const char *user, uint64_t *seq);
/* Recomputes the user's chain: 0 if intact (*bad_seq = 0), else PV_EINVAL with *bad_seq
 * the first seq whose entry is missing or whose prev or hash does not check out.
 * (Removing entries from the end is not detectable from the chain alone.) */
int pv_store_consent_log_verify(pv_store *st, const char *host, const char *user,
	uint64_t *bad_seq);

/* Evidence: which log entry a delivered cross-provider stanza rested on.  The entry is
 * the user's latest when the write runs, that is after every log write queued before it
 * (read inside the write: a read first would cost a commit under load). */
void pv_store_consent_evidence(pv_store *st, const char *host, const char *user,
	const char *sender, const char *stanza_id, int64_t stamp, pv_store_done_fn done,
	void *ud);
/* Looks up the evidence for a stanza id (the latest record when a sender reused the
 * id); PV_ENOENT when none.  Any output may be NULL; caller frees *sender. */
int pv_store_consent_evidence_get(pv_store *st, const char *host, const char *user,
	const char *stanza_id, char **sender, uint64_t *entry_seq, int64_t *stamp);

/* Message requests: stanzas held from a sender the user has not allowed. */
typedef struct pv_request_info {
	char *sender;         /* bare JID */
	size_t count, bytes;
	int64_t first, last;  /* stamps */
} pv_request_info;

void pv_store_request_hold(pv_store *st, const char *host, const char *user, const char *sender,
	int64_t stamp, const char *xml, size_t len, pv_store_done_fn done, void *ud);
/* One line per sender with held stanzas, ordered by each sender's first held stanza
 * (arrival order); first/last are the stamps of the sender's first and last held
 * stanza, bytes their total length.  r is borrowed during the callback.  Returns count
 * or <0. */
int pv_store_request_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const pv_request_info *r), void *ud);
/* Held stanzas of one sender in arrival order (id increasing); returns count or <0. */
int pv_store_request_get(pv_store *st, const char *host, const char *user, const char *sender,
	void (*cb)(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len), void *ud);
/* PV_ENOENT when the user holds nothing from the sender; else fills *out (free with
 * pv_request_info_fini). */
int pv_store_request_info(pv_store *st, const char *host, const char *user, const char *sender,
	pv_request_info *out);
int pv_store_request_count(pv_store *st, const char *host, const char *user); /* senders */
void pv_store_request_drop(pv_store *st, const char *host, const char *user, const char *sender,
	pv_store_done_fn done, void *ud);
void pv_request_info_fini(pv_request_info *r);

/* Abuse reports (XEP-0377) kept for the provider's operators. */
typedef struct pv_report {
	int64_t id, stamp;
	char *host, *user, *sender, *reason, *text;
	char *evidence;       /* serialised held stanzas, may be NULL */
} pv_report;

/* host, user (the reporter) and sender are required; r->id is ignored (the store
 * assigns increasing ids), r->stamp is stored as given. */
void pv_store_report_add(pv_store *st, const pv_report *r, pv_store_done_fn done, void *ud);
/* Reports for host (all hosts when NULL) with id > after, in id order; r is borrowed
 * for the duration of the callback.  Returns count or <0. */
int pv_store_report_list(pv_store *st, const char *host, int64_t after,
	void (*cb)(void *ud, const pv_report *r), void *ud);

/* Blocking (XEP-0191): the user's block list (bare JIDs or domains), sorted; returns
 * count or <0.  Setting an entry that is present (or clearing one that is absent) is not
 * an error. */
int pv_store_block_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const char *jid), void *ud);
/* The users of the host with a list (in no particular order); returns count or <0. */
int pv_store_block_users(pv_store *st, const char *host,
	void (*cb)(void *ud, const char *user), void *ud);
void pv_store_block_set(pv_store *st, const char *host, const char *user, const char *jid,
	bool blocked, pv_store_done_fn done, void *ud);
void pv_store_block_clear(pv_store *st, const char *host, const char *user,
	pv_store_done_fn done, void *ud);

/* ---- phone numbers (issue 6) ----
 * One verified E.164 number per account, unique per host, with the account's phone
 * settings (src/modules/mod_phone.c, docs/protocol/phone.md, schema 004_phone.sql).
 * Numbers given to these calls are already normalised (pv_phone_normalize).  The row
 * exists only while the account has a number: releasing it resets the settings. */
typedef struct pv_phone_rec {
	char *user;          /* localpart */
	char *e164;
	bool findable;       /* default false */
	bool preferred;      /* this account is the person's preferred messenger */
	int64_t updated_ms;  /* when findable/preferred/number last changed (unix ms) */
} pv_phone_rec;
void pv_phone_rec_fini(pv_phone_rec *r);
/* synchronous reads; 0, PV_ENOENT or <0 */
int pv_store_phone_of_user(pv_store *st, const char *host, const char *user, pv_phone_rec *out);
int pv_store_phone_by_number(pv_store *st, const char *host, const char *e164, pv_phone_rec *out);
/* Creates the account with its number in one transaction (synchronous, like
 * pv_store_user_create).  PV_EEXIST when the localpart or the number is taken; then
 * *number_taken (may be NULL) says whether it was the number. */
int pv_store_user_create_phone(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds, const char *e164, int64_t updated_ms,
	bool *number_taken);
/* Attaches e164 to an existing account, or replaces its number in the same statement
 * (the old one is released only if the new one is stored; settings are kept).
 * done rc: 0, PV_EEXIST (another account of the host has the number), PV_ENOENT (no such
 * account). */
void pv_store_phone_set(pv_store *st, const char *host, const char *user, const char *e164,
	int64_t updated_ms, pv_store_done_fn done, void *ud);
/* Releases the account's number (settings go with it).  done rc: 0 or PV_ENOENT. */
void pv_store_phone_release(pv_store *st, const char *host, const char *user,
	pv_store_done_fn done, void *ud);
/* Sets the settings of an account with a number.  done rc: 0 or PV_ENOENT (no number). */
void pv_store_phone_set_flags(pv_store *st, const char *host, const char *user,
	bool findable, bool preferred, int64_t updated_ms, pv_store_done_fn done, void *ud);
/* After pv_store_user_delete: the number the deleted account had (caller frees *e164),
 * taken out of the store's "announce the release" list; PV_ENOENT when it had none or
 * it was taken already.  Synchronous. */
int pv_store_phone_gone_take(pv_store *st, const char *host, const char *user, char **e164);

/* Verification codes: the store keeps a 32-byte keyed hash (the caller's HMAC over the
 * code and what it is for), its expiry and the failed checks, one per number.  Times are
 * unix ms. */
#define PV_PHONE_HASH_LEN 32
/* Counts one code sent to e164 in the current window of window_ms (synchronous write):
 * 0, or PV_ELIMIT when max were sent in the window already (then nothing is counted). */
int pv_store_phone_send_count(pv_store *st, const char *host, const char *e164,
	int64_t now_ms, int64_t window_ms, unsigned max);
/* Stores the pending code of e164, replacing any older one (attempts start at 0). */
void pv_store_phone_code_put(pv_store *st, const char *host, const char *e164,
	const unsigned char hash[PV_PHONE_HASH_LEN], int64_t expires_ms,
	pv_store_done_fn done, void *ud);
typedef enum {
	PV_CODE_OK = 0,        /* matched; the code is deleted (never usable again) */
	PV_CODE_NONE,          /* no pending code for the number */
	PV_CODE_EXPIRED,       /* it expired (and is deleted) */
	PV_CODE_WRONG,         /* no match; counted as a failed attempt */
	PV_CODE_EXHAUSTED,     /* max_attempts failed already; not compared */
} pv_code_result;
/* Checks hash against the pending code of e164 in one write transaction (synchronous;
 * constant-time comparison).  Returns 0 with *res set, or <0 on a storage error. */
int pv_store_phone_code_check(pv_store *st, const char *host, const char *e164,
	const unsigned char hash[PV_PHONE_HASH_LEN], int64_t now_ms, unsigned max_attempts,
	pv_code_result *res);

/* ---- exchange registry (issue 6) ----
 * On an exchange host (role: exchange): for each person who chose to be findable, the
 * blinded number (pv_directory.h) -> the accounts published by member providers
 * (schema 005_directory.sql, src/modules/mod_directory.c, docs/protocol/directory.md).
 * An account (bare JID) has at most one entry per exchange host. */
typedef struct pv_registry_entry {
	const char *jid;      /* bare JID; borrowed during the callback */
	bool preferred;
	int64_t updated_ms;   /* the provider's unix ms of the change */
} pv_registry_entry;
/* Publish jid under blinded (replacing any other entry of jid in the same transaction);
 * an update older than the stored entry's updated_ms is ignored.  provider = jid's
 * domain (the member that published it). */
void pv_store_registry_put(pv_store *st, const char *exchange_host, const char *blinded,
	const char *jid, const char *provider, bool preferred, int64_t updated_ms,
	pv_store_done_fn done, void *ud);
/* Withdraw jid's entry (under blinded; any blinded when NULL).  Absent is not an error. */
void pv_store_registry_del(pv_store *st, const char *exchange_host, const char *blinded,
	const char *jid, pv_store_done_fn done, void *ud);
/* Entries for blinded, preferred first, then newest first; synchronous.  Returns the
 * count or <0. */
int pv_store_registry_lookup(pv_store *st, const char *exchange_host, const char *blinded,
	void (*cb)(void *ud, const pv_registry_entry *e), void *ud);
/* The preferred account for a blinded number at this exchange host: 0 and *jid (new string,
 * caller frees), or PV_ENOENT.  If no entry is marked preferred, the most recently
 * updated one; if several are, the most recently updated of those. */
int pv_store_registry_preferred(pv_store *st, const char *exchange_host, const char *blinded,
	char **jid);
/* Number of entries at the exchange host (or <0). */
int64_t pv_store_registry_count(pv_store *st, const char *exchange_host);

/* ---- a provider's blinded index (issue 6, schema 006_phone_blind.sql) ----
 * blinded -> number for the host's findable numbers, kept by mod_directory so a peer's
 * blinded query is one indexed read and no number sits in memory. */
/* key_id fingerprints the blinding key the rows were made with.  When it differs from
 * the stored one (or none is stored), the host's rows are deleted and key_id stored:
 * returns 1; 0 when unchanged; <0 on error.  Synchronous write. */
int pv_store_blind_key(pv_store *st, const char *host, const char *key_id);
/* Deletes rows whose number is no longer findable, then calls cb for each findable
 * number without a row (the caller blinds and puts it).  Returns that count or <0.
 * Synchronous write. */
int pv_store_blind_repair(pv_store *st, const char *host, void (*cb)(void *ud, const char *e164),
	void *ud);
/* Stores blinded -> e164, replacing the number's previous row. */
void pv_store_blind_put(pv_store *st, const char *host, const char *blinded, const char *e164,
	pv_store_done_fn done, void *ud);
void pv_store_blind_del(pv_store *st, const char *host, const char *e164, pv_store_done_fn done,
	void *ud);
/* 0 and *e164 (new string, caller frees), or PV_ENOENT.  Synchronous read. */
int pv_store_blind_lookup(pv_store *st, const char *host, const char *blinded, char **e164);

/* Writes queued between begin and end reach the storage thread together, so they are
 * committed in one transaction (all or none survive a crash).  Used where a delivery
 * and its bookkeeping must not be split (s2s high-water mark).  Reads inside a batch
 * are not allowed to wait for the batch's own writes (they go ahead of them).  Not
 * nestable; loop thread only. */
void pv_store_batch_begin(pv_store *st);
void pv_store_batch_end(pv_store *st);

/* Counters for stats/metrics. */
typedef struct pv_store_stats {
	uint64_t commits, writes, reads, fsync_us_total;
	uint64_t reads_loop;         /* of reads: answered on the loop thread's connection */
} pv_store_stats;
void pv_store_get_stats(pv_store *st, pv_store_stats *out);

#endif
