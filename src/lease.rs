//! Several instances on one journal: each job (a tenant's collection, a sink, the
//! detector, the search indexer) runs on one instance at a time, under a lease.
//!
//! A manager task per instance, every third of the lease TTL:
//! 1. records that this instance is alive, and reads every lease (one query);
//! 2. renews the leases it holds (one statement); a lease it failed to renew is
//!    gone at once from what it holds, and the job's task is told to stop;
//! 3. takes free jobs (never taken, released, or expired) up to its fair share,
//!    `ceil(jobs / live instances)`, and gives up what it holds beyond that share,
//!    so a new instance gets work and a dead one's work moves within about one TTL.
//!
//! Safety does not rest on any of this timing: every commit of a job carries its
//! lease's fencing token and is refused in the same transaction once another instance
//! has taken the job over (see `journal::Backend::commit_window`). A paused instance
//! that wakes up after losing its leases can therefore write nothing.
//!
//! On SQLite (one process, the directory lock) the gate holds every job from the start.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::journal::{Fence, Journal};

/// A lease this instance holds, and until when (by this machine's monotonic clock) it
/// surely still does: the start of the last renewal plus the TTL, less a sixth for safety.
#[derive(Debug, Clone)]
struct Held {
    fence: Fence,
    valid_until: Arc<Mutex<Instant>>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.fence == other.fence
    }
}

/// Which jobs this instance may run, and under which fence.
#[derive(Clone)]
pub struct Gate {
    held: Option<watch::Receiver<BTreeMap<String, Held>>>,
}

impl Gate {
    /// Every job is this process's (a journal no other process writes).
    pub fn everything() -> Gate {
        Gate { held: None }
    }

    /// Starts the lease manager for `jobs`; it runs until `stop` turns true, then gives
    /// every lease up so the other instances take the jobs at once.
    pub fn start(journal: Journal, jobs: Vec<String>, ttl: Duration, stop: watch::Receiver<bool>) -> Gate {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let manager = Manager { journal, holder: holder_id(), jobs, ttl, held: tx };
        tokio::spawn(manager.run(stop));
        Gate { held: Some(rx) }
    }

    /// Waits until this instance holds `job`; `None` once `stop` turns true.
    async fn wait_held(&self, job: &str, stop: &mut watch::Receiver<bool>) -> Option<Option<Held>> {
        let Some(held) = &self.held else { return Some(None) };
        let mut held = held.clone();
        tokio::select! {
            r = held.wait_for(|m| m.contains_key(job)) => match r {
                Ok(m) => Some(m.get(job).cloned()),
                Err(_) => None,
            },
            _ = crate::service::stopped(stop) => None,
        }
    }

    /// Resolves once `fence` is no longer this instance's lease on its job.
    async fn lost(&self, lease: &Option<Held>) {
        let (Some(held), Some(h)) = (&self.held, lease) else { return std::future::pending().await };
        let mut held = held.clone();
        let _ = held.wait_for(|m| m.get(&h.fence.job) != Some(h)).await;
    }
}

/// `host:pid:random`: unique per process, so a restarted instance is a new holder.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
    format!("{}:{}:{:04x}", host.unwrap_or_else(|_| "host".into()), std::process::id(), fastrand::u16(..))
}

/// Runs `make(journal, stop)` whenever this instance holds `job`: with a journal handle
/// fenced by the lease, and a `stop` that turns true when the lease is lost or given up
/// (the job then finishes what it is doing) or when the instance shuts down.
pub async fn while_held<F, Fut>(gate: Gate, job: String, journal: Journal, mut stop: watch::Receiver<bool>, mut make: F)
where
    F: FnMut(Journal, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let Some(lease) = gate.wait_held(&job, &mut stop).await else { return };
        let fenced = match &lease {
            Some(h) => {
                tracing::info!(job = %job, token = h.fence.token, "took the job's lease");
                journal.with_lease(h.fence.clone(), h.valid_until.clone())
            }
            None => journal.clone(),
        };
        let (tx, rx) = watch::channel(false);
        let run = make(fenced, rx);
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => return,
            _ = gate.lost(&lease) => {
                tracing::warn!(job = %job, "this instance no longer holds the job's lease; stopping it here");
                let _ = tx.send(true);
                // A job that does not stop in time is dropped; a commit it still makes is refused.
                let _ = tokio::time::timeout(Duration::from_secs(30), &mut run).await;
            }
            _ = crate::service::stopped(&mut stop) => {
                let _ = tx.send(true);
                run.await;
                return;
            }
        }
    }
}

