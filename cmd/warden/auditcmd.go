package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

// errChainBroken makes `audit verify` exit non-zero after printing the
// break.
var errChainBroken = errors.New("the audit chain does not verify")

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, follow and export the audit trail",
		Long: `Every authenticated request leaves a request record (before the model sees it)
and a completion record (before the answer leaves), hash-chained with signed
checkpoints. These commands read the data dir's database and are safe while
the server runs.`,
	}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	var against string
	verify := &cobra.Command{
		Use:   "verify [--against CHECKPOINT.json]",
		Short: "Walk the chain and its checkpoints; exit non-zero at the first broken link",
		Long: `Verify recomputes every record's hash and checks every signed checkpoint. A key
on the same disk cannot prove that the newest records were not cut off: pass
--against with a checkpoint received off-host (a forwarding sink gets every
one) to prove the chain still reaches it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, cfg, err := g.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			var cp *audit.Checkpoint
			if against != "" {
				b, err := os.ReadFile(against)
				if err != nil {
					return err
				}
				c, err := audit.ParseCheckpoint(b)
				if err != nil {
					return fmt.Errorf("%s: %w", against, err)
				}
				cp = &c
			}
			rep, err := audit.Verify(cmd.Context(), db, cfg.DataDir, cp)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(g, rep); err != nil {
					return err
				}
			} else if rep.OK() {
				fmt.Fprintf(g.stdout, "ok: %d records (seq %d..%d), %d checkpoints verified\n", rep.Records, rep.From, rep.To, rep.Checkpoints)
			} else {
				fmt.Fprintf(g.stdout, "BROKEN at %s\n(%d records walked before it)\n", rep.Break, rep.Records)
			}
			if !rep.OK() {
				return errChainBroken
			}
			return nil
		},
	}
	verify.Flags().StringVar(&against, "against", "", "a checkpoint (JSON) received off-host")

	var (
		follow bool
		keyID  string
		last   int
	)
	tail := &cobra.Command{
		Use:   "tail [-f] [--key ID]",
		Short: "Print the newest records, and follow new ones with -f",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := g.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			ctx := cmd.Context()
			recs, err := audit.Query(ctx, db, audit.Filter{KeyID: keyID, Limit: max(last, 1), Newest: true})
			if err != nil {
				return err
			}
			var after int64
			for {
				for _, r := range recs {
					if err := printRecord(g, r, asJSON); err != nil {
						return err
					}
					after = max(after, r.Seq)
				}
				if !follow {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(500 * time.Millisecond):
				}
				if recs, err = audit.Query(ctx, db, audit.Filter{KeyID: keyID, AfterSeq: after}); err != nil {
					return err
				}
			}
		},
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records")
	tail.Flags().StringVar(&keyID, "key", "", "only this key's records")
	tail.Flags().IntVarP(&last, "lines", "n", 20, "how many of the newest records to print first")

	var (
		since, until, outPath string
		gz                    bool
	)
	export := &cobra.Command{
		Use:   "export [--since T] [--until T] [--gzip] [-o FILE]",
		Short: "Write records as JSON lines (RFC 3339 or YYYY-MM-DD times, UTC)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := audit.Filter{}
			var err error
			if f.Since, err = parseWhen(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if f.Until, err = parseWhen(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			db, _, err := g.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			recs, err := audit.Query(cmd.Context(), db, f)
			if err != nil {
				return err
			}
			var w io.Writer = g.stdout
			var file *os.File
			if outPath != "" {
				if file, err = os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
					return err
				}
				w = file
			}
			var zw *gzip.Writer
			if gz {
				zw = gzip.NewWriter(w)
				w = zw
			}
			enc := json.NewEncoder(w)
			for _, r := range recs {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			if zw != nil {
				if err := zw.Close(); err != nil {
					return err
				}
			}
			if file != nil {
				return file.Close()
			}
			return nil
		},
	}
	export.Flags().StringVar(&since, "since", "", "first time included")
	export.Flags().StringVar(&until, "until", "", "first time excluded")
	export.Flags().BoolVar(&gz, "gzip", false, "gzip the output")
	export.Flags().StringVarP(&outPath, "output", "o", "", "write to FILE (created 0600; must not exist) instead of stdout")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show forwarding sinks and how far behind each is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, cfg, err := g.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := outbox.ReadStatus(cmd.Context(), db, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, st)
			}
			if len(cfg.Audit.Sinks) == 0 {
				fmt.Fprintln(g.stdout, "No forwarding sinks configured: the audit trail is on this host only ([[audit.sink]] in the config).")
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SINK\tPENDING\tLAG\tLAST SUCCESS\tLAST ERROR")
			now := time.Now()
			for _, s := range st {
				success := "never"
				if !s.LastSuccess.IsZero() {
					success = roundAge(now.Sub(s.LastSuccess)) + " ago"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", s.Name, s.Pending, s.Lag.Round(time.Second), success, s.LastError)
			}
			return tw.Flush()
		},
	}

	text := &cobra.Command{
		Use:   "text ID",
		Short: "Print the prompt and answer stored for one record (an audited read)",
		Long: `Text decrypts the prompt and answer stored with record ID (its seq, the first
column of "warden audit tail"). Text is stored only with audit.store_text =
"full" or "redacted", and purged after audit.text_retention_days.

Reading it is itself recorded: an admin record naming who read which record is
appended to the chain before the text is printed. Control characters in the
text are printed escaped (\x1b) unless --json is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || seq < 1 {
				return fmt.Errorf("want a record's seq (a positive number, as audit tail prints it), got %q", args[0])
			}
			db, cfg, err := g.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			prompt, response, err := readTextAudited(cmd.Context(), db, cfg.DataDir, seq, osActor())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, struct {
					Seq      int64  `json:"seq"`
					Prompt   string `json:"prompt"`
					Response string `json:"response"`
				}{seq, prompt, response})
			}
			_, err = fmt.Fprintf(g.stdout, "prompt:\n%s\nresponse:\n%s\n", escapeControl(prompt), escapeControl(response))
			return err
		},
	}

	cmd.AddCommand(verify, tail, export, status, text)
	return cmd
}

