package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/safety/store"
)

// modelsStore is the backend's models directory when Warden runs the
// backend (unknown for runtime.ollama_url unless runtime.models_dir is set).
func modelsStore(cfg Config) models.Store {
	if cfg.Runtime.OllamaURL != "" && cfg.Runtime.ModelsDir == "" {
		return models.Store{}
	}
	return models.Store{Dir: cfg.modelsDir()}
}

// newGovernor is the Governor of cfg's models over backend b and db.
func newGovernor(cfg Config, b models.Backend, db *store.DB) (*models.Governor, error) {
	allow, err := models.ParseAllowlist(cfg.Models.Allow)
	if err != nil {
		return nil, fmt.Errorf("models.allow: %w", err)
	}
	pins, err := cfg.Models.pins()
	if err != nil {
		return nil, fmt.Errorf("models.pins: %w", err)
	}
	catalog := models.NewCatalog(b, models.Config{Parallel: cfg.Runtime.Parallel,
		ContextLength: cfg.Runtime.ContextLength, Slots: cfg.Runtime.ModelSlots})
	keep := cfg.Models.KeepVersions
	if keep == 0 {
		keep = -1 // Governor: 0 is the default; the config's 0 keeps none
	}
	return &models.Governor{Backend: b, DB: db, Store: modelsStore(cfg), Allow: allow, Pins: pins,
		KeepVersions: keep, Need: catalog.Need}, nil
}

// governor opens the database and the backend for a models command. With
// no --config and no $WARDEN_CONFIG it reads the configuration `warden
// serve` last started with on the data dir, so the CLI governs models by
// the server's [models] (its allowlist above all).
// withGovernor is the RunE of a models command that needs nothing checked
// first: run gets the governor, closed when it returns.
func (g *globals) withGovernor(run func(cmd *cobra.Command, args []string, gov *models.Governor) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		gov, done, err := g.governor(cmd.Context())
		if err != nil {
			return err
		}
		defer done()
		return run(cmd, args, gov)
	}
}

func (g *globals) governor(ctx context.Context) (*models.Governor, func(), error) {
	db, cfg, err := g.openDB(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cfg, _, err = g.servedConfig(cfg); err != nil {
		db.Close()
		return nil, nil, err
	}
	client, u, closeNS, err := backendClient(cfg)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	gov, err := newGovernor(cfg, reachable{client, u}, db)
	if err != nil {
		closeNS()
		db.Close()
		return nil, nil, err
	}
	return gov, func() { closeNS(); db.Close() }, nil
}

func newModelsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Govern the backend's models: pull, import, pin, verify, roll back",
		Long: `The models commands talk to the backend of the running server (the same
data dir) and record every change in the database and the audit chain.

[models] allow governs what may be pulled, imported and served; pins tie a
name to a manifest digest; a pull or import that changes what a name points
to keeps the previous version for rollback (models.keep_versions).`,
	}
	cmd.AddCommand(newModelsListCmd(g), newModelsShowCmd(g), newModelsPullCmd(g), newModelsImportCmd(g),
		newModelsRmCmd(g), newModelsLoadCmd(g, true), newModelsLoadCmd(g, false),
		newModelsPinCmd(g), newModelsUnpinCmd(g), newModelsHistoryCmd(g), newModelsRollbackCmd(g),
		newModelsVerifyCmd(g), newModelsAnnotateCmd(g), newModelsManifestCmd(g))
	return cmd
}

func newModelsListCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the models the backend holds, with whether each may be served",
		Args:  cobra.NoArgs,
		RunE: g.withGovernor(func(cmd *cobra.Command, _ []string, gov *models.Governor) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			list, err := gov.List(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []models.Listed{}
				}
				return writeJSON(g, list)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tMODIFIED\tALLOWED\tPINNED\tLOADED\tKEPT")
			for _, m := range list {
				pin := "-"
				if m.Pinned != "" {
					pin = shortDigest(m.Pinned)
					if !m.PinOK {
						pin += " (MISMATCH)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\n", m.Name, shortDigest(m.Digest), m.Size,
					m.Modified.UTC().Format(time.RFC3339), yesNo(m.Allowed), pin, yesNo(m.Loaded), m.Versions)
			}
			return tw.Flush()
		}),
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newModelsShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show NAME",
		Short: "Describe a model: digest, shape, licence, template hash, allowed, pinned, loaded, VRAM estimate, provenance",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			s, err := gov.Show(ctx, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, s)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
			row("name", s.Name)
			row("digest", s.Digest)
			row("size", s.Size)
			row("family", s.Family)
			row("parameters", s.ParameterSize)
			row("quantization", s.Quantization)
			row("context length", s.ContextLength)
			row("capabilities", strings.Join(s.Capabilities, ", "))
			row("licence", firstLine(s.License)+spdxNote(s.LicenseSPDX))
			row("template sha256", s.TemplateSHA256)
			row("allowed", yesNo(s.Allowed))
			switch {
			case s.Pinned == "":
				row("pinned", "no")
			case s.PinOK:
				row("pinned", s.Pinned+" ("+s.PinSource+")")
			default:
				row("pinned", s.Pinned+" ("+s.PinSource+"): MISMATCH, not served")
			}
			row("loaded", yesNo(s.Loaded))
			row("vram estimate", s.VRAMEstimate)
			row("kept versions", s.Versions)
			if p := s.Provenance; p != nil {
				row("source", p.Source)
				row("brought in", p.At.Format(time.RFC3339)+" by "+p.Actor)
				for _, n := range p.Notes {
					row("note", n.At.Format(time.RFC3339)+" "+n.Actor+": "+n.Note)
				}
			}
			return tw.Flush()
		}),
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func spdxNote(id string) string {
	if id == "" {
		return ""
	}
	return " [" + id + "]"
}

