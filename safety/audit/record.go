package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what a record is about.
type Kind string

// The kinds of chained records.
const (
	KindRequest     Kind = "request"
	KindCompletion  Kind = "completion"
	KindAuthRefused Kind = "auth_refused" // aggregate: one per client IP and minute
	// KindRequestRefused aggregates a key's requests answered with a 4xx
	// before reaching the model: one per key and minute.
	KindRequestRefused Kind = "request_refused"
	KindAdmin          Kind = "admin"
	KindConfig         Kind = "config"
	KindPrune          Kind = "prune"
	KindGap            Kind = "gap" // records lost in a crash, acknowledged (AppendGapTx)
)

func (k Kind) valid() bool {
	switch k {
	case KindRequest, KindCompletion, KindAuthRefused, KindRequestRefused, KindAdmin, KindConfig, KindPrune, KindGap:
		return true
	}
	return false
}

// Record is one audit event as a caller hands it in. Prompt and Response
// are plain text that never enters the chain: when the Writer stores text
// they go, encrypted, to audit_text; when PromptSHA256 or ResponseSHA256 is
// empty and the text is not, the hash is computed from the text.
type Record struct {
	Time           time.Time       `json:"time"` // zero: now; stored in ms
	Kind           Kind            `json:"kind"`
	RequestID      string          `json:"request_id,omitempty"`
	KeyID          string          `json:"key_id,omitempty"`
	ClientIP       string          `json:"client_ip,omitempty"`
	Endpoint       string          `json:"endpoint,omitempty"`
	Model          string          `json:"model,omitempty"` // canonical name
	ModelDigest    string          `json:"model_digest,omitempty"`
	PromptSHA256   string          `json:"prompt_sha256,omitempty"`   // hex
	ResponseSHA256 string          `json:"response_sha256,omitempty"` // hex
	TokensIn       int64           `json:"tokens_in,omitempty"`
	TokensOut      int64           `json:"tokens_out,omitempty"`
	LatencyMS      int64           `json:"latency_ms,omitempty"`
	TTFTMS         int64           `json:"ttft_ms,omitempty"`
	Status         int64           `json:"status,omitempty"`
	FinishReason   string          `json:"finish_reason,omitempty"`
	Safety         json.RawMessage `json:"safety,omitempty"` // JSON or empty
	Detail         json.RawMessage `json:"detail,omitempty"` // JSON or empty
	// EndUser is the end user a delegate key named for the request (its
	// e-mail and name when the front end sent them); empty otherwise.
	EndUser      string `json:"end_user,omitempty"`
	EndUserEmail string `json:"end_user_email,omitempty"`
	EndUserName  string `json:"end_user_name,omitempty"`

	Prompt   string `json:"-"`
	Response string `json:"-"`
}

// StoredRecord is a chained row: the record with its place in the chain.
type StoredRecord struct {
	Seq int64 `json:"seq"`
	Record
	PrevHash Hash `json:"prev_hash"`
	Hash     Hash `json:"hash"`
}

// Hash is a SHA-256 digest; its text form is lowercase hex.
type Hash [sha256.Size]byte

// String returns the hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes h as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes hex.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("hash: want %d hex digits, got %d", 2*len(h), len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

func hashFrom(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("stored hash has %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// canonicalVersion is the first byte of every canonical encoding; a new
// layout gets a new version and old rows keep verifying under theirs.
// Version 2 appends the end user's id, e-mail and name; it is used only for
// records that have one, so every other record (and every record written
// before end users existed) keeps version 1's bytes.
const (
	canonicalVersion        = 1
	canonicalVersionEndUser = 2
)

// canonical is the deterministic encoding of a row's chained fields: a
// version byte, the seq, then every field in a fixed order, integers as
// 8-byte big-endian, strings as a 4-byte big-endian length and the bytes.
// Prompt and Response are not part of it.
func canonical(buf *bytes.Buffer, seq int64, r *Record) []byte {
	buf.Reset()
	endUser := r.EndUser != "" || r.EndUserEmail != "" || r.EndUserName != ""
	if endUser {
		buf.WriteByte(canonicalVersionEndUser)
	} else {
		buf.WriteByte(canonicalVersion)
	}
	var n [8]byte
	putInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		buf.Write(n[:])
	}
	putStr := func(s string) {
		binary.BigEndian.PutUint32(n[:4], uint32(len(s)))
		buf.Write(n[:4])
		buf.WriteString(s)
	}
	putInt(seq)
	putInt(r.Time.UnixMilli())
	putStr(string(r.Kind))
	putStr(r.RequestID)
	putStr(r.KeyID)
	putStr(r.ClientIP)
	putStr(r.Endpoint)
	putStr(r.Model)
	putStr(r.ModelDigest)
	putStr(r.PromptSHA256)
	putStr(r.ResponseSHA256)
	putInt(r.TokensIn)
	putInt(r.TokensOut)
	putInt(r.LatencyMS)
	putInt(r.TTFTMS)
	putInt(r.Status)
	putStr(r.FinishReason)
	putStr(string(r.Safety))
	putStr(string(r.Detail))
	if endUser {
		putStr(r.EndUser)
		putStr(r.EndUserEmail)
		putStr(r.EndUserName)
	}
	return buf.Bytes()
}

// chainHash is SHA-256(prev || canonical).
func chainHash(buf *bytes.Buffer, prev Hash, seq int64, r *Record) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical(buf, seq, r))
	var out Hash
	h.Sum(out[:0])
	return out
}

// sha256Hex is the hex SHA-256 of s.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// normalize checks r and fills what can be derived: the time (ms), the
// text hashes.
func (r *Record) normalize(now time.Time) error {
	if !r.Kind.valid() {
		return fmt.Errorf("audit record: unknown kind %q", r.Kind)
	}
	if r.Time.IsZero() {
		r.Time = now
	}
	r.Time = time.UnixMilli(r.Time.UnixMilli()).UTC()
	if r.PromptSHA256 == "" && r.Prompt != "" {
		r.PromptSHA256 = sha256Hex(r.Prompt)
	}
	if r.ResponseSHA256 == "" && r.Response != "" {
		r.ResponseSHA256 = sha256Hex(r.Response)
	}
	if len(r.Safety) > 0 && !json.Valid(r.Safety) {
		return fmt.Errorf("audit record: safety is not valid JSON")
	}
	if len(r.Detail) > 0 && !json.Valid(r.Detail) {
		return fmt.Errorf("audit record: detail is not valid JSON")
	}
	return nil
}
