package outbox

import "time"

// The bodies of TopicAlert messages. Their JSON is what users' alert
// webhooks and syslog receivers parse: fields keep their names, and they
// are declared in the order the JSON lists them (alphabetical, as the
// bodies have always been written). testdata/alert_*.json pins them.

// SafetyAlert is the alert for a completion whose safety decisions include
// a flag or a block: the decisions that did, and the request's identity,
// never its text.
type SafetyAlert struct {
	AuditSeq  int64      `json:"audit_seq"`
	Decisions []Decision `json:"decisions"`
	Endpoint  string     `json:"endpoint"`
	KeyID     string     `json:"key_id"`
	Kind      string     `json:"kind"` // always AlertKindSafety
	Model     string     `json:"model"`
	Profile   string     `json:"profile"`
	RequestID string     `json:"request_id"`
	Status    int64      `json:"status"`
	Time      time.Time  `json:"time"` // UTC
}

// AlertKindSafety is SafetyAlert's kind.
const AlertKindSafety = "safety"

// Decision is one safety decision in a SafetyAlert: what the policy did to
// how many findings of a category, in one direction.
type Decision struct {
	Direction string `json:"direction"`
	Category  string `json:"category"`
	Action    string `json:"action"`
	Count     int    `json:"count"`
}

// GPUAlert is an operational alert from GPU admission: a GPU too hot
// (dispatch paused) or a model load held for GPU memory, raised (Active)
// or cleared. The fields that only some kinds carry are pointers: nil
// leaves them out of the JSON, a zero value (device 0) stays in.
type GPUAlert struct {
	Active bool `json:"active"`
	// Device, LimitC and TempC are set for a temperature alert,
	// PausedSeconds when one clears.
	Device  *int    `json:"device,omitempty"`
	Kind    string  `json:"kind"`
	LimitC  *uint32 `json:"limit_c,omitempty"`
	Message string  `json:"message"`
	// Model is set for a memory alert.
	Model         *string   `json:"model,omitempty"`
	PausedSeconds *float64  `json:"paused_seconds,omitempty"`
	TempC         *uint32   `json:"temp_c,omitempty"`
	Time          time.Time `json:"time"` // UTC
}

// ModelAlert is the alert for a request refused because its pinned model's
// manifest digest is not the pinned one (a model swapped on disk, or
// pulled over): raised once per model and wrong digest.
type ModelAlert struct {
	Actual  string    `json:"actual_digest"`
	Kind    string    `json:"kind"` // always AlertKindModelDigest
	Message string    `json:"message"`
	Model   string    `json:"model"`
	Pinned  string    `json:"pinned_digest"`
	Time    time.Time `json:"time"` // UTC
}

// AlertKindModelDigest is ModelAlert's kind.
const AlertKindModelDigest = "model_digest_mismatch"

// ProbeAlert is the alert for a probe run whose failure rates rose by more
// than probe.alert_threshold since the previous run of the same model.
type ProbeAlert struct {
	Kind          string            `json:"kind"` // always AlertKindProbe
	Message       string            `json:"message"`
	Model         string            `json:"model"`
	ModelDigest   string            `json:"model_digest"`
	PreviousRunID int64             `json:"previous_run_id"`
	Regressions   []ProbeRegression `json:"regressions"`
	RunID         int64             `json:"run_id"`
	Suite         string            `json:"suite"`
	Threshold     float64           `json:"threshold"`
	Time          time.Time         `json:"time"` // UTC
}

// AlertKindProbe is ProbeAlert's kind.
const AlertKindProbe = "probe_regression"

// ProbeRegression is one rate of a ProbeAlert, before and now.
type ProbeRegression struct {
	Category string  `json:"category"`
	Metric   string  `json:"metric"`
	Before   float64 `json:"before"`
	Now      float64 `json:"now"`
	N        int     `json:"n"`
}
