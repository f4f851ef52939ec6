// Package safety is the home of Warden's controls, one sub-package each:
// store (the one SQLite file), keys (scoped API keys), quota (per-key
// limits), audit (the hash-chained trail) and outbox (forwarding off-host).
// None of them knows about HTTP; the server package calls into them.
package safety
