package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"
)

// sqliteDriver is mattn/go-sqlite3's driver, the one sql.Open("sqlite3")
// would use.
var sqliteDriver = &sqlite3.SQLiteDriver{}

// conn is what database/sql uses of a *sqlite3.SQLiteConn.
type conn interface {
	driver.Conn
	driver.ExecerContext
	driver.QueryerContext
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.Pinger
}

// stmt is what database/sql uses of a *sqlite3.SQLiteStmt.
type stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// connector opens SQLite connections that count every statement they run
// into n, so Queries needs no call beside each query, and that pass their
// writes through gate.
type connector struct {
	dsn  string
	n    *atomic.Int64
	gate *writeGate
}

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	dc, err := sqliteDriver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(conn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite3 connection %T lacks a context method", dc)
	}
	return &countingConn{conn: sc, n: c.n, gate: c.gate}, nil
}

func (c *connector) Driver() driver.Driver { return sqliteDriver }

// countingConn counts each statement run on a SQLite connection: each Exec
// or Query, directly or through a prepared statement, and a transaction's
// BEGIN and its COMMIT or ROLLBACK. Its writes pass the database's write
// gate: a transaction (every one takes the write lock at BEGIN, see the
// DSN's _txlock) holds it from BEGIN to COMMIT or ROLLBACK, and an Exec
// outside a transaction for its own run.
type countingConn struct {
	conn
	n    *atomic.Int64
	gate *writeGate
	inTx bool // a transaction is open (database/sql uses a conn from one goroutine at a time)
}

// exec runs an Exec outside a transaction through the gate.
func (c *countingConn) exec(ctx context.Context, run func() (driver.Result, error)) (driver.Result, error) {
	if c.inTx {
		return run()
	}
	if err := c.gate.enter(ctx); err != nil {
		return nil, err
	}
	defer c.gate.leave()
	return run()
}

var _ conn = (*countingConn)(nil)

// Unwrap returns the driver's own connection (a *sqlite3.SQLiteConn), for
// sql.Conn.Raw users such as Backup.
func (c *countingConn) Unwrap() driver.Conn { return c.conn }

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.n.Add(1)
	return c.exec(ctx, func() (driver.Result, error) { return c.conn.ExecContext(ctx, query, args) })
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.Add(1)
	return c.conn.QueryContext(ctx, query, args)
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.Add(1)
	if err := c.gate.enter(ctx); err != nil {
		return nil, err
	}
	tx, err := c.conn.BeginTx(ctx, opts)
	if err != nil {
		c.gate.leave()
		return nil, err
	}
	c.inTx = true
	return &countingTx{Tx: tx, c: c}, nil
}

func (c *countingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// countingTx counts a transaction's COMMIT or ROLLBACK, after which its
// connection leaves the write gate.
type countingTx struct {
	driver.Tx
	c *countingConn
}

func (t *countingTx) Commit() error {
	defer t.end()
	t.c.n.Add(1)
	return t.Tx.Commit()
}

func (t *countingTx) Rollback() error {
	defer t.end()
	t.c.n.Add(1)
	return t.Tx.Rollback()
}

// end leaves the gate once: database/sql ends a transaction once, but a
// Rollback after a failed Commit must not leave twice.
func (t *countingTx) end() {
	if t.c.inTx {
		t.c.inTx = false
		t.c.gate.leave()
	}
}

func (c *countingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	ds, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s, ok := ds.(stmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("sqlite3 statement %T lacks a context method", ds)
	}
	return &countingStmt{stmt: s, n: c.n, c: c}, nil
}

// countingStmt counts each execution of a prepared statement; an Exec
// passes its connection's write gate.
type countingStmt struct {
	stmt
	n *atomic.Int64
	c *countingConn
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.n.Add(1)
	return s.c.exec(ctx, func() (driver.Result, error) { return s.stmt.ExecContext(ctx, args) })
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.n.Add(1)
	return s.stmt.QueryContext(ctx, args)
}
