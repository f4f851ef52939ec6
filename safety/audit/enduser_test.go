package audit

import (
	"bytes"
	"testing"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestEndUserInChain: a record made for an end user carries it in the
// chain (tampering with it breaks the link), and records without one keep
// version 1's encoding, so chains written before end users existed still
// verify.
func TestEndUserInChain(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	appendN(t, w, 3)
	for i := range 3 {
		r := req(10 + i)
		r.EndUser, r.EndUserEmail, r.EndUserName = "u-42", "alice@example.org", "Alice Ä"
		if _, err := w.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close(t.Context())
	mustVerify(t, db, dir, nil)

	recs, err := Query(t.Context(), db, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || recs[2].EndUser != "" || recs[4].EndUser != "u-42" || recs[4].EndUserEmail != "alice@example.org" || recs[4].EndUserName != "Alice Ä" {
		t.Fatalf("records read back: %+v", recs)
	}

	// Without an end user the encoding is version 1, byte for byte what it
	// was: no trailing fields.
	var a, b bytes.Buffer
	plain := req(1)
	v1 := bytes.Clone(canonical(&a, 7, &plain))
	if v1[0] != canonicalVersion {
		t.Fatalf("plain record encoded as version %d, want %d", v1[0], canonicalVersion)
	}
	withUser := plain
	withUser.EndUser = "u"
	v2 := canonical(&b, 7, &withUser)
	if v2[0] != canonicalVersionEndUser || !bytes.Equal(v2[1:len(v1)], v1[1:]) {
		t.Fatalf("an end user's record is not version 1's fields with the user appended")
	}

	dropTriggers(t, db)
	if _, err := db.Exec(`UPDATE audit_records SET end_user = 'u-43' WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(t.Context(), db, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil || rep.Break.Seq != 5 || rep.Break.Problem != ProblemHashMismatch {
		t.Fatalf("verify after changing an end user: %v, want a hash mismatch at 5", rep.Break)
	}
	// Clearing it is caught too: the record no longer hashes as version 2.
	if _, err := db.Exec(`UPDATE audit_records SET end_user = 'u-42' WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, db, dir, nil)
	if _, err := db.Exec(`UPDATE audit_records SET end_user = '', end_user_email = '', end_user_name = '' WHERE seq = 6`); err != nil {
		t.Fatal(err)
	}
	if rep, _ = Verify(t.Context(), db, dir, nil); rep.Break == nil || rep.Break.Seq != 6 {
		t.Fatalf("verify after removing an end user: %v, want a break at 6", rep.Break)
	}
}
