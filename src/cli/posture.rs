//! `tines-audit posture`: a tenant's security posture rebuilt from the journal (and, with
//! `--live`, compared with the tenant), and `posture annotate`, which records why an entry
//! exists and who asked for it.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::search::JournalArgs;
use crate::config::ConfigError;
use crate::journal::{Access, Journal, PostureNote};
use crate::posture::{self, Kind};
use crate::timeutil::{format_rfc3339, now_secs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PostureFormat {
    /// Grouped lines for a terminal.
    Table,
    /// One JSON document: {"posture": ..., "drift": ..., "live": ...}.
    Json,
    /// Markdown tables, for a document or a ticket.
    Md,
}

/// A kind of entry, as `annotate --kind` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KindArg {
    /// A tenant owner or admin (its id: the e-mail address, or user:ID).
    Owner,
    /// A user with tenant permissions (its id: the e-mail address, or user:ID).
    Permission,
    /// An IP access control rule (its id: the IP or CIDR).
    IpRule,
    /// An action egress control allowlist entry (its id: the FQDN or IP).
    EgressRule,
    /// An API key (its id: the key's name).
    ApiKey,
    /// A tenant-wide setting (its id: sso, session_timeout, login_notice, ...).
    Setting,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Owner => Kind::Owner,
            KindArg::Permission => Kind::Permission,
            KindArg::IpRule => Kind::IpRule,
            KindArg::EgressRule => Kind::EgressRule,
            KindArg::ApiKey => Kind::ApiKey,
            KindArg::Setting => Kind::Setting,
        }
    }
}

/// `posture` shows; `posture annotate` writes a note (the help text is on `Command::Posture`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PostureArgs {
    #[command(subcommand)]
    pub action: Option<PostureAction>,
    #[command(flatten)]
    pub show: ShowArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub journal: JournalArgs,
    /// The tenant, as the journal names it (`tines-audit state show`); optional when the
    /// journal holds one tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The state at this past moment: RFC 3339, a date (2024-05-01) or an age such as 30d.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[arg(long, value_enum, default_value_t = PostureFormat::Table)]
    pub format: PostureFormat,
    /// Every entry's full history of changes and notes.
    #[arg(long)]
    pub history: bool,
    /// Also read what the tenant holds now (its admin API, with the tenant's key from
    /// --config or $TINES_API_KEY) and report drift both ways: entries in the tenant with
    /// no creation in the history ("undocumented") and entries the history has in force
    /// that the tenant lacks. A key that may not read an admin list is a note, not a failure.
    #[arg(long)]
    pub live: bool,
    /// With --live and no --config: read the API key from this file instead of $TINES_API_KEY.
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PostureAction {
    /// Record why an entry exists and who asked for it. Kept in the journal with the
    /// history: a later note on the same entry supersedes, never erases.
    Annotate(AnnotateArgs),
}

#[derive(Debug, Args)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub journal: JournalArgs,
    /// The tenant, as the journal names it.
    #[arg(long)]
    pub tenant: String,
    /// The kind of entry.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The entry as `posture` shows it: an IP or CIDR, an FQDN, an e-mail address, a key's name.
    #[arg(long)]
    pub id: String,
    /// Why it exists.
    #[arg(long)]
    pub why: String,
    /// Who asked for it.
    #[arg(long)]
    pub requested_by: String,
}

pub async fn posture(args: PostureArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(PostureAction::Annotate(a)) => annotate(a).await,
        None => show(args.show).await,
    }
}

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    ConfigError::Invalid(msg.into()).into()
}

/// The tenant asked for, or the journal's only one.
async fn tenant_of(journal: &Journal, asked: Option<&str>) -> anyhow::Result<String> {
    if let Some(t) = asked {
        return Ok(t.to_string());
    }
    let tenants = journal.call(|j| j.tenants()).await?;
    match tenants.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(invalid("the journal holds no tenant yet: collect one first (`tines-audit collect`)")),
        many => {
            Err(invalid(format!("the journal holds several tenants ({}): pick one with --tenant", many.join(", "))))
        }
    }
}

async fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let now = now_secs();
    let at = match &a.at {
        Some(s) => Some(crate::query::filter::parse_point(s, now).map_err(|e| invalid(format!("--at: {e}")))?),
        None => None,
    };
    if at.is_some_and(|t| t > now + 60) {
        return Err(invalid("--at is in the future: the posture is known up to now"));
    }
    if a.live && at.is_some_and(|t| t < now - 60) {
        return Err(invalid(
            "--live compares the tenant as it is now with the history up to now; leave out --at (or use --at now)",
        ));
    }
    let (journal, _) = super::search::open(&a.journal).await?;
    let tenant = tenant_of(&journal, a.tenant.as_deref()).await?;
    let client = if a.live { Some(live_client(&a, &tenant)?) } else { None };
    let opts = posture::Options { at, history: a.history, changes_since: None };
    let t = tenant.clone();
    let p = journal.call(move |j| Ok(posture::compute(j, &t, &opts))).await??;
    let (live, drift) = match &client {
        Some(c) => {
            let live = posture::live::fetch(c).await;
            let d = posture::drift(&p, &live);
            (Some(live), Some(d))
        }
        None => (None, None),
    };
    let text = match a.format {
        PostureFormat::Table => posture::render::table(&p, drift.as_ref(), a.history),
        PostureFormat::Md => posture::render::markdown(&p, drift.as_ref(), a.history),
        PostureFormat::Json => posture::render::json(&p, drift.as_ref(), live.as_ref()) + "\n",
    };
    match std::io::stdout().lock().write_all(text.as_bytes()).and_then(|()| std::io::stdout().flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The collector's client for the tenant, from the config (the tenant named as the journal
/// names it) or, without one, from --tenant as a domain and $TINES_API_KEY.
fn live_client(a: &ShowArgs, tenant: &str) -> anyhow::Result<crate::source::tines::client::TinesClient> {
    let source = super::SourceArgs {
        config: a.journal.config.clone(),
        data_dir: a.journal.data_dir.clone(),
        journal_url: a.journal.journal_url.clone(),
        tenant: Some(tenant.to_string()),
        api_key_file: a.api_key_file.clone(),
        ..Default::default()
    };
    let settings = super::load_settings(&source, None).map_err(|e| {
        e.context(format!(
            "--live needs {tenant}'s address and API key: give --config with the tenant, or --tenant DOMAIN with $TINES_API_KEY"
        ))
    })?;
    let t = settings
        .tenants
        .iter()
        .find(|t| t.name == tenant)
        .or(settings.tenants.first())
        .ok_or_else(|| invalid(format!("--live: no tenant {tenant} in the configuration")))?;
    Ok(crate::service::Tenant::new(t.clone(), &settings)?.client)
}

async fn annotate(a: AnnotateArgs) -> anyhow::Result<ExitCode> {
    let (why, by) = (a.why.trim().to_string(), a.requested_by.trim().to_string());
    if why.is_empty() || by.is_empty() {
        return Err(invalid("--why and --requested-by must say something: the note is the record of why"));
    }
    if a.id.trim().is_empty() {
        return Err(invalid("--id is empty: give the entry as `tines-audit posture` shows it"));
    }
    let config = a.journal.config.as_deref().map(super::reader::load).transpose()?;
    let at = super::reader::location(&a.journal.journal_url, a.journal.data_dir.as_deref(), config)?;
    // Shared: written beside a running collector, never waiting for its lock.
    let journal = super::open_at(&at, Access::Shared).await?;
    let kind = Kind::from(a.kind);
    let tenant = a.tenant.clone();
    let t = tenant.clone();
    let current = journal.call(move |j| Ok(posture::compute(j, &t, &posture::Options::default()))).await??;
    let id = a.id.trim().to_string();
    let entry = current.entries_of(kind).find(|e| e.named(&id));
    let note = PostureNote {
        seq: 0,
        tenant: tenant.clone(),
        kind: kind.as_str().to_string(),
        entry_id: entry.map_or(id.clone(), |e| e.id.clone()),
        why,
        requested_by: by,
        noted_by: std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()),
        noted_at: now_secs(),
    };
    let n = note.clone();
    let stored = journal.call(move |j| j.add_posture_note(&n)).await?;
    let earlier = entry.map_or(0, |e| e.notes.len());
    println!(
        "noted {kind} {} of {tenant}: {:?}, requested by {} ({}, note {}{})",
        stored.entry_id,
        stored.why,
        stored.requested_by,
        format_rfc3339(stored.noted_at),
        stored.seq,
        if earlier > 0 {
            format!("; supersedes {earlier} earlier note(s), which stay in the history")
        } else {
            String::new()
        }
    );
    if entry.is_none() {
        eprintln!(
            "warning: no {kind} {id} is in force in {tenant}'s history now; the note is kept and listed under notes on entries not in force (check the id with `tines-audit posture --tenant {tenant}`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
