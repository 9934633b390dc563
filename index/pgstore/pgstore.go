// Package pgstore keeps search collections in PostgreSQL with the pgvector
// extension, behind the same collection API as the in-process index
// (index.Backend), so that every replica of the server serves the same
// collections.
//
// Schema, created at start-up if absent (idempotently, under an advisory
// lock so that replicas starting together do not race):
//
//	CREATE EXTENSION IF NOT EXISTS vector;
//	CREATE TABLE IF NOT EXISTS imgserve_collections (
//	    name       text PRIMARY KEY,
//	    id         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
//	    dimension  integer NOT NULL,
//	    params     jsonb NOT NULL,   -- index.Params: index, m, ef_construction, ef_search
//	    items      bigint NOT NULL DEFAULT 0,
//	    created_at timestamptz NOT NULL DEFAULT now());
//
// and per collection, named by its id (collection names may be longer than
// PostgreSQL's 63-byte identifiers):
//
//	CREATE TABLE imgserve_items_<id> (
//	    id        text PRIMARY KEY,
//	    embedding vector(<dimension>) NOT NULL,  -- unit length
//	    metadata  json);                         -- kept byte for byte
//	CREATE INDEX imgserve_items_<id>_hnsw ON imgserve_items_<id>
//	    USING hnsw (embedding vector_ip_ops) WITH (m = <m>, ef_construction = <ef_construction>);
//
// Vectors are normalised before they are stored, so the inner product is
// the cosine similarity. A "flat" collection has no HNSW index and every
// search scans. Searches set hnsw.ef_search per query; "exact" searches
// turn index scans off for their transaction, so PostgreSQL compares every
// row.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/imgserve/imgserve/index"
)

// Options configure a Store.
type Options struct {
	Logger *slog.Logger
	// MaxConns bounds the connection pool (default 4).
	MaxConns int32
	// Limits: MaxCollections and MaxItems apply, across every replica
	// (MaxMemory is for the in-process index: PostgreSQL bounds its own).
	Limits index.Limits
}

// Store is an index.Backend on PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	limits index.Limits

	mu   sync.Mutex
	cols map[string]meta // cached: a collection's table never changes while it exists
}

type meta struct {
	id     int64
	dim    int
	params index.Params
}

var _ index.Backend = (*Store)(nil)

// schemaLock is the advisory lock key under which the schema is created.
const schemaLock = 0x696d677365727665 // "imgserve"

// Open connects, creates the schema if needed and returns the store.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	// Unnamed statements: no per-connection statement cache, which also
	// suits poolers (PgBouncer) and PGlite's shared session.
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.MaxConns = 4
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{pool: pool, log: o.Logger, limits: o.Limits, cols: map[string]meta{}}
	if err := s.createSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	o.Logger.Info("index in PostgreSQL", "host", cfg.ConnConfig.Host, "database", cfg.ConnConfig.Database)
	return s, nil
}

func (s *Store) createSchema(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`SELECT pg_advisory_xact_lock(` + strconv.Itoa(schemaLock) + `)`,
			`CREATE EXTENSION IF NOT EXISTS vector`,
			`CREATE TABLE IF NOT EXISTS imgserve_collections (
				name       text PRIMARY KEY,
				id         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
				dimension  integer NOT NULL,
				params     jsonb NOT NULL,
				items      bigint NOT NULL DEFAULT 0,
				created_at timestamptz NOT NULL DEFAULT now())`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: creating the schema: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func table(id int64) string { return "imgserve_items_" + strconv.FormatInt(id, 10) }

// wrap maps PostgreSQL's errors to the index package's: a broken
// connection or server is ErrStorage (the server answers 503).
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: PostgreSQL: %s (%s)", index.ErrStorage, pe.Message, pe.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: PostgreSQL: %v", index.ErrStorage, err)
}

