package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/warden-llm/warden/safety/dataset"
	"github.com/warden-llm/warden/safety/detect/pii"
	"github.com/warden-llm/warden/safety/detect/secret"
	"github.com/warden-llm/warden/safety/filter"
)

// errDatasetThresholds is the exit status of a dataset that exceeds a
// threshold.
var errDatasetThresholds = errors.New("dataset check: thresholds exceeded")

// sensitiveCategories are the findings `dataset check` counts: PII and
// secrets.
var sensitiveCategories = map[string]bool{
	pii.CategoryEmail: true, pii.CategoryPhone: true, pii.CategoryCreditCard: true, pii.CategoryIBAN: true,
	pii.CategorySSN: true, pii.CategoryIP: true, secret.Category: true,
}

func newDatasetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dataset",
		Short: "Check fine-tuning data before it is used",
	}
	var textField, labelField, manifest string
	var asJSON bool
	var th dataset.Thresholds
	check := &cobra.Command{
		Use:   "check FILE.jsonl",
		Short: "Language, class balance, duplicates, PII and secrets, manifest of a JSONL dataset",
		Long: `Check streams a JSONL dataset and reports: the language of each record and
their distribution (whatlanggo's trigram profiles; "und" when not reliable),
the balance of --label-field (counts, most/least ratio, entropy), exact and
near duplicates (the repeat detector's MinHash: Jaccard of character 5-grams
>= 0.75), records with PII or secrets found by the safety engine (counts per
category and line numbers, never the text), and with --manifest the
manifest's fields and the file's SHA-256, which must match.

The text of a record is --text-field, else "text", else the contents of
"messages", else "prompt" + "completion". Malformed lines are reported with
their line number and skipped. It exits 1 when a threshold ([dataset] or the
flags) is exceeded, the manifest's hash does not match, or a field is missing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			fl := cmd.Flags()
			for _, f := range []struct {
				name string
				dst  *float64
				def  float64
			}{
				{"max-duplicate-rate", &th.MaxDuplicateRate, cfg.Dataset.MaxDuplicateRate},
				{"max-near-duplicate-rate", &th.MaxNearDuplicateRate, cfg.Dataset.MaxNearDuplicateRate},
				{"max-sensitive-rate", &th.MaxSensitiveRate, cfg.Dataset.MaxSensitiveRate},
				{"max-label-ratio", &th.MaxLabelRatio, cfg.Dataset.MaxLabelRatio},
				{"min-language-share", &th.MinLanguageShare, cfg.Dataset.MinLanguageShare},
			} {
				if !fl.Changed(f.name) {
					*f.dst = f.def
				}
			}
			path := args[0]
			var man *dataset.Manifest
			if manifest != "" {
				m, err := dataset.LoadManifest(manifest)
				if err != nil {
					return err
				}
				man = &m
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			cfg.Safety.Enabled = true
			cfg.Safety.Canary = false // no system prompt here, and no key file to create
			eng, err := newFilter(&cfg)
			if err != nil {
				return err
			}
			opts := dataset.Options{TextField: textField, LabelField: labelField, Sensitive: sensitiveScanner(eng)}
			if bar := datasetBar(g.stderr, fi.Size(), asJSON); bar != nil {
				opts.Progress = func(n int64) { _ = bar.Set64(n) }
				defer bar.Finish()
			}
			rep, err := dataset.Check(path, f, opts)
			if err != nil {
				return err
			}
			if man != nil {
				rep.Manifest = dataset.CheckManifest(manifest, *man, path, rep.SHA256)
			}
			viol := rep.Violations(th)
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					*dataset.Report
					Violations []string `json:"violations"`
				}{rep, append([]string{}, viol...)}); err != nil {
					return err
				}
			} else {
				writeDatasetText(g.stdout, rep, viol)
			}
			for _, e := range rep.Errors {
				fmt.Fprintf(g.stderr, "warden: skipped %s:%d: %s\n", path, e.Line, e.Err)
			}
			if rep.Manifest != nil && !rep.Manifest.HashMatch && rep.Manifest.Manifest.SHA256 != "" {
				return fmt.Errorf("%w: %s has %s, %s says %s", dataset.ErrHashMismatch, path, rep.SHA256, manifest, rep.Manifest.Manifest.SHA256)
			}
			if len(viol) > 0 {
				return fmt.Errorf("%w: %s", errDatasetThresholds, strings.Join(viol, "; "))
			}
			return nil
		},
	}
	fl := check.Flags()
	fl.StringVar(&textField, "text-field", "", `field holding the text (default "text", else "messages", else "prompt"+"completion")`)
	fl.StringVar(&labelField, "label-field", "", "field holding the class label (class balance)")
	fl.StringVar(&manifest, "manifest", "", "manifest TOML (filename, source, license, date, sanitisation, sha256)")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON, no progress bar")
	fl.Float64Var(&th.MaxDuplicateRate, "max-duplicate-rate", 0, "exact duplicates / records (default dataset.max_duplicate_rate)")
	fl.Float64Var(&th.MaxNearDuplicateRate, "max-near-duplicate-rate", 0, "near duplicates / records (default dataset.max_near_duplicate_rate)")
	fl.Float64Var(&th.MaxSensitiveRate, "max-sensitive-rate", 0, "records with PII or secrets / records (default dataset.max_sensitive_rate)")
	fl.Float64Var(&th.MaxLabelRatio, "max-label-ratio", 0, "most / least frequent label, 0 off (default dataset.max_label_ratio)")
	fl.Float64Var(&th.MinLanguageShare, "min-language-share", 0, "share of the main language, 0 off (default dataset.min_language_share)")
	cmd.AddCommand(check)
	return cmd
}

// sensitiveScanner returns the PII and secret categories the safety
// engine's default profile finds in a text (allowed findings included).
func sensitiveScanner(eng *filter.Engine) func(string) []string {
	if eng == nil {
		return nil
	}
	return func(text string) []string {
		r, err := eng.Request("default")
		if err != nil {
			return nil
		}
		r.ShowAllowed()
		var out []string
		for _, f := range r.Scan(filter.Input, text).Findings {
			if sensitiveCategories[f.Category] {
				out = append(out, f.Category)
			}
		}
		return out
	}
}

// datasetBar is a byte progress bar on stderr when it is a terminal.
func datasetBar(w io.Writer, size int64, quiet bool) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(size, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("checking"),
		progressbar.OptionShowBytes(true), progressbar.OptionClearOnFinish())
}

func writeDatasetText(w io.Writer, rep *dataset.Report, viol []string) {
	fmt.Fprintf(w, "%s: %d records, %d malformed lines skipped, %d bytes, sha256 %s\n", rep.File, rep.Records, rep.Malformed, rep.Bytes, rep.SHA256)
	var langs []string
	for _, l := range rep.SortedLanguages() {
		langs = append(langs, fmt.Sprintf("%s %d", l, rep.Languages[l]))
	}
	fmt.Fprintf(w, "languages: %s (main %s, %.1f%%)\n", strings.Join(langs, ", "), rep.MainLanguage, 100*rep.MainLanguageShare)
	if rep.Labels != nil {
		names := make([]string, 0, len(rep.Labels))
		for l := range rep.Labels {
			names = append(names, l)
		}
		sort.Strings(names)
		var parts []string
		for _, l := range names {
			parts = append(parts, fmt.Sprintf("%s %d", l, rep.Labels[l]))
		}
		fmt.Fprintf(w, "labels: %s; ratio %.2f, entropy %.3f bits (balance %.2f), %d without a label\n", strings.Join(parts, ", "),
			rep.LabelRatio, rep.LabelEntropy, rep.LabelBalance, rep.MissingLabels)
	}
	fmt.Fprintf(w, "duplicates: %d exact (%.2f%%), %d near (%.2f%%)\n", rep.ExactDuplicates, 100*rep.DuplicateRate, rep.NearDuplicates, 100*rep.NearDuplicateRate)
	for _, d := range rep.Duplicates {
		fmt.Fprintf(w, "  line %d repeats line %d\n", d.Line, d.Of)
	}
	fmt.Fprintf(w, "PII or secrets: %d records (%.2f%%)\n", rep.SensitiveRecords, 100*rep.SensitiveRate)
	cats := make([]string, 0, len(rep.SensitiveByCategory))
	for c := range rep.SensitiveByCategory {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		s := rep.SensitiveByCategory[c]
		lines := make([]string, len(s.Lines))
		for i, l := range s.Lines {
			lines[i] = fmt.Sprint(l)
		}
		fmt.Fprintf(w, "  %s: %d records, lines %s\n", c, s.Records, strings.Join(lines, ", "))
	}
	if m := rep.Manifest; m != nil {
		fmt.Fprintf(w, "manifest %s: source %q, license %q, date %s, sanitisation %q, sha256 match %v\n", m.Path, m.Manifest.Source,
			m.Manifest.License, m.Manifest.Date, m.Manifest.Sanitisation, m.HashMatch)
	}
	if len(viol) == 0 {
		fmt.Fprintln(w, "ok: every threshold kept")
		return
	}
	for _, v := range viol {
		fmt.Fprintf(w, "FAIL %s\n", v)
	}
}
