package store

// keysCIDRMigration gives each key the client networks it may be used
// from: a JSON array of CIDRs ("10.0.0.0/24"); empty allows any address.
var keysCIDRMigration = migration{"key client networks", `
ALTER TABLE keys ADD COLUMN allow_cidrs TEXT NOT NULL DEFAULT '[]';
`}
