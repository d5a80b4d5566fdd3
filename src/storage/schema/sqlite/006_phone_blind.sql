-- 006_phone_blind.sql -- discovery on a provider: the blinded index of its findable
-- numbers (issue 6; src/modules/mod_directory.c, the "blinded index" section of
-- pv_store.h, docs/protocol/directory.md).
--
-- Applied once, inside a transaction, when PRAGMA user_version is 5.  Never edit a
-- released migration: add a new file instead.
--
-- Another provider (or the exchange) asks with a blinded number; the provider answers
-- from this table with one indexed read instead of keeping blinded -> number for every
-- findable person in memory (tens of millions of people, each blinded again at every
-- start).  mod_directory keeps it in step with the phone table on every phone-changed
-- event and repairs it at start (rows whose number is no longer findable go, findable
-- numbers without a row are added), so a crash between the two writes heals itself.
-- `key_id` identifies the blinding key the rows were made with (a SHA-256 fingerprint,
-- never the key): a new key empties the host's rows and the start-up repair refills them.
CREATE TABLE phone_blind (
	host TEXT NOT NULL,
	blinded TEXT NOT NULL CHECK (length(blinded) = 52),
	e164 TEXT NOT NULL,
	PRIMARY KEY (host, blinded)
) WITHOUT ROWID;
CREATE UNIQUE INDEX phone_blind_by_number ON phone_blind (host, e164);

CREATE TABLE phone_blind_key (
	host TEXT PRIMARY KEY,
	key_id TEXT NOT NULL
) WITHOUT ROWID;