// readTextAudited returns the text stored for record seq after appending an
// admin record of the read (actor, seq) to the chain: the text is returned
// only if the record of its reading committed.
func readTextAudited(ctx context.Context, db *store.DB, dataDir string, seq int64, actor string) (prompt, response string, err error) {
	recs, err := audit.Query(ctx, db, audit.Filter{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		return "", "", err
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		return "", "", fmt.Errorf("no audit record %d (pruned after audit.retention_days, or never written)", seq)
	}
	prompt, response, err = audit.ReadText(ctx, db, dataDir, seq)
	if errors.Is(err, audit.ErrNoText) {
		return "", "", fmt.Errorf("record %d has no stored text: audit.store_text was none when it was written, or audit.text_retention_days purged it", seq)
	}
	if err != nil {
		return "", "", err
	}
	// Shaped like the key commands' admin records: who, what, on which.
	type read struct {
		Seq int64 `json:"seq"`
	}
	detail, err := json.Marshal(struct {
		Actor  string `json:"actor"`
		Action string `json:"action"`
		Detail read   `json:"detail"`
	}{actor, actionTextRead, read{seq}})
	if err != nil {
		return "", "", err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	defer tx.Rollback()
	if _, err := audit.AppendTx(ctx, tx, audit.Record{Kind: audit.KindAdmin, Detail: detail}); err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	return prompt, response, nil
}

// actionTextRead is the action of the admin record `audit text` appends.
const actionTextRead = "audit_text_read"

// escapeControl writes control characters other than newline and tab as
// Go escapes, so stored model output cannot drive the terminal.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, isEscaped) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isEscaped(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isEscaped(r rune) bool {
	return r != '\n' && r != '\t' && unicode.IsControl(r)
}

func printRecord(g *globals, r audit.StoredRecord, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(g.stdout, "%s\n", b)
		return err
	}
	line := fmt.Sprintf("%d %s %-12s", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.Kind)
	if r.KeyID != "" {
		line += " key=" + r.KeyID
	}
	if r.RequestID != "" {
		line += " req=" + r.RequestID
	}
	if r.Endpoint != "" {
		line += " " + r.Endpoint
	}
	if r.Model != "" {
		line += " model=" + r.Model
	}
	if r.Status != 0 {
		line += fmt.Sprintf(" status=%d tokens=%d/%d %dms", r.Status, r.TokensIn, r.TokensOut, r.LatencyMS)
	}
	if r.ClientIP != "" {
		line += " ip=" + r.ClientIP
	}
	if len(r.Detail) > 0 {
		line += " " + string(r.Detail)
	}
	_, err := fmt.Fprintln(g.stdout, line)
	return err
}

// parseWhen parses an RFC 3339 time or a YYYY-MM-DD date (UTC midnight).
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 or YYYY-MM-DD, got %q", s)
	}
	return t, nil
}
