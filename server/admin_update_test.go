package server

import (
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/keys"
)

// adminFixture is a keyed server with a user key to update.
type adminFixture struct {
	*keyed
	user keys.Key
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	k := newKeyed(t, &fakeBackend{}, Config{})
	user, _, err := k.m.Create(t.Context(), "os:test", keys.Spec{Name: "user", Limits: keys.Limits{RPM: 5, TPM: 100}, Weight: 3, Profile: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	return &adminFixture{keyed: k, user: user}
}

// send sends body with method to path with the admin key and returns the
// status and the body.
func (f *adminFixture) send(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	resp, out := f.do(t, method, path, f.admin, body)
	return resp.StatusCode, out
}

func (f *adminFixture) get(t *testing.T) keys.Key {
	t.Helper()
	k, err := f.m.Get(t.Context(), f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAdminPatchChangesOnlyTheFieldsSent: absent and null fields keep their
// value, the response is the updated key, and the old PUT route is the
// same operation.
func TestAdminPatchChangesOnlyTheFieldsSent(t *testing.T) {
	f := newAdminFixture(t)
	path := "/admin/keys/" + f.user.ID

	st, body := f.send(t, http.MethodPatch, path, `{"tpm": 1000, "weight": 7, "rpm": null}`)
	if st != http.StatusOK {
		t.Fatalf("PATCH = %d %s, want 200", st, body)
	}
	var resp keys.Key
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	want := keys.Limits{RPM: 5, TPM: 1000}
	if got := f.get(t); got.Limits != want || got.Weight != 7 || got.Profile != "strict" {
		t.Errorf("after PATCH: limits %+v weight %d profile %q, want %+v, 7, strict", got.Limits, got.Weight, got.Profile, want)
	}
	if resp.ID != f.user.ID || resp.Limits != want || resp.Weight != 7 {
		t.Errorf("PATCH answered %s, want the updated key", body)
	}

	if st, body := f.send(t, http.MethodPatch, path, `{"profile": "", "max_output_chars": 10}`); st != http.StatusOK {
		t.Fatalf("PATCH = %d %s, want 200", st, body)
	}
	want.MaxOutputChars = 10
	if got := f.get(t); got.Limits != want || got.Weight != 7 || got.Profile != "" {
		t.Errorf("after PATCH: limits %+v weight %d profile %q, want %+v, 7, default", got.Limits, got.Weight, got.Profile, want)
	}

	if st, body := f.send(t, http.MethodPut, path+"/limits", `{"rpm": 9, "weight": 2}`); st != http.StatusOK {
		t.Fatalf("PUT .../limits = %d %s, want 200", st, body)
	}
	want.RPM = 9
	if got := f.get(t); got.Limits != want || got.Weight != 2 {
		t.Errorf("after PUT: limits %+v weight %d, want %+v, 2", got.Limits, got.Weight, want)
	}

	evs, err := f.m.Events(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action != keys.ActionUpdate || e.Actor != "key:"+adminID(t, f.admin) || e.KeyID != f.user.ID {
			t.Errorf("event %s by %s on %s, want %s by the admin key on %s", e.Action, e.Actor, e.KeyID, keys.ActionUpdate, f.user.ID)
		}
	}
}

func adminID(t *testing.T, token string) string {
	t.Helper()
	id, _, err := keys.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAdminPatchRefusals: a bad body is a 400 naming the field and an
// unknown id a 404; neither changes the key.
func TestAdminPatchRefusals(t *testing.T) {
	f := newAdminFixture(t)
	path := "/admin/keys/" + f.user.ID
	before := f.get(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string // in the body
	}{
		{"negative limit", http.MethodPatch, path, `{"rpm": -1}`, 400, "Invalid limits"},
		{"weight zero", http.MethodPatch, path, `{"weight": 0}`, 400, "weight"},
		{"weight too big", http.MethodPatch, path, `{"weight": 100000}`, 400, "weight"},
		{"bad profile name", http.MethodPatch, path, `{"profile": "no spaces"}`, 400, "profile"},
		{"wrong type", http.MethodPatch, path, `{"tpm": "lots"}`, 400, `"param":"tpm"`},
		{"unknown field", http.MethodPatch, path, `{"rpn": 3}`, 400, `"param":"rpn"`},
		{"nested limits", http.MethodPatch, path, `{"limits": {"rpm": 3}}`, 400, `"param":"limits"`},
		{"not an object", http.MethodPatch, path, `[1]`, 400, "expected a JSON object"},
		{"null", http.MethodPatch, path, `null`, 400, "expected a JSON object"},
		{"empty body", http.MethodPatch, path, ``, 400, "empty"},
		{"malformed", http.MethodPatch, path, `{"rpm": 3`, 400, "Malformed JSON"},
		{"PUT negative limit", http.MethodPut, path + "/limits", `{"tpm": -5}`, 400, "Invalid limits"},
		{"unknown id", http.MethodPatch, "/admin/keys/nosuchkey123", `{"rpm": 3}`, 404, "key_not_found"},
		{"PUT unknown id", http.MethodPut, "/admin/keys/nosuchkey123/limits", `{"rpm": 3}`, 404, "key_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := f.send(t, tc.method, tc.path, tc.body)
			if st != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("%s %s %s = %d %s, want %d with %q", tc.method, tc.path, tc.body, st, body, tc.status, tc.want)
			}
		})
	}
	if got := f.get(t); got.Limits != before.Limits || got.Weight != before.Weight || got.Profile != before.Profile {
		t.Errorf("refused updates changed the key: %+v, was %+v", got, before)
	}
	if evs, err := f.m.Events(t.Context(), 0); err != nil || len(evs) != 2 {
		t.Errorf("%d admin events (%v), want the 2 creates only", len(evs), err)
	}
}

// TestAdminPatchNeedsTheAdminScope: a key without it gets 403 and changes
// nothing.
func TestAdminPatchNeedsTheAdminScope(t *testing.T) {
	f := newAdminFixture(t)
	_, tok, err := f.m.Create(t.Context(), "os:test", keys.Spec{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cache.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if resp, body := f.do(t, http.MethodPatch, "/admin/keys/"+f.user.ID, tok, `{"rpm": 1}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PATCH with a key without admin scope = %d %s, want 403", resp.StatusCode, body)
	}
	if got := f.get(t); got.Limits.RPM != 5 {
		t.Errorf("rpm = %d after a refused PATCH, want 5", got.Limits.RPM)
	}
}

// TestUpdateFieldsMatchTheBody: the names PATCH accepts are exactly
// updateBody's JSON names, so a field added to one is added to the other.
func TestUpdateFieldsMatchTheBody(t *testing.T) {
	typ := reflect.TypeFor[updateBody]()
	tags := map[string]bool{}
	for i := range typ.NumField() {
		tags[typ.Field(i).Tag.Get("json")] = true
	}
	if !maps.Equal(tags, updateFields) {
		t.Errorf("updateBody's JSON names %v, updateFields %v: want the same", slices.Sorted(maps.Keys(tags)), slices.Sorted(maps.Keys(updateFields)))
	}
}
