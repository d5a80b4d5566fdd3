-- 004_phone.sql -- phone numbers on a provider (issue 6; src/modules/mod_phone.c, the
-- "phone numbers (issue 6)" section of pv_store.h, docs/protocol/phone.md).
--
-- Applied once, inside a transaction, when PRAGMA user_version is 3.  Never edit a
-- released migration: add a new file instead.
--
-- Numbers are strict E.164 ("+989121234567", pv_phone_normalize), so BINARY comparison
-- is correct.  As in 001/003, per-user rows carry no foreign key to users;
-- pv_store_user_delete removes them explicitly.

-- One verified number per account and the account's phone settings.  A row exists
-- only while the account has a number: releasing the number deletes the row, so the
-- settings go back to their defaults (not findable, not preferred) and a number attached
-- later is never findable before the person says so again.  A change of number keeps
-- the settings (same person, same choices).
CREATE TABLE phone (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	e164 TEXT NOT NULL CHECK (substr(e164, 1, 1) = '+' AND length(e164) BETWEEN 9 AND 16),
	findable INTEGER NOT NULL DEFAULT 0 CHECK (findable IN (0, 1)),
	preferred INTEGER NOT NULL DEFAULT 0 CHECK (preferred IN (0, 1)),
	updated_ms INTEGER NOT NULL,              -- unix ms of the last change
	PRIMARY KEY (host, user)
) WITHOUT ROWID;
-- A number is unique per host (provider).
CREATE UNIQUE INDEX phone_by_number ON phone (host, e164);

-- Pending verification codes, at most one per number (a new request replaces the old
-- code).  Never the code itself: hash is HMAC-SHA256 under a key that lives only in the
-- server's memory, over the host, the number, the purpose (registration, or attaching
-- to one account) and the code -- a copy of this table does not reveal codes, and a
-- 6-digit code cannot be brute-forced offline without the key.  A verified code is
-- deleted in the transaction that checks it (no reuse); every failed check counts.
CREATE TABLE phone_code (
	host TEXT NOT NULL,
	e164 TEXT NOT NULL,
	hash BLOB NOT NULL CHECK (length(hash) = 32),
	expires_ms INTEGER NOT NULL,              -- unix ms
	attempts INTEGER NOT NULL DEFAULT 0,      -- failed checks so far
	PRIMARY KEY (host, e164)
) WITHOUT ROWID;

-- Codes sent per number in the current one-hour window (SMS cost and harassment of the
-- number's owner).  Kept apart from phone_code: a used code's row goes, the count stays.
-- Rows of windows that ended are pruned whenever a send is counted.
CREATE TABLE phone_send (
	host TEXT NOT NULL,
	e164 TEXT NOT NULL,
	window_ms INTEGER NOT NULL,               -- unix ms when the window started
	count INTEGER NOT NULL,
	PRIMARY KEY (host, e164)
) WITHOUT ROWID;

-- Numbers of deleted accounts, until mod_phone has told the rest of the server
-- ("phone-changed" with the number released; the directory withdraws it).  Written by
-- pv_store_user_delete in the same transaction that removes the account, so the
-- announcement cannot be lost between the deletion and the event.
CREATE TABLE phone_gone (
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	e164 TEXT NOT NULL,
	PRIMARY KEY (host, user)
) WITHOUT ROWID;
