package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/filter"
)

// maxScanBytes bounds what warden scan reads from stdin.
const maxScanBytes = 64 << 20

// scanFinding is one finding as warden scan prints it: byte offsets into
// the original input, never the matched text.
type scanFinding struct {
	Category string        `json:"category"`
	Detector string        `json:"detector"`
	Start    int           `json:"start"`
	End      int           `json:"end"`
	Action   filter.Action `json:"action"`
	// Score is the injection classifier's probability (its findings only).
	Score float64 `json:"score,omitempty"`
}

type scanResult struct {
	Findings []scanFinding `json:"findings"`
	Text     string        `json:"text"`
	Blocked  bool          `json:"blocked"`
}

func newScanCmd(g *globals) *cobra.Command {
	var direction, profile string
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Run the safety filters over text on stdin and print the findings as JSON",
		Long: `Scan reads text on stdin and filters it with the very engine the server uses,
under the profile given (the config's profiles and blocklists apply), as a
prompt (--direction input) or an answer (--direction output). It prints

  {"findings":[{"category":"email","detector":"email","start":0,"end":17,"action":"redact"}],
   "text":"<the text after redaction>","blocked":false}

Offsets are bytes of the original input; a finding made in normalized or
decoded text points at the original run it came from. Findings the profile
allows are listed too, with action "allow". Scan exits 0 whatever it finds,
and non-zero only on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := filter.ParseDirection(direction)
			if err != nil {
				return err
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			cfg.Safety.Enabled = true
			cfg.Safety.Canary = false // no system prompt here, and no key file to create
			e, err := newFilter(&cfg)
			if err != nil {
				return err
			}
			in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxScanBytes+1))
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			if len(in) > maxScanBytes {
				return fmt.Errorf("input is larger than %d MiB", maxScanBytes>>20)
			}
			r, err := e.Request(profile)
			if err != nil {
				return err
			}
			r.ShowAllowed()
			res := r.Scan(dir, string(in))
			out := scanResult{Findings: []scanFinding{}, Text: res.Text, Blocked: res.Blocked}
			for _, f := range res.Findings {
				out.Findings = append(out.Findings, scanFinding{f.Category, f.Detector, f.Start, f.End, f.Action, f.Score})
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetEscapeHTML(false)
			return enc.Encode(out)
		},
	}
	cmd.Flags().StringVar(&direction, "direction", "input", "input (a prompt) or output (an answer)")
	cmd.Flags().StringVar(&profile, "profile", "default", "safety profile to apply")
	return cmd
}
