package main

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestE2EKeyAllowCIDR: a key made by `warden keys create --allow-cidr
// 127.0.0.2` works through openai-go from 127.0.0.2 and gets 403
// ip_not_allowed from 127.0.0.3 (the two stand in for LAN hosts); after
// `keys update --allow-cidr ""` the running server lets it in from both.
func TestE2EKeyAllowCIDR(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	id, key := createKey(t, w, "--name", "lan-host", "--allow-cidr", "127.0.0.2")
	from := func(src string) *openai.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		t.Cleanup(hc.CloseIdleConnections)
		c := openai.NewClient(option.WithBaseURL(w.base+"/v1/"), option.WithAPIKey(key),
			option.WithMaxRetries(0), option.WithRequestTimeout(time.Minute), option.WithHTTPClient(hc))
		return &c
	}
	if _, err := from("127.0.0.2").Models.List(ctx); err != nil {
		t.Fatalf("from 127.0.0.2: %v", err)
	}
	_, err := from("127.0.0.3").Models.List(ctx)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || apiErr.Code != "ip_not_allowed" {
		t.Fatalf("from 127.0.0.3: %v, want 403 ip_not_allowed", err)
	}

	w.warden(t, "keys", "update", id, "--allow-cidr", "")
	waitFor(t, time.Minute, "the cleared list to reach the server", func() bool {
		_, err := from("127.0.0.3").Models.List(ctx)
		return err == nil
	})
}
