package sched

import (
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name         string
		ahead, slots int
		hold, want   time.Duration
	}{
		{"no history", 0, 4, 0, time.Second},
		{"short holds round up to a second", 3, 4, 200 * time.Millisecond, time.Second},
		{"rounds of the queue", 8, 4, 2 * time.Second, 6 * time.Second},
		{"fractions round up", 0, 1, 1500 * time.Millisecond, 2 * time.Second},
		{"capped", 1 << 20, 1, time.Minute, maxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryAfter(tt.ahead, tt.slots, tt.hold); got != tt.want {
				t.Errorf("retryAfter(%d, %d, %v) = %v, want %v", tt.ahead, tt.slots, tt.hold, got, tt.want)
			}
		})
	}
}
