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
// into n, so Queries needs no call beside each query.
type connector struct {
	dsn string
	n   *atomic.Int64
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
	return &countingConn{conn: sc, n: c.n}, nil
}

func (c *connector) Driver() driver.Driver { return sqliteDriver }

// countingConn counts each statement run on a SQLite connection: each Exec
// or Query, directly or through a prepared statement, and a transaction's
// BEGIN and its COMMIT or ROLLBACK.
type countingConn struct {
	conn
	n *atomic.Int64
}

var _ conn = (*countingConn)(nil)

// Unwrap returns the driver's own connection (a *sqlite3.SQLiteConn), for
// sql.Conn.Raw users such as Backup.
func (c *countingConn) Unwrap() driver.Conn { return c.conn }

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.n.Add(1)
	return c.conn.ExecContext(ctx, query, args)
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.Add(1)
	return c.conn.QueryContext(ctx, query, args)
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.Add(1)
	tx, err := c.conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingTx{Tx: tx, n: c.n}, nil
}

func (c *countingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// countingTx counts a transaction's COMMIT or ROLLBACK.
type countingTx struct {
	driver.Tx
	n *atomic.Int64
}

func (t *countingTx) Commit() error {
	t.n.Add(1)
	return t.Tx.Commit()
}

func (t *countingTx) Rollback() error {
	t.n.Add(1)
	return t.Tx.Rollback()
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
	return &countingStmt{stmt: s, n: c.n}, nil
}

// countingStmt counts each execution of a prepared statement.
type countingStmt struct {
	stmt
	n *atomic.Int64
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.n.Add(1)
	return s.stmt.ExecContext(ctx, args)
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.n.Add(1)
	return s.stmt.QueryContext(ctx, args)
}
