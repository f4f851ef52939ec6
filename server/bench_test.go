package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkChat measures Warden's own cost per request (decode, validate,
// convert, encode, HTTP) against a scripted backend, streamed and not.
// The A/B comparison with the real backend is `make bench`.
func BenchmarkChat(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name := "plain"
		if stream {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			ts := newTestServer(t, &fakeBackend{chat: scripted("a", "b", "c", "d", "e", "f", "g", "h")}, Config{})
			defer ts.Close()
			body := `{"model":"demo","messages":[{"role":"user","content":"Say something."}],"max_tokens":8,"temperature":0,"seed":1,"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer good")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