struct Manager {
    journal: Journal,
    holder: String,
    jobs: Vec<String>,
    ttl: Duration,
    held: watch::Sender<BTreeMap<String, Held>>,
}

impl Manager {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let ttl_ms = self.ttl.as_millis() as i64;
        let every = self.ttl / 3;
        tracing::info!(holder = %self.holder, jobs = self.jobs.len(), ttl_s = self.ttl.as_secs(), "sharing the journal's jobs with other instances");
        let mut last_renewed = tokio::time::Instant::now();
        let mut first = true;
        loop {
            match self.round(ttl_ms, first).await {
                Ok(()) => last_renewed = tokio::time::Instant::now(),
                Err(e) => {
                    tracing::warn!("leases: could not reach the journal, will try again: {e}");
                    // Past the TTL without a renewal the leases may have moved: stop every job.
                    if last_renewed.elapsed() >= self.ttl {
                        self.held.send_modify(BTreeMap::clear);
                    }
                }
            }
            first = false;
            self.publish_metrics();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = crate::service::stopped(&mut stop) => break,
            }
        }
        let mine: Vec<Fence> = self.held.borrow().values().map(|h| h.fence.clone()).collect();
        self.held.send_modify(BTreeMap::clear);
        let _ = self
            .journal
            .call(move |j| {
                for f in &mine {
                    j.release_lease(f)?;
                }
                Ok(())
            })
            .await;
    }

    /// One round (see the module documentation). On the first round an instance only says
    /// it is alive, so instances that start together see each other before taking shares.
    async fn round(&self, ttl_ms: i64, first: bool) -> Result<(), crate::journal::JournalError> {
        let started = Instant::now();
        let valid_until = started + self.ttl - self.ttl / 6;
        let holder = self.holder.clone();
        let view = self.journal.call(move |j| j.lease_round(&holder, ttl_ms)).await?;
        let held: Vec<Held> = self.held.borrow().values().cloned().collect();
        let still = if held.is_empty() {
            Vec::new()
        } else {
            let h: Vec<Fence> = held.iter().map(|h| h.fence.clone()).collect();
            self.journal.call(move |j| j.renew_leases(&h, ttl_ms)).await?
        };
        let mut mine: BTreeMap<String, Held> = BTreeMap::new();
        for h in held {
            if still.contains(&h.fence) {
                *h.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = valid_until;
                mine.insert(h.fence.job.clone(), h);
            } else {
                tracing::warn!(job = %h.fence.job, token = h.fence.token, "lost the job's lease: another instance has taken it over");
            }
        }
        if first {
            self.held.send_replace(mine);
            return Ok(());
        }
        let share = self.jobs.len().div_ceil(view.live_instances.max(1));
        let free: Vec<&String> = self
            .jobs
            .iter()
            .filter(|job| !mine.contains_key(*job))
            .filter(|job| view.leases.iter().find(|l| &l.job == *job).is_none_or(|l| l.expires_at_ms < view.now_ms))
            .collect();
        // Start at a different place each round so instances do not all reach for the same job.
        let offset = if free.is_empty() { 0 } else { fastrand::usize(..free.len()) };
        for job in free.iter().cycle().skip(offset).take(free.len()) {
            if mine.len() >= share {
                break;
            }
            let (job, holder) = ((*job).clone(), self.holder.clone());
            if let Some(f) = self.journal.call(move |j| j.take_lease(&job, &holder, ttl_ms)).await? {
                let h = Held { valid_until: Arc::new(Mutex::new(valid_until)), fence: f };
                mine.insert(h.fence.job.clone(), h);
            }
        }
        // Beyond the share: give the newest-named extras up so another instance takes them.
        let mut give_up = Vec::new();
        while mine.len() > share {
            let Some(job) = mine.keys().next_back().cloned() else { break };
            give_up.push(mine.remove(&job).expect("just seen").fence);
        }
        self.held.send_replace(mine);
        if !give_up.is_empty() {
            tracing::info!(jobs = ?give_up.iter().map(|f| &f.job).collect::<Vec<_>>(), share, "giving jobs up to other instances");
            self.journal
                .call(move |j| {
                    for f in &give_up {
                        j.release_lease(f)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    fn publish_metrics(&self) {
        let held = self.held.borrow();
        let m = crate::metrics::metrics();
        m.leases_held.set(held.len() as i64);
        for job in &self.jobs {
            let label = crate::metrics::LeaseLabel { job: job.clone() };
            m.lease_token.get_or_create(&label).set(held.get(job).map_or(0, |h| h.fence.token));
        }
    }
}
