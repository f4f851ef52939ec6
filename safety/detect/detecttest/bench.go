package detecttest

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/proc"
)

// BenchText is the fixed 1 MiB text the detectors and the filter engine are
// measured on. Its mix by bytes: about 45% English prose, 20% Go code, 10%
// numbers (dates, versions, amounts, order ids), 10% addresses (e-mail,
// URLs, IPs, phone numbers), 10% base64 and hex, 5% non-ASCII prose
// (German, Chinese, Russian), with a GitHub token every few kilobytes.
// A package's extra lines are mixed in about every 2 KB, so each detector
// also meets what it looks for; without them the text is exactly the
// engine's corpus.
func BenchText(extra ...string) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	prose := strings.Fields(`the model answered every question about the garden with care and
		then it described how water moves through soil roots leaves and stems while the team
		reviewed the deployment plan for next week including backups monitoring and alerts
		please follow the instructions in the readme before you run the installer again`)
	code := []string{"func (s *Server) handle(w http.ResponseWriter, r *http.Request) {\n",
		"\tif err := json.NewDecoder(r.Body).Decode(&req); err != nil {\n", "\t\treturn fmt.Errorf(\"decode: %w\", err)\n",
		"\tfor i := range items { total += items[i].Price * 1.19 }\n", "}\n"}
	numbers := []string{"2024-01-15", "v1.24.3", "$1,299.00", "order #48213", "12:30:45", "ISBN 978-3-16-148410-0", "3.14159"}
	addrs := []string{"see https://example.com/docs/setup", "ping 10.0.0.12", "mail ops@warden.dev", "call +1 415 555 2671", "host 8.8.8.8"}
	other := []string{"Die Antwort ist richtig und vollständig.", "这是一个关于花园的问题。", "Ответ полный и правильный."}
	var b strings.Builder
	for b.Len() < 1<<20 {
		switch x := r.IntN(100); {
		case x < 45:
			for range 12 {
				b.WriteString(prose[r.IntN(len(prose))])
				b.WriteByte(' ')
			}
			b.WriteString(". ")
		case x < 65:
			b.WriteString(code[r.IntN(len(code))])
		case x < 75:
			b.WriteString(numbers[r.IntN(len(numbers))] + " ")
		case x < 85:
			b.WriteString(addrs[r.IntN(len(addrs))] + " ")
		case x < 95:
			if x%2 == 0 {
				b.WriteString("data: aGVsbG8gd29ybGQsIHRoaXMgaXMgYSBiYXNlNjQgcGF5bG9hZCBmb3IgdGVzdHM= ")
			} else {
				b.WriteString("sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ")
			}
		default:
			b.WriteString(other[r.IntN(len(other))] + " ")
		}
		if r.IntN(400) == 0 {
			b.WriteString("token ghp_" + "R8kTq2VwXy7LmN4pZs9DfG3hJ6cB1aE5uQ0o" + " ")
		}
		if len(extra) > 0 && r.IntN(40) == 0 {
			b.WriteString(extra[r.IntN(len(extra))])
		}
	}
	return []byte(b.String()[:1<<20])
}

// baselineSink keeps the baseline loop's result alive so the compiler
// cannot drop the loop; nothing reads it.
//
//lint:ignore U1000 written only, on purpose: a benchmark sink
var baselineSink int

// ReportCPU reports throughput per CPU second, and the ratio of used (the
// CPU time of b.N operations over size bytes each) to a baseline loop (one
// table lookup per byte) over as many bytes of text, measured right after
// (at least 50 MB of it, so that the load of the moment weighs on both
// alike). On a loaded machine the wall clock mostly measures the
// neighbours; the ratio stays put.
func ReportCPU(b *testing.B, used time.Duration, text []byte, size int) {
	total := float64(size) * float64(b.N)
	passes := max(50<<20/len(text), int(total)/len(text))
	base := BaselineCPU(text, passes)
	if used <= 0 || base <= 0 {
		return
	}
	b.ReportMetric(total/used.Seconds()/1e6, "MB/cpu-s")
	b.ReportMetric(float64(used)/(float64(base)*total/float64(passes*len(text))), "x-baseline")
}

// BaselineCPU is the CPU time of n passes of the cheapest possible scan
// over text, one table lookup per byte.
func BaselineCPU(text []byte, n int) time.Duration {
	var word [256]bool
	for c := range 256 {
		word[c] = c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z'
	}
	start := proc.CPUTime()
	k := 0
	for range n {
		for _, c := range text {
			if word[c] {
				k++
			}
		}
	}
	baselineSink += k
	return proc.CPUTime() - start
}
