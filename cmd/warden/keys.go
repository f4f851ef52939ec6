package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store"
)

// withKeys is the RunE of a keys command: run gets the data dir's keys
// (through withDB, so it is safe while `warden serve` runs).
func (g *globals) withKeys(run func(cmd *cobra.Command, args []string, m *keys.Manager, cfg Config) error) func(*cobra.Command, []string) error {
	return g.withDB(func(cmd *cobra.Command, args []string, db *store.DB, cfg Config) error {
		return run(cmd, args, &keys.Manager{DB: db}, cfg)
	})
}

// osActor names the person running an admin command in admin events.
func osActor() string {
	if u, err := user.Current(); err == nil {
		return "os:" + u.Username
	}
	return "os:unknown"
}

// limitFlags binds the limit flags shared by create and update.
type limitFlags struct{ l keys.Limits }

func (f *limitFlags) bind(fs *pflag.FlagSet) {
	fs.Int64Var(&f.l.RPM, "rpm", 0, "requests per minute (0: the configured default)")
	fs.Int64Var(&f.l.TPM, "tpm", 0, "tokens per minute")
	fs.Int64Var(&f.l.TokensPerDay, "tokens-per-day", 0, "tokens per UTC day")
	fs.Int64Var(&f.l.TokensPerMonth, "tokens-per-month", 0, "tokens per UTC month")
	fs.Int64Var(&f.l.Concurrency, "concurrency", 0, "requests in flight at once")
	fs.Int64Var(&f.l.MaxOutputTokens, "max-output-tokens", 0, "cap on output tokens per request (clamps max_tokens)")
	fs.Int64Var(&f.l.MaxOutputChars, "max-output-chars", 0, "cap on output characters per request")
	fs.Int64Var(&f.l.MaxInputTokens, "max-input-tokens", 0, "cap on prompt tokens per request")
	fs.Int64Var(&f.l.UserRPM, "user-rpm", 0, "delegate keys: requests per minute of each end user (0: [limits.user])")
	fs.Int64Var(&f.l.UserTPM, "user-tpm", 0, "delegate keys: tokens per minute of each end user")
	fs.Int64Var(&f.l.UserTokensPerDay, "user-tokens-per-day", 0, "delegate keys: tokens per UTC day of each end user")
	fs.Int64Var(&f.l.UserTokensPerMonth, "user-tokens-per-month", 0, "delegate keys: tokens per UTC month of each end user")
	fs.Int64Var(&f.l.UserConcurrency, "user-concurrency", 0, "delegate keys: requests in flight at once of each end user")
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// cidrList joins the values of repeated --allow-cidr flags, each of which
// may hold a comma-separated list; empty values add nothing, so
// --allow-cidr "" is the empty list.
func cidrList(vals []string) []string {
	out := []string{}
	for _, v := range vals {
		out = append(out, splitList(v)...)
	}
	return out
}

func notFound(id string, err error) error {
	if errors.Is(err, keys.ErrNotFound) {
		return fmt.Errorf("no key with id %q (see `warden keys list`)", id)
	}
	return err
}

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list, rotate and revoke API keys",
		Long: `Keys look like wdn_<id>_<secret>. The id is public; the secret is shown once,
at create or rotate, and stored only as a hash. These commands work on the
data dir's database directly and are safe while the server runs: it sees a
change within keys.poll_interval (1s by default).`,
	}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	printKey := func(k keys.Key) error {
		if asJSON {
			return writeJSON(g, k)
		}
		return printKeyText(g, k)
	}
	printSecret := func(k keys.Key, token, verb string) error {
		if asJSON {
			return writeJSON(g, map[string]string{"id": k.ID, "key": token})
		}
		fmt.Fprintf(g.stdout, "%s key %s (%s)\n\n  %s\n\nThe secret is shown only now: store it safely.\n", verb, k.ID, k.Name, token)
		return nil
	}

	var (
		name, scopes, modelsList, expires string
		lf                                limitFlags
		weight                            int
		profile                           string
		allowCIDRs                        []string
		requireUser                       string
	)
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a key and print it once",
		Args:  cobra.NoArgs,
		RunE: g.withKeys(func(cmd *cobra.Command, _ []string, m *keys.Manager, cfg Config) error {
			exp, err := keys.ParseAge(expires)
			if err != nil {
				return err
			}
			spec := keys.Spec{Name: name, Models: splitList(modelsList), Expires: exp, Limits: lf.l,
				Weight: weight, Profile: profile, AllowCIDRs: cidrList(allowCIDRs)}
			if spec.RequireUser, _, err = parseRequireUser(requireUser); err != nil {
				return err
			}
			for _, s := range splitList(scopes) {
				spec.Scopes = append(spec.Scopes, keys.Scope(s))
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			if err := cfg.Safety.checkProfile(spec.Profile); err != nil {
				return err
			}
			k, token, err := m.Create(cmd.Context(), osActor(), spec)
			if err != nil {
				return err
			}
			return printSecret(k, token, "Created")
		}),
	}
	create.Flags().StringVar(&name, "name", "", "a name for the key (who or what uses it)")
	create.Flags().StringVar(&scopes, "scopes", "", "comma-separated: chat, completions, embeddings, models, admin, delegate (default: all but admin and delegate)")
	create.Flags().StringVar(&requireUser, "require-user", "default", "delegate keys: refuse requests that name no end user: true, false or default (keys.require_user)")
	create.Flags().StringVar(&modelsList, "models", "", "comma-separated model names or globs the key may use (default: all)")
	create.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 720h (default: never)")
	lf.bind(create.Flags())
	create.Flags().IntVar(&weight, "weight", keys.DefaultWeight, "share of the backend's slots in the fair queue (1-1000)")
	create.Flags().StringVar(&profile, "profile", "", "safety-filter profile name (default: the default profile)")
	create.Flags().StringArrayVar(&allowCIDRs, "allow-cidr", nil, "client networks the key may be used from: CIDRs or addresses, repeated or comma-separated (default: any address)")
	_ = create.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List keys with age, last use, expiry and rotation status",
		Args:  cobra.NoArgs,
		RunE: g.withKeys(func(cmd *cobra.Command, _ []string, m *keys.Manager, cfg Config) error {
			ks, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			if asJSON {
				type row struct {
					keys.Key
					Status string `json:"status"`
				}
				rows := make([]row, 0, len(ks))
				for _, k := range ks {
					rows = append(rows, row{k, keyStatus(k, now, cfg.Keys.RotationMaxAge)})
				}
				return writeJSON(g, rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tAGE\tLAST USED\tEXPIRES\tSTATUS")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, joinScopes(k.Scopes),
					ago(now, &k.Created), ago(now, k.LastUsed), until(now, k.Expires), keyStatus(k, now, cfg.Keys.RotationMaxAge))
			}
			return tw.Flush()
		}),
	}

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one key",
		Args:  cobra.ExactArgs(1),
		RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, _ Config) error {
			k, err := m.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(args[0], err)
			}
			return printKey(k)
		}),
	}

	var grace time.Duration
	rotate := &cobra.Command{
		Use:   "rotate ID",
		Short: "Issue a new secret; the old one keeps working for --grace",
		Args:  cobra.ExactArgs(1),
		RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, _ Config) error {
			if grace < 0 {
				return fmt.Errorf("--grace must not be negative")
			}
			k, token, err := m.Rotate(cmd.Context(), osActor(), args[0], grace)
			if err != nil {
				return notFound(args[0], err)
			}
			return printSecret(k, token, "Rotated")
		}),
	}
	rotate.Flags().DurationVar(&grace, "grace", 24*time.Hour, "how long the previous secret keeps working")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key (its secrets stop working within one poll interval)",
		Args:  cobra.ExactArgs(1),
		RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, _ Config) error {
			if err := m.Revoke(cmd.Context(), osActor(), args[0]); err != nil {
				return notFound(args[0], err)
			}
			k, err := m.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printKey(k)
		}),
	}

	var (
		setLF      limitFlags
		setWeight  int
		setProfile string
		setCIDRs   []string
		setReqUser string
	)
	update := &cobra.Command{
		Use:     "update ID [--rpm N] [--tpm N] [--weight N] [--profile NAME] [--allow-cidr CIDR] ...",
		Aliases: []string{"set-limits"}, // its name before it changed weight and profile too
		Short:   "Change a key's limits, weight, profile or client networks (flags not given keep their value; a limit of 0 means the configured default)",
		Args:    cobra.ExactArgs(1),
		RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, cfg Config) error {
			ch := keys.Change{Limits: &setLF.l}
			if cmd.Flags().Changed("weight") {
				ch.Weight = &setWeight
			}
			if cmd.Flags().Changed("profile") {
				ch.Profile = &setProfile
			}
			if cmd.Flags().Changed("allow-cidr") {
				nets := cidrList(setCIDRs)
				ch.AllowCIDRs = &nets
			}
			if cmd.Flags().Changed("require-user") {
				v, clear, err := parseRequireUser(setReqUser)
				if err != nil {
					return err
				}
				ch.RequireUser, ch.ClearRequireUser = v, clear
			}
			if err := ch.Validate(); err != nil {
				return err
			}
			if ch.Profile != nil {
				if err := cfg.Safety.checkProfile(*ch.Profile); err != nil {
					return err
				}
			}
			k, err := m.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(args[0], err)
			}
			l := k.Limits
			fs := cmd.Flags()
			for flag, dst := range map[string]*int64{
				"rpm": &l.RPM, "tpm": &l.TPM, "tokens-per-day": &l.TokensPerDay, "tokens-per-month": &l.TokensPerMonth,
				"concurrency": &l.Concurrency, "max-output-tokens": &l.MaxOutputTokens,
				"max-output-chars": &l.MaxOutputChars, "max-input-tokens": &l.MaxInputTokens,
				"user-rpm": &l.UserRPM, "user-tpm": &l.UserTPM, "user-tokens-per-day": &l.UserTokensPerDay,
				"user-tokens-per-month": &l.UserTokensPerMonth, "user-concurrency": &l.UserConcurrency,
			} {
				if fs.Changed(flag) {
					*dst, _ = fs.GetInt64(flag)
				}
			}
			ch.Limits = &l
			if err := m.Update(cmd.Context(), osActor(), args[0], ch); err != nil {
				return notFound(args[0], err)
			}
			if k, err = m.Get(cmd.Context(), args[0]); err != nil {
				return err
			}
			return printKey(k)
		}),
	}
	setLF.bind(update.Flags())
	update.Flags().IntVar(&setWeight, "weight", keys.DefaultWeight, "share of the backend's slots in the fair queue (1-1000)")
	update.Flags().StringVar(&setProfile, "profile", "", "safety-filter profile name (\"\" for the default profile)")
	update.Flags().StringVar(&setReqUser, "require-user", "default", "delegate keys: refuse requests that name no end user: true, false or default (keys.require_user)")
	update.Flags().StringArrayVar(&setCIDRs, "allow-cidr", nil, "client networks the key may be used from, replacing its list: CIDRs or addresses, repeated or comma-separated (\"\": any address)")

	cmd.AddCommand(create, list, show, rotate, revoke, update)
	cmd.AddCommand(newKeyUserCmds(g, &asJSON)...)
	return cmd
}

