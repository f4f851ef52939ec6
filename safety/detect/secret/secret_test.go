package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// Test keys are assembled here from a prefix and seeded random characters,
// so that no real-looking credential sits in the source.
var rng = rand.New(rand.NewPCG(7, 9))

func fake(prefix string, n int, alphabet string) string {
	b := []byte(prefix)
	for range n {
		b = append(b, alphabet[rng.IntN(len(alphabet))])
	}
	return string(b)
}

const (
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lower  = "abcdefghijklmnopqrstuvwxyz"
	digits = "0123456789"
	alnums = upper + lower + digits
	b32    = upper + "234567"
	b64    = alnums + "+/"
)

func jwtToken() string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc([]byte(`{"sub":"1234567890","name":"Test User","iat":1516239022}`)) + "." +
		fake("", 43, alnums+"-_")
}

func pemBlock() string {
	var b strings.Builder
	b.WriteString("-----BEGIN RSA PRIVATE KEY-----\n")
	for range 5 {
		b.WriteString(fake("", 64, b64) + "\n")
	}
	b.WriteString(fake("", 20, b64) + "==\n-----END RSA PRIVATE KEY-----")
	return b.String()
}

type want struct{ sub, name string }

func TestFind(t *testing.T) {
	aws := fake("AKIA", 16, b32)
	awsSecret := fake("", 40, b64)
	ghp := fake("ghp_", 36, alnums)
	pat := fake("github_pat_", 22, alnums) + "_" + fake("", 59, alnums)
	glpat := fake("glpat-", 20, alnums+"-_")
	xoxb := "xoxb-" + fake("", 12, digits) + "-" + fake("", 13, digits) + "-" + fake("", 24, alnums)
	hook := "hooks.slack.com/services/" + fake("T", 10, upper+digits) + "/" + fake("B", 10, upper+digits) + "/" + fake("", 24, alnums)
	openai := fake("sk-proj-", 40, alnums) + "T3BlbkFJ" + fake("", 40, alnums)
	openaiOld := fake("sk-", 48, alnums)
	ant := fake("sk-ant-api03-", 93, alnums+"-_") + "AA"
	stripe := fake("sk_live_", 24, alnums)
	google := fake("AIza", 35, alnums+"-_")
	jwt := jwtToken()
	pem := pemBlock()
	gen := fake("", 24, alnums)
	glft := fake("glft-", 20, alnums+"-_")
	glimt := fake("glimt-", 25, alnums)
	glrt := fake("glrt-", 20, alnums)
	gr := fake("GR1348941", 20, alnums+"-_")
	gldt := fake("gldt-", 20, alnums)
	glptt := fake("glptt-", 40, "0123456789abcdef")
	xoxe := "xoxe-1-" + fake("", 146, upper+digits)
	xoxeConfig := "xoxe.xoxp-1-" + fake("", 163, upper+digits)
	workflow := "hooks.slack.com/workflows/" + fake("T", 9, upper+digits) + "/" + fake("A", 10, upper+digits) + "/" + fake("", 18, digits) + "/" + fake("", 24, alnums)
	bedrock := fake("ABSKQmVkcm9ja0FQSUtleS0", 108, b64) + "="
	tests := []struct {
		name string
		text string
		want []want
	}{
		{"aws access key", "id " + aws + " ok", []want{{aws, "aws-access-key"}}},
		{"aws key too long", "id " + aws + "Q ok", nil},
		{"aws key lowercase", "id AKIA" + strings.ToLower(aws[4:]), nil},
		{"aws key in word", "xx" + aws, nil},
		{"aws secret", "aws_secret_access_key = " + awsSecret, []want{{awsSecret, "aws-secret-key"}}},
		{"aws secret json", `{"SecretAccessKey": "` + awsSecret + `"}`, []want{{awsSecret, "aws-secret-key"}}},
		{"github", "export GH=" + ghp, []want{{ghp, "github-token"}}},
		{"github in generic", "GITHUB_TOKEN=" + ghp, []want{{ghp, "github-token"}}},
		{"github pat", pat + ".", []want{{pat, "github-token"}}},
		{"github short", "ghp_abc123", nil},
		{"gitlab", "token " + glpat, []want{{glpat, "gitlab-token"}}},
		{"slack", xoxb, []want{{xoxb, "slack-token"}}},
		{"slack webhook", "https://" + hook, []want{{hook, "slack-webhook"}}},
		{"openai project", "key " + openai, []want{{openai, "openai-key"}}},
		{"openai", openaiOld, []want{{openaiOld, "openai-key"}}},
		{"sk-learn", "install sk-learn and scikit-learn-contrib-intelligence-kit", nil},
		{"sk- words", "sk-this-is-not-a-real-key-at-all-ok", nil},
		{"anthropic", ant, []want{{ant, "anthropic-key"}}},
		{"stripe", "pay " + stripe, []want{{stripe, "stripe-key"}}},
		{"stripe test", "pay sk_test_" + stripe[8:], nil},
		{"google", google, []want{{google, "google-api-key"}}},
		{"jwt", "Bearer " + jwt + ".", []want{{jwt, "jwt"}}},
		{"jwt bad header", "eyJub3QganNvbg.eyJhIjoxfQ.sig", nil},
		{"private key", "key:\n" + pem + "\nend", []want{{pem, "private-key"}}},
		{"private key no end", "x " + pem[:200] + "\n\nthat was it", []want{{strings.TrimRight(pem[:200], "\n"), "private-key"}}},
		{"public key", "-----BEGIN PUBLIC KEY-----\n" + fake("", 64, b64) + "\n-----END PUBLIC KEY-----", nil},
		{"private key no body", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----", nil},
		{"generic", "password = " + gen, []want{{gen, "generic-secret"}}},
		{"generic quoted", `"api_key": "` + gen + `",`, []want{{gen, "generic-secret"}}},
		{"generic camel", "apiKey: '" + gen + "'", []want{{gen, "generic-secret"}}},
		{"generic arrow", "'secret' => '" + gen + "'", []want{{gen, "generic-secret"}}},
		{"generic go", "token := \"" + gen + "\"", []want{{gen, "generic-secret"}}},
		{"generic placeholder", "password = <your-password-here>", nil},
		{"generic var", "token = ${TOKEN}", nil},
		{"generic stars", "password: ********", nil},
		{"generic example", "api_key=EXAMPLEKEY1234567890abc", nil},
		{"generic low entropy", "password = aaaaaaaaaaaaaaaa1", nil},
		{"generic identifier", "token = self.request.headers", nil},
		{"generic monkey", "monkey = " + gen, nil},
		{"generic comparison", "if token == " + gen, nil},
		{"generic uuid", "key: 123e4567-e89b-12d3-a456-426614174000", nil},
		{"generic number", "token: 12345678901234567", nil},
		{"generic password words", "password: CorrectHorseBatteryStaple", []want{{"CorrectHorseBatteryStaple", "generic-secret"}}},
		{"generic key words", "key: CorrectHorseBatteryStaple", nil},
		{"generic url", "token_url: https://auth.example.org/oauth/token", nil},
		{"two keys", aws + " " + ghp, []want{{aws, "aws-access-key"}, {ghp, "github-token"}}},
		{"gitlab feed", "feed_token=" + glft, []want{{glft, "gitlab-token"}}},
		{"gitlab incoming mail", "mail " + glimt + ".", []want{{glimt, "gitlab-token"}}},
		{"gitlab runner", "--token " + glrt, []want{{glrt, "gitlab-token"}}},
		{"gitlab runner registration", "token " + gr, []want{{gr, "gitlab-token"}}},
		{"gitlab deploy", gldt, []want{{gldt, "gitlab-token"}}},
		{"gitlab trigger", "t " + glptt, []want{{glptt, "gitlab-token"}}},
		{"gitlab placeholder", "glpat-xxxxxxxxxxxxxxxxxxxx", nil},
		{"slack refresh", "r " + xoxe, []want{{xoxe, "slack-token"}}},
		{"slack config", "c " + xoxeConfig, []want{{xoxeConfig, "slack-token"}}},
		{"slack webhook no scheme", "url: " + hook, []want{{hook, "slack-webhook"}}},
		{"slack workflow webhook", "url: " + workflow, []want{{workflow, "slack-webhook"}}},
		{"bedrock", "AWS_BEARER_TOKEN_BEDROCK=" + bedrock, []want{{bedrock, "aws-bedrock-key"}}},
		{"aws sample", "id AKIAIOSFODNN7EXAMPLE ok", nil},
		{"aws sample secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},
		{"github x", "ghp_" + strings.Repeat("x", 36), nil},
		{"github docs", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", nil},
		{"github periodic", "ghp_" + strings.Repeat("aB3dE5", 6), nil},
		{"jwt.io sample", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", nil},
		{"go var", "var apiKey string = \"" + gen + "\"", []want{{gen, "generic-secret"}}},
		{"ts typed", "const authToken: string = '" + gen + "';", []want{{gen, "generic-secret"}}},
		{"make ::=", "API_TOKEN ::= " + gen, []want{{gen, "generic-secret"}}},
		{"make ?=", "API_TOKEN ?= " + gen, []want{{gen, "generic-secret"}}},
		{"setProperty", `System.setProperty("db.password", "` + gen + `");`, []want{{gen, "generic-secret"}}},
		{"Setenv", `os.Setenv("API_TOKEN", "` + gen + `")`, []want{{gen, "generic-secret"}}},
		{"environ index", `os.environ["API_KEY"] = "` + gen + `"`, []want{{gen, "generic-secret"}}},
		{"call not a key", `fmt.Println("monkey", "` + gen + `")`, nil},
		{"public_key", "public_key = " + gen, nil},
		{"foreignKey", "foreignKey: " + gen, nil},
		{"primaryKey", `primaryKey = "` + gen + `"`, nil},
		{"csrf-token", `csrf-token: ` + gen, nil},
		{"token_type", "token_type = " + gen, nil},
		{"max_tokens", "max_tokens = 4096", nil},
		{"base64 of a word", "password: cGFzc3dvcmQ=", nil},
		{"base64 of a key", "key: " + base64.StdEncoding.EncodeToString([]byte(gen+gen)), []want{{base64.StdEncoding.EncodeToString([]byte(gen + gen)), "generic-secret"}}},
		{"url placeholder", "https://user:pass@host", nil},
		{"url printf", `"postgres://postgres:%s@db:5432/x"`, nil},
	}
	d := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wantSpans []detect.Match
			for _, w := range tt.want {
				i := strings.Index(tt.text, w.sub)
				wantSpans = append(wantSpans, detect.Match{Start: i, End: i + len(w.sub), Category: Category, Detector: w.name})
			}
			got := detecttest.Whole(d, []byte(tt.text))
			if !slices.Equal(got, wantSpans) {
				t.Errorf("Find(%q)\n got %v\nwant %v", tt.text, got, wantSpans)
			}
			for _, sizes := range [][]int{{1}, {3, 1, 7}, {16}, {64}} {
				if msg := detecttest.Chunked(d, []byte(tt.text), sizes); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func TestHold(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"hello world", 0},
		{"id AKIA12", 6},
		{"id AKI", 3},
		{"xAKI", 0},
		{"token ghp_abc", 7},
		{"-----BEGIN RSA PRI", 18},
		{"x -----BEGIN RSA PRIVATE KEY-----\nMIIE", 36},
		{"see sk-learn", 8},
		{"password = abc", 3},
		{"text ending in e", 1},
		{"text ending in ey", 2},
		{"hooks.slack", 11},
	}
	d := New()
	for _, tt := range tests {
		if got := d.Hold([]byte(tt.text)); got != tt.want {
			t.Errorf("Hold(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestFindFrom(t *testing.T) {
	d := New()
	gen := fake("", 20, alnums)
	text := []byte("password = " + gen)
	var got []detect.Match
	d.Find(text, 11, func(m detect.Match) { got = append(got, m) })
	if len(got) != 1 || got[0].Start != 11 {
		t.Errorf("Find from the value = %v, want the value found with its key in the context", got)
	}
}

func TestCorpus(t *testing.T) {
	detecttest.Corpus(t, "testdata/corpus/secret.txt", Category, New(), 0.95, 0.95)
}

// TestCorpusRuleClasses holds each rule class added for issue 16 to its own
// floors: GitLab and Slack tokens, Bedrock keys, the assignment syntaxes,
// and the key names that are not secrets.
func TestCorpusRuleClasses(t *testing.T) {
	for _, class := range []string{"gitlab", "slack", "bedrock", "assignment", "names"} {
		t.Run(class, func(t *testing.T) {
			detecttest.Corpus(t, "testdata/corpus/secret_"+class+".txt", Category, New(), 0.95, 0.95)
		})
	}
}

func TestBadInput(t *testing.T) {
	d := New()
	inputs := map[string][]byte{
		"a":             bytes.Repeat([]byte("a"), 1<<20),
		"A":             bytes.Repeat([]byte("A"), 1<<20),
		"dashes":        bytes.Repeat([]byte("-"), 1<<20),
		"underscores":   bytes.Repeat([]byte("_"), 1<<20),
		"equals":        bytes.Repeat([]byte("="), 1<<20),
		"begins":        bytes.Repeat([]byte("-----BEGIN PRIVATE KEY-----\n"), 1<<15),
		"open pem":      append([]byte("-----BEGIN PRIVATE KEY-----\n"), bytes.Repeat([]byte("QUFB"), 1<<18)...),
		"eyJ":           bytes.Repeat([]byte("eyJ"), 1<<18),
		"jwt dots":      bytes.Repeat([]byte("eyJhbGciOiJIUzI1NiJ9."), 1<<15),
		"assignments":   bytes.Repeat([]byte("key=key=token:"), 1<<16),
		"AKIA":          bytes.Repeat([]byte("AKIA"), 1<<18),
		"invalid utf8":  bytes.Repeat([]byte{0xff, 'A', 'K', 0x80, '=', '-'}, 1<<17),
		"long token":    []byte(fake("ghp_", 1<<20, alnums)),
		"commas":        bytes.Repeat([]byte(","), 1<<20),
		"call args":     bytes.Repeat([]byte(`("api_key", "`), 1<<16),
		"GR prefix":     bytes.Repeat([]byte("GR1348941"), 1<<17),
		"xoxe":          bytes.Repeat([]byte("xoxe.xoxp-"), 1<<17),
		"ABSK":          append([]byte("ABSK"), []byte(fake("", 1<<20, b64))...),
		"make assign":   bytes.Repeat([]byte("TOKEN ::= "), 1<<17),
		"typed":         bytes.Repeat([]byte("var token string = "), 1<<16),
		"zero width":    bytes.Repeat([]byte("\u200b"), 1<<18),
		"x placeholder": append([]byte("ghp_"), bytes.Repeat([]byte("x"), 1<<20)...),
	}
	silent := map[string]bool{"a": true, "A": true, "dashes": true, "underscores": true, "equals": true, "commas": true,
		"call args": true, "GR prefix": true, "xoxe": true, "ABSK": true, "make assign": true, "typed": true,
		"zero width": true, "x placeholder": true, "long token": true}
	for name, text := range inputs {
		ms := detecttest.Whole(d, text)
		if h := d.Hold(text); h < 0 || h > detect.MaxHold {
			t.Errorf("%s: Hold = %d", name, h)
		}
		if msg := detecttest.Chunked(d, text[:min(len(text), 3000)], []int{7, 64, 1}); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
		if silent[name] && len(ms) > 0 {
			t.Errorf("%s: %d matches, want none (first %v)", name, len(ms), ms[0])
		}
		t.Logf("%s: %d matches", name, len(ms))
	}
}

func FuzzSecret(f *testing.F) {
	for _, s := range []string{
		"id " + fake("AKIA", 16, b32) + " ok", fake("ghp_", 36, alnums), "password = " + fake("", 20, alnums),
		"-----BEGIN RSA PRIVATE KEY-----\n" + fake("", 64, b64) + "\n-----END RSA PRIVATE KEY-----",
		"-----BEGIN EC PRIVATE KEY-----\n" + fake("", 40, b64), jwtToken() + ".", fake("sk-ant-", 40, alnums),
		"hooks.slack.com/services/T12345678/B12345678/" + fake("", 24, alnums), `"apiKey":"` + fake("", 16, alnums),
		"xoxb-1234567890-1234567890-abc", "aws_secret_access_key: " + fake("", 40, b64),
		fake("glrt-", 20, alnums), fake("GR1348941", 20, alnums), "xoxe.xoxp-1-" + fake("", 163, upper+digits),
		fake("ABSK", 120, b64) + "=", `System.setProperty("db.password", "` + fake("", 20, alnums) + `")`,
		"var apiKey string = \"" + fake("", 20, alnums) + "\"", "TOKEN ::= " + fake("", 20, alnums),
		"hooks.slack.com/workflows/" + fake("", 60, alnums+"/"), "public_key = " + fake("", 20, alnums),
	} {
		f.Add([]byte(s), []byte{5, 1, 9})
	}
	d := New()
	f.Fuzz(func(t *testing.T, text, chunks []byte) {
		if msg := detecttest.Chunked(d, text, detecttest.Sizes(chunks)); msg != "" {
			t.Fatal(msg)
		}
		s := 0
		if len(chunks) > 0 {
			s = int(chunks[0]) % (len(text) + 1)
		}
		checkMarks(t, text, s, min(len(text), s+block))
	})
}

// checkMarks compares markAnchors's two ways of finding the searched bytes
// of text[s:e]: one blockmask pass and a bytes.IndexByte pass for each.
func checkMarks(t *testing.T, text []byte, s, e int) {
	t.Helper()
	var got, want [block / 64]uint64
	ok := markAnchorsVector(text, s, e, &got)
	defer func(old bool) { vector = old }(vector)
	vector = false
	wantOK := markAnchors(text, s, e, &want)
	if ok != wantOK || ok && got != want {
		t.Fatalf("markAnchors(%q, %d, %d): vector %v %x, IndexByte %v %x", text, s, e, ok, got, wantOK, want)
	}
}

// TestMarkAnchors holds markAnchors's one-pass search to its IndexByte
// search, on text thick and thin with the searched bytes and every other
// byte value, at every length up to two blocks and more.
func TestMarkAnchors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	const thick = ":=,-AJ_/RG.hooks.slack.com/xy \xff\x00"
	for range 3000 {
		text := make([]byte, r.IntN(2*block+200))
		p := r.IntN(40)
		for i := range text {
			switch {
			case r.IntN(100) < p:
				text[i] = thick[r.IntN(len(thick))]
			case r.IntN(50) == 0:
				text[i] = byte(r.IntN(256))
			default:
				text[i] = 'a' + byte(r.IntN(26))
			}
		}
		if r.IntN(4) == 0 && len(text) > 40 {
			copy(text[r.IntN(len(text)-40):], "hooks.slack.com/services GR1348941")
		}
		s := r.IntN(len(text) + 1)
		e := min(len(text), s+r.IntN(block+1))
		checkMarks(t, text, s, e)
	}
}

// mixed is the shared benchmark text with secrets and a near-miss config
// line mixed in.
func mixed() []byte {
	return detecttest.BenchText(
		"GITHUB_TOKEN="+fake("ghp_", 36, alnums)+"\n",
		"config: {\"timeout\": 30, \"endpoint\": \"https://api.example.org/v1\", \"token_type\": \"bearer\"}\n",
	)
}

func BenchmarkFind(b *testing.B) {
	text := mixed()
	d := New()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		d.Find(text, 0, func(detect.Match) {})
		d.Hold(text)
	}
}

// TestChunkedFragments glues rule fragments together at random and checks
// that every chunking finds what the whole text finds.
func TestChunkedFragments(t *testing.T) {
	frags := []string{
		"AKIA", fake("", 16, b32), "ghp_", fake("", 36, alnums), "github_pat_", "sk-", "sk-ant-", "sk_live_",
		fake("", 24, alnums), "eyJhbGciOiJIUzI1NiJ9", ".", "eyJhIjoxfQ", "-----BEGIN RSA PRIVATE KEY-----", "\n",
		fake("", 64, b64), "-----END RSA PRIVATE KEY-----", "-----END ", "password", " = ", ":", "=", "\"", "key",
		"token", "apiKey", "hooks.slack.com/services/", "T12345678/B12345678/", "xoxb-", "1234567890-", " ", "==",
		"é", "\x80", "\\n", "AIza", "glpat-", "-", "_", "aws_secret_access_key", fake("", 40, b64),
		"glrt-", "glimt-", "GR1348941", "xoxe.", "xoxe-", "xoxp-", "1-", "ABSK", fake("", 120, b64), "::=", "?=",
		`("api_key", "`, `", "`, `"`, "(", "var token string = ", ": string", "hooks.slack.com/workflows/",
		"os.environ[\"API_KEY\"]", "public_key", "xxxx", "EXAMPLE", "https://user:", "@host",
	}
	d := New()
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(frags[r.IntN(len(frags))])
		}
		text := []byte(b.String())
		sizes := make([]int, 1+r.IntN(8))
		for i := range sizes {
			sizes[i] = 1 + r.IntN(20)
		}
		if msg := detecttest.Chunked(d, text, sizes); msg != "" {
			t.Fatalf("%q: %s", text, msg)
		}
	}
}

// TestAnchorMask checks the eight-byte anchor search against the table
// and the rules for '.' and 'G', for every byte value in every position
// and next to an 's' and an 'R'.
func TestAnchorMask(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for c := range 256 {
		for pos := range 8 {
			var w [8]byte
			for k := range w {
				w[k] = byte(r.IntN(256))
			}
			w[pos] = byte(c)
			if pos > 0 && r.IntN(2) == 0 {
				w[pos-1] = 's'
			}
			if pos < 7 && r.IntN(2) == 0 {
				w[pos+1] = 'R'
			}
			x := binary.LittleEndian.Uint64(w[:])
			m := anchorMask(x)
			for k := range w {
				want := isAnchor[w[k]] && !(w[k] == '.' && k > 0 && w[k-1] != 's')
				if got := m>>(8*k+7)&1 == 1; got != want {
					t.Fatalf("anchorMask(% x) byte %d (%q): %v, want %v", w, k, w[k], got, want)
				}
				if m>>(8*k)&0x7f != 0 {
					t.Fatalf("anchorMask(% x) = %#x: low bits set", w, m)
				}
			}
		}
	}
}

// TestScanBlocks checks scan, which searches blocks with bytes.IndexByte or
// (dense ones) eight bytes at a time, against scanDense over the whole
// text, on long texts of rule fragments and prose (sparse blocks) and
// JSON (dense ones) that cross block boundaries.
func TestScanBlocks(t *testing.T) {
	frags := []string{
		"AKIA" + fake("", 16, b32), fake("ghp_", 36, alnums), "password = " + fake("", 20, alnums), "GR1348941",
		"GR1348941" + fake("", 20, alnums), "hooks.slack.com/services/T12345678/B12345678/" + fake("", 24, alnums),
		"https://user:" + fake("", 12, alnums) + "@host", `("api_key", "` + fake("", 20, alnums) + `")`,
		"-----BEGIN RSA PRIVATE KEY-----\n" + fake("", 64, b64) + "\n-----END RSA PRIVATE KEY-----",
		jwtToken(), "xoxb-1234567890-1234567890-abc", "a.b", "s.", "G", "R", "/", ":", "=", ",", "-", "é",
	}
	prose := "the model answered every question about the garden with care and then "
	r := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		var b strings.Builder
		for b.Len() < 3*block {
			if r.IntN(4) == 0 {
				b.WriteString(frags[r.IntN(len(frags))])
			} else {
				b.WriteString(prose[:r.IntN(len(prose))])
			}
			switch r.IntN(6) {
			case 0:
				b.WriteString(strings.Repeat(prose[:1+r.IntN(20)]+" ", r.IntN(200)))
			case 1:
				b.WriteString(strings.Repeat(`"k":1,`, r.IntN(300)))
			}
		}
		text := []byte(b.String())
		lo := r.IntN(block)
		from := lo + r.IntN(8)
		got := scan(text, from, lo, nil)
		var want []cand
		scanDense(text, lo, len(text), func(c cand) {
			if c.ok && c.end < len(text) && !utf8.RuneStart(text[c.end]) {
				c.ok = false
			}
			if c.start >= from && (c.ok || c.open) {
				want = append(want, c)
			}
		})
		if !slices.Equal(got, want) {
			t.Fatalf("scan found %d candidates, scanDense %d:\n%v\n%v", len(got), len(want), got, want)
		}
	}
}
