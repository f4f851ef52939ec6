package keys

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestAllowCIDRs: a key's client networks are normalized and stored at
// create, reach the Principal, are replaced and cleared by Update with one
// admin event, and bad ones are refused naming the culprit.
func TestAllowCIDRs(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	k, tok := f.create(t, Spec{Name: "lan", AllowCIDRs: []string{" 10.1.2.3/24 ", "127.0.0.2", "10.1.2.0/24", "::ffff:192.168.1.7", "::ffff:10.9.0.0/112"}})
	if want := []string{"10.1.2.0/24", "127.0.0.2/32", "192.168.1.7/32", "10.9.0.0/16"}; !slices.Equal(k.AllowCIDRs, want) {
		t.Errorf("stored allow_cidrs = %q, want %q", k.AllowCIDRs, want)
	}
	plain, _ := f.create(t, Spec{Name: "any"})
	if plain.AllowCIDRs == nil || len(plain.AllowCIDRs) != 0 {
		t.Errorf("key without networks: allow_cidrs = %#v, want an empty list", plain.AllowCIDRs)
	}

	c := NewCache(f.db, 0, f.clk.Now)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ip   string
		want bool
	}{
		{"10.1.2.200", true}, {"10.1.3.1", false}, {"127.0.0.2", true}, {"127.0.0.3", false},
		{"::ffff:127.0.0.2", true}, {"192.168.1.7", true}, {"::1", false},
	} {
		if got := p.AllowsAddr(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("AllowsAddr(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if p.AllowsAddr(netip.Addr{}) {
		t.Error("a key with networks allows an unknown address")
	}
	if !newPrincipal(plain).AllowsAddr(netip.MustParseAddr("203.0.113.9")) {
		t.Error("a key without networks refuses an address")
	}

	nets := []string{"192.168.0.0/16"}
	if err := f.m.Update(ctx, "os:t", k.ID, Change{AllowCIDRs: &nets}); err != nil {
		t.Fatal(err)
	}
	evs, _ := f.m.Events(ctx, 1)
	var d map[string]any
	_ = json.Unmarshal(evs[0].Detail, &d)
	if got, _ := json.Marshal(d["allow_cidrs"]); string(got) != `["192.168.0.0/16"]` {
		t.Errorf("update event allow_cidrs = %s, want [\"192.168.0.0/16\"]", got)
	}
	if got, _ := json.Marshal(d["previous_allow_cidrs"]); !strings.Contains(string(got), "10.1.2.0/24") {
		t.Errorf("update event previous_allow_cidrs = %s, want the old list", got)
	}
	none := []string{}
	if err := f.m.Update(ctx, "os:t", k.ID, Change{AllowCIDRs: &none}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.m.Get(ctx, k.ID)
	if len(got.AllowCIDRs) != 0 {
		t.Errorf("after clearing: allow_cidrs = %q, want none", got.AllowCIDRs)
	}

	for _, bad := range [][]string{{"10.0.0.0/33"}, {"lan"}, {""}, {"fe80::1%eth0"}, {"10.0.0.0/8", "10.0.0.1/8/8"}, {"::ffff:10.0.0.0/90"}} {
		if _, _, err := f.m.Create(ctx, "os:t", Spec{Name: "bad", AllowCIDRs: bad}); err == nil || !strings.Contains(err.Error(), "client network") {
			t.Errorf("create with %q: err = %v, want a client network error", bad, err)
		}
		if err := f.m.Update(ctx, "os:t", k.ID, Change{AllowCIDRs: &bad}); err == nil {
			t.Errorf("update with %q: no error", bad)
		}
	}
	many := make([]string, maxCIDRs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)}).String()
	}
	if _, _, err := f.m.Create(ctx, "os:t", Spec{Name: "many", AllowCIDRs: many}); err == nil {
		t.Errorf("create with %d networks: no error", len(many))
	}
}

// TestAllowCIDRsStoredGarbageAllowsNothing: a network not written through
// this package matches no address, so the key does not fall open.
func TestAllowCIDRsStoredGarbageAllowsNothing(t *testing.T) {
	p := newPrincipal(Key{AllowCIDRs: []string{"not a network"}})
	if p.AllowsAddr(netip.MustParseAddr("127.0.0.1")) {
		t.Error("a key with an unparsable stored network allows 127.0.0.1")
	}
}

// FuzzNormalizeCIDRs: any comma-separated input is refused or becomes
// canonical networks that parse back to themselves and are idempotent.
func FuzzNormalizeCIDRs(f *testing.F) {
	f.Add("10.0.0.0/8,::1")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := normalizeCIDRs(strings.Split(s, ","))
		if err != nil {
			return
		}
		for _, c := range out {
			p, err := netip.ParsePrefix(c)
			if err != nil || p != p.Masked() || p.Addr().Is4In6() || p.String() != c {
				t.Fatalf("%q: stored %q is not canonical (%v)", s, c, err)
			}
		}
		again, err := normalizeCIDRs(out)
		if err != nil || !slices.Equal(again, out) {
			t.Fatalf("%q: normalizing %q again gave %q, %v", s, out, again, err)
		}
	})
}
