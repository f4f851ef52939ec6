package trail

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
)

// Importing the trail installs its forwarder: every chain write in this
// process (the server's, and an admin command's in its own process) puts
// its outbox rows in the same transaction. `warden serve` and the admin
// commands both import it through cmd/warden.
func init() { audit.SetForwarder(forwardTx) }

// forwardLog receives the forwarder's notes (the outbox filling, messages
// dropped): the serving trail's logger, set by New; slog.Default in an
// admin command.
var forwardLog atomic.Pointer[slog.Logger]

func flog() *slog.Logger {
	if l := forwardLog.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// forwardTx enqueues, in tx, the outbox messages for recs or ckpt: each
// record under TopicAudit (with a safety alert where one is due) and each
// checkpoint under TopicCheckpoint. It enqueues only while some sink has a
// cursor (a server with sinks has started on this database), and the
// sinks' topic filters decide who takes what, so a command in another
// process needs no copy of the server's sink list. At the outbox's cap it
// fails (fail_closed) or drops the oldest undelivered messages and appends
// a chain record saying which (drop_oldest).
func forwardTx(ctx context.Context, tx *sql.Tx, recs []audit.StoredRecord, ckpt *audit.Checkpoint) error {
	st, err := outbox.ReadState(ctx, tx)
	if err != nil || !st.Forwarding {
		return err
	}
	msgs := make([]outbox.Message, 0, len(recs)+1)
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		msgs = append(msgs, outbox.Message{Topic: outbox.TopicAudit, Body: b, Time: r.Time})
		if a := safetyAlert(r); a != nil {
			msgs = append(msgs, *a)
		}
	}
	if ckpt != nil {
		b, err := json.Marshal(ckpt)
		if err != nil {
			return err
		}
		msgs = append(msgs, outbox.Message{Topic: outbox.TopicCheckpoint, Body: b, Time: ckpt.Time})
	}
	var need int64
	for _, m := range msgs {
		need += int64(len(m.Body))
	}
	dropped, err := outbox.MakeRoomTx(ctx, tx, st, need)
	if err != nil {
		return err
	}
	if err := outbox.EnqueueTx(ctx, tx, msgs...); err != nil {
		return err
	}
	if dropped.Messages > 0 {
		// Itself a chain record, forwarded like the others.
		detail, err := json.Marshal(struct {
			Actor  string         `json:"actor"`
			Action string         `json:"action"`
			Detail outbox.Dropped `json:"detail"`
		}{"warden", ActionOutboxDropped, dropped})
		if err != nil {
			return err
		}
		if _, err := audit.AppendTx(ctx, tx, audit.Record{Kind: audit.KindAdmin, Detail: detail}); err != nil {
			return fmt.Errorf("record dropped outbox messages: %w", err)
		}
		flog().Error("outbox full: dropped the oldest undelivered messages (audit.outbox_full = drop_oldest)",
			"messages", dropped.Messages, "bytes", dropped.Bytes, "first_seq", dropped.FirstSeq, "last_seq", dropped.LastSeq)
	}
	// Far below both alert levels with no alert raised (the usual case),
	// the fill level needs no second look: this transaction only added
	// need bytes.
	if !st.Alerted && float64(st.Bytes+need) < outbox.ClearAlertRatio*float64(st.MaxBytes) {
		return nil
	}
	return fillAlert(ctx, tx, st.MaxBytes, st.Mode)
}

// ActionOutboxDropped is the action of the admin record appended when the
// outbox drops undelivered messages at its cap.
const ActionOutboxDropped = "outbox_dropped"

// fillAlert raises the outbox alert (an alert message and an error log)
// when the outbox passes FillAlertRatio of its cap, and clears it below
// ClearAlertRatio.
func fillAlert(ctx context.Context, tx *sql.Tx, maxBytes int64, mode string) error {
	st, err := outbox.ReadState(ctx, tx)
	if err != nil {
		return err
	}
	level := float64(st.Bytes) / float64(maxBytes)
	var on bool
	switch {
	case !st.Alerted && level >= outbox.FillAlertRatio:
		on = true
	case st.Alerted && level < outbox.ClearAlertRatio:
		on = false
	default:
		return nil
	}
	a := outbox.OutboxAlert{Kind: outbox.AlertKindOutbox, Active: on, Bytes: st.Bytes, MaxBytes: maxBytes, Mode: mode, Time: time.Now().UTC()}
	if on {
		a.Message = fmt.Sprintf("the outbox holds %d of %d bytes: forwarding sinks are behind; at the cap audit.outbox_full = %s applies", st.Bytes, maxBytes, mode)
		flog().Error("outbox filling: forwarding sinks are behind", "bytes", st.Bytes, "max_bytes", maxBytes, "outbox_full", mode)
	} else {
		a.Message = fmt.Sprintf("the outbox is down to %d of %d bytes", st.Bytes, maxBytes)
		flog().Info("outbox drained below the alert level", "bytes", st.Bytes, "max_bytes", maxBytes)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := outbox.EnqueueTx(ctx, tx, outbox.Message{Topic: outbox.TopicAlert, Body: b, Time: a.Time}); err != nil {
		return err
	}
	return outbox.SetAlertedTx(ctx, tx, on)
}
