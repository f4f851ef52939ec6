package probe

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// ErrNoRun reports a run id (or model) with no stored run.
var ErrNoRun = errors.New("no such probe run")

// Save stores run and every answer in one transaction and sets run.ID.
func Save(ctx context.Context, db *store.DB, run *Run) error {
	results, err := json.Marshal(run.Results)
	if err != nil {
		return err
	}
	skipped := []byte("[]")
	if len(run.Skipped) > 0 {
		skipped, _ = json.Marshal(run.Skipped)
	}
	pass, fail, errs := run.Totals()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save probe run: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO probe_runs
		(started_at, finished_at, suite, suite_sha256, model, model_digest, seed, key_id, trigger, guard,
		 probes, passed, failed, errors, results, skipped)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		run.Started.UnixMilli(), run.Finished.UnixMilli(), run.Suite, run.SuiteSHA256, run.Model, run.ModelDigest,
		run.Seed, run.KeyID, run.Trigger, run.Guard, len(run.Probes), pass, fail, errs, string(results), string(skipped))
	if err != nil {
		return fmt.Errorf("save probe run: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO probe_answers
		(run_id, idx, probe_id, category, outcome, request_id, probe, answer, scored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("save probe answers: %w", err)
	}
	defer stmt.Close()
	for i, p := range run.Probes {
		pj, _ := json.Marshal(p)
		aj, _ := json.Marshal(run.Answers[i])
		sj, _ := json.Marshal(run.Scored[i])
		if _, err := stmt.ExecContext(ctx, id, i, p.ID, p.Category, string(run.Scored[i].Outcome),
			run.Answers[i].RequestID, string(pj), string(aj), string(sj)); err != nil {
			return fmt.Errorf("save probe answers: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save probe run: %w", err)
	}
	run.ID = id
	return nil
}

// RunInfo is a stored run without its answers, as lists show it.
type RunInfo struct {
	Run
	Count  int `json:"probes"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	Errors int `json:"errors"`
}

const runColumns = `id, started_at, finished_at, suite, suite_sha256, model, model_digest, seed, key_id, trigger, guard,
	probes, passed, failed, errors, results, skipped`

func scanRun(s interface{ Scan(...any) error }) (RunInfo, error) {
	var r RunInfo
	var started, finished int64
	var results, skipped string
	err := s.Scan(&r.ID, &started, &finished, &r.Suite, &r.SuiteSHA256, &r.Model, &r.ModelDigest, &r.Seed,
		&r.KeyID, &r.Trigger, &r.Guard, &r.Count, &r.Passed, &r.Failed, &r.Errors, &results, &skipped)
	if err != nil {
		return r, err
	}
	r.Started, r.Finished = time.UnixMilli(started).UTC(), time.UnixMilli(finished).UTC()
	if err := json.Unmarshal([]byte(results), &r.Results); err != nil {
		return r, fmt.Errorf("probe run %d: results: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(skipped), &r.Skipped); err != nil {
		return r, fmt.Errorf("probe run %d: skipped: %w", r.ID, err)
	}
	return r, nil
}

// Store reads the runs of one database, for the admin API.
type Store struct{ DB *store.DB }

// List returns the newest runs first, at most limit (0: 100).
func (s Store) List(ctx context.Context, limit int) ([]RunInfo, error) { return List(ctx, s.DB, limit) }

// List returns the newest runs first, at most limit (0: 100).
func List(ctx context.Context, db *store.DB, limit int) ([]RunInfo, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.QueryContext(ctx, `SELECT `+runColumns+` FROM probe_runs ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list probe runs: %w", err)
	}
	defer rows.Close()
	out := []RunInfo{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Get returns run id (0: the newest), with its answers when answers is set.
func Get(ctx context.Context, db *store.DB, id int64, answers bool) (RunInfo, error) {
	q := `SELECT ` + runColumns + ` FROM probe_runs WHERE id = ?`
	args := []any{id}
	if id == 0 {
		q, args = `SELECT `+runColumns+` FROM probe_runs ORDER BY id DESC LIMIT 1`, nil
	}
	r, err := scanRun(db.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		if id == 0 {
			return r, fmt.Errorf("%w: no run stored yet (warden probe run)", ErrNoRun)
		}
		return r, fmt.Errorf("%w: %d", ErrNoRun, id)
	}
	if err != nil {
		return r, fmt.Errorf("read probe run: %w", err)
	}
	if answers {
		if err := loadAnswers(ctx, db, &r.Run); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Previous returns the run of the same model and suite stored before r,
// or ErrNoRun.
func Previous(ctx context.Context, db *store.DB, r RunInfo) (RunInfo, error) {
	p, err := scanRun(db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM probe_runs
		WHERE model = ? AND suite = ? AND id < ? ORDER BY id DESC LIMIT 1`, r.Model, r.Suite, r.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("%w: no earlier run of %s", ErrNoRun, r.Model)
	}
	return p, err
}

func loadAnswers(ctx context.Context, db *store.DB, r *Run) error {
	rows, err := db.QueryContext(ctx, `SELECT probe, answer, scored FROM probe_answers WHERE run_id = ? ORDER BY idx`, r.ID)
	if err != nil {
		return fmt.Errorf("read probe answers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pj, aj, sj string
		if err := rows.Scan(&pj, &aj, &sj); err != nil {
			return err
		}
		var p Probe
		var a Answer
		var s Scored
		if err := errors.Join(json.Unmarshal([]byte(pj), &p), json.Unmarshal([]byte(aj), &a), json.Unmarshal([]byte(sj), &s)); err != nil {
			return fmt.Errorf("probe run %d: answer: %w", r.ID, err)
		}
		r.Probes, r.Answers, r.Scored = append(r.Probes, p), append(r.Answers, a), append(r.Scored, s)
	}
	return rows.Err()
}