func newModelsPullCmd(g *globals) *cobra.Command {
	var insecure, asJSON bool
	c := &cobra.Command{
		Use:   "pull NAME[:TAG]",
		Short: "Pull a model through the backend, with progress (a registry host may lead the name)",
		Long: `Pull asks the running server's backend to pull the model, showing a progress
bar per layer on a terminal and one JSON object per line otherwise (or with
--json). A name outside [models] allow is refused before anything is
downloaded. When the pull changes what the name points to, the previous
version is kept for rollback and the change is recorded. Ctrl-C cancels the
pull and removes its partial downloads; the previous version keeps serving.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, ok := models.Canonical(strings.TrimSpace(args[0])); !ok {
				return fmt.Errorf("%w: %q (want [host/][namespace/]model[:tag], letters, digits, _ . -)", models.ErrBadName, args[0])
			}
			gov, done, err := g.governor(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			p := newProgressPrinter(g.stdout, asJSON)
			ch, err := gov.Pull(cmd.Context(), osActor(), args[0], insecure, p.progress)
			return p.finish(ch, err)
		},
	}
	c.Flags().BoolVar(&insecure, "insecure", false, "allow a registry over plain HTTP")
	c.Flags().BoolVar(&asJSON, "json", false, "print progress as JSON lines")
	return c
}

func newModelsImportCmd(g *globals) *cobra.Command {
	var spec models.ImportSpec
	var modelfile, license string
	var asJSON bool
	c := &cobra.Command{
		Use:   "import FILE.gguf --name NAME",
		Short: "Import a GGUF file as a model",
		Long: `Import checks the file's GGUF magic and version before anything else, hashes
it, uploads it to the backend as a blob and creates the model NAME from it.
--modelfile applies a Modelfile's TEMPLATE, SYSTEM, PARAMETER and other
commands (its FROM is this file); --license attaches a licence; --source
records where the file came from.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Path = args[0]
			if spec.Name == "" {
				return errors.New("--name is required")
			}
			if modelfile != "" {
				b, err := os.ReadFile(modelfile)
				if err != nil {
					return fmt.Errorf("--modelfile: %w", err)
				}
				spec.Modelfile = string(b)
			}
			if license != "" {
				b, err := os.ReadFile(license)
				if err != nil {
					return fmt.Errorf("--license: %w", err)
				}
				spec.License = string(b)
			}
			// The file is checked before the server is looked for.
			f, err := os.Open(spec.Path)
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			_, err = models.CheckGGUF(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("import %s: %w", spec.Path, err)
			}
			gov, done, err := g.governor(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			p := newProgressPrinter(g.stdout, asJSON)
			ch, err := gov.Import(cmd.Context(), osActor(), spec, p.progress)
			return p.finish(ch, err)
		},
	}
	c.Flags().StringVar(&spec.Name, "name", "", "the model's name (required)")
	c.Flags().StringVar(&modelfile, "modelfile", "", "a Modelfile whose commands apply (FROM is the file)")
	c.Flags().StringVar(&license, "license", "", "a licence file")
	c.Flags().StringVar(&spec.Source, "source", "", "where the file came from (URL), for the provenance record")
	c.Flags().BoolVar(&asJSON, "json", false, "print progress as JSON lines")
	return c
}

func newModelsRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a model, its kept versions and its pin",
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			if err := gov.Remove(cmd.Context(), osActor(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "removed %s\n", args[0])
			return err
		}),
	}
}

func newModelsLoadCmd(g *globals, load bool) *cobra.Command {
	use, short := "load NAME", "Load a model into memory (warm it)"
	if !load {
		use, short = "unload NAME", "Unload a model from memory (free its VRAM)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: g.withGovernor(func(cmd *cobra.Command, args []string, gov *models.Governor) error {
			verb := "loaded"
			var err error
			if load {
				err = gov.Load(cmd.Context(), args[0])
			} else {
				verb, err = "unloaded", gov.Unload(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "%s %s\n", verb, args[0])
			return err
		}),
	}
}
