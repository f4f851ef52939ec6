package filter

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestSummaryJSON: the audit record's safety field keeps its shape, and
// reads back into the same Summary.
func TestSummaryJSON(t *testing.T) {
	s := Summary{Profile: "default", Decisions: []Decision{
		{Direction: Input, Category: "email", Action: Redact, Count: 2},
		{Direction: Output, Category: "secret", Action: Block, Count: 1},
	}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"profile":"default","decisions":[{"direction":"input","category":"email","action":"redact","count":2},{"direction":"output","category":"secret","action":"block","count":1}]}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	var back Summary
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, s) {
		t.Errorf("read back %+v, %v; want %+v", back, err, s)
	}
}

func TestSummaryAlerting(t *testing.T) {
	s := Summary{Decisions: []Decision{
		{Category: "a", Action: Allow}, {Category: "b", Action: Redact},
		{Category: "c", Action: Flag}, {Category: "d", Action: Block},
	}}
	got := s.Alerting()
	if len(got) != 2 || got[0].Category != "c" || got[1].Category != "d" {
		t.Errorf("Alerting() = %+v, want c (flag) and d (block)", got)
	}
	if got := (Summary{Decisions: []Decision{{Action: Redact}}}).Alerting(); got != nil {
		t.Errorf("Alerting() of a redaction = %+v, want none", got)
	}
}
