package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/warden-llm/warden/safety/store"
)

func newBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy the database (keys, usage, audit) to FILE, safely while the server runs",
		Long: `Backup takes a consistent snapshot of the data dir's database with SQLite's
online backup API. FILE must not exist; it is written with mode 0600. Key
files in the data dir (admin.key and the audit keys) are not included: copy
them separately and keep them apart from the backup.`,
		Args: cobra.ExactArgs(1),
		RunE: g.withDB(func(cmd *cobra.Command, args []string, db *store.DB, _ Config) error {
			dest, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if err := db.Backup(cmd.Context(), dest); err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "backed up %s to %s\n", db.Path(), dest)
			return err
		}),
	}
}
