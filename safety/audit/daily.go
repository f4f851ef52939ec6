package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// doneFile, in the export folder, names the last whole UTC day exported.
const doneFile = ".exported-through"

// ExportDays writes each UTC day's records to dir/YYYY-MM-DD.jsonl.gz,
// from the day after the last whole day already exported through today
// (today's file is rewritten with what exists so far), and deletes files
// older than keepDays. Each file is written to a temporary name, synced and
// renamed, so a crash never leaves a truncated gzip member; a run resumes
// where the last one stopped.
func ExportDays(ctx context.Context, db *store.DB, dir string, now time.Time, keepDays int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	today := now.UTC().Truncate(24 * time.Hour)
	start, err := exportStart(ctx, db, dir)
	if err != nil {
		return err
	}
	for day := start; !day.IsZero() && !day.After(today); day = day.AddDate(0, 0, 1) {
		recs, err := Query(ctx, db, Filter{Since: day, Until: day.AddDate(0, 0, 1)})
		if err != nil {
			return fmt.Errorf("export %s: %w", day.Format(time.DateOnly), err)
		}
		if len(recs) > 0 {
			if err := writeDay(filepath.Join(dir, day.Format(time.DateOnly)+".jsonl.gz"), recs); err != nil {
				return err
			}
		}
		if day.Before(today) {
			if err := store.WriteFileAtomic(filepath.Join(dir, doneFile), []byte(day.Format(time.DateOnly)+"\n"), 0o600); err != nil {
				return err
			}
		}
	}
	return removeOldDays(dir, today.AddDate(0, 0, -keepDays))
}

// exportStart is the first day to export: the day after the last whole day
// done, else the day of the oldest record (zero when there is none).
func exportStart(ctx context.Context, db *store.DB, dir string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(dir, doneFile))
	if err == nil {
		d, perr := time.Parse(time.DateOnly, strings.TrimSpace(string(b)))
		if perr != nil {
			return time.Time{}, fmt.Errorf("export: %s is damaged (%v): delete it to export every day again", filepath.Join(dir, doneFile), perr)
		}
		return d.AddDate(0, 0, 1), nil
	}
	if !os.IsNotExist(err) {
		return time.Time{}, fmt.Errorf("export: %w", err)
	}
	first, err := Query(ctx, db, Filter{Limit: 1})
	if err != nil || len(first) == 0 {
		return time.Time{}, err
	}
	return first[0].Time.UTC().Truncate(24 * time.Hour), nil
}

func writeDay(path string, recs []StoredRecord) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := json.NewEncoder(zw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("export %s: %w", filepath.Base(path), err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("export %s: %w", filepath.Base(path), err)
	}
	if err := store.WriteFileAtomic(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("export %s: %w", filepath.Base(path), err)
	}
	return nil
}

func removeOldDays(dir string, before time.Time) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl.gz"))
	if err != nil {
		return err
	}
	for _, f := range files {
		d, err := time.Parse(time.DateOnly, strings.TrimSuffix(filepath.Base(f), ".jsonl.gz"))
		if err == nil && d.Before(before) {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("export retention: %w", err)
			}
		}
	}
	return nil
}

// ExportedMaxSeq returns the highest seq in the newest daily export file in
// dir and that file's name (0 and "" when there is none). An export is a
// copy that left the database: a seq in it above the chain's head is a
// record the chain lost.
func ExportedMaxSeq(dir string) (int64, string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl.gz"))
	if err != nil || len(files) == 0 {
		return 0, "", err
	}
	newest := files[len(files)-1] // Glob sorts; the names are dates
	f, err := os.Open(newest)
	if err != nil {
		return 0, "", fmt.Errorf("read daily export: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, "", fmt.Errorf("read daily export %s: %w", newest, err)
	}
	dec := json.NewDecoder(zr)
	var top int64
	for {
		var r struct {
			Seq int64 `json:"seq"`
		}
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return 0, "", fmt.Errorf("read daily export %s: %w", newest, err)
		}
		top = max(top, r.Seq)
	}
	return top, newest, nil
}
