package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/models"
)

func newModelsPinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pin NAME [DIGEST]",
		Short: "Pin a model to a manifest digest (default: its current one)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			digest := ""
			if len(args) == 2 {
				digest = args[1]
			}
			d, err := gov.Pin(cmd.Context(), osActor(), args[0], digest)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "pinned %s to %s\n", args[0], d)
			return err
		}),
	}
}

func newModelsUnpinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unpin NAME",
		Short: "Remove a model's pin",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			if err := gov.Unpin(cmd.Context(), osActor(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "unpinned %s\n", args[0])
			return err
		}),
	}
}

func newModelsHistoryCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "history NAME",
		Short: "List the versions a model name has pointed to, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			h, err := gov.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				if h == nil {
					h = []models.Version{}
				}
				return writeJSON(g, h)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "WHEN\tACTION\tFROM\tTO\tKEPT\tBY\tSOURCE")
			for _, v := range h {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.At.Format(time.RFC3339), v.Action,
					orDash(shortDigest(v.Old)), shortDigest(v.New), yesNo(v.Kept), v.Actor, v.Source)
			}
			return tw.Flush()
		}),
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newModelsRollbackCmd(g *globals) *cobra.Command {
	var to string
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Point a model name back at its previous (or a kept) version",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			ch, err := gov.Rollback(cmd.Context(), osActor(), args[0], to)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, ch)
			}
			fmt.Fprintf(g.stdout, "%s: %s -> %s (the replaced version is kept as %s)\n", ch.Name, shortDigest(ch.Old), shortDigest(ch.New), ch.Kept)
			if ch.PinMoved {
				fmt.Fprintf(g.stdout, "its pin moved to %s\n", ch.New)
			}
			if ch.PinMismatch {
				fmt.Fprintln(g.stdout, "warning: [models.pins] pins it to another digest: it is not served until the config changes")
			}
			return nil
		}),
	}
	c.Flags().StringVar(&to, "to", "", "the digest to roll back to (12 hex or more; default: the previous version)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newModelsVerifyCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify [NAME]",
		Short: "Re-hash every blob of a model (or of all) against its manifest",
		Args:  cobra.MaximumNArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			p := newProgressPrinter(g.stdout, asJSON)
			res, err := gov.Verify(cmd.Context(), name, p.progress)
			p.close()
			if err != nil {
				return err
			}
			bad := 0
			for _, m := range res {
				if !m.OK {
					bad++
				}
			}
			if asJSON {
				if err := json.NewEncoder(g.stdout).Encode(map[string]any{"status": "done", "models": res, "ok": bad == 0}); err != nil {
					return err
				}
			} else {
				for _, m := range res {
					fmt.Fprintf(g.stdout, "%s %s: %s\n", m.Name, shortDigest(m.Digest), map[bool]string{true: "ok", false: "FAILED"}[m.OK])
					if m.Error != "" {
						fmt.Fprintf(g.stdout, "  %s\n", m.Error)
					}
					for _, b := range m.Blobs {
						if b.State != models.BlobOK {
							fmt.Fprintf(g.stdout, "  %s %s (%s): %s\n", b.State, b.Digest, b.Media, b.Detail)
						}
					}
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d models failed verification", bad, len(res))
			}
			return nil
		}),
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print progress and the result as JSON lines")
	return c
}

func newModelsAnnotateCmd(g *globals) *cobra.Command {
	var note string
	c := &cobra.Command{
		Use:   "annotate NAME --note TEXT",
		Short: "Add an operator's note to a model's provenance record",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			if err := gov.Annotate(cmd.Context(), osActor(), args[0], note); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "noted on %s\n", args[0])
			return err
		}),
	}
	c.Flags().StringVar(&note, "note", "", "the note")
	return c
}

func newModelsManifestCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "manifest",
		Short: "Export every model version's provenance record as one document",
		Args:  cobra.NoArgs,
		RunE: g.withGovernor(func(cmd *cobra.Command, _ []string, gov *models.Governor) error {
			recs, err := gov.Manifest(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, map[string]any{"generated_at": time.Now().UTC(), "models": recs})
			}
			for _, r := range recs {
				cur := ""
				if r.Current {
					cur = " (current)"
				}
				fmt.Fprintf(g.stdout, "%s %s%s\n  source: %s\n", r.Name, shortDigest(r.Digest), cur, r.Source)
				if r.SourceSHA256 != "" {
					fmt.Fprintf(g.stdout, "  file sha256: %s\n", r.SourceSHA256)
				}
				if r.License != "" || r.LicenseSPDX != "" {
					fmt.Fprintf(g.stdout, "  licence: %s%s\n", firstLine(r.License), spdxNote(r.LicenseSPDX))
				}
				if r.Actor != "" {
					fmt.Fprintf(g.stdout, "  by %s at %s\n", r.Actor, r.At.Format(time.RFC3339))
				}
				for _, n := range r.Notes {
					fmt.Fprintf(g.stdout, "  note %s %s: %s\n", n.At.Format(time.RFC3339), n.Actor, n.Note)
				}
			}
			return nil
		}),
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
