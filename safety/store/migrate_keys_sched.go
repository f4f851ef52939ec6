package store

// keysSchedMigration gives each key a scheduling weight (its share of the
// backend's slots in the fair queue) and the name of its safety-filter
// profile (empty: the default profile).
var keysSchedMigration = migration{"key weight and filter profile", `
ALTER TABLE keys ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
ALTER TABLE keys ADD COLUMN profile TEXT NOT NULL DEFAULT '';
`}
