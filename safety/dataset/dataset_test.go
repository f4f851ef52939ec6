package dataset

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestLanguagesAndEntropy(t *testing.T) {
	in := strings.Join([]string{
		`{"text":"The quick brown fox jumps over the lazy dog near the river bank this morning.","label":"a"}`,
		`{"text":"Le renard brun rapide saute par-dessus le chien paresseux près de la rivière ce matin.","label":"b"}`,
		`{"text":"Der schnelle braune Fuchs springt heute Morgen über den faulen Hund am Flussufer.","label":"b"}`,
		`{"prompt":"Was ist das?","completion":"Das ist ein sehr schönes altes Haus mit einem großen Garten hinter dem Zaun.","label":"c"}`,
		`{"text":"ok","label":7}`,
		`{"text":"no label here at all, only some words to read"}`,
	}, "\n")
	rep, err := Check("x.jsonl", strings.NewReader(in), Options{LabelField: "label"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Languages["en"] != 2 || rep.Languages["fr"] != 1 || rep.Languages["de"] < 1 || rep.Languages["und"] < 1 {
		t.Errorf("languages %v", rep.Languages)
	}
	// labels a 1, b 2, c 1, 7 1: entropy = -(3·0.2·log2 0.2 + 0.4·log2 0.4)
	want := -(3*0.2*math.Log2(0.2) + 0.4*math.Log2(0.4))
	if math.Abs(rep.LabelEntropy-want) > 1e-9 || rep.LabelRatio != 2 || rep.MissingLabels != 1 || rep.Labels["7"] != 1 {
		t.Errorf("entropy %v (want %v), ratio %v, missing %d, labels %v", rep.LabelEntropy, want, rep.LabelRatio, rep.MissingLabels, rep.Labels)
	}
	if math.Abs(rep.LabelBalance-want/2) > 1e-9 {
		t.Errorf("balance %v, want %v", rep.LabelBalance, want/2)
	}
}

// Lines longer than MaxLineBytes are reported and skipped, and the file's
// hash still covers every byte.
func TestLongLineAndHash(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"text":"` + strings.Repeat("a", MaxLineBytes) + `"}` + "\n")
	b.WriteString(`{"text":"short and fine"}` + "\n")
	rep, err := Check("l.jsonl", bytes.NewReader(b.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 1 || rep.Malformed != 1 || rep.Errors[0].Line != 1 || !strings.Contains(rep.Errors[0].Err, "longer than") {
		t.Errorf("records %d malformed %v", rep.Records, rep.Errors)
	}
	if rep.Bytes != int64(b.Len()) || len(rep.SHA256) != 64 {
		t.Errorf("bytes %d of %d, sha %q", rep.Bytes, b.Len(), rep.SHA256)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"text":"hello","label":"a"}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"label":1}`))
	f.Add([]byte(`{"prompt":"p","completion":7}`))
	f.Add([]byte("\xff{"))
	f.Fuzz(func(t *testing.T, line []byte) {
		if _, _, _, err := parseRecord(line, false, Options{LabelField: "label"}); err == nil && !json.Valid(bytes.TrimSpace(line)) {
			t.Fatalf("accepted a line that is not JSON: %q", line)
		}
		rep, cerr := Check("f.jsonl", bytes.NewReader(append(append([]byte{}, line...), '\n')), Options{LabelField: "label",
			Sensitive: func(string) []string { return []string{"email"} }})
		if cerr != nil {
			t.Fatal(cerr)
		}
		if rep.Records+rep.Malformed > bytes.Count(line, []byte("\n"))+1 || rep.ExactDuplicates+rep.NearDuplicates > rep.Records || rep.SensitiveRecords != rep.Records {
			t.Fatalf("report %+v", rep)
		}
	})
}
