//! The search indexer: follows the journal like a sink, with its own position,
//! and adds what the collector does not write: each record's words to the
//! full-text index, and the distinct users, addresses and operation names
//! seen (for name, network, country and category filters).
//!
//! It runs apart from collection so that a backfill is not slowed by text
//! indexing (measured in BENCHMARKS.md), and catches up in batches of a few
//! thousand events, each one transaction with its new position: a crash
//! leaves the index either with a batch and its position or with neither.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use crate::journal::{Journal, JournalError};
use crate::timeutil::now_secs;

/// Events indexed per transaction: small enough that collection never waits long for the write lock.
pub const BATCH: usize = 2_000;

/// How far the index has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IndexState {
    /// Every event with `seq <= position` is indexed.
    pub position: i64,
    /// The journal's highest seq.
    pub max_seq: i64,
}

impl IndexState {
    pub fn behind(&self) -> i64 {
        (self.max_seq - self.position).max(0)
    }
}

/// Top-level fields left out of the text: timestamps and the tenant id match nearly every record.
const SKIPPED: &[&str] = &["created_at", "updated_at", "tenant_id"];

fn push_words(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|i| push_words(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Keys inside `inputs` say what changed (credentialId, readAccess), so they are searchable too.
                out.push_str(k);
                out.push(' ');
                push_words(v, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The text indexed for a record: every value (and every key below the top level).
pub fn record_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => {
            for (k, v) in &map {
                if !SKIPPED.contains(&k.as_str()) {
                    push_words(v, &mut out);
                }
            }
        }
        // Not an object: index the text as it is rather than lose it.
        _ => out.push_str(raw),
    }
    out
}

/// The index's position and the journal's end (blocking, read-only).
pub fn state(journal: &Journal) -> Result<IndexState, JournalError> {
    journal.query(|conn| {
        let position: i64 =
            conn.query_row("SELECT position FROM search_index WHERE id = 1", [], |r| r.get(0)).optional()?.unwrap_or(0);
        let max_seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok(IndexState { position, max_seq })
    })
}

/// Indexes up to `max` events past the position in one transaction; returns how many (blocking).
pub fn index_batch(journal: &Journal, max: usize) -> Result<usize, JournalError> {
    journal.write(|conn| {
        // IMMEDIATE: two indexers (the daemon's and a `search` command's) never index the same events.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let position: i64 = tx.query_row("SELECT position FROM search_index WHERE id = 1", [], |r| r.get(0))?;
        let mut users: BTreeSet<(i64, i64, String, String)> = BTreeSet::new();
        let mut ips: BTreeSet<String> = BTreeSet::new();
        let mut ops: BTreeSet<String> = BTreeSet::new();
        let mut last = position;
        let mut n = 0usize;
        {
            let mut read = tx.prepare_cached(
                "SELECT seq, tenant, operation_name, user_id, user_email, request_ip, raw FROM events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut insert = tx.prepare_cached("INSERT INTO events_fts (rowid, body) VALUES (?1, ?2)")?;
            let mut rows = read.query(params![position, max as i64])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let raw: &str = r.get_ref(6)?.as_str().unwrap_or("");
                insert.execute(params![seq, record_text(raw)])?;
                let tenant: i64 = r.get(1)?;
                ops.insert(r.get(2)?);
                if let Some(ip) = r.get::<_, Option<String>>(5)? {
                    ips.insert(ip);
                }
                if let Some(uid) = r.get::<_, Option<i64>>(3)? {
                    let email: String = r.get::<_, Option<String>>(4)?.unwrap_or_default();
                    let name = serde_json::from_str::<Value>(raw)
                        .ok()
                        .and_then(|v| v.get("user_name").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_default();
                    users.insert((tenant, uid, email, name));
                }
                last = seq;
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        {
            let mut u = tx.prepare_cached(
                "INSERT OR IGNORE INTO search_users (tenant, user_id, user_email, user_name) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (t, id, email, name) in &users {
                u.execute(params![t, id, email, name])?;
            }
            let mut v = tx.prepare_cached("INSERT OR IGNORE INTO search_values (kind, value) VALUES (?1, ?2)")?;
            for ip in &ips {
                v.execute(params!["ip", ip])?;
            }
            for op in &ops {
                v.execute(params!["op", op])?;
            }
        }
        tx.execute("UPDATE search_index SET position = ?1, updated_at = ?2 WHERE id = 1", params![last, now_secs()])?;
        tx.commit()?;
        Ok(n)
    })
}

/// Refreshes the query planner's statistics after a large intake, so it picks the right index
/// for each filter (SQLite's own advice: `PRAGMA optimize`, bounded by `analysis_limit`).
pub fn optimize(journal: &Journal) -> Result<(), JournalError> {
    journal.write(|conn| {
        conn.execute_batch("PRAGMA analysis_limit = 2000; PRAGMA optimize = 0x10002;")?;
        Ok(())
    })
}

/// Indexes everything collected so far (blocking); returns how many events it indexed.
pub fn catch_up(journal: &Journal) -> Result<u64, JournalError> {
    let mut total = 0u64;
    loop {
        let n = index_batch(journal, BATCH)?;
        total += n as u64;
        if n < BATCH {
            if total >= 10_000 {
                optimize(journal)?;
            }
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_text_keeps_values_and_nested_keys_but_not_timestamps() {
        let t = record_text(
            r#"{"created_at":"2024-01-01T00:00:00Z","id":7,"inputs":{"credentialId":3001,"name":"Okta \"prod\""},"operation_name":"CredentialDestruction","tenant_id":4242,"user_name":"Seán"}"#,
        );
        assert!(t.contains("credentialId 3001"), "{t}");
        assert!(t.contains("Okta \"prod\"") && t.contains("CredentialDestruction") && t.contains("Seán"));
        assert!(!t.contains("2024") && !t.contains("4242") && !t.contains("operation_name"), "{t}");
        assert_eq!(record_text("not json"), "not json");
    }
}
