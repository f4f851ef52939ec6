package trail

import (
	"context"
	"log/slog"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/safety/outbox"
)

// Alerter receives operational alerts: a GPU too hot (dispatch paused), a
// model load held for GPU memory, and their clearing. It is called from the
// GPU monitor's goroutine while the gate decides: it must not block for long
// and must not call back into the gate or the scheduler.
type Alerter interface {
	Alert(ctx context.Context, a outbox.GPUAlert)
}

var _ Alerter = (*Trail)(nil) // alerts ride the audit trail's outbox to [[alerts.sink]]

// AlertHook returns the func the GPU admission calls on every alert: it
// logs the alert at warn and hands it to alerts.
func AlertHook(ctx context.Context, log *slog.Logger, alerts Alerter) func(gpu.Alert) {
	return func(a gpu.Alert) {
		body := gpuAlert(a)
		log.Warn("alert", "kind", a.Kind, "active", a.Active, "model", a.Model, "device", a.Device,
			"temp_c", a.TempC, "limit_c", a.LimitC, "message", a.Message)
		alerts.Alert(ctx, body)
	}
}

// gpuAlert is the body of a GPU alert: the fields of its kind.
func gpuAlert(a gpu.Alert) outbox.GPUAlert {
	b := outbox.GPUAlert{Time: a.Time.UTC(), Kind: a.Kind, Active: a.Active, Message: a.Message}
	switch a.Kind {
	case gpu.AlertTemperature:
		b.Device, b.TempC, b.LimitC = &a.Device, &a.TempC, &a.LimitC
		if !a.Active {
			s := a.Paused.Seconds()
			b.PausedSeconds = &s
		}
	case gpu.AlertMemory:
		b.Model = &a.Model
	}
	return b
}
