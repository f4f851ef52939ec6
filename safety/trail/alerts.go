package trail

import (
	"context"
	"log/slog"

	"github.com/warden-llm/warden/runtime/gpu"
)

// alerter receives operational alerts: a GPU too hot (dispatch paused), a
// model load held for GPU memory, and their clearing. It is called from the
// GPU monitor's goroutine while the gate decides: it must not block for long
// and must not call back into the gate or the scheduler.
type alerter interface {
	Alert(ctx context.Context, kind string, body any)
}

var _ alerter = (*AuditTrail)(nil) // alerts ride the audit trail's outbox to [[alerts.sink]]

// AlertHook returns the func the GPU admission calls on every alert: it
// logs the alert at warn and hands it to alerts.
func AlertHook(ctx context.Context, log *slog.Logger, alerts alerter) func(gpu.Alert) {
	return func(a gpu.Alert) {
		body := alertBody(a)
		log.Warn("alert", "kind", a.Kind, "active", a.Active, "model", a.Model, "device", a.Device,
			"temp_c", a.TempC, "limit_c", a.LimitC, "message", a.Message)
		alerts.Alert(ctx, a.Kind, body)
	}
}

// alertBody is an alert as JSON-ready fields with stable names.
func alertBody(a gpu.Alert) map[string]any {
	b := map[string]any{
		"time":    a.Time.UTC(),
		"kind":    a.Kind,
		"active":  a.Active,
		"message": a.Message,
	}
	switch a.Kind {
	case gpu.AlertTemperature:
		b["device"], b["temp_c"], b["limit_c"] = a.Device, a.TempC, a.LimitC
		if !a.Active {
			b["paused_seconds"] = a.Paused.Seconds()
		}
	case gpu.AlertMemory:
		b["model"] = a.Model
	}
	return b
}
