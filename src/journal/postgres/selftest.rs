//! Self-test runs (`detect::selftest`) as the daemon records them, as SQLite's.

use tokio_postgres::GenericClient;

use crate::journal::{JournalError, SelftestRun};

pub(super) const COLUMNS: &str =
    "run_id, started_at, finished_at, passed, rules_total, rules_fired, outputs_total, outputs_ok, summary, detail";

pub(super) async fn insert(c: &impl GenericClient, r: &SelftestRun) -> Result<(), JournalError> {
    c.execute(
        &format!(
            "INSERT INTO selftest_runs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (run_id) DO NOTHING"
        ),
        &[
            &r.run_id,
            &r.started_at,
            &r.finished_at,
            &r.passed,
            &(r.rules_total as i64),
            &(r.rules_fired as i64),
            &(r.outputs_total as i64),
            &(r.outputs_ok as i64),
            &r.summary,
            &r.detail,
        ],
    )
    .await?;
    Ok(())
}

pub(super) fn from_row(r: &tokio_postgres::Row) -> SelftestRun {
    SelftestRun {
        run_id: r.get(0),
        started_at: r.get(1),
        finished_at: r.get(2),
        passed: r.get(3),
        rules_total: r.get::<_, i64>(4) as u64,
        rules_fired: r.get::<_, i64>(5) as u64,
        outputs_total: r.get::<_, i64>(6) as u64,
        outputs_ok: r.get::<_, i64>(7) as u64,
        summary: r.get(8),
        detail: r.get(9),
    }
}

pub(super) async fn between(
    c: &impl GenericClient,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<SelftestRun>, JournalError> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM selftest_runs WHERE started_at >= $1 AND started_at < $2
                 ORDER BY started_at DESC, run_id DESC LIMIT $3"
            ),
            &[&from, &to, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
