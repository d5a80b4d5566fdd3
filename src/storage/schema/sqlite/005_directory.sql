-- 005_directory.sql -- the exchange's registry (issue 6; src/modules/mod_directory.c, the
-- "exchange registry (issue 6)" section of pv_store.h, docs/protocol/directory.md).
--
-- Applied once, inside a transaction, when PRAGMA user_version is 4.  Never edit a
-- released migration: add a new file instead.
--
-- Only an exchange host writes here.  It never sees a number in clear: `blinded` is
-- HMAC-SHA256(interconnect key, E.164) in lowercase base32 (52 characters), computed by
-- the publishing provider.  One row per account that chose to be findable: an account
-- has one number, so publishing a new blinded value for a JID replaces its old row
-- (the store does both in one transaction).  Withdrawal deletes the row at once.
CREATE TABLE registry (
	host TEXT NOT NULL,                       -- the exchange host
	blinded TEXT NOT NULL CHECK (length(blinded) = 52),
	jid TEXT NOT NULL,                        -- bare JID of the account
	provider TEXT NOT NULL,                   -- the member that published it (jid's domain)
	preferred INTEGER NOT NULL DEFAULT 0 CHECK (preferred IN (0, 1)),
	updated_ms INTEGER NOT NULL,              -- the provider's unix ms of the change
	PRIMARY KEY (host, blinded, jid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX registry_by_jid ON registry (host, jid);
CREATE INDEX registry_by_provider ON registry (host, provider);
