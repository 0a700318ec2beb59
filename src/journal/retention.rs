//! Retention: which events may be deleted. An event goes only once it is older
//! than the retention period and every configured reader of the journal has
//! passed it: each sink, the detector, the search indexer, and, for the events
//! an alert is about, each alert output that has not delivered that alert yet.
//! Sequence numbers are never handed out twice (migration 4), so deleting the
//! newest events can never hide the next ones from a reader.

use super::{Journal, JournalError};

/// The name the search indexer goes by in retention's answers (its position is
/// kept in `search_index`, not in `consumers`).
pub const SEARCH_INDEXER: &str = "search indexer";

/// Every configured reader retention must wait for, besides the search indexer,
/// which every journal has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readers {
    /// Consumers of events by offset name: each `[[sinks]]` sink, and `detector` when detection is on.
    pub events: Vec<String>,
    /// Alert outputs by offset name (`alerts>…`); their offsets count alerts, not events.
    pub alert_outputs: Vec<String>,
}

/// What one retention pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: u64,
    /// The reader furthest behind and its position: nothing after it was deleted.
    pub slowest: (String, i64),
}

impl Journal {
    /// Deletes events created before `before` that every reader has passed, keeping the
    /// events of alerts an alert output has not delivered yet (so the alert's evidence is
    /// still there when it arrives). A configured reader with no offset yet has never run
    /// and will start at the beginning, so it holds everything. Readers no longer
    /// configured (a sink removed from the config) hold nothing.
    ///
    /// With a signing key, each tenant's retention mark is signed in a checkpoint before
    /// anything goes (journal::checkpoint): verification then tells these deletions from
    /// others, and a crash in between leaves a mark ahead of the deletion, never behind.
    pub fn prune_passed(
        &self,
        before: i64,
        readers: &Readers,
        key: Option<&crate::signing::SigningKey>,
    ) -> Result<Pruned, JournalError> {
        let (offsets, index) = self.reader_positions()?;
        // Offsets only move forward, so positions read now are safe to delete up to later.
        let position = |name: &str| offsets.get(name).copied().unwrap_or(0);
        let mut slowest = (SEARCH_INDEXER.to_string(), index);
        for name in &readers.events {
            let p = position(name);
            if p < slowest.1 {
                slowest = (name.clone(), p);
            }
        }
        let alerts_delivered = readers.alert_outputs.iter().map(|n| position(n)).min().unwrap_or(i64::MAX);
        if let Some(key) = key {
            self.sign_prune(key, before, slowest.1, alerts_delivered)?;
        }
        let deleted = self.delete_old(before, slowest.1, alerts_delivered)?;
        Ok(Pruned { deleted, slowest })
    }

    /// Deletes events created before `before` whose seq is at most `up_to_seq`, whatever
    /// reads them (the caller vouches that every reader has passed them), signing the
    /// retention marks first when given a key.
    pub fn prune(
        &self,
        before: i64,
        up_to_seq: i64,
        key: Option<&crate::signing::SigningKey>,
    ) -> Result<u64, JournalError> {
        if let Some(key) = key {
            self.sign_prune(key, before, up_to_seq, i64::MAX)?;
        }
        self.delete_old(before, up_to_seq, i64::MAX)
    }

