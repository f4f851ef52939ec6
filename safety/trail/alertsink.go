package trail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/outbox"
)

// AlertsConfig is the [alerts] table: where alerts go. An alert is a
// safety finding that was flagged or blocked, or a GPU limit crossed or
// cleared. Alerts travel through the same outbox as forwarded audit
// records: committed with the record that caused them, delivered at least
// once with backoff, never on a request's critical path.
type AlertsConfig struct {
	Sinks []SinkConfig `toml:"sink"`
}

// Validate reports each bad setting to bad.
func (a AlertsConfig) Validate(audit []SinkConfig, bad func(string, ...any)) { a.validate(audit, bad) }

func (a AlertsConfig) validate(audit []SinkConfig, bad func(string, ...any)) {
	names := map[string]bool{}
	for _, s := range audit {
		names[s.Name] = true
	}
	for i, s := range a.Sinks {
		if names[s.Name] {
			bad("alerts.sink[%d]: name %q already used by another sink", i, s.Name)
		}
		names[s.Name] = true
		if _, err := outbox.NewSink(s.outbox()); err != nil {
			bad("alerts.sink[%d]: %v", i, err)
		}
	}
	for i, s := range append(slices.Clip(audit), a.Sinks...) {
		for _, t := range s.Topics {
			switch t {
			case outbox.TopicAudit, outbox.TopicCheckpoint, outbox.TopicAlert:
			default:
				bad("sink %d (%q): unknown topic %q (want audit, checkpoint or alert)", i, s.Name, t)
			}
		}
	}
}

// buildSinks builds the audit and alert sinks, with each one's topics.
func buildSinks(cfg Config) ([]outbox.Sink, map[string][]string, error) {
	var sinks []outbox.Sink
	topics := map[string][]string{}
	add := func(sc SinkConfig, def []string) error {
		oc := sc.outbox()
		if sc.SecretFile != "" {
			b, err := os.ReadFile(sc.SecretFile)
			if err != nil {
				return fmt.Errorf("sink %q: secret_file: %w", sc.Name, err)
			}
			if oc.Secret = bytes.TrimSpace(b); len(oc.Secret) == 0 {
				return fmt.Errorf("sink %q: secret_file %s is empty", sc.Name, sc.SecretFile)
			}
		}
		s, err := outbox.NewSink(oc)
		if err != nil {
			return err
		}
		sinks = append(sinks, s)
		topics[sc.Name] = def
		if len(sc.Topics) > 0 {
			topics[sc.Name] = sc.Topics
		}
		return nil
	}
	for _, sc := range cfg.Audit.Sinks {
		if err := add(sc, []string{outbox.TopicAudit, outbox.TopicCheckpoint}); err != nil {
			return nil, nil, err
		}
	}
	for _, sc := range cfg.Alerts.Sinks {
		if err := add(sc, []string{outbox.TopicAlert}); err != nil {
			return nil, nil, err
		}
	}
	return sinks, topics, nil
}

// safetyAlert is the alert for a completion record whose safety decisions
// include a flag or a block, or nil. It carries the decisions (category,
// action, count) and the request's identity, never its text.
func safetyAlert(r audit.StoredRecord) *outbox.Message {
	if len(r.Safety) == 0 {
		return nil
	}
	var s struct {
		Profile   string            `json:"profile"`
		Decisions []filter.Decision `json:"decisions"`
	}
	if json.Unmarshal(r.Safety, &s) != nil {
		return nil
	}
	var alerting []filter.Decision
	for _, d := range s.Decisions {
		if d.Action == filter.Flag || d.Action == filter.Block {
			alerting = append(alerting, d)
		}
	}
	if len(alerting) == 0 {
		return nil
	}
	b, err := json.Marshal(map[string]any{
		"kind": "safety", "time": r.Time.UTC(), "audit_seq": r.Seq, "request_id": r.RequestID,
		"key_id": r.KeyID, "endpoint": r.Endpoint, "model": r.Model, "status": r.Status,
		"profile": s.Profile, "decisions": alerting,
	})
	if err != nil {
		return nil
	}
	return &outbox.Message{Topic: outbox.TopicAlert, Body: b, Time: r.Time}
}

// Alert queues an operational alert (a GPU limit) for the alert sinks. It
// writes one outbox row; delivery happens in the outbox's goroutines.
func (t *AuditTrail) Alert(ctx context.Context, kind string, body any) {
	if !t.alerting || t.out == nil {
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	tx, err := t.db.BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback()
		if err = outbox.EnqueueTx(ctx, tx, outbox.Message{Topic: outbox.TopicAlert, Body: b, Time: time.Now()}); err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		t.log.Error("alert not queued", "kind", kind, "err", err)
		return
	}
	t.out.Notify()
}
