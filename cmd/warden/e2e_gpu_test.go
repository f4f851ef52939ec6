package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestE2EGPUReporting: `warden gpu`, /readyz and /admin/gpu report the GPU,
// or, on a machine without the NVIDIA driver (this one), say "no GPU"
// while everything else works.
func TestE2EGPUReporting(t *testing.T) {
	w := sharedWarden(t)
	out := string(w.warden(t, "gpu"))
	if !strings.HasPrefix(out, "no GPU: ") && !strings.HasPrefix(out, "GPU ") {
		t.Errorf("warden gpu printed %q", out)
	}
	noGPU := strings.HasPrefix(out, "no GPU: ")

	// The GPU status is a detail /readyz gives only to admin keys.
	req, _ := http.NewRequest(http.MethodGet, w.base+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gpu, _ := ready["gpu"].(string); resp.StatusCode != 200 || (noGPU && !strings.HasPrefix(gpu, "no GPU")) {
		t.Errorf("readyz %d %v", resp.StatusCode, ready)
	}

	req, _ = http.NewRequest(http.MethodGet, w.base+"/admin/gpu", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var admin struct {
		Available bool   `json:"available"`
		Status    string `json:"status"`
	}
	if err := json.Unmarshal(b, &admin); err != nil || resp.StatusCode != 200 || admin.Available == noGPU {
		t.Errorf("/admin/gpu %d %s", resp.StatusCode, b)
	}
}
