-- 001_init.sql -- the first peyvand schema for the SQLite backend (src/storage/sqlite.c).
--
-- Applied once, inside a transaction, when PRAGMA user_version is below 1; the store
-- then sets user_version = 1.  Never edit a released migration: add 002_*.sql instead.
--
-- Every per-user row is keyed by (host, user), both already normalised by the caller
-- (RFC 7622 nodeprep / domain rules), so plain BINARY comparison is correct.
-- Only rows that cannot exist without their parent carry a foreign key (creds -> users,
-- roster_groups -> roster).  Roster, offline, kv and session rows do not reference
-- users: a write racing an account deletion must not fail a whole group commit, and
-- pv_store_user_delete removes every table's rows explicitly.
-- Roster groups live in their own table (one row per group, pos keeps the client's
-- order) rather than in a joined string, so a group name may hold any character.
-- Large values (stanzas, vCards) go into ordinary rowid tables; WITHOUT ROWID is used
-- only for small rows.

CREATE TABLE users (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	created INTEGER NOT NULL,                 -- wall-clock seconds
	PRIMARY KEY (host, user)
) WITHOUT ROWID;

-- SCRAM credentials (RFC 5802 / RFC 7677), one row per mechanism.
CREATE TABLE creds (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	mech TEXT NOT NULL,                       -- 'SCRAM-SHA-1', 'SCRAM-SHA-256'
	salt BLOB NOT NULL,
	iter INTEGER NOT NULL,
	stored_key BLOB NOT NULL,
	server_key BLOB NOT NULL,
	PRIMARY KEY (host, user, mech),
	FOREIGN KEY (host, user) REFERENCES users (host, user) ON DELETE CASCADE
) WITHOUT ROWID;

-- Roster items (RFC 6121 section 2) and stored inbound subscription requests
-- (in_roster = 0: a pending-in request from a contact that is not a roster item).
CREATE TABLE roster (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	jid TEXT NOT NULL,                        -- bare contact JID
	name TEXT,
	sub INTEGER NOT NULL DEFAULT 0 CHECK (sub BETWEEN 0 AND 3), -- pv_sub: none, to, from, both
	ask INTEGER NOT NULL DEFAULT 0,
	approved INTEGER NOT NULL DEFAULT 0,
	in_roster INTEGER NOT NULL DEFAULT 1,
	pending_in TEXT,                          -- serialised subscribe presence
	PRIMARY KEY (host, user, jid)
) WITHOUT ROWID;

CREATE TABLE roster_groups (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	jid TEXT NOT NULL,
	pos INTEGER NOT NULL,                     -- order the client gave
	name TEXT NOT NULL,
	PRIMARY KEY (host, user, jid, pos),
	FOREIGN KEY (host, user, jid) REFERENCES roster (host, user, jid) ON DELETE CASCADE
) WITHOUT ROWID;

-- Roster versioning (RFC 6121 section 2.6); a user without a row has version 0.
CREATE TABLE roster_version (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	ver INTEGER NOT NULL,
	PRIMARY KEY (host, user)
) WITHOUT ROWID;

-- Offline messages (XEP-0160), delivered in id order.  AUTOINCREMENT: an id is never
-- reused, so "delete up to id N" cannot hit a message that arrived later.
CREATE TABLE offline (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	stamp INTEGER NOT NULL,                   -- wall-clock seconds at arrival
	xml TEXT NOT NULL
);
CREATE INDEX offline_by_user ON offline (host, user, id);

-- Per-user feature data: private XML storage (XEP-0049), vcard-temp (XEP-0054), ...
CREATE TABLE kv (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	kind TEXT NOT NULL,                       -- feature: 'private', 'vcard'
	name TEXT NOT NULL,                       -- feature-defined key
	val BLOB NOT NULL,
	UNIQUE (host, user, kind, name)
);

-- Durable session state for stream management (XEP-0198) and the outbound queue.
CREATE TABLE sessions (
	sid TEXT NOT NULL PRIMARY KEY,
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	resource TEXT,
	sm INTEGER NOT NULL DEFAULT 0,
	h_in INTEGER NOT NULL DEFAULT 0,          -- uint64 stored as its int64 bit pattern
	in_base INTEGER NOT NULL DEFAULT 0,       -- XEP-0198 counters start here (see pv_store.h)
	out_base INTEGER NOT NULL DEFAULT 0,
	expires INTEGER NOT NULL DEFAULT 0        -- wall-clock seconds; 0 while connected
);
CREATE INDEX sessions_by_user ON sessions (host, user);

-- No foreign key to sessions: pv_store_sess_del and pv_store_user_delete remove the
-- rows explicitly, and an append racing a session's deletion must not fail its batch.
CREATE TABLE outq (
	sid TEXT NOT NULL,
	seq INTEGER NOT NULL,                     -- uint64 stanza counter (below 2^63 in practice)
	xml TEXT NOT NULL,
	PRIMARY KEY (sid, seq)
);
