//! [`Row`]s out of and into a PostgreSQL journal (see `journal::dump`).

use std::collections::HashMap;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::{Client, Row as PgRow, Transaction};

use super::{Postgres, row_to_find};
use crate::journal::chain::{Head, Link};
use crate::journal::dump::{DUMP_PAGE, Row};
use crate::journal::{FoundEvent, JournalError, ReconcilePass};

type Out<'a> = &'a mut dyn FnMut(Row) -> Result<(), JournalError>;

/// Streams a statement's rows through `map` into `out`, as the server sends them.
async fn each(
    tx: &Transaction<'_>,
    sql: &str,
    out: &mut dyn FnMut(Row) -> Result<(), JournalError>,
    map: impl Fn(&PgRow) -> Row,
) -> Result<(), JournalError> {
    let stream = tx.query_raw(sql, std::iter::empty::<i64>()).await?;
    pin_mut!(stream);
    while let Some(r) = stream.next().await {
        out(map(&r?))?;
    }
    Ok(())
}

pub(super) async fn dump(c: &mut Client, out: Out<'_>) -> Result<(), JournalError> {
    // One snapshot for every table, while the other instances go on writing.
    let tx = c
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    // The loading side may make this transaction wait between pages (a slow target): let it.
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0").await?;
    each(
        &tx,
        "SELECT name, created_at, chain_n, chain_head, chain_pruned_n, chain_seq FROM tenants ORDER BY id",
        out,
        |r| Row::Tenant {
            name: r.get(0),
            created_at: r.get(1),
            head: Head::from_stored(r.get(2), r.get::<_, Option<&[u8]>>(3)),
            pruned_through: r.get(4),
            head_seq: r.get(5),
        },
    )
    .await?;
    // Events in pages by seq, so neither side holds more than a page.
    let mut after = 0i64;
    loop {
        let rows = tx
            .query(
                "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email, e.request_ip, e.raw,
                        e.chain_n, e.chain_prev, e.chain
                 FROM events e JOIN tenants t ON t.id = e.tenant WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
                &[&after, &DUMP_PAGE],
            )
            .await?;
        for r in &rows {
            after = r.get(0);
            let link = Link::from_stored(r.get(9), r.get(10), r.get(11));
            out(Row::Event(super::search::row_to_found(r), link))?;
        }
        if (rows.len() as i64) < DUMP_PAGE {
            break;
        }
    }
    each(
        &tx,
        "SELECT t.name, p.job, p.range_start, p.range_end, p.position, p.filter, p.updated_at, p.finished_at
         FROM progress p JOIN tenants t ON t.id = p.tenant ORDER BY t.name, p.job",
        out,
        |r| Row::Progress(super::row_to_progress(r)),
    )
    .await?;
    each(
        &tx,
        "SELECT t.name, l.job, l.from_pos, l.to_pos, l.fetched, l.inserted, l.committed_at
         FROM progress_log l JOIN tenants t ON t.id = l.tenant ORDER BY l.committed_at, l.to_pos",
        out,
        |r| Row::Window {
            tenant: r.get(0),
            job: r.get(1),
            from: r.get(2),
            to: r.get(3),
            fetched: r.get(4),
            inserted: r.get(5),
            committed_at: r.get(6),
        },
    )
    .await?;
    each(&tx, "SELECT name, position, state, updated_at FROM consumers ORDER BY name", out, |r| Row::Consumer {
        name: r.get(0),
        position: r.get(1),
        state: r.get(2),
        updated_at: r.get(3),
    })
    .await?;
    each(
        &tx,
        "SELECT seq, id, rule_id, group_key, tenant, event_time, raised_at, body FROM alerts ORDER BY seq",
        out,
        |r| Row::Alert {
            seq: r.get(0),
            id: r.get(1),
            rule_id: r.get(2),
            group_key: r.get(3),
            tenant: r.get(4),
            event_time: r.get(5),
            raised_at: r.get(6),
            body: r.get(7),
        },
    )
    .await?;
    each(&tx, "SELECT alert_seq, event_seq FROM alert_events ORDER BY alert_seq, event_seq", out, |r| {
        Row::AlertEvent { alert_seq: r.get(0), event_seq: r.get(1) }
    })
    .await?;
    // A status the CHECK constraint lets in is one this build knows.
    let status = |s: &str| crate::journal::AlertStatus::parse(s).unwrap_or(crate::journal::AlertStatus::Open);
    each(
        &tx,
        "SELECT seq, status, assignee, triaged_at, triaged_by FROM alerts
         WHERE status <> 'open' OR assignee IS NOT NULL OR triaged_at IS NOT NULL ORDER BY seq",
        out,
        |r| Row::AlertTriage {
            alert_seq: r.get(0),
            status: status(r.get(1)),
            assignee: r.get(2),
            triaged_at: r.get(3),
            triaged_by: r.get(4),
        },
    )
    .await?;
    each(
        &tx,
        &format!("SELECT {} FROM alert_history ORDER BY seq", crate::journal::triage::CHANGE_COLUMNS),
        out,
        |r| {
            Row::AlertChange(crate::journal::AlertChange {
                seq: r.get(0),
                alert_seq: r.get(1),
                at: r.get(2),
                by: r.get(3),
                from_status: status(r.get(4)),
                to_status: status(r.get(5)),
                from_assignee: r.get(6),
                to_assignee: r.get(7),
                note: r.get(8),
            })
        },
    )
    .await?;
    each(
        &tx,
        "SELECT t.name, q.digest, q.raw, q.reason, q.window_start, q.window_end, q.first_seen
         FROM quarantine q JOIN tenants t ON t.id = q.tenant ORDER BY q.seq",
        out,
        |r| Row::Quarantine {
            tenant: r.get(0),
            digest: r.get(1),
            raw: r.get(2),
            reason: r.get(3),
            window_start: r.get(4),
            window_end: r.get(5),
            first_seen: r.get(6),
        },
    )
    .await?;
    each(
        &tx,
        "SELECT t.name, p.range_start, p.range_end, p.slices, p.reread, p.found, p.started_at, p.finished_at
         FROM reconcile_passes p JOIN tenants t ON t.id = p.tenant ORDER BY p.finished_at",
        out,
        |r| {
            Row::ReconcilePass(ReconcilePass {
                tenant: r.get(0),
                range_start: r.get(1),
                range_end: r.get(2),
                slices: r.get::<_, i64>(3) as u64,
                reread: r.get::<_, i64>(4) as u64,
                found: r.get::<_, i64>(5) as u64,
                started_at: r.get(6),
                finished_at: r.get(7),
            })
        },
    )
    .await?;
    each(
        &tx,
        "SELECT t.name, f.slice_start, f.slice_end, f.api_count, f.journal_count, f.found, f.oldest, f.newest,
                f.max_late_secs, f.found_at
         FROM reconcile_finds f JOIN tenants t ON t.id = f.tenant ORDER BY f.slice_start",
        out,
        |r| Row::ReconcileFind(row_to_find(r, r.get(0), 1)),
    )
    .await?;
    each(
        &tx,
        "SELECT t.name, c.number, c.to_seq, c.body, c.signature FROM checkpoints c JOIN tenants t ON t.id = c.tenant
         ORDER BY c.tenant, c.number",
        out,
        |r| Row::Checkpoint(super::checkpoint_row(r)),
    )
    .await?;
    each(
        &tx,
        "SELECT seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at FROM posture_notes ORDER BY seq",
        out,
        |r| Row::PostureNote(super::note_row(r)),
    )
    .await?;
    each(
        &tx,
        &format!("SELECT {} FROM selftest_runs ORDER BY started_at, run_id", super::selftest::COLUMNS),
        out,
        |r| Row::Selftest(super::selftest::from_row(r)),
    )
    .await?;
    each(&tx, &format!("SELECT {} FROM saved_searches ORDER BY id", super::saved::COLUMNS), out, |r| {
        Row::SavedSearch(super::saved::from_row(r))
    })
    .await?;
    let hw = tx
        .query_one(
            "SELECT GREATEST((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq),
                             (SELECT COALESCE(MAX(seq), 0) FROM events)),
                    GREATEST((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM alerts_seq),
                             (SELECT COALESCE(MAX(seq), 0) FROM alerts)),
                    (SELECT chain_since_seq FROM integrity WHERE id = 1),
                    GREATEST((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM saved_searches_id_seq),
                             (SELECT COALESCE(MAX(id), 0) FROM saved_searches))",
            &[],
        )
        .await?;
    out(Row::HighWater {
        events: hw.get(0),
        alerts: hw.get(1),
        chain_since_seq: hw.get(2),
        saved_searches: hw.get(3),
    })?;
    tx.commit().await?;
    Ok(())
}