// isMissingTable: another replica dropped the collection since we cached it.
func isMissingTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// lookup returns a collection's row, from the cache or the database.
func (s *Store) lookup(ctx context.Context, name string, fresh bool) (meta, error) {
	if !index.ValidName(name) {
		return meta{}, fmt.Errorf("%w: %q", index.ErrBadName, name)
	}
	s.mu.Lock()
	m, ok := s.cols[name]
	s.mu.Unlock()
	if ok && !fresh {
		return m, nil
	}
	var params []byte
	err := s.pool.QueryRow(ctx, `SELECT id, dimension, params FROM imgserve_collections WHERE name = $1`, name).Scan(&m.id, &m.dim, &params)
	if errors.Is(err, pgx.ErrNoRows) {
		s.forget(name)
		return meta{}, fmt.Errorf("%w: %q", index.ErrNoCollection, name)
	}
	if err != nil {
		return meta{}, wrap(err)
	}
	if err := json.Unmarshal(params, &m.params); err != nil {
		return meta{}, fmt.Errorf("%w: collection %q has unreadable parameters: %v", index.ErrStorage, name, err)
	}
	s.mu.Lock()
	s.cols[name] = m
	s.mu.Unlock()
	return m, nil
}

func (s *Store) forget(name string) {
	s.mu.Lock()
	delete(s.cols, name)
	s.mu.Unlock()
}

// withCollection runs f on the collection's row, looking it up again once
// if its table has gone (dropped, and perhaps recreated, by a replica).
func (s *Store) withCollection(ctx context.Context, name string, f func(meta) error) error {
	m, err := s.lookup(ctx, name, false)
	if err != nil {
		return err
	}
	if err = f(m); isMissingTable(err) {
		if m, err = s.lookup(ctx, name, true); err != nil {
			return err
		}
		err = f(m)
	}
	return err
}

func checkParams(p index.Params) (index.Params, error) {
	p, err := p.Normalize()
	if err != nil {
		return p, err
	}
	if p.Storage != index.StorageFloat32 {
		return p, fmt.Errorf("%w: storage %q is for the in-process index; PostgreSQL keeps float32 (pgvector's vector)", index.ErrParams, p.Storage)
	}
	return p, nil
}

