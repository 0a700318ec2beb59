//! Saved searches of the console (`web::searches`).

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::journal::{JournalError, SaveOutcome, SavedSearch};

pub(super) const COLUMNS: &str = "id, name, query, owner, created_at";

pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedSearch> {
    Ok(SavedSearch { id: r.get(0)?, name: r.get(1)?, query: r.get(2)?, owner: r.get(3)?, created_at: r.get(4)? })
}

/// Inserts a search with its id (a load).
pub(super) fn insert(conn: &rusqlite::Connection, s: &SavedSearch) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO saved_searches (id, name, name_key, query, owner, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![s.id, s.name, SavedSearch::name_key(&s.name), s.query, s.owner, s.created_at])?;
    Ok(())
}

impl Sqlite {
    pub(super) fn save_search(&self, s: &SavedSearch, max: usize) -> Result<SaveOutcome, JournalError> {
        let mut conn = self.writer();
        // One writer connection: the checks and the insert see no other save in between.
        let tx = conn.transaction()?;
        let key = SavedSearch::name_key(&s.name);
        let taken = tx
            .query_row(&format!("SELECT {COLUMNS} FROM saved_searches WHERE name_key = ?1"), [&key], from_row)
            .optional()?;
        if let Some(other) = taken {
            return Ok(SaveOutcome::NameTaken(other));
        }
        let stored: i64 = tx.query_row("SELECT COUNT(*) FROM saved_searches", [], |r| r.get(0))?;
        if stored as u64 >= max as u64 {
            return Ok(SaveOutcome::Full);
        }
        tx.execute(
            "INSERT INTO saved_searches (name, name_key, query, owner, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.name, key, s.query, s.owner, s.created_at],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(SaveOutcome::Saved(SavedSearch { id, ..s.clone() }))
    }

    pub(super) fn saved_searches(&self, limit: usize) -> Result<Vec<SavedSearch>, JournalError> {
        self.query(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM saved_searches ORDER BY name_key, id LIMIT ?1"))?;
            let rows = stmt.query_map([limit.min(i64::MAX as usize) as i64], from_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn saved_search(&self, id: i64) -> Result<Option<SavedSearch>, JournalError> {
        self.query(|conn| {
            Ok(conn
                .query_row(&format!("SELECT {COLUMNS} FROM saved_searches WHERE id = ?1"), [id], from_row)
                .optional()?)
        })
    }

    pub(super) fn delete_saved_search(&self, id: i64) -> Result<bool, JournalError> {
        Ok(self.writer().execute("DELETE FROM saved_searches WHERE id = ?1", [id])? > 0)
    }
}
