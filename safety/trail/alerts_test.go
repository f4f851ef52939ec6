package trail

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/runtime/gpu"
)

type recordingAlerter struct {
	kinds  []string
	bodies []any
}

func (r *recordingAlerter) Alert(_ context.Context, kind string, body any) {
	r.kinds = append(r.kinds, kind)
	r.bodies = append(r.bodies, body)
}

// TestAlertRaisedByAdmission: a temperature crossing seen by GPU admission
// reaches the alerter and the log at warn.
func TestAlertRaisedByAdmission(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	rec := &recordingAlerter{}
	hook := AlertHook(t.Context(), log, rec)
	adm := &gpu.Admission{TempLimitC: 85, TempResumeC: 75, StaleAfter: -1, OnAlert: hook}
	g := gpu.NewGate(adm, nil)
	g.OnAlert = hook
	hot := gpu.Snapshot{Time: time.Now(), Devices: []gpu.Device{{Index: 0, TemperatureC: 91}}}
	g.Update(t.Context(), hot, true)
	if !g.Paused() || g.Open("m") {
		t.Fatal("not paused at 91°C")
	}
	if len(rec.kinds) != 1 || rec.kinds[0] != gpu.AlertTemperature {
		t.Fatalf("alerts = %v, want one %s", rec.kinds, gpu.AlertTemperature)
	}
	body := rec.bodies[0].(map[string]any)
	if body["active"] != true || body["temp_c"] != uint32(91) || body["limit_c"] != uint32(85) {
		t.Errorf("alert body = %v", body)
	}
	if out := logBuf.String(); !strings.Contains(out, "level=WARN msg=alert kind=gpu_temperature active=true") {
		t.Errorf("log = %s", out)
	}
	cool := gpu.Snapshot{Time: time.Now(), Devices: []gpu.Device{{Index: 0, TemperatureC: 60}}}
	g.Update(t.Context(), cool, true)
	if len(rec.kinds) != 2 || rec.bodies[1].(map[string]any)["active"] != false || g.Paused() {
		t.Errorf("after cooling: alerts %v paused %v", rec.bodies, g.Paused())
	}
}