// List describes every collection, by name.
func (s *Store) List(ctx context.Context) ([]index.Info, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, dimension, params, items FROM imgserve_collections ORDER BY name`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []index.Info
	for rows.Next() {
		var info index.Info
		var params []byte
		if err := rows.Scan(&info.Name, &info.Dimension, &params, &info.Count); err != nil {
			return nil, wrap(err)
		}
		if err := json.Unmarshal(params, &info.Params); err != nil {
			return nil, fmt.Errorf("%w: collection %q: %v", index.ErrStorage, info.Name, err)
		}
		out = append(out, info)
	}
	return out, wrap(rows.Err())
}

// Info describes one collection.
func (s *Store) Info(ctx context.Context, name string) (index.Info, error) {
	if !index.ValidName(name) {
		return index.Info{}, fmt.Errorf("%w: %q", index.ErrBadName, name)
	}
	info := index.Info{Name: name}
	var params []byte
	err := s.pool.QueryRow(ctx, `SELECT dimension, params, items FROM imgserve_collections WHERE name = $1`, name).Scan(&info.Dimension, &params, &info.Count)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, fmt.Errorf("%w: %q", index.ErrNoCollection, name)
	}
	if err != nil {
		return info, wrap(err)
	}
	return info, json.Unmarshal(params, &info.Params)
}

// Create makes a collection and its table and index, or finds it with the
// same settings (created false); other settings are ErrExists.
func (s *Store) Create(ctx context.Context, name string, dim int, p index.Params) (index.Info, bool, error) {
	_, created, err := s.create(ctx, name, dim, p, true)
	if err != nil {
		return index.Info{}, false, err
	}
	info, err := s.Info(ctx, name)
	return info, created, err
}

func (s *Store) create(ctx context.Context, name string, dim int, p index.Params, strict bool) (meta, bool, error) {
	if !index.ValidName(name) {
		return meta{}, false, fmt.Errorf("%w: %q", index.ErrBadName, name)
	}
	if dim < 1 || dim > index.MaxDim {
		return meta{}, false, fmt.Errorf("%w: dimension %d not in 1..%d", index.ErrDimension, dim, index.MaxDim)
	}
	p, err := checkParams(p)
	if err != nil {
		return meta{}, false, err
	}
	params, _ := json.Marshal(p)
	m := meta{dim: dim, params: p}
	created := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if max := s.limits.MaxCollections; max > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM imgserve_collections WHERE name <> $1`, name).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return fmt.Errorf("%w: %d collections, the most this server holds", index.ErrLimit, max)
			}
		}
		err := tx.QueryRow(ctx, `INSERT INTO imgserve_collections (name, dimension, params) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING RETURNING id`, name, dim, string(params)).Scan(&m.id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // it exists; compared below
		}
		if err != nil {
			return err
		}
		created = true
		t := table(m.id)
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id text PRIMARY KEY, embedding vector(%d) NOT NULL, metadata json)`, t, dim)); err != nil {
			return err
		}
		if p.Index == index.IndexHNSW {
			_, err = tx.Exec(ctx, fmt.Sprintf(`CREATE INDEX %s_hnsw ON %s USING hnsw (embedding vector_ip_ops) WITH (m = %d, ef_construction = %d)`,
				t, t, p.M, p.EfConstruction))
		}
		return err
	})
	if err != nil {
		return meta{}, false, wrapKeep(err)
	}
	if created {
		s.mu.Lock()
		s.cols[name] = m
		s.mu.Unlock()
		s.log.Info("collection created", "collection", name, "dimension", dim, "table", table(m.id))
		return m, true, nil
	}
	have, err := s.lookup(ctx, name, true)
	if err != nil {
		return meta{}, false, err
	}
	if have.dim != dim {
		return meta{}, false, fmt.Errorf("%w: collection %q has dimension %d, not %d", index.ErrDimension, name, have.dim, dim)
	}
	if strict && have.params != p {
		return meta{}, false, fmt.Errorf("%w: collection %q has %s", index.ErrExists, name, have.params)
	}
	return have, false, nil
}

// vectorText is pgvector's text form: [x,y,...], each float32 in its
// shortest exact decimal.
func vectorText(v []float32) string {
	b := make([]byte, 0, 12*len(v)+2)
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return string(append(b, ']'))
}

// Upsert stores an item, creating the collection with default parameters
// if it does not exist; invalid items create nothing.
func (s *Store) Upsert(ctx context.Context, name string, it index.Item) (index.Info, error) {
	row, md, err := index.PrepareItem(it)
	if err != nil {
		return index.Info{}, err
	}
	var meta *string // NULL for none
	if md != nil {
		m := string(md)
		meta = &m
	}
	if !index.ValidName(name) {
		return index.Info{}, fmt.Errorf("%w: %q", index.ErrBadName, name)
	}
	vec := vectorText(row)
	var count int64
	for attempt := 0; ; attempt++ {
		m, err := s.lookup(ctx, name, attempt > 0)
		if errors.Is(err, index.ErrNoCollection) {
			m, _, err = s.create(ctx, name, len(row), index.Params{}, false)
		}
		if err != nil {
			return index.Info{}, err
		}
		if m.dim != len(row) {
			return index.Info{}, fmt.Errorf("%w: got %d, collection has %d", index.ErrDimension, len(row), m.dim)
		}
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var inserted bool
			err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (id, embedding, metadata) VALUES ($1, $2::vector, $3::json)
				ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata
				RETURNING xmax = 0`, table(m.id)), it.ID, vec, meta).Scan(&inserted)
			if err != nil {
				return err
			}
			q := `SELECT items FROM imgserve_collections WHERE id = $1`
			if inserted {
				q = `UPDATE imgserve_collections SET items = items + 1 WHERE id = $1 RETURNING items`
			}
			if err := tx.QueryRow(ctx, q, m.id).Scan(&count); err != nil {
				return err
			}
			if max := s.limits.MaxItems; inserted && max > 0 && count > int64(max) {
				return fmt.Errorf("%w: collection %q holds %d items, the most this server allows", index.ErrLimit, name, max)
			}
			return nil
		})
		if isMissingTable(err) && attempt == 0 {
			continue
		}
		if err != nil {
			return index.Info{}, wrapKeep(err)
		}
		return index.Info{Name: name, Count: int(count), Dimension: m.dim, Params: m.params}, nil
	}
}

