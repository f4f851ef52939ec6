// Package audit is Warden's tamper-evident audit trail: who asked what,
// from where and when, kept in the SQLite database as a hash chain.
//
// Each row of audit_records carries SHA-256(prev_hash || canonical
// encoding); triggers refuse UPDATE and DELETE outside the pruning path.
// AppendTx appends inside a caller's BEGIN IMMEDIATE transaction and reads
// the chain head there, so a CLI process appending admin events never forks
// the chain. The server appends through one Writer goroutine that group
// commits many records per transaction and releases each waiter when its
// transaction commits (or fails: callers fail closed). The Writer keeps the
// head it committed and does not read it again: its INSERT adds the rows
// only while that head is still the newest row, and reads the head when
// another process appended since. The Writer also
// signs checkpoints with an ed25519 key kept in the data dir; Verify walks
// the chain and checkpoints and names the first broken link, and checking
// against a checkpoint received off-host catches a truncated tail. Prune
// deletes old rows through the sanctioned path and leaves a signed anchor
// Verify starts from. Every one of these writes goes through appendTx (rows)
// and insertCheckpoint (checkpoints), which call the Forwarder installed
// with SetForwarder in the same transaction: package trail installs one
// that writes the outbox rows, so no writer can leave its records
// unforwarded. AppendGapTx records records lost in a crash, continuing
// above every seq a receiver may hold. Prompt and response text, when kept
// at all, lives outside the chain in audit_text, encrypted with
// AES-256-GCM.
package audit
