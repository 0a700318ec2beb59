//! Schema migrations of the journal database, applied in order and recorded
//! in `PRAGMA user_version`. A migration is never edited once released; a
//! change to the schema is a new entry at the end.

use rusqlite::Connection;

use super::JournalError;

const MIGRATIONS: &[&str] = &[
    // 1: events, tenants, cursors (with their history) and consumer offsets.
    r#"
    CREATE TABLE tenants (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY,
        tenant          INTEGER NOT NULL REFERENCES tenants(id),
        id              INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        operation_name  TEXT NOT NULL,
        user_id         INTEGER,
        user_email      TEXT,
        request_ip      TEXT,
        raw             TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_tenant_id ON events (tenant, id);
    CREATE TABLE progress (
        tenant      INTEGER NOT NULL REFERENCES tenants(id),
        job         TEXT NOT NULL,
        range_start INTEGER NOT NULL,
        range_end   INTEGER,
        position    INTEGER NOT NULL,
        filter      TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        finished_at INTEGER,
        PRIMARY KEY (tenant, job)
    );
    CREATE TABLE progress_log (
        tenant      INTEGER NOT NULL,
        job         TEXT NOT NULL,
        from_pos    INTEGER NOT NULL,
        to_pos      INTEGER NOT NULL,
        fetched     INTEGER NOT NULL,
        inserted    INTEGER NOT NULL,
        committed_at INTEGER NOT NULL
    );
    CREATE INDEX progress_log_tenant ON progress_log (tenant, to_pos);
    CREATE TABLE consumers (
        name        TEXT PRIMARY KEY,
        position    INTEGER NOT NULL,
        state       TEXT,
        updated_at  INTEGER NOT NULL
    );
    "#,
    // 2: alerts raised by the detector, and the journal events each one is about.
    r#"
    CREATE TABLE alerts (
        seq         INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        rule_id     TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        tenant      TEXT NOT NULL,
        event_time  INTEGER NOT NULL,
        raised_at   INTEGER NOT NULL,
        body        TEXT NOT NULL
    );
    CREATE INDEX alerts_rule ON alerts (rule_id, event_time);
    CREATE TABLE alert_events (
        alert_seq   INTEGER NOT NULL REFERENCES alerts(seq),
        event_seq   INTEGER NOT NULL,
        PRIMARY KEY (alert_seq, event_seq)
    ) WITHOUT ROWID;
    "#,
    // 3: search: indexes for the filters (each ends in created_at so results come newest first
    // straight from the index), the full-text index over each record's values, kept by the
    // search indexer (`query::index`) rather than by the collector so collection stays fast, and
    // the distinct users, IPs and operation names it has seen (for name, CIDR, country and
    // category filters). An event deleted by retention leaves the text index with it.
    r#"
    CREATE INDEX events_created ON events (created_at);
    CREATE INDEX events_tenant_created ON events (tenant, created_at);
    CREATE INDEX events_user_created ON events (user_id, created_at);
    CREATE INDEX events_email_created ON events (user_email COLLATE NOCASE, created_at);
    CREATE INDEX events_operation_created ON events (operation_name, created_at);
    CREATE INDEX events_ip_created ON events (request_ip, created_at);
    CREATE VIRTUAL TABLE events_fts USING fts5(
        body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE search_index (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        position    INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    INSERT INTO search_index (id, position, updated_at) VALUES (1, 0, 0);
    CREATE TABLE search_users (
        tenant      INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        user_email  TEXT NOT NULL,
        user_name   TEXT NOT NULL,
        PRIMARY KEY (tenant, user_id, user_email, user_name)
    ) WITHOUT ROWID;
    CREATE TABLE search_values (
        kind    TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID;
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
        DELETE FROM events_fts WHERE rowid = old.seq;
    END;
    "#,
    // 4: sequence numbers are never handed out twice. Without AUTOINCREMENT SQLite gave the
    // numbers of pruned newest rows out again, and every consumer (reading `seq > offset`) skipped
    // the new events. SQLite cannot add AUTOINCREMENT in place, so the table is rebuilt keeping
    // every row and seq (the FTS rows, `alert_events` and the offsets refer to them), its indexes
    // and trigger are made again, and the high-water mark starts past every seq any reader has
    // recorded, so a journal that already reused numbers stops doing so.
    r#"
    DROP TRIGGER events_fts_delete;
    CREATE TABLE events_v4 (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant          INTEGER NOT NULL REFERENCES tenants(id),
        id              INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        operation_name  TEXT NOT NULL,
        user_id         INTEGER,
        user_email      TEXT,
        request_ip      TEXT,
        raw             TEXT NOT NULL
    );
    INSERT INTO events_v4 (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw)
        SELECT seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw FROM events ORDER BY seq;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE UNIQUE INDEX events_tenant_id ON events (tenant, id);
    CREATE INDEX events_created ON events (created_at);
    CREATE INDEX events_tenant_created ON events (tenant, created_at);
    CREATE INDEX events_user_created ON events (user_id, created_at);
    CREATE INDEX events_email_created ON events (user_email COLLATE NOCASE, created_at);
    CREATE INDEX events_operation_created ON events (operation_name, created_at);
    CREATE INDEX events_ip_created ON events (request_ip, created_at);
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
        DELETE FROM events_fts WHERE rowid = old.seq;
    END;
    DELETE FROM sqlite_sequence WHERE name IN ('events', 'events_v4');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'events', MAX(
        (SELECT COALESCE(MAX(seq), 0) FROM events),
        (SELECT COALESCE(MAX(event_seq), 0) FROM alert_events),
        (SELECT COALESCE(MAX(position), 0) FROM search_index),
        -- Alert outputs (`alerts>…`) count alerts, not events.
        (SELECT COALESCE(MAX(position), 0) FROM consumers WHERE substr(name, 1, 7) <> 'alerts>')
    );
    "#,
    // 5: records the API sent that cannot be events (no id, no usable time), kept byte for byte
    // once each so collection goes on; and what reconciliation checked and found.
    r#"
    CREATE TABLE quarantine (
        seq          INTEGER PRIMARY KEY,
        tenant       INTEGER NOT NULL REFERENCES tenants(id),
        digest       TEXT NOT NULL,
        raw          TEXT NOT NULL,
        reason       TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        window_end   INTEGER NOT NULL,
        first_seen   INTEGER NOT NULL,
        UNIQUE (tenant, digest)
    );
    CREATE TABLE reconcile_passes (
        tenant       INTEGER NOT NULL REFERENCES tenants(id),
        range_start  INTEGER NOT NULL,
        range_end    INTEGER NOT NULL,
        slices       INTEGER NOT NULL,
        reread       INTEGER NOT NULL,
        found        INTEGER NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER NOT NULL
    );
    CREATE INDEX reconcile_passes_tenant ON reconcile_passes (tenant, finished_at);
    CREATE TABLE reconcile_finds (
        tenant        INTEGER NOT NULL REFERENCES tenants(id),
        slice_start   INTEGER NOT NULL,
        slice_end     INTEGER NOT NULL,
        api_count     INTEGER,
        journal_count INTEGER NOT NULL,
        found         INTEGER NOT NULL,
        oldest        INTEGER NOT NULL,
        newest        INTEGER NOT NULL,
        max_late_secs INTEGER NOT NULL,
        found_at      INTEGER NOT NULL
    );
    CREATE INDEX reconcile_finds_tenant ON reconcile_finds (tenant, slice_start);
    "#,
    // 6: the hash chain (journal::chain): each event's place in its tenant's chain, the
    // tenants' heads and what retention removed, and the first seq the chain covers (events
    // collected before this migration predate it).
    r#"
    ALTER TABLE events ADD COLUMN chain_n INTEGER;
    ALTER TABLE events ADD COLUMN chain_prev BLOB;
    ALTER TABLE events ADD COLUMN chain BLOB;
    ALTER TABLE tenants ADD COLUMN chain_n INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tenants ADD COLUMN chain_head BLOB;
    ALTER TABLE tenants ADD COLUMN chain_pruned_n INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE integrity (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        chain_since_seq  INTEGER NOT NULL
    );
    INSERT INTO integrity (id, chain_since_seq) VALUES (1, 1 + MAX(
        (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'),
        (SELECT COALESCE(MAX(seq), 0) FROM events)));
    "#,
    // 7: signed checkpoints (journal::checkpoint), and the seq of each tenant's head event
    // (what a checkpoint's `to_seq` is).
    r#"
    ALTER TABLE tenants ADD COLUMN chain_seq INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE checkpoints (
        tenant     INTEGER NOT NULL REFERENCES tenants(id),
        number     INTEGER NOT NULL,
        to_seq     INTEGER NOT NULL,
        body       TEXT NOT NULL,
        signature  BLOB NOT NULL,
        PRIMARY KEY (tenant, number)
    );
    CREATE INDEX checkpoints_to_seq ON checkpoints (to_seq);
    UPDATE tenants SET chain_seq = m.s
        FROM (SELECT tenant, MAX(seq) AS s FROM events WHERE chain_n IS NOT NULL GROUP BY tenant) AS m
        WHERE m.tenant = tenants.id;
    "#,
    // 8: the full-text index merges its segments sixteen at a time instead of four. FTS5
    // writes each indexer batch as a new segment and merges segments of a level once
    // `automerge` of them exist, so every term is rewritten once per level it climbs:
    // with 16, there are half as many levels, and indexing 1.5M events took 95 s
    // instead of 209 s (BENCHMARKS.md, "Cost per event"). A search reads at most 15
    // segments a level, a few more b-tree lookups per term.
    r#"
    INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', 16);
    "#,
    // 9: notes on posture entries (`tines-audit posture annotate`): why an IP access rule, an
    // egress allowlist entry, an owner or a key exists and who asked for it. Only ever
    // added to: a later note on the same entry supersedes, the earlier stays as history.
    // The tenant is its name, as in `alerts`: a note may precede the tenant's first event.
    r#"
    CREATE TABLE posture_notes (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        entry_id     TEXT NOT NULL,
        why          TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        noted_by     TEXT NOT NULL,
        noted_at     INTEGER NOT NULL
    );
    CREATE INDEX posture_notes_tenant ON posture_notes (tenant, seq);
    "#,
    // 10: self-test runs the daemon records (`detect::selftest`, `[detect] selftest_every`):
    // the evidence reports list them as proof that the detection controls were tested.
    r#"
    CREATE TABLE selftest_runs (
        run_id        TEXT PRIMARY KEY,
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER NOT NULL,
        passed        INTEGER NOT NULL,
        rules_total   INTEGER NOT NULL,
        rules_fired   INTEGER NOT NULL,
        outputs_total INTEGER NOT NULL,
        outputs_ok    INTEGER NOT NULL,
        summary       TEXT NOT NULL,
        detail        TEXT NOT NULL
    );
    CREATE INDEX selftest_runs_started ON selftest_runs (started_at);
    "#,
    // 11 (issue 13; after posture's 9 and selftest's 10): the full-text index also holds
    // the words of each operation name (`CredentialDestruction`: credential, destruction),
    // so `credential` finds it. The index is emptied and the indexer builds it again from
    // the first event: until it has caught up, free text finds only what it has passed
    // (the API and `search` say how far behind it is); every other filter reads the events
    // table and is unaffected. Users and values seen are kept (the indexer adds, never
    // removes them).
    r#"
    INSERT INTO events_fts (events_fts) VALUES ('delete-all');
    UPDATE search_index SET position = 0;
    "#,
    // 12: alert triage (journal::triage): each alert's status, assignee and last change, its
    // rule's level (read from the body, for the level filter), and an append-only history of
    // every change (triggers refuse to change or delete an entry). The indexes serve the
    // alert pages' filters, newest event first.
    r#"
    ALTER TABLE alerts ADD COLUMN status TEXT NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'acknowledged', 'closed'));
    ALTER TABLE alerts ADD COLUMN assignee TEXT;
    ALTER TABLE alerts ADD COLUMN triaged_at INTEGER;
    ALTER TABLE alerts ADD COLUMN triaged_by TEXT;
    ALTER TABLE alerts ADD COLUMN level TEXT NOT NULL DEFAULT '';
    UPDATE alerts SET level = lower(json_extract(body, '$.rule.level'))
        WHERE json_valid(body) AND json_type(body, '$.rule.level') = 'text';
    CREATE INDEX alerts_time ON alerts (event_time, seq);
    CREATE INDEX alerts_status_time ON alerts (status, event_time, seq);
    CREATE INDEX alerts_level_time ON alerts (level, event_time, seq);
    CREATE INDEX alerts_tenant_time ON alerts (tenant, event_time, seq);
    -- Groups of repeats and the counts read this index alone (it holds every column they filter on).
    CREATE INDEX alerts_group ON alerts (tenant, rule_id, group_key, event_time, status, level);
    CREATE TABLE alert_history (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_seq      INTEGER NOT NULL REFERENCES alerts(seq),
        changed_at     INTEGER NOT NULL,
        changed_by     TEXT NOT NULL,
        from_status    TEXT NOT NULL,
        to_status      TEXT NOT NULL,
        from_assignee  TEXT,
        to_assignee    TEXT,
        note           TEXT NOT NULL
    );
    CREATE INDEX alert_history_alert ON alert_history (alert_seq, seq);
    CREATE TRIGGER alert_history_no_update BEFORE UPDATE ON alert_history BEGIN
        SELECT RAISE(ABORT, 'the alert history is append-only');
    END;
    CREATE TRIGGER alert_history_no_delete BEFORE DELETE ON alert_history BEGIN
        SELECT RAISE(ABORT, 'the alert history is append-only');
    END;
    "#,
    // 13 (issue 13): saved, named searches of the console (`web::searches`). A name is unique
    // by its key (trimmed, lower case, computed in Rust so both backends agree); ids are
    // AUTOINCREMENT so a deleted search's id, in a link someone kept, never names another.
    r#"
    CREATE TABLE saved_searches (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        name_key    TEXT NOT NULL UNIQUE,
        query       TEXT NOT NULL,
        owner       TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT`], refusing one written by a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), JournalError> {
    migrate_to(conn, CURRENT)
}

fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), JournalError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT {
        return Err(JournalError::TooNew { found: version, supported: CURRENT });
    }
    apply(conn, version, target)
}

/// Applies the migrations after `version` (as read before; maybe stale) up to `target`.
fn apply(conn: &mut Connection, version: i64, target: i64) -> Result<(), JournalError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(version as usize) {
        // The version is read again under the write lock: another process (the daemon
        // creating the journal while a test or a reader opens it) may have applied this
        // migration since, and applying migration 4 (which rebuilds `events`) twice
        // dropped the columns of every later one.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect()).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn one(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Alerts raised before triage existed are open, unassigned, and filterable by the level
    /// their body names (a body that is not JSON, or names none, leaves it empty).
    #[test]
    fn migration_12_opens_every_alert_and_reads_its_level_from_its_body() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 11).unwrap();
        conn.execute_batch(
            r#"INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body) VALUES
                 (1, 'a:1', 'a', '[]', 't', 1, 1, '{"rule":{"level":"High"}}'),
                 (2, 'b:2', 'b', '[]', 't', 2, 2, 'not json'),
                 (3, 'c:3', 'c', '[]', 't', 3, 3, '{"rule":{"level":5}}');"#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let got = rows(&conn, "SELECT id, level, status, assignee IS NULL FROM alerts ORDER BY seq");
        let want: Vec<Vec<rusqlite::types::Value>> = [("a:1", "high"), ("b:2", ""), ("c:3", "")]
            .iter()
            .map(|(id, level)| {
                vec![id.to_string().into(), level.to_string().into(), "open".to_string().into(), 1i64.into()]
            })
            .collect();
        assert_eq!(got, want);
        for (id, body) in
            [("a:1", r#"{"rule":{"level":"High"}}"#), ("b:2", "not json"), ("c:3", r#"{"rule":{"level":5}}"#)]
        {
            let stored: String = conn.query_row("SELECT level FROM alerts WHERE id = ?1", [id], |r| r.get(0)).unwrap();
            assert_eq!(stored, crate::journal::triage::level_of(body), "the migration reads levels as new alerts do");
        }
    }

    /// FTS5 keeps its settings in the table's `_config` shadow table: the migration's
    /// `automerge` is there for a journal migrated from 7, and the index still answers.
    #[test]
    fn migration_8_merges_full_text_segments_sixteen_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 7).unwrap();
        conn.execute_batch("INSERT INTO events_fts (rowid, body) VALUES (1, 'credential destruction')").unwrap();
        // Up to 8 only: a later migration empties the full-text index for the indexer to refill.
        migrate_to(&mut conn, 8).unwrap();
        assert_eq!(one(&conn, "SELECT v FROM events_fts_config WHERE k = 'automerge'"), 16);
        assert_eq!(one(&conn, "SELECT rowid FROM events_fts WHERE events_fts MATCH 'credential'"), 1);
    }

    /// Events indexed before the operation names' words were: the migration empties the
    /// full-text index and sends the indexer back to the start, which indexes them again
    /// with the words, so `credential` finds an old `CredentialDestruction` too.
    #[test]
    fn operation_name_words_migration_reindexes_events_indexed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 10).unwrap();
        conn.execute_batch(
            r#"INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0);
             INSERT INTO events (tenant, id, created_at, operation_name, raw)
                 VALUES (1, 1, 1, 'CredentialDestruction', '{"id":1,"operation_name":"CredentialDestruction"}');
             INSERT INTO events_fts (rowid, body) VALUES (1, '1 CredentialDestruction');
             UPDATE search_index SET position = 1;"#,
        )
        .unwrap();
        assert_eq!(one(&conn, "SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH 'credential'"), 0);
        migrate(&mut conn).unwrap();
        assert_eq!(one(&conn, "SELECT position FROM search_index"), 0);
        assert_eq!(one(&conn, "SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH 'credentialdestruction'"), 0);
        drop(conn);
        let j = crate::journal::Journal::open(dir.path()).unwrap();
        assert_eq!(j.index_batch(100).unwrap(), 1);
        let q = |w: &str| crate::journal::EventQuery {
            text: vec![vec![crate::journal::TextTerm { words: w.into(), prefix: false }]],
            ..Default::default()
        };
        assert_eq!(j.search(&q("credential"), 10).unwrap().len(), 1);
        assert_eq!(j.search(&q("CredentialDestruction"), 10).unwrap().len(), 1);
        assert_eq!(j.search(&q("credential destruction"), 10).unwrap().len(), 1, "a phrase of its words");
    }

    /// The chain starts after every number a journal of schema 5 has handed out, so its
    /// events count as collected before the chain, never as inserted behind its back.
    #[test]
    fn migration_6_starts_the_chain_after_every_seq_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0);
             INSERT INTO events (tenant, id, created_at, operation_name, raw) VALUES (1, 1, 1, 'Login', '{}'), (1, 2, 2, 'Login', '{}');
             INSERT INTO events (tenant, id, created_at, operation_name, raw) VALUES (1, 3, 3, 'Login', '{}');
             DELETE FROM events WHERE id = 3;",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(one(&conn, "SELECT chain_since_seq FROM integrity"), 4);
        assert_eq!(one(&conn, "SELECT COUNT(*) FROM events WHERE chain_n IS NULL"), 2);
        assert_eq!(one(&conn, "SELECT chain_n FROM tenants"), 0);
    }

    /// `runs_periodic_reconciliation_collects_late_events_and_reports_them` failed now and
    /// then: the test polled the journal while the daemon created it, both migrated, and the
    /// poll applied migration 4 (which rebuilds `events`) after the daemon had applied 5 to
    /// 7, leaving the journal at version 4 without the chain's columns.
    #[test]
    fn two_processes_migrating_one_journal_at_once_rolled_its_schema_back() {
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.db");
            let open = || {
                let c = Connection::open(&path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                c.pragma_update(None, "journal_mode", "WAL").unwrap();
                c
            };
            let (mut a, mut b) = (open(), open());
            // The second read the version while the first was partway (a poll of the
            // journal the daemon is creating), and goes on from there once the first is done.
            migrate_to(&mut a, 3).unwrap();
            let version: i64 = b.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version, 3);
            migrate(&mut a).unwrap();
            apply(&mut b, version, CURRENT).unwrap();
            assert_eq!(one(&b, "PRAGMA user_version"), CURRENT);
            assert_eq!(one(&b, "SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'chain_n'"), 1);
        }
    }

    /// A journal whose chain predates checkpoints learns each tenant's head seq, so its
    /// first checkpoint signs the right event.
    #[test]
    fn migration_7_finds_each_tenants_head_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at, chain_n) VALUES (1, 'a', 0, 2), (2, 'b', 0, 1), (3, 'c', 0, 0);
             INSERT INTO events (seq, tenant, id, created_at, operation_name, raw, chain_n) VALUES
                 (5, 1, 1, 1, 'Login', '{}', 1), (6, 2, 1, 1, 'Login', '{}', 1), (7, 1, 2, 2, 'Login', '{}', 2);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let heads = rows(&conn, "SELECT name, chain_seq FROM tenants ORDER BY name");
        let want: Vec<Vec<rusqlite::types::Value>> = [("a", 7), ("b", 6), ("c", 0)]
            .iter()
            .map(|(n, s)| vec![n.to_string().into(), (*s as i64).into()])
            .collect();
        assert_eq!(heads, want);
    }

    /// A journal at schema 3 that already pruned its newest events (11..=15, delivered to a sink),
    /// then migrated: every row and seq stays, so do the indexes, the text index and its
    /// trigger, and numbering resumes past every seq a reader has recorded.
    #[test]
    fn migration_4_keeps_every_row_and_seq_and_never_hands_a_number_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("journal.db")).unwrap();
        migrate_to(&mut conn, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15)
             INSERT INTO events (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw)
                 SELECT i, 1, 1000 + i, 50 + i, 'Login', i, 'u' || i || '@x.test', '10.0.0.' || i, '{\"word\":\"w' || i || '\"}' FROM n;
             INSERT INTO events_fts (rowid, body) SELECT seq, 'w' || seq FROM events;
             UPDATE search_index SET position = 15;
             DELETE FROM events WHERE seq > 10;
             INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body)
                 VALUES (1, 'r:3', 'r', '[]', 't', 53, 0, '{}');
             INSERT INTO alert_events (alert_seq, event_seq) VALUES (1, 3), (1, 7);
             INSERT INTO consumers (name, position, updated_at) VALUES
                 ('file:a', 15, 0), ('detector', 12, 0), ('alerts>stdout', 900, 0);",
        )
        .unwrap();
        let schema = "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = 'events' ORDER BY name";
        let all = "SELECT seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw FROM events ORDER BY seq";
        let (events, fts_hits, indexes) = (
            rows(&conn, all),
            rows(&conn, "SELECT rowid FROM events_fts WHERE events_fts MATCH 'w7'"),
            rows(&conn, schema),
        );
        assert_eq!(events.len(), 10);
        // Up to 8 only: a later migration empties the full-text index for the indexer to refill.
        migrate_to(&mut conn, 8).unwrap();
        assert_eq!(one(&conn, "PRAGMA user_version"), 8);
        assert_eq!(rows(&conn, all), events, "every row with its seq");
        assert_eq!(rows(&conn, schema), indexes, "the same indexes and trigger");
        assert_eq!(rows(&conn, "SELECT rowid FROM events_fts WHERE events_fts MATCH 'w7'"), fts_hits);
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        // The next event comes after the sink's 15 (not after the 10 rows left, nor the alert output's 900).
        conn.execute(
            "INSERT INTO events (tenant, id, created_at, operation_name, raw) VALUES (1, 2000, 99, 'Login', '{}')",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 16);
        // Deleting the newest row does not give its number out again.
        conn.execute("DELETE FROM events WHERE seq >= 10", []).unwrap();
        conn.execute(
            "INSERT INTO events (tenant, id, created_at, operation_name, raw) VALUES (1, 2001, 99, 'Login', '{}')",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 17);
        assert!(rows(&conn, "SELECT rowid FROM events_fts WHERE rowid = 10").is_empty(), "the trigger still runs");
        assert_eq!(one(&conn, "SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH 'w7'"), 1);
    }
}
