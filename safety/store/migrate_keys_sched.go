package store

// keysSchedMigration gives each key a scheduling weight (its share of the
// backend's slots in the fair queue). A key's safety-filter profile lives
// in the policy column the keys table has had from the start.
var keysSchedMigration = migration{"key weight", `
ALTER TABLE keys ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
`}