/// Events are inserted this many at a time (one statement each).
const EVENT_BATCH: usize = 1_000;

#[derive(Default)]
struct Events {
    seq: Vec<i64>,
    tenant: Vec<i64>,
    id: Vec<i64>,
    created_at: Vec<i64>,
    op: Vec<String>,
    user_id: Vec<Option<i64>>,
    email: Vec<Option<String>>,
    ip: Vec<Option<String>>,
    raw: Vec<String>,
    chain_n: Vec<Option<i64>>,
    chain_prev: Vec<Option<Vec<u8>>>,
    chain: Vec<Option<Vec<u8>>>,
}

impl Events {
    async fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), JournalError> {
        if self.seq.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO events (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw,
                                 chain_n, chain_prev, chain)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                                  $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bytea[], $12::bytea[])",
            &[
                &self.seq,
                &self.tenant,
                &self.id,
                &self.created_at,
                &self.op,
                &self.user_id,
                &self.email,
                &self.ip,
                &self.raw,
                &self.chain_n,
                &self.chain_prev,
                &self.chain,
            ],
        )
        .await?;
        *self = Events::default();
        Ok(())
    }
}

pub(super) async fn load(
    pg: &Postgres,
    c: &mut Client,
    rows: &mut dyn Iterator<Item = Result<Row, JournalError>>,
) -> Result<(), JournalError> {
    let tx = c.transaction().await?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM tenants) + (SELECT COUNT(*) FROM consumers)
                  + (SELECT COUNT(*) FROM alerts) + (SELECT COUNT(*) FROM progress)
                  + (SELECT COUNT(*) FROM posture_notes) + (SELECT COUNT(*) FROM saved_searches)",
            &[],
        )
        .await?
        .get(0);
    if used > 0 {
        return Err(JournalError::NotEmpty(pg.pool.shown().to_string()));
    }
    let mut tenants: HashMap<String, i64> = HashMap::new();
    let tid = |tenants: &HashMap<String, i64>, name: &str| {
        tenants
            .get(name)
            .copied()
            .ok_or_else(|| JournalError::Task(format!("a row names tenant {name}, which the dump did not list first")))
    };
    let mut events = Events::default();
    let mut high_water = (0i64, 0i64);
    let mut searches_high_water = 0i64;
    for row in rows {
        let row = row?;
        if !matches!(row, Row::Event { .. }) {
            events.flush(&tx).await?;
        }
        match row {
            Row::Tenant { name, created_at, head, head_seq, pruned_through } => {
                let hash = (head.n > 0).then_some(&head.hash[..]);
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO tenants (name, created_at, chain_n, chain_head, chain_pruned_n, chain_seq)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&name, &created_at, &head.n, &hash, &pruned_through, &head_seq],
                    )
                    .await?
                    .get(0);
                tenants.insert(name, id);
            }
            Row::Event(
                FoundEvent { seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw },
                link,
            ) => {
                events.tenant.push(tid(&tenants, &tenant)?);
                events.chain_n.push(link.map(|l| l.n));
                events.chain_prev.push(link.map(|l| l.prev.to_vec()));
                events.chain.push(link.map(|l| l.hash.to_vec()));
                events.seq.push(seq);
                events.id.push(id);
                events.created_at.push(created_at);
                events.op.push(operation_name);
                events.user_id.push(user_id);
                events.email.push(user_email);
                events.ip.push(request_ip);
                events.raw.push(raw);
                if events.seq.len() >= EVENT_BATCH {
                    events.flush(&tx).await?;
                }
            }
            Row::Progress(p) => {
                tx.execute(
                    "INSERT INTO progress (tenant, job, range_start, range_end, position, filter, updated_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&tid(&tenants, &p.tenant)?, &p.job, &p.range_start, &p.range_end, &p.position, &p.filter, &p.updated_at, &p.finished_at],
                )
                .await?;
            }
            Row::Window { tenant, job, from, to, fetched, inserted, committed_at } => {
                tx.execute(
                    "INSERT INTO progress_log (tenant, job, from_pos, to_pos, fetched, inserted, committed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&tid(&tenants, &tenant)?, &job, &from, &to, &fetched, &inserted, &committed_at],
                )
                .await?;
            }
            Row::Consumer { name, position, state, updated_at } => {
                tx.execute(
                    "INSERT INTO consumers (name, position, state, updated_at) VALUES ($1, $2, $3, $4)",
                    &[&name, &position, &state, &updated_at],
                )
                .await?;
            }
            Row::Alert { seq, id, rule_id, group_key, tenant, event_time, raised_at, body } => {
                let level = crate::journal::triage::level_of(&body);
                tx.execute(
                    "INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body, level)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[&seq, &id, &rule_id, &group_key, &tenant, &event_time, &raised_at, &body, &level],
                )
                .await?;
            }
            Row::AlertTriage { alert_seq, status, assignee, triaged_at, triaged_by } => {
                tx.execute(
                    "UPDATE alerts SET status = $2, assignee = $3, triaged_at = $4, triaged_by = $5 WHERE seq = $1",
                    &[&alert_seq, &status.as_str(), &assignee, &triaged_at, &triaged_by],
                )
                .await?;
            }
            Row::AlertChange(c) => {
                tx.execute(
                    "INSERT INTO alert_history (seq, alert_seq, changed_at, changed_by, from_status, to_status,
                                                from_assignee, to_assignee, note)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &c.seq,
                        &c.alert_seq,
                        &c.at,
                        &c.by,
                        &c.from_status.as_str(),
                        &c.to_status.as_str(),
                        &c.from_assignee,
                        &c.to_assignee,
                        &c.note,
                    ],
                )
                .await?;
            }
            Row::AlertEvent { alert_seq, event_seq } => {
                tx.execute(
                    "INSERT INTO alert_events (alert_seq, event_seq) VALUES ($1, $2)",
                    &[&alert_seq, &event_seq],
                )
                .await?;
            }
            Row::Quarantine { tenant, digest, raw, reason, window_start, window_end, first_seen } => {
                tx.execute(
                    "INSERT INTO quarantine (tenant, digest, raw, reason, window_start, window_end, first_seen)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&tid(&tenants, &tenant)?, &digest, &raw, &reason, &window_start, &window_end, &first_seen],
                )
                .await?;
            }
            Row::ReconcilePass(p) => super::insert_pass(&tx, tid(&tenants, &p.tenant)?, &p).await?,
            Row::ReconcileFind(f) => super::insert_find(&tx, tid(&tenants, &f.tenant)?, &f).await?,
            Row::Checkpoint(c) => {
                tx.execute(
                    "INSERT INTO checkpoints (tenant, number, to_seq, body, signature) VALUES ($1, $2, $3, $4, $5)",
                    &[&tid(&tenants, &c.tenant)?, &c.number, &c.to_seq, &c.body, &c.signature],
                )
                .await?;
            }
            Row::PostureNote(n) => {
                tx.execute(
                    "INSERT INTO posture_notes (seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&n.seq, &n.tenant, &n.kind, &n.entry_id, &n.why, &n.requested_by, &n.noted_by, &n.noted_at],
                )
                .await?;
            }
            Row::Selftest(run) => super::selftest::insert(&tx, &run).await?,
            Row::SavedSearch(search) => super::saved::insert(&tx, &search).await?,
            Row::HighWater { events, alerts, chain_since_seq, saved_searches } => {
                high_water = (high_water.0.max(events), high_water.1.max(alerts));
                searches_high_water = searches_high_water.max(saved_searches);
                tx.execute("UPDATE integrity SET chain_since_seq = $1 WHERE id = 1", &[&chain_since_seq]).await?;
            }
        }
    }
    events.flush(&tx).await?;
    // Numbering goes on past every number the source ever handed out.
    tx.execute(
        "SELECT setval('events_seq', GREATEST($1::bigint, (SELECT COALESCE(MAX(seq), 0) FROM events), 1),
                       GREATEST($1::bigint, (SELECT COALESCE(MAX(seq), 0) FROM events)) > 0),
                setval('alerts_seq', GREATEST($2::bigint, (SELECT COALESCE(MAX(seq), 0) FROM alerts), 1),
                       GREATEST($2::bigint, (SELECT COALESCE(MAX(seq), 0) FROM alerts)) > 0)",
        &[&high_water.0, &high_water.1],
    )
    .await?;
    // Notes keep their numbers; the next one is numbered after them.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('posture_notes', 'seq'), GREATEST(MAX(seq), 1), MAX(seq) IS NOT NULL)
         FROM posture_notes",
        &[],
    )
    .await?;
    // Saved search ids go on past every id the source handed out (a deleted one's too).
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('saved_searches', 'id'),
                       GREATEST($1::bigint, (SELECT COALESCE(MAX(id), 0) FROM saved_searches), 1),
                       GREATEST($1::bigint, (SELECT COALESCE(MAX(id), 0) FROM saved_searches)) > 0)",
        &[&searches_high_water],
    )
    .await?;
    // The history's numbers were given explicitly: its identity goes on past them.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('alert_history', 'seq'), GREATEST(MAX(seq), 1), MAX(seq) IS NOT NULL)
         FROM alert_history",
        &[],
    )
    .await?;
    tx.commit().await?;
    pg.tenant_ids.lock().unwrap_or_else(|p| p.into_inner()).clear();
    Ok(())
}
