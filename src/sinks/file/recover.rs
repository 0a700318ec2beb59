//! Start (and restart) of a file sink: bring the target in line with its
//! record, whatever step of a delivery or rotation a kill interrupted and
//! however far back the journal's committed state is.
//!
//! The record is the sink's truth; the journal's state (owner, offset) only
//! says whose target it is and how far the journal believes it got:
//! - the owner matches: cut the active file back to the recorded length (the
//!   rest was never acknowledged), finish a rotation whose rename happened
//!   but whose record was not written, and skip on redelivery what the files
//!   already hold;
//! - nothing on disk: start a new record;
//! - anything else (data this consumer has no record of, another owner, a
//!   vanished target): refuse and change nothing, unless `adopt_existing`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};

use super::{Committed, Inner, Record, Stop};

/// What the journal committed for this sink.
enum Journaled {
    /// Nothing: a new consumer (or a journal that lost its record of this one).
    Nothing,
    Owner {
        owner: String,
        at: i64,
    },
    /// A state from before the record existed: the active file's committed length and seq range.
    Legacy {
        len: u64,
        first_seq: Option<i64>,
        last_seq: Option<i64>,
    },
}

fn journaled(state: Option<&str>) -> Result<Journaled, String> {
    let Some(s) = state else { return Ok(Journaled::Nothing) };
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
    match v.get("v").and_then(|v| v.as_u64()) {
        Some(2) => {
            let c: Committed = serde_json::from_value(v).map_err(|e| e.to_string())?;
            Ok(Journaled::Owner { owner: c.owner, at: c.at })
        }
        Some(1) => {
            let field = |k: &str| v.get(k).and_then(|x| x.as_i64());
            Ok(Journaled::Legacy {
                len: v.get("len").and_then(|x| x.as_u64()).ok_or("no len")?,
                first_seq: field("first_seq"),
                last_seq: field("last_seq"),
            })
        }
        _ => Err("unknown version".into()),
    }
}

fn new_owner() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// What exists before recovery, so that a refusal can leave it exactly so.
struct Created {
    dir: bool,
    lock: bool,
}

impl Inner {
    pub(super) fn recover(&mut self, state: Option<&str>) -> Result<(), Stop> {
        self.record = None;
        self.handed_out = false;
        self.announce = false;
        let journaled = journaled(state).map_err(|e| {
            Stop::Broken(format!(
                "file sink {}: unreadable committed state {state:?}: {e}",
                self.paths.active.display()
            ))
        })?;
        let created = self.lock()?;
        let result = self.recover_locked(journaled);
        if matches!(result, Err(Stop::Refused(_))) {
            self.unlock(created);
        }
        result
    }

