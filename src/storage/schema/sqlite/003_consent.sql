-- 003_consent.sql -- consent settings, the consent log, evidence, message requests, abuse
-- reports and block lists for the SQLite backend (src/storage/sqlite.c, the "consent
-- (issue 4)" section of pv_store.h).
--
-- Applied once, inside a transaction, when PRAGMA user_version is 2; the store then sets
-- user_version = 3.  Never edit a released migration: add 004_*.sql instead.
--
-- Keys are normalised by the caller (bare JIDs, domains), so BINARY comparison is correct.
-- As in 001, per-user rows carry no foreign key to users (a write racing an account
-- deletion must not fail its group commit); pv_store_user_delete removes them explicitly.
--
-- What pv_store_user_delete removes: everything of the account in this file (settings,
-- consent log, evidence, held requests, block list) EXCEPT abuse_report.  The consent log
-- is the user's own history of their choices: it goes with the account (and a later
-- account of the same name must not inherit it).  Abuse reports belong to the provider's
-- operators (a report about a sender outlives the reporter's account), so they stay.

-- Default policy for providers without a rule (pv_consent_policy: 0 off, 1 contacts,
-- 2 everyone).  A user without a row has policy 0.
CREATE TABLE consent_policy (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	policy INTEGER NOT NULL CHECK (policy BETWEEN 0 AND 2),
	PRIMARY KEY (host, user)
) WITHOUT ROWID;

-- Per-provider rules: a pv_consent_policy for one provider domain.
CREATE TABLE consent_provider (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	domain TEXT NOT NULL,
	kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 2),
	PRIMARY KEY (host, user, domain)
) WITHOUT ROWID;

-- Per-sender rules: 1 allow, 0 deny, for one bare JID.
CREATE TABLE consent_sender (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	jid TEXT NOT NULL,
	kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
	PRIMARY KEY (host, user, jid)
) WITHOUT ROWID;

-- The append-only, hash-chained consent log (hash input: see pv_store.h).  The store
-- computes seq and the chain inside its write transaction; the triggers below make the
-- database itself refuse anything but extending the head of a live account's chain:
--  - INSERT: the account must exist (no orphan chains a re-created account would
--    inherit), seq must be head + 1 and prev the head's hash (64 zeros for seq 1).
--    The hash itself cannot be checked in SQL (no SHA-256); pv_store_consent_log_verify
--    recomputes it.  INSERT OR REPLACE is refused too: it would need seq <= head.
--  - UPDATE: always refused.
--  - DELETE: refused while the account exists.  The only legitimate removal is account
--    deletion, which deletes the users row first and the log rows next in the same
--    savepoint (all or nothing), so no flag that another writer could set is needed:
--    the rule is tied to the fact it stands for, "the account is gone".
-- This guards against bugs and stray SQL, not against someone with write access to the
-- file (DROP TRIGGER): that is what the hash chain is for, which makes edits detectable.
-- Truncating the tail of a chain is not detectable from the chain alone.
CREATE TABLE consent_log (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	seq INTEGER NOT NULL CHECK (seq >= 1),    -- 1, 2, ... per user (uint64 as int64)
	stamp INTEGER NOT NULL,                   -- caller's wall-clock seconds
	action TEXT NOT NULL,
	prev TEXT NOT NULL CHECK (length(prev) = 64), -- lowercase hex SHA-256
	hash TEXT NOT NULL CHECK (length(hash) = 64),
	PRIMARY KEY (host, user, seq)
);

CREATE TRIGGER consent_log_account BEFORE INSERT ON consent_log
WHEN NOT EXISTS (SELECT 1 FROM users WHERE host = NEW.host AND user = NEW.user)
BEGIN
	SELECT RAISE(ABORT, 'consent_log: no such account');
END;

CREATE TRIGGER consent_log_extend BEFORE INSERT ON consent_log
WHEN NEW.seq IS NOT (1 + ifnull((SELECT max(seq) FROM consent_log
		WHERE host = NEW.host AND user = NEW.user), 0))
	OR NEW.prev IS NOT ifnull((SELECT hash FROM consent_log
		WHERE host = NEW.host AND user = NEW.user ORDER BY seq DESC LIMIT 1),
		'0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
	SELECT RAISE(ABORT, 'consent_log: an entry must extend the head of its chain');
END;

CREATE TRIGGER consent_log_no_update BEFORE UPDATE ON consent_log
BEGIN
	SELECT RAISE(ABORT, 'consent_log is append-only');
END;

CREATE TRIGGER consent_log_no_delete BEFORE DELETE ON consent_log
WHEN EXISTS (SELECT 1 FROM users WHERE host = OLD.host AND user = OLD.user)
BEGIN
	SELECT RAISE(ABORT, 'consent_log is append-only while the account exists');
END;

-- Evidence: which log entry (entry_seq; 0 when the log was empty) a delivered
-- cross-provider stanza rested on.  No foreign key to consent_log for that reason.
-- Senders may reuse stanza ids: every record is kept, a lookup returns the latest.
CREATE TABLE consent_evidence (
	id INTEGER PRIMARY KEY,
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	stanza_id TEXT NOT NULL,
	sender TEXT NOT NULL,
	entry_seq INTEGER NOT NULL,
	stamp INTEGER NOT NULL
);
CREATE INDEX consent_evidence_by_stanza ON consent_evidence (host, user, stanza_id, id);

-- Message requests: stanzas held from senders the user has not allowed, in arrival
-- order (AUTOINCREMENT: ids never reused, so arrival order survives deletions).  xml is a
-- BLOB so that length() counts bytes.
CREATE TABLE consent_request (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	sender TEXT NOT NULL,                     -- bare JID
	stamp INTEGER NOT NULL,
	xml BLOB NOT NULL
);
CREATE INDEX consent_request_by_sender ON consent_request (host, user, sender, id);

-- Abuse reports (XEP-0377) for the provider's operators; kept when the reporter's
-- account is deleted.  AUTOINCREMENT: "reports after id N" paging never skips one.
CREATE TABLE abuse_report (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	host TEXT NOT NULL,
	user TEXT NOT NULL,                       -- the reporting account
	sender TEXT NOT NULL,                     -- the reported JID
	stamp INTEGER NOT NULL,
	reason TEXT,
	text TEXT,
	evidence TEXT                             -- serialised held stanzas
);
CREATE INDEX abuse_report_by_host ON abuse_report (host, id);

-- Blocking (XEP-0191): one row per blocked bare JID or domain.
CREATE TABLE blocklist (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	jid TEXT NOT NULL,
	PRIMARY KEY (host, user, jid)
) WITHOUT ROWID;