func writeJSON(g *globals, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printKeyText(g *globals, k keys.Key) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	now := time.Now()
	models := "all"
	if len(k.Models) > 0 {
		models = strings.Join(k.Models, ", ")
	}
	b, _ := json.Marshal(k.Limits)
	profile := k.Profile
	if profile == "" {
		profile = "default"
	}
	fmt.Fprintf(tw, "id\t%s\nname\t%s\nscopes\t%s\nmodels\t%s\nlimits\t%s\nweight\t%d\nprofile\t%s\ncreated\t%s\nlast used\t%s\nexpires\t%s\n",
		k.ID, k.Name, joinScopes(k.Scopes), models, b, k.Weight, profile, k.Created.UTC().Format(time.RFC3339), ago(now, k.LastUsed), until(now, k.Expires))
	if k.GraceUntil != nil && k.GraceUntil.After(now) {
		fmt.Fprintf(tw, "previous secret\tworks until %s\n", k.GraceUntil.UTC().Format(time.RFC3339))
	}
	if len(k.AllowCIDRs) > 0 {
		fmt.Fprintf(tw, "allowed from\t%s\n", strings.Join(k.AllowCIDRs, ", "))
	}
	if k.RequireUser != nil {
		fmt.Fprintf(tw, "require user\t%v\n", *k.RequireUser)
	}
	if len(k.BlockedUsers) > 0 {
		fmt.Fprintf(tw, "blocked users\t%s\n", strings.Join(quoteAll(k.BlockedUsers), ", "))
	}
	if k.Revoked != nil {
		fmt.Fprintf(tw, "revoked\t%s\n", k.Revoked.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func joinScopes(s []keys.Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ",")
}

// keyStatus is active, revoked, expired, or "rotation due" once the secret
// is older than maxAge.
func keyStatus(k keys.Key, now time.Time, maxAge time.Duration) string {
	switch {
	case k.Revoked != nil:
		return "revoked"
	case k.Expires != nil && !now.Before(*k.Expires):
		return "expired"
	}
	born := k.Created
	if k.Rotated != nil {
		born = *k.Rotated
	}
	if maxAge > 0 && now.Sub(born) > maxAge {
		return "rotation due"
	}
	return "active"
}

func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	return roundAge(now.Sub(*t)) + " ago"
}

func until(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	if !now.Before(*t) {
		return "expired"
	}
	return "in " + roundAge(t.Sub(now))
}

func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
