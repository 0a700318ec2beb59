//! Schema migrations of the PostgreSQL journal, applied in order under an advisory lock
//! (several instances may start at once) and recorded in `journal_schema`. A migration
//! is never edited once released; a change is a new entry at the end.
//!
//! Times are Unix seconds (`bigint`), as in SQLite, so both backends answer alike.
//! Everything lives in the connection's current schema, so one database can hold
//! several journals (`options=-c search_path=…` in the URL).

use tokio_postgres::Client;

use crate::journal::JournalError;

const MIGRATIONS: &[&str] = &[
    // 1: the whole journal as of SQLite schema 5.
    r#"
    CREATE TABLE tenants (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name        text NOT NULL UNIQUE,
        created_at  bigint NOT NULL
    );
    -- Handed out only under the events lock (see `commit_window`), so seq order is commit order.
    CREATE SEQUENCE events_seq AS bigint;
    CREATE TABLE events (
        seq             bigint PRIMARY KEY,
        tenant          bigint NOT NULL REFERENCES tenants(id),
        id              bigint NOT NULL,
        created_at      bigint NOT NULL,
        operation_name  text NOT NULL,
        user_id         bigint,
        user_email      text,
        request_ip      text,
        raw             text NOT NULL,
        UNIQUE (tenant, id)
    );
    CREATE INDEX events_created ON events (created_at, seq);
    CREATE INDEX events_tenant_created ON events (tenant, created_at);
    CREATE INDEX events_user_created ON events (user_id, created_at);
    CREATE INDEX events_email_created ON events (lower(user_email), created_at);
    CREATE INDEX events_operation_created ON events (operation_name, created_at);
    CREATE INDEX events_ip_created ON events (request_ip, created_at);
    CREATE TABLE progress (
        tenant      bigint NOT NULL REFERENCES tenants(id),
        job         text NOT NULL,
        range_start bigint NOT NULL,
        range_end   bigint,
        position    bigint NOT NULL,
        filter      text NOT NULL,
        updated_at  bigint NOT NULL,
        finished_at bigint,
        PRIMARY KEY (tenant, job)
    );
    CREATE TABLE progress_log (
        tenant       bigint NOT NULL,
        job          text NOT NULL,
        from_pos     bigint NOT NULL,
        to_pos       bigint NOT NULL,
        fetched      bigint NOT NULL,
        inserted     bigint NOT NULL,
        committed_at bigint NOT NULL
    );
    CREATE INDEX progress_log_tenant ON progress_log (tenant, to_pos);
    CREATE INDEX progress_log_committed ON progress_log (committed_at);
    CREATE TABLE consumers (
        name        text PRIMARY KEY,
        position    bigint NOT NULL,
        state       text,
        updated_at  bigint NOT NULL
    );
    -- Handed out only under the alerts lock, for the same reason as events_seq.
    CREATE SEQUENCE alerts_seq AS bigint;
    CREATE TABLE alerts (
        seq         bigint PRIMARY KEY,
        id          text NOT NULL UNIQUE,
        rule_id     text NOT NULL,
        group_key   text NOT NULL,
        tenant      text NOT NULL,
        event_time  bigint NOT NULL,
        raised_at   bigint NOT NULL,
        body        text NOT NULL
    );
    CREATE INDEX alerts_rule ON alerts (rule_id, event_time);
    CREATE INDEX alerts_time ON alerts (event_time, seq);
    CREATE TABLE alert_events (
        alert_seq   bigint NOT NULL REFERENCES alerts(seq),
        event_seq   bigint NOT NULL,
        PRIMARY KEY (alert_seq, event_seq)
    );
    CREATE INDEX alert_events_event ON alert_events (event_seq);
    -- Full text, kept by the search indexer; goes with its event.
    CREATE TABLE events_text (
        seq   bigint PRIMARY KEY REFERENCES events(seq) ON DELETE CASCADE,
        body  tsvector NOT NULL
    );
    CREATE INDEX events_text_body ON events_text USING gin (body);
    CREATE TABLE search_index (
        id          int PRIMARY KEY CHECK (id = 1),
        position    bigint NOT NULL,
        updated_at  bigint NOT NULL
    );
    INSERT INTO search_index (id, position, updated_at) VALUES (1, 0, 0);
    CREATE TABLE search_users (
        tenant      bigint NOT NULL,
        user_id     bigint NOT NULL,
        user_email  text NOT NULL,
        user_name   text NOT NULL,
        PRIMARY KEY (tenant, user_id, user_email, user_name)
    );
    CREATE TABLE search_values (
        kind    text NOT NULL,
        value   text NOT NULL,
        PRIMARY KEY (kind, value)
    );
    CREATE TABLE quarantine (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant       bigint NOT NULL REFERENCES tenants(id),
        digest       text NOT NULL,
        raw          text NOT NULL,
        reason       text NOT NULL,
        window_start bigint NOT NULL,
        window_end   bigint NOT NULL,
        first_seen   bigint NOT NULL,
        UNIQUE (tenant, digest)
    );
    CREATE TABLE reconcile_passes (
        tenant       bigint NOT NULL REFERENCES tenants(id),
        range_start  bigint NOT NULL,
        range_end    bigint NOT NULL,
        slices       bigint NOT NULL,
        reread       bigint NOT NULL,
        found        bigint NOT NULL,
        started_at   bigint NOT NULL,
        finished_at  bigint NOT NULL
    );
    CREATE INDEX reconcile_passes_tenant ON reconcile_passes (tenant, finished_at);
    CREATE TABLE reconcile_finds (
        tenant        bigint NOT NULL REFERENCES tenants(id),
        slice_start   bigint NOT NULL,
        slice_end     bigint NOT NULL,
        api_count     bigint,
        journal_count bigint NOT NULL,
        found         bigint NOT NULL,
        oldest        bigint NOT NULL,
        newest        bigint NOT NULL,
        max_late_secs bigint NOT NULL,
        found_at      bigint NOT NULL
    );
    CREATE INDEX reconcile_finds_tenant ON reconcile_finds (tenant, slice_start);
    "#,
    // 2: leases for several instances on one journal (times in ms by the database's clock),
    // and the instances seen alive, for each one's fair share of the jobs.
    r#"
    CREATE TABLE leases (
        job             text PRIMARY KEY,
        holder          text NOT NULL,
        token           bigint NOT NULL,
        expires_at_ms   bigint NOT NULL,
        acquired_at_ms  bigint NOT NULL
    );
    CREATE TABLE instances (
        holder          text PRIMARY KEY,
        seen_at_ms      bigint NOT NULL,
        started_at_ms   bigint NOT NULL
    );
    "#,
    // 3: the search filters' indexes leave the collector's commit. Each one cost as much
    // as the row itself on every insert (BENCHMARKS.md, "Collection into PostgreSQL").
    // `event_keys` holds the filtered columns of every event the search indexer has
    // passed, indexed; search reads it up to the indexer's position and `events` past
    // it (search.rs). `events` keeps the indexes the collector itself reads: `seq`
    // and `UNIQUE (tenant, id)`.
    r#"
    CREATE TABLE event_keys (
        seq             bigint PRIMARY KEY REFERENCES events(seq) ON DELETE CASCADE,
        tenant          bigint NOT NULL,
        created_at      bigint NOT NULL,
        operation_name  text NOT NULL,
        user_id         bigint,
        email           text,
        request_ip      text
    );
    INSERT INTO event_keys (seq, tenant, created_at, operation_name, user_id, email, request_ip)
        SELECT seq, tenant, created_at, operation_name, user_id, lower(user_email), request_ip FROM events
        WHERE seq <= (SELECT position FROM search_index WHERE id = 1);
    CREATE INDEX event_keys_created ON event_keys (created_at, seq);
    CREATE INDEX event_keys_tenant_created ON event_keys (tenant, created_at);
    CREATE INDEX event_keys_user_created ON event_keys (user_id, created_at);
    CREATE INDEX event_keys_email_created ON event_keys (email, created_at);
    CREATE INDEX event_keys_operation_created ON event_keys (operation_name, created_at);
    CREATE INDEX event_keys_ip_created ON event_keys (request_ip, created_at);
    DROP INDEX events_created;
    DROP INDEX events_user_created;
    DROP INDEX events_email_created;
    DROP INDEX events_operation_created;
    DROP INDEX events_ip_created;
    DROP INDEX events_tenant_created;
    -- The foreign key ran a lookup of the tenant per inserted event (a quarter of the
    -- server's time in a backfill); the one tenant id of a commit comes from `tenants`.
    ALTER TABLE events DROP CONSTRAINT events_tenant_fkey;
    "#,
    // 4: the hash chain (journal::chain), as SQLite's migration 6.
    r#"
    ALTER TABLE events ADD COLUMN chain_n bigint;
    ALTER TABLE events ADD COLUMN chain_prev bytea;
    ALTER TABLE events ADD COLUMN chain bytea;
    ALTER TABLE tenants ADD COLUMN chain_n bigint NOT NULL DEFAULT 0;
    ALTER TABLE tenants ADD COLUMN chain_head bytea;
    ALTER TABLE tenants ADD COLUMN chain_pruned_n bigint NOT NULL DEFAULT 0;
    CREATE TABLE integrity (
        id               int PRIMARY KEY CHECK (id = 1),
        chain_since_seq  bigint NOT NULL
    );
    INSERT INTO integrity (id, chain_since_seq) VALUES (1, 1 + GREATEST(
        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq),
        (SELECT COALESCE(MAX(seq), 0) FROM events)));
    "#,
    // 5: signed checkpoints (journal::checkpoint), as SQLite's migration 7.
    r#"
    ALTER TABLE tenants ADD COLUMN chain_seq bigint NOT NULL DEFAULT 0;
    UPDATE tenants SET chain_seq = m.s
        FROM (SELECT tenant, MAX(seq) AS s FROM events WHERE chain_n IS NOT NULL GROUP BY tenant) AS m
        WHERE m.tenant = tenants.id;
    CREATE TABLE checkpoints (
        tenant     bigint NOT NULL REFERENCES tenants(id),
        number     bigint NOT NULL,
        to_seq     bigint NOT NULL,
        body       text NOT NULL,
        signature  bytea NOT NULL,
        PRIMARY KEY (tenant, number)
    );
    CREATE INDEX checkpoints_to_seq ON checkpoints (to_seq);
    -- A network filter reads the addresses under its text prefixes (`86.40.`) by range:
    -- byte order, whatever the database's collation.
    CREATE INDEX search_values_bytes ON search_values (kind, value COLLATE "C");
    "#,
    // 6: notes on posture entries, as SQLite's migration 9. By default rather than always an
    // identity, so a journal moved here keeps its notes' numbers.
    r#"
    CREATE TABLE posture_notes (
        seq          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant       text NOT NULL,
        kind         text NOT NULL,
        entry_id     text NOT NULL,
        why          text NOT NULL,
        requested_by text NOT NULL,
        noted_by     text NOT NULL,
        noted_at     bigint NOT NULL
    );
    CREATE INDEX posture_notes_tenant ON posture_notes (tenant, seq);
    "#,
    // 7: self-test runs, as SQLite's migration 10.
    r#"
    CREATE TABLE selftest_runs (
        run_id        text PRIMARY KEY,
        started_at    bigint NOT NULL,
        finished_at   bigint NOT NULL,
        passed        boolean NOT NULL,
        rules_total   bigint NOT NULL,
        rules_fired   bigint NOT NULL,
        outputs_total bigint NOT NULL,
        outputs_ok    bigint NOT NULL,
        summary       text NOT NULL,
        detail        text NOT NULL
    );
    CREATE INDEX selftest_runs_started ON selftest_runs (started_at);
    "#,
    // 8 (issue 13; after posture's 6 and selftest's 7), as SQLite's 11: the text of every
    // indexed event gains the words of its operation name. Unlike SQLite, the index is not
    // rebuilt (the search tail would then be every event until the indexer caught up): the
    // words are appended here, split as `catalog::name_words` splits them (at non-letters and
    // digits, before an upper-case letter after a lower-case one or a digit, and before the
    // last capital of an acronym), once per distinct name; a test holds the two splits equal
    // for every name of the catalog.
    r#"
    WITH names AS (
        SELECT op, trim(regexp_replace(lower(
            regexp_replace(regexp_replace(regexp_replace(regexp_replace(
                regexp_replace(op, '[^[:alnum:]]+', ' ', 'g'),
                '([[:lower:][:digit:]])([[:upper:]])', '\1 \2', 'g'),
                '([[:upper:]])([[:upper:]][[:lower:]])', '\1 \2', 'g'),
                '([[:digit:]])([^[:digit:][:space:]])', '\1 \2', 'g'),
                '([^[:digit:][:space:]])([[:digit:]])', '\1 \2', 'g')), ' +', ' ', 'g')) AS words
        FROM (SELECT DISTINCT operation_name AS op FROM event_keys) AS d
    )
    UPDATE events_text t SET body = t.body || to_tsvector('simple', n.words)
        FROM event_keys k JOIN names n ON n.op = k.operation_name
        WHERE k.seq = t.seq AND position(' ' IN n.words) > 0;
    "#,
    // 9: alert triage, as SQLite's migration 12. The level of existing alerts is read from
    // bodies that are JSON (one at a time: a body that is not leaves the level empty). The
    // history's numbers are an identity by default, not always, so a journal moved here keeps them.
    r#"
    ALTER TABLE alerts ADD COLUMN status text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'acknowledged', 'closed'));
    ALTER TABLE alerts ADD COLUMN assignee text;
    ALTER TABLE alerts ADD COLUMN triaged_at bigint;
    ALTER TABLE alerts ADD COLUMN triaged_by text;
    ALTER TABLE alerts ADD COLUMN level text NOT NULL DEFAULT '';
    DO $$
    DECLARE r record;
    BEGIN
        FOR r IN SELECT seq, body FROM alerts LOOP
            BEGIN
                UPDATE alerts SET level = lower(r.body::jsonb #>> '{rule,level}')
                    WHERE seq = r.seq AND jsonb_typeof(r.body::jsonb #> '{rule,level}') = 'string';
            EXCEPTION WHEN others THEN NULL;
            END;
        END LOOP;
    END $$;
    CREATE INDEX alerts_status_time ON alerts (status, event_time, seq);
    CREATE INDEX alerts_level_time ON alerts (level, event_time, seq);
    CREATE INDEX alerts_tenant_time ON alerts (tenant, event_time, seq);
    -- Groups of repeats and the counts read this index alone (it holds every column they filter on).
    CREATE INDEX alerts_group ON alerts (tenant, rule_id, group_key, event_time, status, level);
    CREATE TABLE alert_history (
        seq            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        alert_seq      bigint NOT NULL REFERENCES alerts(seq),
        changed_at     bigint NOT NULL,
        changed_by     text NOT NULL,
        from_status    text NOT NULL,
        to_status      text NOT NULL,
        from_assignee  text,
        to_assignee    text,
        note           text NOT NULL
    );
    CREATE INDEX alert_history_alert ON alert_history (alert_seq, seq);
    CREATE FUNCTION alert_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        RAISE EXCEPTION 'the alert history is append-only';
    END $f$;
    CREATE TRIGGER alert_history_no_change BEFORE UPDATE OR DELETE ON alert_history
        FOR EACH ROW EXECUTE FUNCTION alert_history_append_only();
    CREATE TRIGGER alert_history_no_truncate BEFORE TRUNCATE ON alert_history
        FOR EACH STATEMENT EXECUTE FUNCTION alert_history_append_only();
    "#,
    // 10: saved searches, as SQLite's migration 13. The id is an identity by default, not
    // always, so a journal moved here keeps its ids.
    r#"
    CREATE TABLE saved_searches (
        id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name        text NOT NULL,
        name_key    text NOT NULL UNIQUE,
        query       text NOT NULL,
        owner       text NOT NULL,
        created_at  bigint NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Advisory lock keys, scoped to the current schema so journals in one database never
/// wait for each other: `(hashtext(current_schema()), KEY)`.
pub const MIGRATE_LOCK: i32 = 1;
pub const EVENTS_LOCK: i32 = 2;
pub const ALERTS_LOCK: i32 = 3;

/// The stored schema version (0 for an empty schema).
pub async fn version(client: &Client) -> Result<i64, JournalError> {
    let exists: bool = client.query_one("SELECT to_regclass('journal_schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT version FROM journal_schema", &[]).await?.get(0))
}

/// Brings the schema up to [`CURRENT`], refusing one written by a newer build.
pub async fn migrate(client: &mut Client) -> Result<(), JournalError> {
    migrate_to(client, CURRENT).await
}

/// Brings the schema up to version `target` (tests start older journals this way).
pub(super) async fn migrate_to(client: &mut Client, target: i64) -> Result<(), JournalError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", &[&MIGRATE_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS journal_schema (
             id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL, updated_at bigint NOT NULL);
         INSERT INTO journal_schema VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await?;
    let found: i64 = tx.query_one("SELECT version FROM journal_schema", &[]).await?.get(0);
    if found > CURRENT {
        return Err(JournalError::TooNew { found, supported: CURRENT });
    }
    let target = target.max(found);
    for sql in MIGRATIONS.iter().take(target as usize).skip(found as usize) {
        tx.batch_execute(sql).await?;
    }
    tx.execute("UPDATE journal_schema SET version = $1, updated_at = extract(epoch from now())::bigint", &[&target])
        .await?;
    tx.commit().await?;
    Ok(())
}
