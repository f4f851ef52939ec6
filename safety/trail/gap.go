package trail

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

// ErrGap reports a chain that lost records receivers already hold.
var ErrGap = errors.New("audit trail truncated")

// Gap is what Warden can prove about records lost from the chain's end:
// Head is the chain's last seq, Seen the highest seq that left the host
// (or may have), Evidence says where each sign came from.
type Gap struct {
	Head     int64
	Seen     int64
	Evidence []string
}

// Found reports whether any evidence was found.
func (g Gap) Found() bool { return len(g.Evidence) > 0 }

func (g Gap) String() string {
	return fmt.Sprintf("the chain ends at seq %d but %s", g.Head, strings.Join(g.Evidence, "; "))
}

// FindGap compares the chain's head with what receivers hold: the highest
// seq each sink was sent, the outbox's own rows and ids, and the sequence
// numbers in the daily export files (in dataDir/audit).
func FindGap(ctx context.Context, db *store.DB, dataDir string) (Gap, error) {
	head, _, err := audit.Head(ctx, db)
	if err != nil {
		return Gap{}, err
	}
	pos, err := outbox.ReadSeen(ctx, db)
	if err != nil {
		return Gap{}, err
	}
	exported, file, err := audit.ExportedMaxSeq(filepath.Join(dataDir, "audit"))
	if err != nil {
		return Gap{}, err
	}
	g := Gap{Head: head, Seen: head}
	note := func(seq int64, why string) {
		g.Seen = max(g.Seen, seq)
		g.Evidence = append(g.Evidence, why)
	}
	if pos.SentSeq > head {
		note(pos.SentSeq, fmt.Sprintf("a forwarding sink was sent seq %d", pos.SentSeq))
	}
	if pos.QueuedSeq > head {
		note(pos.QueuedSeq, fmt.Sprintf("the outbox holds seq %d", pos.QueuedSeq))
	}
	if pos.DeliveredID > pos.LastID {
		// Each lost outbox id carried at most one record.
		note(head+pos.DeliveredID-pos.LastID, fmt.Sprintf("a sink's outbox cursor is at message %d but the outbox ends at %d", pos.DeliveredID, pos.LastID))
	}
	if exported > head {
		note(exported, fmt.Sprintf("the daily export %s holds seq %d", file, exported))
	}
	return g, nil
}

// AckGap records the gap FindGap reports as a chain record of its own
// (kind gap, by actor) at the seq after the highest one seen, so no number
// a receiver may hold is reused, and moves the outbox's ids past every
// cursor. It returns the gap and the record's seq; with no gap it returns
// audit.ErrNoGap.
func AckGap(ctx context.Context, db *store.DB, dataDir, actor string, now time.Time) (Gap, int64, error) {
	g, err := FindGap(ctx, db, dataDir)
	if err != nil {
		return g, 0, err
	}
	if !g.Found() {
		return g, 0, audit.ErrNoGap
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return g, 0, fmt.Errorf("record the gap: %w", err)
	}
	defer tx.Rollback()
	if err := outbox.SkipIDsTx(ctx, tx); err != nil {
		return g, 0, err
	}
	seq, err := audit.AppendGapTx(ctx, tx, audit.GapDetail{SeenSeq: g.Seen, Actor: actor, Evidence: g.Evidence}, now)
	if err != nil {
		return g, 0, fmt.Errorf("record the gap: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return g, 0, fmt.Errorf("record the gap: %w", err)
	}
	return g, seq, nil
}
