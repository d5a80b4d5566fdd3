-- 002_s2s.sql -- durable server-to-server link state for the SQLite backend
-- (src/storage/sqlite.c, the "server-to-server links" section of pv_store.h).
--
-- Applied once, inside a transaction, when PRAGMA user_version is 1; the store then sets
-- user_version = 2.  Never edit a released migration: add 003_*.sql instead.
--
-- local and remote are domain names already normalised by the caller (RFC 7622 domain
-- rules), so plain BINARY comparison is correct.  seq and hwm are uint64 stored as their
-- int64 bit pattern (ordering is correct below 2^63).
-- No foreign key from s2s_queue to s2s_link: the store inserts the link row in the same
-- operation as a link's first queue row, and links are never deleted (an operator "drop"
-- empties the queue and keeps the epoch, so a resend can never reuse an acked seq).

-- One row per outbound link (local domain -> remote domain) that has an epoch: a random
-- id the sender stamps into its stanzas (epoch:seq) so the receiver can drop resends.
CREATE TABLE s2s_link (
	local TEXT NOT NULL,
	remote TEXT NOT NULL,
	epoch TEXT NOT NULL,                      -- 16 lowercase hex chars
	last_seq INTEGER NOT NULL DEFAULT 0,      -- highest seq ever pushed: seqs never repeat in an epoch
	PRIMARY KEY (local, remote)
) WITHOUT ROWID;

-- The outbound queue of each link, in seq order (the primary key serves every query:
-- list after a seq, ack up to a seq, drop, first/last/count).  A rowid table: rows hold
-- whole stanzas.
CREATE TABLE s2s_queue (
	local TEXT NOT NULL,
	remote TEXT NOT NULL,
	seq INTEGER NOT NULL,                     -- assigned by the sender, monotonic per link
	created INTEGER NOT NULL,                 -- wall-clock seconds, for expiry bounces
	xml BLOB NOT NULL,                        -- the serialised stanza, length-exact
	PRIMARY KEY (local, remote, seq)
);

-- Inbound high-water mark per link (remote domain -> local domain): the peer's epoch
-- and the highest seq whose handling is committed; seq <= hwm in that epoch is a resend.
CREATE TABLE s2s_hwm (
	local TEXT NOT NULL,
	remote TEXT NOT NULL,
	epoch TEXT NOT NULL,
	hwm INTEGER NOT NULL,
	PRIMARY KEY (local, remote)
) WITHOUT ROWID;
