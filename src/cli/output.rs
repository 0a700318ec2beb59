//! What the read-only subcommands print: tables for people, JSON for scripts.

use std::io::Write;
use std::process::ExitCode;

use super::OperationsArgs;
use crate::catalog;
use crate::journal::Journal;
use crate::timeutil::{format_rfc3339, now_secs};

pub fn operations(args: &OperationsArgs) -> anyhow::Result<ExitCode> {
    match write_operations(args) {
        Err(e) if super::stdout_closed(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn write_operations(args: &OperationsArgs) -> anyhow::Result<ExitCode> {
    let needle = args.filter.as_deref().unwrap_or("").to_ascii_lowercase();
    let ops: Vec<_> = catalog::operations().iter().filter(|o| o.name.to_ascii_lowercase().contains(&needle)).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let v: Vec<_> = ops.iter().map(|o| serde_json::json!({"name": o.name, "description": o.description})).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = ops.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in &ops {
        writeln!(out, "{:width$}  {}", o.name, o.description)?;
    }
    out.flush()?;
    if ops.is_empty() {
        let hint = catalog::suggest(&needle, 3);
        if hint.is_empty() {
            eprintln!("no operation name contains {needle:?}");
        } else {
            eprintln!("no operation name contains {needle:?}; close: {}", hint.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub async fn state_show(journal: &Journal, json: bool) -> anyhow::Result<()> {
    let (progress, consumers, max_seq, total, max_alert) = journal
        .call(|j| Ok((j.all_progress()?, j.consumers()?, j.max_seq()?, j.count_events(None)?, j.max_alert_seq()?)))
        .await?;
    // Alert outputs read the alerts table, every other consumer the events.
    let backlog = |name: &str, position: i64| {
        if name.starts_with("alerts>") { max_alert - position } else { max_seq - position }
    };
    let now = now_secs();
    // What collection could not store, and what reconciliation found in the last 30 days.
    let (quarantined, finds) =
        journal.call(move |j| Ok((j.quarantine_counts()?, j.reconcile_finds(now - 30 * 86_400, now + 1)?))).await?;
    // Who runs which job, when instances share the journal.
    let leases = journal.call(|j| j.leases()).await?;
    if json {
        let v = serde_json::json!({
            "events": total,
            "max_seq": max_seq,
            "quarantined": quarantined.iter().map(|(t, n)| serde_json::json!({"tenant": t, "records": n})).collect::<Vec<_>>(),
            "reconcile_finds": finds,
            "leases": leases.leases.iter().map(|l| serde_json::json!({
                "job": l.job, "holder": l.holder, "token": l.token,
                "expires_in_ms": l.expires_at_ms - leases.now_ms,
                "held": l.expires_at_ms > leases.now_ms,
            })).collect::<Vec<_>>(),
            "jobs": progress,
            "consumers": consumers.iter().map(|(n, o)| serde_json::json!({
                "name": n, "offset": o.position, "backlog": backlog(n, o.position)
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("journal: {} events in {}", total, journal.place());
    if progress.is_empty() {
        println!("no tenant has been collected yet");
    }
    for p in &progress {
        let status = match (p.range_end, p.finished_at) {
            (None, _) => format!("lag {}", age(now - p.position)),
            (Some(_), Some(_)) => "finished".to_string(),
            (Some(end), None) => format!("{} to go", age(end - p.position)),
        };
        println!(
            "tenant {:<24} {:<58} position {}  ({status}; updated {} ago){}",
            p.tenant,
            p.job,
            format_rfc3339(p.position),
            age(now - p.updated_at),
            if p.filter.is_empty() { String::new() } else { format!(" filter {}", p.filter) }
        );
    }
    for (name, o) in &consumers {
        println!("sink   {:<24} offset {:>10}  backlog {}", name, o.position, backlog(name, o.position));
    }
    if journal.shared() {
        println!("instances seen in the last minute: {}", leases.live_instances);
    }
    for l in &leases.leases {
        let left = l.expires_at_ms - leases.now_ms;
        let state = if left > 0 { format!("expires in {:.1}s", left as f64 / 1000.0) } else { "free".to_string() };
        println!("lease  {:<32} holder {:<32} token {:>4}  {state}", l.job, l.holder, l.token);
    }
    for (tenant, n) in &quarantined {
        println!(
            "tenant {tenant:<24} {n} records quarantined: the API sent them without an id or a usable time (kept as sent; see the quarantine table)"
        );
    }
    for f in &finds {
        println!(
            "tenant {:<24} reconciliation found {} late events in {}..{} (up to {} after their time)",
            f.tenant,
            f.found,
            format_rfc3339(f.slice_start),
            format_rfc3339(f.slice_end),
            age(f.max_late_secs)
        );
    }
    Ok(())
}