    fn recover_locked(&mut self, journaled: Journaled) -> Result<(), Stop> {
        // A temp record left by a kill is never read: the next record is written over it.
        let record = match std::fs::read(&self.paths.record) {
            Ok(bytes) => Some(serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let active = match std::fs::metadata(&self.paths.active) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        match journaled {
            Journaled::Owner { owner, at } => match record {
                Some(Ok(r)) if r.owner == owner => self.resume(r, at, active),
                record => self.take_over(Some((owner, at)), record, active),
            },
            Journaled::Legacy { len, first_seq, last_seq } => self.upgrade(len, first_seq, last_seq, active),
            Journaled::Nothing => self.take_over(None, record, active),
        }
    }

    /// Takes the target's lock (a sink or process writing it holds it); says what it had to create.
    fn lock(&mut self) -> Result<Created, Stop> {
        let dir = self.paths.dir().to_path_buf();
        let mut created = Created { dir: !dir.exists(), lock: false };
        if self.lock.is_some() {
            return Ok(created);
        }
        std::fs::create_dir_all(&dir)?;
        created.lock = !self.paths.lock.exists();
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&self.paths.lock)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Stop::Refused(format!(
                    "{} is being written by another sink or process (it holds {}): give each sink its own file",
                    self.paths.active.display(),
                    self.paths.lock.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        self.lock = Some(f);
        Ok(created)
    }

    /// Leaves no trace of a refused start.
    fn unlock(&mut self, created: Created) {
        self.lock = None;
        if created.lock {
            let _ = std::fs::remove_file(&self.paths.lock);
        }
        if created.dir {
            let _ = std::fs::remove_dir(self.paths.dir());
        }
    }

    /// The target is this consumer's: line the files up with the record.
    fn resume(&mut self, mut r: Record, at: i64, active: Option<u64>) -> Result<(), Stop> {
        let path = self.paths.active.display().to_string();
        if at > r.delivered {
            return Err(Stop::Broken(format!(
                "the journal delivered events up to seq {at} to {path}, but its record {} ends at seq {}: the files were restored from an older copy or changed outside tines-audit. Restore them, or move {path} with its segments and record aside and set adopt_existing = true to continue in a new file after seq {at}",
                self.paths.record.display(),
                r.delivered
            )));
        }
        let segment = r.first_seq.zip(r.last_seq).map(|(f, l)| self.paths.segment(f, l));
        match active {
            None if r.len == 0 => {}
            None => {
                // A rotation renamed the file but was killed before writing the record: finish it.
                let renamed = segment.as_ref().and_then(|s| std::fs::metadata(s).ok()).map(|m| m.len());
                if renamed != Some(r.len) {
                    return Err(Stop::Broken(format!(
                        "{path} is missing although its record {} says it holds {} bytes{}: it was moved or deleted outside tines-audit. Put it back, or move the record aside and set adopt_existing = true to continue in a new file",
                        self.paths.record.display(),
                        r.len,
                        segment.map(|s| format!(" (and {} is not it)", s.display())).unwrap_or_default()
                    )));
                }
                r = r.rotated();
                r.confirmed = true;
                self.store(&r)?;
            }
            Some(len) => {
                if let Some(s) = segment.filter(|s| s.exists()) {
                    return Err(Stop::Broken(format!(
                        "both {path} and its segment {} exist, which tines-audit never leaves: one was copied or changed outside tines-audit. Move the one that does not belong aside",
                        s.display()
                    )));
                }
                if len < r.len {
                    return Err(Stop::Broken(format!(
                        "{path} is shorter ({len} bytes) than its record {} says ({} bytes): it was cut outside tines-audit. Restore it, or move it with its record aside and set adopt_existing = true to continue in a new file",
                        self.paths.record.display(),
                        r.len
                    )));
                }
                if len > r.len {
                    self.cut(r.len, len)?;
                }
                if r.len > r.kept && !self.ends_with_newline(r.len)? {
                    return Err(Stop::Broken(format!(
                        "{path} does not end with a whole line at the length its record {} gives ({} bytes): it was changed outside tines-audit",
                        self.paths.record.display(),
                        r.len
                    )));
                }
            }
        }
        r.confirmed = true;
        self.record = Some(r);
        Ok(())
    }

    /// The target is not (or no longer) known to be this consumer's: start on it
    /// if it holds nothing, adopt it if told to, refuse otherwise.
    fn take_over(
        &mut self,
        journaled: Option<(String, i64)>,
        record: Option<Result<Record, String>>,
        active: Option<u64>,
    ) -> Result<(), Stop> {
        let on_disk = active.unwrap_or(0);
        // This sink's own start whose first delivery the journal never recorded:
        // past what it adopted, everything it wrote is provably uncommitted.
        let keep = match (&journaled, &record) {
            (None, Some(Ok(r))) if !r.confirmed && r.kept <= on_disk => r.kept,
            _ => on_disk,
        };
        let segments = self.paths.segments()?;
        let at = journaled.as_ref().map_or(0, |(_, at)| *at);
        let holds = keep > 0 || !segments.is_empty();
        let vanished = journaled.is_some() && record.is_none() && at > 0;
        let path = self.paths.active.display().to_string();
        if (holds || vanished) && !self.adopt {
            let what = match (keep, segments.len()) {
                (0, n) => format!("{n} rotated segment(s) beside it"),
                (b, 0) => format!("{b} bytes"),
                (b, n) => format!("{b} bytes and {n} rotated segment(s) beside it"),
            };
            let why = match (&journaled, &record) {
                (_, Some(Err(e))) => format!("an unreadable record {} ({e})", self.paths.record.display()),
                (Some(_), None) if holds => format!(
                    "no record of what it holds ({} is missing)",
                    self.paths.record.display()
                ),
                (Some(_), None) => {
                    return Err(Stop::Refused(format!(
                        "the journal delivered events up to seq {at} to {path}, but the file and its record {} are gone (moved, deleted, or a relative path read from another directory); nothing was written. Restore them, or set adopt_existing = true to start a new file there and continue after seq {at}",
                        self.paths.record.display()
                    )));
                }
                (Some(_), Some(Ok(_))) => "data written by another journal or sink (its record names another owner)".into(),
                (None, _) => "data this journal has no record of writing (another data directory's archive, or one whose journal was lost)".into(),
            };
            return Err(Stop::Refused(format!(
                "{path} already holds {what}: {why}; nothing was changed. Point the sink at a new file, or keep what is there and append after it with adopt_existing = true on the sink (--sink file+adopt:{path})"
            )));
        }
        if holds {
            self.check_adoptable(keep, &segments, at)?;
        }
        let (owner, confirmed) = match journaled {
            Some((owner, _)) => (owner, true),
            None => (new_owner(), false),
        };
        if keep < on_disk {
            self.cut(keep, on_disk)?;
        }
        let r = Record::new(owner, confirmed, keep, at);
        self.store(&r)?;
        if holds || vanished {
            tracing::warn!(
                path = %self.paths.active.display(),
                kept_bytes = keep,
                kept_segments = segments.len(),
                "file sink: adopted the target as it is (adopt_existing); appending events after seq {at}"
            );
        }
        self.record = Some(r);
        self.announce = true;
        Ok(())
    }

    /// Adopting keeps everything as it is; it must still be possible to append and rotate without harm.
    fn check_adoptable(&self, keep: u64, segments: &[(i64, i64)], at: i64) -> Result<(), Stop> {
        let path = self.paths.active.display();
        if keep > 0 && !self.ends_with_newline(keep)? {
            return Err(Stop::Refused(format!(
                "{path} ends in a partial line: appending would glue the next event to it; end it with a newline (or remove the partial line) before adopting it"
            )));
        }
        if let Some((f, l)) = segments.iter().find(|(_, l)| *l > at) {
            return Err(Stop::Refused(format!(
                "cannot adopt {path}: its segment {} holds seqs this journal has yet to write (after {at}), so a later rotation could need its name; move the segments aside first",
                self.paths.segment(*f, *l).display()
            )));
        }
        Ok(())
    }

    /// Upgrades a state committed before the record existed: then the journal's
    /// state was exact (the active file's committed length and seq range).
    fn upgrade(&mut self, len: u64, first: Option<i64>, last: Option<i64>, active: Option<u64>) -> Result<(), Stop> {
        let path = self.paths.active.display().to_string();
        let segment = first.zip(last).map(|(f, l)| self.paths.segment(f, l)).filter(|s| s.exists());
        let owner = new_owner();
        let delivered = last.unwrap_or(0);
        let r = match active {
            None if len == 0 || segment.is_some() => Record::new(owner, true, 0, delivered),
            None => {
                return Err(Stop::Broken(format!(
                    "{path} is missing although {len} bytes were committed to it: it was moved or deleted outside tines-audit"
                )));
            }
            Some(_) if len > 0 && segment.is_some() => {
                return Err(Stop::Broken(format!(
                    "both {path} and its segment {} exist (an older tines-audit left this after two crashes around a rotation): compare them, keep the complete one, and move the other aside",
                    segment.map(|s| s.display().to_string()).unwrap_or_default()
                )));
            }
            Some(on_disk) if on_disk < len => {
                return Err(Stop::Broken(format!(
                    "{path} is shorter ({on_disk} bytes) than committed ({len} bytes): it was modified outside tines-audit"
                )));
            }
            Some(on_disk) => {
                if on_disk > len {
                    self.cut(len, on_disk)?;
                }
                Record { first_seq: first, last_seq: last, kept: 0, ..Record::new(owner, true, len, delivered) }
            }
        };
        self.store(&r)?;
        tracing::info!(path = %path, "file sink: now keeps a record of what it wrote beside the file");
        self.record = Some(r);
        self.announce = true;
        Ok(())
    }

    /// Cuts what was written after the last record: never acknowledged, so the runner delivers it again.
    fn cut(&self, to: u64, from: u64) -> Result<(), Stop> {
        let f = OpenOptions::new().write(true).open(&self.paths.active)?;
        f.set_len(to)?;
        f.sync_all()?;
        self.step("cut")?;
        tracing::info!(
            path = %self.paths.active.display(),
            dropped_bytes = from - to,
            "file sink: cut a tail written after the last record (it is delivered again)"
        );
        Ok(())
    }

    fn ends_with_newline(&self, len: u64) -> std::io::Result<bool> {
        let mut f = File::open(&self.paths.active)?;
        f.seek(SeekFrom::Start(len - 1))?;
        let mut b = [0u8; 1];
        f.read_exact(&mut b)?;
        Ok(b[0] == b'\n')
    }
}
