-- Up Migration

-- Created inbox_messages. The inbox is the inbox module's own table now
-- (packages/toolkit/src/inbox/inbox.ts, version 1), which `migrate` applies before these files,
-- on a database that ran this file or not. Nothing is left to do here; the
-- file stays, as node-pg-migrate records it by name.

-- Down Migration
