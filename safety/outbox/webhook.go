package outbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook POSTs each batch as a JSON array of
// {"id":N,"topic":"audit","time":"RFC 3339","body":{...}} objects and
// counts any 2xx answer as delivered; anything else is retried. Headers
// carry authentication (Authorization, Loki's X-Scope-OrgID).
//
// A URL whose path ends in /loki/api/v1/push gets Loki's push format
// instead: one stream per topic labelled {service_name=AppName, topic},
// each value the body as the log line, so a Loki push URL works as is.
type Webhook struct {
	name    string
	url     string
	headers map[string]string
	appName string
	loki    bool
	secret  []byte
	client  *http.Client
}

var _ Sink = (*Webhook)(nil)

func newWebhook(cfg SinkConfig) (*Webhook, error) {
	if cfg.Address != "" || cfg.Network != "" {
		return nil, fmt.Errorf("%w: sink %q: address and network are for syslog; a webhook takes url", ErrInvalidSink, cfg.Name)
	}
	u, err := checkURL(cfg)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy would be one more host seeing the audit trail
	if u.Scheme == "https" {
		if tr.TLSClientConfig, err = cfg.TLSConfig(u.Hostname()); err != nil {
			return nil, err
		}
	} else if cfg.hasTLSSettings() {
		return nil, fmt.Errorf("%w: sink %q: TLS settings need an https:// url", ErrInvalidSink, cfg.Name)
	}
	w := &Webhook{
		name:    cfg.Name,
		url:     cfg.URL,
		headers: cfg.Headers,
		appName: cfg.AppName,
		loki:    strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/loki/api/v1/push"),
		secret:  cfg.Secret,
		client:  &http.Client{Transport: tr, Timeout: cfg.Timeout},
	}
	if w.appName == "" {
		w.appName = "warden"
	}
	return w, nil
}

// Name is the sink's configured name.
func (w *Webhook) Name() string { return w.name }

// Close drops idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

type wireMessage struct {
	ID    int64           `json:"id"`
	Topic string          `json:"topic"`
	Time  time.Time       `json:"time"`
	Body  json.RawMessage `json:"body"`
}

// Send POSTs batch and wants a 2xx.
func (w *Webhook) Send(ctx context.Context, batch []Delivery) error {
	payload, err := w.encode(batch)
	if err != nil {
		return fmt.Errorf("webhook: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "warden-outbox")
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	if len(w.secret) > 0 {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("X-Warden-Timestamp", ts)
		req.Header.Set("X-Warden-Signature", "sha256="+Sign(w.secret, ts, payload))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error names the URL, which may carry credentials: keep
		// only the cause.
		return fmt.Errorf("webhook %s: %w", w.name, unwrapURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: status %d: %q", w.name, resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return nil
}

func (w *Webhook) encode(batch []Delivery) ([]byte, error) {
	if !w.loki {
		out := make([]wireMessage, len(batch))
		for i, d := range batch {
			out[i] = wireMessage{d.ID, d.Topic, d.Time.UTC(), json.RawMessage(d.Body)}
		}
		return json.Marshal(out)
	}
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var streams []*stream
	byTopic := map[string]*stream{}
	for _, d := range batch {
		s := byTopic[d.Topic]
		if s == nil {
			s = &stream{Stream: map[string]string{"service_name": w.appName, "topic": d.Topic}}
			byTopic[d.Topic] = s
			streams = append(streams, s)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(d.Time.UnixNano(), 10), string(d.Body)})
	}
	return json.Marshal(map[string]any{"streams": streams})
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Sign returns the hex HMAC-SHA256 of timestamp + "." + body under secret:
// the X-Warden-Signature a receiver recomputes (and compares with
// hmac.Equal) to know a webhook came from this Warden, unaltered.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}