    /// Signs a `retention` checkpoint for each tenant whose mark the deletion will raise.
    fn sign_prune(
        &self,
        key: &crate::signing::SigningKey,
        before: i64,
        up_to_seq: i64,
        alerts_delivered: i64,
    ) -> Result<(), JournalError> {
        let signed: std::collections::HashMap<String, i64> = self
            .latest_checkpoints()?
            .iter()
            .filter_map(|c| c.parse().map(|p| (c.tenant.clone(), p.pruned_through)))
            .collect();
        for (tenant, bound) in self.prune_bounds(before, up_to_seq, alerts_delivered)? {
            if signed.get(&tenant).is_none_or(|s| *s < bound) {
                super::checkpoint::sign(self, &tenant, key, "retention", bound)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::testing::{Fresh, Kind, fresh};
    use crate::journal::{NewAlert, Record, WindowCommit};

    /// Appends events with Tines ids `ids`, created at `1_000 + id` (old), through a committed window.
    fn add(j: &Journal, ids: std::ops::RangeInclusive<i64>) {
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        let raws: Vec<(i64, String)> =
            ids.map(|i| (i, format!("{{\"id\":{i},\"operation_name\":\"Login\"}}"))).collect();
        let recs = raws.iter().map(|(i, raw)| Record {
            id: *i,
            created_at: 1_000 + i,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw,
        });
        let p = j.progress("t", "cursor").unwrap().unwrap().position;
        let c = WindowCommit { tenant: "t", job: "cursor", from: p, to: p + 1, fetched: raws.len() as u64 };
        j.commit_window(&c, recs).unwrap();
    }

    /// A journal with events 1..=100 (seq = id), indexed, and `offsets` committed.
    fn journal(kind: Kind, offsets: &[(&str, i64)]) -> Fresh {
        let j = fresh(kind);
        add(&j, 1..=100);
        crate::query::index::catch_up(&j).unwrap();
        for (name, pos) in offsets {
            j.consumer(name, 0).unwrap();
            j.commit_offset(name, 0, *pos, None).unwrap();
        }
        j
    }

    fn readers(events: &[&str], alert_outputs: &[&str]) -> Readers {
        Readers {
            events: events.iter().map(|s| s.to_string()).collect(),
            alert_outputs: alert_outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn seqs(j: &Journal) -> Vec<i64> {
        j.read_after(0, usize::MAX, usize::MAX).unwrap().iter().map(|e| e.seq).collect()
    }

    fn seq_is_never_reused_after_the_newest_events_are_pruned(kind: Kind) {
        let j = journal(kind, &[("file:a", 100)]);
        assert_eq!(j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap().deleted, 100);
        assert_eq!(j.count_events(None).unwrap(), 0);
        assert_eq!(j.max_seq().unwrap(), 100, "the high-water mark survives the rows");
        add(&j, 101..=110);
        assert_eq!(seqs(&j), (101..=110).collect::<Vec<_>>());
        // What a sink at offset 100 reads next is exactly the new events.
        assert_eq!(j.read_after(100, 1_000, usize::MAX).unwrap().len(), 10);
        // And the mark is durable: pruned again and reopened, numbering goes on.
        j.commit_offset("file:a", 100, 110, None).unwrap();
        crate::query::index::catch_up(&j).unwrap();
        assert_eq!(j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap().deleted, 10);
        let j = j.reopen();
        add(&j, 111..=111);
        assert_eq!(seqs(&j), vec![111]);
    }

    #[test]
    fn the_high_water_mark_travels_with_an_export() {
        let j = journal(Kind::Sqlite, &[("file:a", 100)]);
        j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("backup.db");
        j.export(&backup).unwrap();
        let k = Journal::import(&backup, &dir.path().join("moved"), false).unwrap();
        assert_eq!(k.max_seq().unwrap(), 100);
        add(&k, 101..=101);
        assert_eq!(seqs(&k), vec![101]);
    }

    fn retention_stops_at_the_slowest_sink_and_at_the_detector(kind: Kind) {
        let j = journal(kind, &[("file:a", 70), ("detector", 40)]);
        let p = j.prune_passed(i64::MAX, &readers(&["file:a", "detector"], &[]), None).unwrap();
        assert_eq!((p.deleted, p.slowest), (40, ("detector".to_string(), 40)));
        assert_eq!(seqs(&j).first(), Some(&41));
        let p = j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap();
        assert_eq!((p.deleted, p.slowest), (30, ("file:a".to_string(), 70)));
    }

    fn a_configured_reader_that_never_ran_holds_everything(kind: Kind) {
        let j = journal(kind, &[("file:a", 100)]);
        for never_ran in ["file:new", "detector"] {
            let p = j.prune_passed(i64::MAX, &readers(&["file:a", never_ran], &[]), None).unwrap();
            assert_eq!((p.deleted, p.slowest), (0, (never_ran.to_string(), 0)), "{never_ran}");
        }
        // A reader no longer configured (its offset row lingers) holds nothing.
        j.consumer("file:removed", 0).unwrap();
        assert_eq!(j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap().deleted, 100);
    }

    fn retention_waits_for_the_search_indexer(kind: Kind) {
        let j = fresh(kind);
        add(&j, 1..=100);
        crate::query::index::index_batch(&j, 25).unwrap();
        j.consumer("file:a", 0).unwrap();
        j.commit_offset("file:a", 0, 100, None).unwrap();
        let p = j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap();
        assert_eq!((p.deleted, p.slowest), (25, (SEARCH_INDEXER.to_string(), 25)));
        crate::query::index::catch_up(&j).unwrap();
        assert_eq!(j.prune_passed(i64::MAX, &readers(&["file:a"], &[]), None).unwrap().deleted, 75);
    }

    fn an_alerts_events_stay_until_every_alert_output_has_delivered_it(kind: Kind) {
        let j = journal(kind, &[("file:a", 100)]);
        let alert = NewAlert {
            id: "r:60".into(),
            rule_id: "r".into(),
            group_key: "[]".into(),
            tenant: "t".into(),
            event_time: 1_060,
            trigger_seq: 60,
            event_ids: vec![55],
        };
        let stored = j.commit_detection("detector", 0, 100, "{}", &[alert], |a, _| a.id.clone()).unwrap();
        let alert_seq = stored[0].seq;
        let outputs = ["alerts>stdout", "alerts>webhook:siem.example"];
        let r = readers(&["file:a", "detector"], &outputs);
        // One output delivered it, one never ran: the alert's two events stay, the rest go.
        j.consumer(outputs[0], 0).unwrap();
        j.commit_offset(outputs[0], 0, alert_seq, None).unwrap();
        assert_eq!(j.prune_passed(i64::MAX, &r, None).unwrap().deleted, 98);
        assert_eq!(seqs(&j), vec![55, 60]);
        // Once every output has delivered it, they go too.
        j.consumer(outputs[1], 0).unwrap();
        j.commit_offset(outputs[1], 0, alert_seq, None).unwrap();
        assert_eq!(j.prune_passed(i64::MAX, &r, None).unwrap().deleted, 2);
        assert!(seqs(&j).is_empty());
    }

    fn only_events_older_than_the_cutoff_go(kind: Kind) {
        let j = journal(kind, &[("file:a", 100)]);
        // Created at 1_001..=1_100: before 1_031 means ids 1..=30.
        assert_eq!(j.prune_passed(1_031, &readers(&["file:a"], &[]), None).unwrap().deleted, 30);
        assert_eq!(seqs(&j).first(), Some(&31));
    }

    crate::on_every_backend!(
        seq_is_never_reused_after_the_newest_events_are_pruned,
        retention_stops_at_the_slowest_sink_and_at_the_detector,
        a_configured_reader_that_never_ran_holds_everything,
        retention_waits_for_the_search_indexer,
        an_alerts_events_stay_until_every_alert_output_has_delivered_it,
        only_events_older_than_the_cutoff_go,
    );
}
