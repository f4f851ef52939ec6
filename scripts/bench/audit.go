package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
)

// shmDir is where the audit-in-memory warden keeps its data: a tmpfs,
// where fsync costs nothing.
const shmDir = "/dev/shm"

// tmpfsMagic is TMPFS_MAGIC, statfs's f_type of a tmpfs.
const tmpfsMagic = 0x01021994

// auditMemory measures the added latency at one client of a second warden
// whose data dir (and so its audit database) is on a tmpfs: the audit
// trail is still written, but no fsync reaches a disk. Next to the first
// warden's one-client cells it shows what the durable audit trail costs
// a request. The audit trail cannot be turned off by configuration (by
// design), so this is the bench's own way, not a user setting.
func auditMemory(ctx context.Context, stdout, stderr io.Writer, o *options, modelsDir string, rep *report, failed *int) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(shmDir, &st); err != nil || st.Type != tmpfsMagic {
		fmt.Fprintf(stderr, "audit in memory: %s is not a tmpfs; skipped\n", shmDir)
		return nil
	}
	fmt.Fprintf(stderr, "starting a second warden with its data dir on %s (audit in memory) ...\n", shmDir)
	p, err := startWarden(ctx, o.wardenBin, o.ollamaBin, o.parallel, wardenSetup{parent: shmDir, modelsDir: modelsDir, prefetch: o.prefetch}, o.startTimeout, nil)
	if err != nil {
		return fmt.Errorf("audit-in-memory warden: %w", err)
	}
	defer func() {
		if cerr := p.Close(); cerr != nil {
			fmt.Fprintln(stderr, "audit-in-memory warden:", cerr)
		}
	}()
	warden := newTarget("warden", p.baseURL, p.adminKey, o.timeout)
	direct := newTarget("direct", p.backendURL, "", o.timeout)
	defer warden.close()
	defer direct.close()
	if err := sanityCheck(ctx, stderr, warden, direct, chatBody(o.model, o.maxTokens, false)); err != nil {
		return errors.Join(err, errors.New(p.logTail(20)))
	}
	for _, stream := range o.streams {
		c, err := runCell(ctx, stderr, o, warden, direct, stream, 1)
		if err != nil {
			return err
		}
		summarize(&c, targetRatio)
		*failed += c.Summary.Warden.Errors + c.Summary.Direct.Errors
		rep.AuditMemoryCells = append(rep.AuditMemoryCells, c)
	}
	fmt.Fprintf(stdout, "\nwarden with its audit database in memory (data dir on %s), one client\n", filepath.Clean(shmDir))
	for _, line := range auditLines(rep) {
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// auditLines compares the added p50 at one client with the audit trail on
// disk (the main cells) and in memory.
func auditLines(rep *report) []string {
	var lines []string
	for _, m := range rep.AuditMemoryCells {
		line := fmt.Sprintf("added p50 at 1 client, stream=%-5t: audit in memory %s", m.Stream, fmtAdded(m.Summary.AddedP50Ms.Median))
		for _, c := range rep.Cells {
			if c.Clients == 1 && c.Stream == m.Stream {
				d := c.Summary.AddedP50Ms.Median
				line += fmt.Sprintf(", audit on disk %s: the durable audit costs %s", fmtAdded(d), fmtAdded(d-m.Summary.AddedP50Ms.Median))
			}
		}
		lines = append(lines, line)
	}
	return lines
}

func fmtAdded(ms float64) string { return fmt.Sprintf("%+.2fms", ms) }
