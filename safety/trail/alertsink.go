package trail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/outbox"
)

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
	var s filter.Summary
	if json.Unmarshal(r.Safety, &s) != nil {
		return nil
	}
	alerting := s.Alerting()
	if len(alerting) == 0 {
		return nil
	}
	ds := make([]outbox.Decision, len(alerting))
	for i, d := range alerting {
		ds[i] = outbox.Decision{Direction: string(d.Direction), Category: d.Category, Action: string(d.Action), Count: d.Count}
	}
	b, err := json.Marshal(outbox.SafetyAlert{
		Kind: outbox.AlertKindSafety, Time: r.Time.UTC(), AuditSeq: r.Seq, RequestID: r.RequestID,
		KeyID: r.KeyID, Endpoint: r.Endpoint, Model: r.Model, Status: r.Status,
		Profile: s.Profile, Decisions: ds,
	})
	if err != nil {
		return nil
	}
	return &outbox.Message{Topic: outbox.TopicAlert, Body: b, Time: r.Time}
}

// Alert queues an operational alert (a GPU limit) for the alert sinks. It
// writes one outbox row; delivery happens in the outbox's goroutines.
func (t *Trail) Alert(ctx context.Context, a outbox.GPUAlert) {
	if !t.alerting || t.out == nil {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	t.enqueueAlert(ctx, a.Kind, b)
}

// ModelAlert queues a model digest alert for the alert sinks.
func (t *Trail) ModelAlert(ctx context.Context, a outbox.ModelAlert) {
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	t.enqueueAlert(ctx, a.Kind, b)
}

// enqueueAlert queues one alert body for the alert sinks.
func (t *Trail) enqueueAlert(ctx context.Context, kind string, b []byte) {
	if !t.alerting || t.out == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	tx, err := t.db.BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback()
		if err = outbox.EnqueueTx(ctx, tx, outbox.Message{Topic: outbox.TopicAlert, Body: b, Time: t.now()}); err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		t.log.Error("alert not queued", "kind", kind, "err", err)
		return
	}
	t.out.Notify()
}

// AlertProbe queues a probe regression alert for the alert sinks.
func (t *Trail) AlertProbe(ctx context.Context, a outbox.ProbeAlert) {
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	t.enqueueAlert(ctx, a.Kind, b)
}
