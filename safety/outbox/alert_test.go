package outbox

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAlertGolden pins the JSON of alert bodies: users' webhooks parse it.
// The golden files were written by the map[string]any bodies these types
// replaced.
func TestAlertGolden(t *testing.T) {
	at := time.Date(2026, 11, 22, 5, 30, 15, 123456789, time.UTC)
	cases := []struct {
		name string
		body any
	}{
		{"safety", SafetyAlert{
			AuditSeq: 42, Endpoint: "/v1/chat/completions", KeyID: "k1", Kind: AlertKindSafety,
			Model: "llama3:latest", Profile: "default", RequestID: "req_01", Status: 200, Time: at,
			Decisions: []Decision{
				{Direction: "input", Category: "secret", Action: "flag", Count: 1},
				{Direction: "output", Category: "injection", Action: "block", Count: 1},
			},
		}},
		{"gpu_temperature_raised", GPUAlert{
			Time: at, Kind: "gpu_temperature", Active: true, Message: "GPU 0 at 91°C: dispatch paused",
			Device: ptr(0), TempC: ptr(uint32(91)), LimitC: ptr(uint32(85)),
		}},
		{"gpu_temperature_cleared", GPUAlert{
			Time: at, Kind: "gpu_temperature", Message: "GPU 1 cooled to 70°C: dispatch resumed",
			Device: ptr(1), TempC: ptr(uint32(70)), LimitC: ptr(uint32(75)), PausedSeconds: ptr(90.5),
		}},
		{"gpu_memory", GPUAlert{
			Time: at, Kind: "gpu_memory", Active: true, Message: "load of big:70b held: not enough free VRAM",
			Model: ptr("big:70b"),
		}},
		{"gpu_memory_cleared", GPUAlert{Time: at, Kind: "gpu_memory", Message: "VRAM free again", Model: ptr("")}},
		{"model_digest", ModelAlert{
			Time: at, Kind: AlertKindModelDigest, Model: "registry.ollama.ai/library/llama3:latest",
			Pinned: "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1", Actual: "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
			Message: "registry.ollama.ai/library/llama3:latest is pinned to 365c0bd3c000 but its manifest is a80c4f17acd5: not served",
		}},
		{"probe_regression", ProbeAlert{
			Kind: AlertKindProbe, Message: "harmful attack_success 0.0% → 50.0%", Model: "warden-demo:latest",
			ModelDigest: "sha256:0b1c", PreviousRunID: 6, RunID: 7, Suite: "builtin:all", Threshold: 0.1, Time: at,
			Regressions: []ProbeRegression{{Category: "harmful", Metric: "attack_success", Before: 0, Now: 0.5, N: 22}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := json.Marshal(c.body)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "alert_"+c.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body\n got %s\nwant %s", got, want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
