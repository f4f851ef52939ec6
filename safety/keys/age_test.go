package keys

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true}, {"90d", 90 * 24 * time.Hour, true}, {"36h", 36 * time.Hour, true}, {"0d", 0, true},
		{"-1d", 0, false}, {"-5m", 0, false}, {"d", 0, false}, {"1w", 0, false}, {"soon", 0, false}, {"99999999d", 0, false},
	} {
		got, err := ParseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
