package pii

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/detect"
)

// mixedText builds about n bytes of text: English prose, Go code, numbers
// (dates, versions, amounts, ids, hashes), addresses and PII, and base64
// blobs, a fifth of the bytes each.
func mixedText(n int) []byte {
	r := rand.New(rand.NewPCG(7, 11))
	prose := []string{
		"The quick brown fox jumps over the lazy dog. ",
		"Please follow the instructions in the README before you start. ",
		"Our meeting moved to Thursday afternoon; bring the quarterly report. ",
		"Large language models are served through the gateway with inline filters. ",
	}
	code := []string{
		"func (s *Server) handle(w http.ResponseWriter, r *http.Request) error {\n",
		"\tif err := json.NewDecoder(r.Body).Decode(&req); err != nil {\n\t\treturn fmt.Errorf(\"decode: %w\", err)\n\t}\n",
		"for i := 0; i < len(xs); i++ { sum += xs[i] * 31 }\n",
		"x := map[string]int{\"a\": 1, \"b\": 2}; std::vector<int> v; a[::2]\n",
	}
	numbers := []string{
		"Released 2024-01-15 as v1.22.3 (build 20240115.3). ",
		"Total: $1,234.56 for 12 items, order #4500012345. ",
		"Latency p99 12.5 ms at 12:30:45, ISBN 978-3-16-148410-0. ",
		"commit 3f2a9c8e1b7d4a6f5e0c9b8a7d6e5f4c3b2a1908 uuid 550e8400-e29b-41d4-a716-446655440000 ",
	}
	addresses := []string{
		"Contact alice@example.com or call +1 (415) 555-2671. ",
		"Server 93.184.216.34:443 and 10.0.0.1, IPv6 2606:4700:4700::1111. ",
		"IBAN DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111. ",
		"SSN 536-22-1234, 221B Baker Street, London NW1 6XE, +44 20 7946 0958. ",
	}
	blob := make([]byte, 300)
	var b strings.Builder
	var written [5]int // bytes per kind, kept about equal
	for b.Len() < n {
		k := 0
		for i := range written {
			if written[i] < written[k] {
				k = i
			}
		}
		start := b.Len()
		switch k {
		case 0:
			b.WriteString(prose[r.IntN(len(prose))])
		case 1:
			b.WriteString(code[r.IntN(len(code))])
		case 2:
			b.WriteString(numbers[r.IntN(len(numbers))])
		case 3:
			b.WriteString(addresses[r.IntN(len(addresses))])
		case 4:
			for i := range blob {
				blob[i] = byte(r.Uint32())
			}
			b.WriteString(base64.StdEncoding.EncodeToString(blob[:r.IntN(len(blob))]))
			b.WriteString("\n")
		}
		written[k] += b.Len() - start
	}
	return []byte(b.String()[:n])
}

func benchDetectors(b *testing.B, ds []detect.Detector) {
	text := mixedText(1 << 20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	cpu := cpuTime()
	n := 0
	for b.Loop() {
		for _, d := range ds {
			d.Find(text, 0, func(detect.Match) { n++ })
		}
	}
	reportCPU(b, cpu, len(text))
}

// cpuTime returns the CPU time the process has used. The benchmarks report
// throughput per CPU second as well as per wall second: on a shared
// machine the wall clock mostly measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration, size int) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(size)*float64(b.N)/d.Seconds()/1e6, "MB/cpu-s")
	}
}

// BenchmarkPII scans the mixed 1 MiB text with all six detectors.
func BenchmarkPII(b *testing.B) { benchDetectors(b, New(Options{})) }

func BenchmarkEmail(b *testing.B)      { benchDetectors(b, []detect.Detector{NewEmail()}) }
func BenchmarkPhone(b *testing.B)      { benchDetectors(b, []detect.Detector{NewPhone(nil)}) }
func BenchmarkCreditCard(b *testing.B) { benchDetectors(b, []detect.Detector{NewCreditCard()}) }
func BenchmarkIBAN(b *testing.B)       { benchDetectors(b, []detect.Detector{NewIBAN()}) }
func BenchmarkSSN(b *testing.B)        { benchDetectors(b, []detect.Detector{NewSSN()}) }
func BenchmarkIP(b *testing.B)         { benchDetectors(b, []detect.Detector{NewIP(false)}) }

// BenchmarkPhoneUnique measures the worst case for the phone detector: a
// text where every 100 bytes or so hold a different phone-shaped number,
// so its validity cache never helps and phonenumbers parses each one.
func BenchmarkPhoneUnique(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 5))
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("Please call the office about the delivery tomorrow, thanks: ")
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(&sb, "(%03d) %03d-%04d. ", 200+r.IntN(800), r.IntN(1000), r.IntN(10000))
		case 1:
			fmt.Fprintf(&sb, "+44 20 %04d %04d. ", r.IntN(10000), r.IntN(10000))
		case 2:
			fmt.Fprintf(&sb, "0%d %d. ", 30+r.IntN(70), 1000000+r.IntN(9000000))
		}
	}
	text := []byte(sb.String())
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		d := NewPhone(nil) // a cold cache each time
		d.Find(text, 0, func(detect.Match) {})
	}
	reportCPU(b, cpu, len(text))
}

// BenchmarkBaseline is the cheapest possible pass, one table lookup per
// byte, over the same text: a yardstick for the detector numbers on a
// machine whose speed is not known.
func BenchmarkBaseline(b *testing.B) {
	text := mixedText(1 << 20)
	b.SetBytes(int64(len(text)))
	cpu := cpuTime()
	n := 0
	for b.Loop() {
		for _, c := range text {
			if class[c]&cWord != 0 {
				n++
			}
		}
	}
	reportCPU(b, cpu, len(text))
}