// DeleteItem removes an item.
func (s *Store) DeleteItem(ctx context.Context, name, id string) (index.Info, error) {
	var info index.Info
	err := s.withCollection(ctx, name, func(m meta) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, table(m.id)), id)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: id %q", index.ErrNotFound, id)
			}
			info = index.Info{Name: name, Dimension: m.dim, Params: m.params}
			return tx.QueryRow(ctx, `UPDATE imgserve_collections SET items = items - 1 WHERE id = $1 RETURNING items`, m.id).Scan(&info.Count)
		})
	})
	if errors.Is(err, index.ErrNotFound) {
		return info, err
	}
	return info, wrap(err)
}

// Drop deletes a collection with its table.
func (s *Store) Drop(ctx context.Context, name string) error {
	if !index.ValidName(name) {
		return fmt.Errorf("%w: %q", index.ErrBadName, name)
	}
	s.forget(name)
	return wrapKeep(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `DELETE FROM imgserve_collections WHERE name = $1 RETURNING id`, name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", index.ErrNoCollection, name)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DROP TABLE IF EXISTS `+table(id))
		return err
	}))
}

// wrapKeep wraps database errors but passes the index package's own.
func wrapKeep(err error) error {
	if errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrLimit) {
		return err
	}
	return wrap(err)
}

// Search returns the k nearest items, best first, equal scores by id.
func (s *Store) Search(ctx context.Context, name string, q []float32, k int, o index.SearchOptions) ([]index.Hit, error) {
	if k < 1 || k > index.MaxK {
		return nil, fmt.Errorf("%w: k=%d not in 1..%d", index.ErrBadK, k, index.MaxK)
	}
	if o.EfSearch < 0 || o.EfSearch > index.MaxEf {
		return nil, fmt.Errorf("%w: ef_search=%d not in 1..%d", index.ErrParams, o.EfSearch, index.MaxEf)
	}
	var hits []index.Hit
	err := s.withCollection(ctx, name, func(m meta) error {
		if len(q) != m.dim {
			return fmt.Errorf("%w: query has %d, collection has %d", index.ErrDimension, len(q), m.dim)
		}
		unit, err := index.Unit(q)
		if err != nil {
			return err
		}
		hits = hits[:0]
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if o.Exact || m.params.Index == index.IndexFlat {
				if _, err := tx.Exec(ctx, `SELECT set_config('enable_indexscan', 'off', true)`); err != nil {
					return err
				}
			} else {
				ef := m.params.EfSearch
				if o.EfSearch > 0 {
					ef = o.EfSearch
				}
				// pgvector's HNSW returns at most ef_search rows.
				ef = max(ef, k)
				if _, err := tx.Exec(ctx, `SELECT set_config('hnsw.ef_search', $1, true)`, strconv.Itoa(ef)); err != nil {
					return err
				}
			}
			// An index scan needs ORDER BY the distance alone; a scan can
			// break ties by id, as the in-process index does.
			order := "embedding <#> $1::vector"
			if o.Exact || m.params.Index == index.IndexFlat {
				order += ", id"
			}
			rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, -(embedding <#> $1::vector), metadata::text FROM %s ORDER BY %s LIMIT %d`,
				table(m.id), order, k), vectorText(unit))
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var h index.Hit
				var score float64
				var md *string
				if err := rows.Scan(&h.ID, &score, &md); err != nil {
					return err
				}
				h.Score = float32(score)
				if md != nil {
					h.Metadata = json.RawMessage(*md)
				}
				hits = append(hits, h)
			}
			return rows.Err()
		})
	})
	if err != nil {
		if errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrDimension) || errors.Is(err, index.ErrBadVector) {
			return nil, err
		}
		return nil, wrap(err)
	}
	slices.SortStableFunc(hits, func(a, b index.Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return hits, nil
}
