package trail

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
)

type recordingAlerter struct {
	kinds  []string
	bodies []outbox.GPUAlert
}

func (r *recordingAlerter) Alert(_ context.Context, a outbox.GPUAlert) {
	r.kinds = append(r.kinds, a.Kind)
	r.bodies = append(r.bodies, a)
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
	body := rec.bodies[0]
	if !body.Active || body.TempC == nil || *body.TempC != 91 || body.LimitC == nil || *body.LimitC != 85 {
		t.Errorf("alert body = %+v", body)
	}
	if out := logBuf.String(); !strings.Contains(out, "level=WARN msg=alert kind=gpu_temperature active=true") {
		t.Errorf("log = %s", out)
	}
	cool := gpu.Snapshot{Time: time.Now(), Devices: []gpu.Device{{Index: 0, TemperatureC: 60}}}
	g.Update(t.Context(), cool, true)
	if len(rec.kinds) != 2 || rec.bodies[1].Active || g.Paused() {
		t.Errorf("after cooling: alerts %v paused %v", rec.bodies, g.Paused())
	}
}

// TestAlertBodiesKeepTheirJSON: the bodies built from a GPU alert and from
// a completion record are byte for byte the golden bodies that users'
// webhooks have always received (written by the map[string]any bodies).
func TestAlertBodiesKeepTheirJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 6, 30, 15, 123456789, time.FixedZone("X", 3600))
	rec := audit.StoredRecord{Seq: 42}
	rec.Time, rec.Kind, rec.RequestID, rec.KeyID = at, audit.KindCompletion, "req_01", "k1"
	rec.Endpoint, rec.Model, rec.Status = "/v1/chat/completions", "llama3:latest", 200
	rec.Safety = json.RawMessage(`{"profile":"default","decisions":[{"direction":"input","category":"email","action":"redact","count":2},{"direction":"input","category":"secret","action":"flag","count":1},{"direction":"output","category":"injection","action":"block","count":1}]}`)
	m := safetyAlert(rec)
	if m == nil || m.Topic != outbox.TopicAlert {
		t.Fatalf("safetyAlert = %+v, want an alert", m)
	}
	golden(t, "safety", m.Body)

	for name, a := range map[string]gpu.Alert{
		"gpu_temperature_raised":  {Time: at, Kind: gpu.AlertTemperature, Active: true, Device: 0, TempC: 91, LimitC: 85, Message: "GPU 0 at 91°C: dispatch paused"},
		"gpu_temperature_cleared": {Time: at, Kind: gpu.AlertTemperature, Active: false, Device: 1, TempC: 70, LimitC: 75, Paused: 90500 * time.Millisecond, Message: "GPU 1 cooled to 70°C: dispatch resumed"},
		"gpu_memory":              {Time: at, Kind: gpu.AlertMemory, Active: true, Model: "big:70b", Message: "load of big:70b held: not enough free VRAM"},
		"gpu_memory_cleared":      {Time: at, Kind: gpu.AlertMemory, Active: false, Message: "VRAM free again"},
	} {
		b, err := json.Marshal(gpuAlert(a))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, b)
	}
}

// TestSafetyAlertOnlyForFlagsAndBlocks: a redaction alone, no safety field
// or an unreadable one raise no alert.
func TestSafetyAlertOnlyForFlagsAndBlocks(t *testing.T) {
	for name, safety := range map[string]string{
		"none":     "",
		"redacted": `{"profile":"default","decisions":[{"direction":"input","category":"email","action":"redact","count":1}]}`,
		"garbled":  `{"profile":`,
	} {
		var rec audit.StoredRecord
		rec.Safety = json.RawMessage(safety)
		if m := safetyAlert(rec); m != nil {
			t.Errorf("%s: alert %s, want none", name, m.Body)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("..", "outbox", "testdata", "alert_"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(want) {
		t.Errorf("%s body\n got %s\nwant %s", name, got, want)
	}
}
