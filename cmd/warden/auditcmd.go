package main

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/trail"
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
	var full bool
	verify := &cobra.Command{
		Use:   "verify [--against CHECKPOINT.json] [--full]",
		Short: "Walk the chain and its checkpoints; exit non-zero at the first broken link",
		Long: `Verify recomputes every record's hash and checks every signed checkpoint. A key
on the same disk cannot prove that the newest records were not cut off: pass
--against with a checkpoint received off-host (a forwarding sink gets every
one) to prove the chain still reaches it.

--full first runs SQLite's PRAGMA integrity_check over the whole database file
(every page and index; the server runs it daily and the faster quick_check at
every start): a damaged file fails with the fix, restoring a backup made by
"warden backup".`,
		Args: cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, cfg Config) error {
			if full {
				if err := db.Check(cmd.Context(), true); err != nil {
					return fmt.Errorf("%w: restore the newest backup made by `warden backup`", err)
				}
				if !asJSON {
					fmt.Fprintln(g.stdout, "ok: integrity_check found the database file sound")
				}
			}
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
		}),
	}
	verify.Flags().BoolVar(&full, "full", false, "also run SQLite's integrity_check on the whole file")
	verify.Flags().StringVar(&against, "against", "", "a checkpoint (JSON) received off-host")

	var (
		follow  bool
		keyID   string
		endUser string
		last    int
	)
	tail := &cobra.Command{
		Use:   "tail [-f] [--key ID] [--user USER]",
		Short: "Print the newest records, and follow new ones with -f",
		Args:  cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, _ Config) error {
			ctx := cmd.Context()
			recs, err := audit.Query(ctx, db, audit.Filter{KeyID: keyID, EndUser: endUser, Limit: max(last, 1), Newest: true})
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
				if recs, err = audit.Query(ctx, db, audit.Filter{KeyID: keyID, EndUser: endUser, AfterSeq: after}); err != nil {
					return err
				}
			}
		}),
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records")
	tail.Flags().StringVar(&keyID, "key", "", "only this key's records")
	tail.Flags().StringVar(&endUser, "user", "", "only the records made for this end user of a delegate key")
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
		Long: `Status lists the forwarding sinks of the configuration it reads, found as serve
finds it (--config, else $WARDEN_CONFIG); given neither, it reads the file
"warden serve" last started with on this data dir, so both agree. Sinks the
database has a delivery position for that the configuration does not name are
marked (*).`,
		Args: cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, cfg Config) error {
			src := g.configSource()
			cfg, served, err := g.servedConfig(cfg)
			if err != nil {
				return err
			}
			if served != "" {
				src = served + " (the configuration `warden serve` last started with)"
			}
			st, err := outbox.ReadStatus(cmd.Context(), db, time.Now())
			if err != nil {
				return err
			}
			rows := sinkRows(cfg, st)
			if asJSON {
				return writeJSON(g, rows)
			}
			configured := len(cfg.Audit.Sinks) + len(cfg.Alerts.Sinks)
			if configured == 0 {
				fmt.Fprintf(g.stdout, "No forwarding sinks in %s: the audit trail is on this host only ([[audit.sink]] in the config).\n", src)
			} else {
				fmt.Fprintf(g.stdout, "%d forwarding sink(s) in %s.\n", configured, src)
			}
			if ost, err := outbox.ReadState(cmd.Context(), db); err == nil && ost.MaxBytes > 0 {
				fmt.Fprintf(g.stdout, "Outbox: %d of %d bytes (%.0f%%), at the cap: %s; %d messages dropped so far.\n",
					ost.Bytes, ost.MaxBytes, 100*float64(ost.Bytes)/float64(ost.MaxBytes), ost.Mode, ost.Dropped)
			}
			if len(rows) == 0 {
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SINK\tPENDING\tLAG\tLAST SUCCESS\tLAST ERROR")
			now := time.Now()
			var stray []string
			for _, s := range rows {
				success := "never"
				if !s.LastSuccess.IsZero() {
					success = roundAge(now.Sub(s.LastSuccess)) + " ago"
				}
				name := s.Name
				if !s.Configured {
					name += " (*)"
					stray = append(stray, s.Name)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", name, s.Pending, s.Lag.Round(time.Second), success, s.LastError)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(stray) > 0 {
				fmt.Fprintf(g.stdout, "(*) not in %s but still has a delivery position in the database: the server runs with another configuration (give this command the same --config or WARDEN_CONFIG as serve), or it was removed and serve forgets it at its next start.\n", src)
			}
			return nil
		}),
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
			prompt, response, err := audit.ReadTextAudited(cmd.Context(), db, cfg.DataDir, seq, osActor())
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

	ackGap := &cobra.Command{
		Use:   "ack-gap",
		Short: "Acknowledge records lost from the chain's end, so the server starts again",
		Long: `The server refuses to start when receivers hold audit records the chain no
longer has: a forwarding sink was sent, or a daily export holds, a seq above the
chain's head (a crash or a damaged write-ahead log lost committed rows).

ack-gap appends a gap record naming the evidence and who acknowledged it. The
record takes the seq after the highest one seen, so a number a receiver
already holds never gets a second record, and "warden audit verify" accepts
the jump only at such a record. Restoring a backup instead keeps more: try that
first if one is newer than the loss.`,
		Args: cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, cfg Config) error {
			gap, seq, err := trail.AckGap(cmd.Context(), db, cfg.DataDir, osActor(), time.Now())
			if errors.Is(err, audit.ErrNoGap) {
				fmt.Fprintf(g.stdout, "no gap: nothing seen above the chain's head (seq %d)\n", gap.Head)
				return nil
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, struct {
					Head     int64    `json:"head"`
					Seen     int64    `json:"seen"`
					Seq      int64    `json:"gap_seq"`
					Evidence []string `json:"evidence"`
				}{gap.Head, gap.Seen, seq, gap.Evidence})
			}
			fmt.Fprintf(g.stdout, "recorded: %s\nseqs %d..%d are lost; the gap record is seq %d\n", gap, gap.Head+1, gap.Seen, seq)
			return nil
		}),
	}

	cmd.AddCommand(verify, tail, export, status, text, ackGap)
	return cmd
}

// sinkRow is one sink in `audit status`: its delivery progress, and
// whether the configuration read names it.
type sinkRow struct {
	outbox.SinkStatus
	Configured bool `json:"Configured"`
}

// sinkRows lists the configured sinks ([[audit.sink]] then [[alerts.sink]])
// with their progress (zero for one the server has not started yet), then
// the sinks the database has a position for that the configuration does
// not name.
func sinkRows(cfg Config, st []outbox.SinkStatus) []sinkRow {
	byName := map[string]outbox.SinkStatus{}
	for _, s := range st {
		byName[s.Name] = s
	}
	var rows []sinkRow
	seen := map[string]bool{}
	for _, s := range append(slices.Clip(cfg.Audit.Sinks), cfg.Alerts.Sinks...) {
		ss, ok := byName[s.Name]
		if !ok {
			ss = outbox.SinkStatus{Name: s.Name}
		}
		rows = append(rows, sinkRow{ss, true})
		seen[s.Name] = true
	}
	for _, s := range st {
		if !seen[s.Name] {
			rows = append(rows, sinkRow{s, false})
		}
	}
	return rows
}

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
	if r.EndUser != "" {
		line += " user=" + strconv.Quote(r.EndUser)
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
