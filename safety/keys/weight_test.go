package keys

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestWeightAndProfile: a key's weight and filter profile are stored at
// create, changed by Update with one admin event, and reach the Principal
// and the cache's Weight lookup.
func TestWeightAndProfile(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	plain, _ := f.create(t, Spec{Name: "plain"})
	if plain.Weight != 1 || plain.Profile != "" {
		t.Errorf("default key weight %d profile %q, want 1 and \"\"", plain.Weight, plain.Profile)
	}
	team, tok := f.create(t, Spec{Name: "team", Weight: 3, Profile: " strict "})
	if team.Weight != 3 || team.Profile != "strict" {
		t.Errorf("created weight %d profile %q, want 3 and strict", team.Weight, team.Profile)
	}

	c := NewCache(f.db, 0, f.clk.Now)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Authenticate(tok)
	if err != nil || p.Weight != 3 || p.Profile != "strict" {
		t.Fatalf("principal = %+v, %v; want weight 3, profile strict", p, err)
	}
	if got := c.Weight(team.ID); got != 3 {
		t.Errorf("Weight(team) = %d, want 3", got)
	}
	if got := c.Weight("nosuchkey"); got != 1 {
		t.Errorf("Weight(unknown) = %d, want 1", got)
	}

	w, prof := 5, "lenient"
	if err := f.m.Update(ctx, "os:t", team.ID, Change{Weight: &w, Profile: &prof}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.m.Get(ctx, team.ID)
	if got.Weight != 5 || got.Profile != "lenient" || got.Limits != team.Limits {
		t.Errorf("after Update: %+v", got)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Weight(team.ID); got != 5 {
		t.Errorf("Weight after refresh = %d, want 5", got)
	}
	evs, _ := f.m.Events(ctx, 1)
	if len(evs) != 1 || evs[0].Action != ActionUpdate {
		t.Fatalf("events = %+v, want one key.update", evs)
	}
	var d map[string]any
	_ = json.Unmarshal(evs[0].Detail, &d)
	if d["weight"] != 5.0 || d["previous_weight"] != 3.0 || d["profile"] != "lenient" || d["previous_profile"] != "strict" {
		t.Errorf("event detail = %s", evs[0].Detail)
	}
	lim := Limits{RPM: 9}
	if err := f.m.Update(ctx, "os:t", team.ID, Change{Limits: &lim}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.m.Get(ctx, team.ID); got.Weight != 5 || got.Limits.RPM != 9 {
		t.Errorf("a limits-only Update changed the weight: %+v", got)
	}

	for _, bad := range []struct {
		name string
		ch   Change
		want string
	}{
		{"weight 0", Change{Weight: new(int)}, "weight"},
		{"weight too big", Change{Weight: ptr(MaxWeight + 1)}, "weight"},
		{"profile with a space", Change{Profile: ptr("a b")}, "space"},
		{"profile too long", Change{Profile: ptr(strings.Repeat("p", 65))}, "at most"},
		{"negative limit", Change{Limits: &Limits{RPM: -1}}, "negative"},
	} {
		if err := f.m.Update(ctx, "os:t", team.ID, bad.ch); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: Update = %v, want an error about %s", bad.name, err, bad.want)
		}
	}
	if _, _, err := f.m.Create(ctx, "os:t", Spec{Name: "x", Weight: -2}); err == nil {
		t.Error("Create with weight -2 succeeded")
	}
}

func ptr[T any](v T) *T { return &v }
