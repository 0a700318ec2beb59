//! Saved searches of the console (`web::searches`), as SQLite's.

use tokio_postgres::GenericClient;

use super::Postgres;
use crate::journal::{JournalError, SaveOutcome, SavedSearch};

pub(super) const COLUMNS: &str = "id, name, query, owner, created_at";

pub(super) fn from_row(r: &tokio_postgres::Row) -> SavedSearch {
    SavedSearch { id: r.get(0), name: r.get(1), query: r.get(2), owner: r.get(3), created_at: r.get(4) }
}

/// Inserts a search with its id (a load).
pub(super) async fn insert(c: &impl GenericClient, s: &SavedSearch) -> Result<(), JournalError> {
    c.execute(
        "INSERT INTO saved_searches (id, name, name_key, query, owner, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&s.id, &s.name, &SavedSearch::name_key(&s.name), &s.query, &s.owner, &s.created_at],
    )
    .await?;
    Ok(())
}

async fn named(c: &impl GenericClient, key: &str) -> Result<Option<SavedSearch>, JournalError> {
    let row = c.query_opt(&format!("SELECT {COLUMNS} FROM saved_searches WHERE name_key = $1"), &[&key]).await?;
    Ok(row.as_ref().map(from_row))
}

impl Postgres {
    pub(super) fn save_search(&self, s: &SavedSearch, max: usize) -> Result<SaveOutcome, JournalError> {
        let key = SavedSearch::name_key(&s.name);
        let max = max.min(i64::MAX as usize) as i64;
        self.run(async |c| {
            // The unique name key settles two instances saving one name at once: the second
            // waits for the first to commit and inserts nothing.
            let row = c
                .query_opt(
                    "INSERT INTO saved_searches (name, name_key, query, owner, created_at)
                     SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM saved_searches) < $6
                     ON CONFLICT (name_key) DO NOTHING RETURNING id",
                    &[&s.name, &key, &s.query, &s.owner, &s.created_at, &max],
                )
                .await?;
            if let Some(r) = row {
                return Ok(SaveOutcome::Saved(SavedSearch { id: r.get(0), ..s.clone() }));
            }
            Ok(match named(c, &key).await? {
                Some(other) => SaveOutcome::NameTaken(other),
                None => SaveOutcome::Full,
            })
        })
    }

    pub(super) fn saved_searches(&self, limit: usize) -> Result<Vec<SavedSearch>, JournalError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(async |c| {
            // Bytewise, as SQLite orders it, whatever the database's collation.
            let rows = c
                .query(
                    &format!("SELECT {COLUMNS} FROM saved_searches ORDER BY name_key COLLATE \"C\", id LIMIT $1"),
                    &[&limit],
                )
                .await?;
            Ok(rows.iter().map(from_row).collect())
        })
    }

    pub(super) fn saved_search(&self, id: i64) -> Result<Option<SavedSearch>, JournalError> {
        self.run(async |c| {
            let row = c.query_opt(&format!("SELECT {COLUMNS} FROM saved_searches WHERE id = $1"), &[&id]).await?;
            Ok(row.as_ref().map(from_row))
        })
    }

    pub(super) fn delete_saved_search(&self, id: i64) -> Result<bool, JournalError> {
        self.run(async |c| Ok(c.execute("DELETE FROM saved_searches WHERE id = $1", &[&id]).await? > 0))
    }
}
