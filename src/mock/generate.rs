//! Synthetic audit events: which operation, who, from where, when, and the
//! polymorphic `inputs` each operation carries, all derived from the seed.

use crate::catalog::{self, Operation};

use super::render::{push_bool, push_i64, push_u64, quoted};
use super::rng::{SplitMix64, mix};
use super::tenant::{EMAIL_DOMAIN, Tenant};

/// One audit event as stored: everything else in the record (`inputs` above
/// all) is recomputed from `id` and the seed when the record is rendered,
/// which keeps a million events in ~32 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub created_at: i64,
    pub id: u64,
    pub ip: u32,
    pub op: u16,
    pub user: u8,
    pub agent: u8,
    pub outputs: bool,
    /// A scripted scenario event with fixed `inputs` (see `scenario`); 0 for generated ones.
    pub script: u8,
    /// How the record is rendered when it is not an ordinary one (see [`Odd`]).
    pub odd: Odd,
}

/// Records the real API has been seen to send that a collector must not choke on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Odd {
    #[default]
    None,
    /// A system-made event: `user_*` and `request_*` fields are all `null`.
    NullFields,
    /// The record has no `id` field at all.
    NoId,
}

impl Event {
    pub(crate) fn key(&self) -> (i64, u64) {
        (self.created_at, self.id)
    }
}

/// Where the first history ids start; real tenants' ids are in the millions.
pub(crate) const FIRST_ID: u64 = 3_000_000;

const HISTORY_TAG: u64 = 0x4849_5354_4F52_5931;
const INPUTS_TAG: u64 = 0x494E_5055_5453_0001;
pub(crate) const LIVE_TAG: u64 = 0x4C49_5645_0000_0001;

/// The `inputs` envelope an operation uses. The named ones follow records
/// seen in the wild; everything else gets one of the generic envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Null,
    Empty,
    CredentialIdFlat,
    GlobalResource,
    ActionsOptions,
    FormField,
    StoryItemsCreation,
    StoryItemsMovement,
    StoryItemsDestruction,
    TokenCreation,
    TokenDeletion,
    CredentialDestruction,
    CredentialBulkDestruction,
    Invitation,
    UserEdit,
    UserDeletion,
    TeamRole,
    Analytics,
    Schedule,
    StoryArchive,
    ActionDescription,
    StoryDescription,
    ActionRun,
    CredentialSave,
    SamlSet,
    ActionsDisabled,
    Team,
    Generic(u8),
}

const GENERIC_SHAPES: u8 = 6;

static NAMED_SHAPES: &[(&str, Shape)] = &[
    ("Login", Shape::Null),
    ("CustomCertificateAuthoritySet", Shape::Empty),
    ("UserCredentialDestruction", Shape::CredentialIdFlat),
    ("GlobalResourceCreation", Shape::GlobalResource),
    ("ActionsOptionsChange", Shape::ActionsOptions),
    ("FormFieldUpdate", Shape::FormField),
    ("StoryItemsCreation", Shape::StoryItemsCreation),
    ("StoryItemsMovement", Shape::StoryItemsMovement),
    ("StoryItemsDestruction", Shape::StoryItemsDestruction),
    ("AuthenticationTokenCreation", Shape::TokenCreation),
    ("AuthenticationTokenDeletion", Shape::TokenDeletion),
    ("CredentialDestruction", Shape::CredentialDestruction),
    ("CredentialBulkDestruction", Shape::CredentialBulkDestruction),
    ("UsersInvitation", Shape::Invitation),
    ("UserReinvitation", Shape::Invitation),
    ("UserEdit", Shape::UserEdit),
    ("UserDeletion", Shape::UserDeletion),
    ("UserTeamRoleChange", Shape::TeamRole),
    ("AnalyticsCapture", Shape::Analytics),
    ("ActionsScheduleChange", Shape::Schedule),
    ("StoryArchive", Shape::StoryArchive),
    ("ActionDescriptionChange", Shape::ActionDescription),
    ("StoryDescriptionChange", Shape::StoryDescription),
    ("ActionRun", Shape::ActionRun),
    ("ActionRerun", Shape::ActionRun),
    ("ActionTest", Shape::ActionRun),
    ("UserCredentialSave", Shape::CredentialSave),
    ("CredentialSave", Shape::CredentialSave),
    ("SsoConfigurationSamlSet", Shape::SamlSet),
    ("ActionsDisabledChange", Shape::ActionsDisabled),
    ("TeamCreation", Shape::Team),
    ("TeamUpdate", Shape::Team),
];

/// Extra weight on top of 1 for every operation, so the mix after the first
/// full cycle looks like a busy tenant: mostly runs and storyboard edits.
static COMMON_WEIGHTS: &[(&str, u32)] = &[
    ("ActionRun", 700),
    ("StoryItemsMovement", 300),
    ("ActionsOptionsChange", 250),
    ("Login", 200),
    ("StoryItemsCreation", 150),
    ("AnalyticsCapture", 100),
    ("ActionTest", 100),
    ("StoryItemsDestruction", 80),
    ("ActionsNameChange", 60),
    ("ActionRerun", 50),
    ("FormFieldUpdate", 40),
    ("EventDeletion", 40),
    ("TeamCaseCommentCreation", 40),
    ("TeamCaseUpdate", 30),
    ("StoryNameChange", 20),
    ("ActionDescriptionChange", 20),
    ("CredentialSave", 15),
    ("GlobalResourceCreation", 10),
    ("AuthenticationTokenCreation", 5),
    ("UserEdit", 5),
];

/// Free text for inputs. Quotes, backslashes, newlines, tabs and non-ASCII
/// appear on purpose: collectors must carry them through untouched.
static NAMES: &[&str] = &[
    "Phishing triage",
    "Okta \"impossible travel\" alerts",
    "CrowdStrike → Jira sync",
    "Über-alert enrichment",
    "Clean C:\\Temp\\exports",
    "Daily IOC sweep",
    "fleet_url",
];
static AGENT_NAMES: &[&str] =
    &["Webhook Action", "Get user from Okta", "Send to Slack #soc", "Explode \"alerts\"", "Trigger: severity ≥ high"];
static DESCRIPTIONS: &[&str] = &[
    "",
    "Looks up the user in Okta.\nFalls back to \"AD\" when missing.",
    "Exports to C:\\Tines\\exports\\daily",
    "Résumé parsing — beta 🚀",
    "Tab\tseparated\tcolumns",
    "URL to Fleet service",
];
static NOTES: &[&str] = &[
    "# TODO\n- check the \"dedupe\" step\n- owner: Seán",
    "See runbook https://wiki.example.com/soc?id=42&x=\"1\"",
    "日本語のメモ: 確認済み",
];
/// JSON texts that Tines stores as strings (GlobalResource `value`, action `options`).
static RESOURCE_VALUES: &[&str] = &[
    "\"https://elastic:9002\"",
    "{\"allow\":[\"10.0.0.0/8\"],\"note\":\"path C:\\\\tmp\"}",
    "42",
    "[\"a\",\"b\\nc\"]",
];
static ACTION_OPTIONS: &[&str] = &[
    "{\"url\":\"https://api.example.com/v1/alerts\",\"method\":\"post\",\"payload\":{\"text\":\"Alert: <<alert.title>>\"}}",
    "{\"rules\":[{\"type\":\"field==value\",\"value\":\"high\",\"path\":\"<<alert.severity>>\"}]}",
    "{\"mode\":\"explode\",\"path\":\"=body.items\",\"to\":\"item\"}",
    "{\"message\":\"Line 1\\nLine \\\"2\\\" — done\",\"channel\":\"#soc\"}",
];
static TOKEN_NAMES: &[&str] = &["Elastic", "Grove", "SIEM export", "Jenkins \"nightly\"", "Sören's laptop"];
static ANALYTICS_EVENTS: &[&str] = &["nightModeToggled", "storyboardZoomed", "commandPaletteOpened"];
static CRONS: &[&str] = &["0 9 * * *", "*/15 * * * *", "0 0 * * 1"];
static TIMEZONES: &[&str] = &["Australia/Brisbane", "Europe/Dublin", "America/New_York"];
static AGENT_TYPES: &[&str] = &["webhook", "httpRequest", "eventTransformation", "trigger"];
static ROLES: &[&str] = &["VIEWER", "EDITOR", "TEAM_ADMIN"];
static READ_ACCESS: &[&str] = &["TEAM", "GLOBAL", "SPECIFIC_TEAMS"];

/// Quoted-and-escaped copies of the text pools, built once.
struct Texts {
    names: Vec<Vec<u8>>,
    agent_names: Vec<Vec<u8>>,
    descriptions: Vec<Vec<u8>>,
    notes: Vec<Vec<u8>>,
    resource_values: Vec<Vec<u8>>,
    action_options: Vec<Vec<u8>>,
    token_names: Vec<Vec<u8>>,
    analytics: Vec<Vec<u8>>,
    crons: Vec<Vec<u8>>,
    timezones: Vec<Vec<u8>>,
    agent_types: Vec<Vec<u8>>,
    roles: Vec<Vec<u8>>,
    read_access: Vec<Vec<u8>>,
    emails: Vec<Vec<u8>>,
    teams: Vec<Vec<u8>>,
    form_options_string: Vec<u8>,
}

fn pick<'a>(r: &mut SplitMix64, items: &'a [Vec<u8>]) -> &'a [u8] {
    &items[r.index(items.len())]
}

fn all(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| quoted(s)).collect()
}

/// Standard base64, enough for Tines-style link identifiers (`Agent-4554` → `QWdlbnQtNDU1NA==`).
fn base64(input: &[u8], out: &mut Vec<u8>) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63]);
        out.push(A[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 { A[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if chunk.len() > 2 { A[n as usize & 63] } else { b'=' });
    }
}

/// `Agent-NNNN` for a four-digit `n`, without allocating.
fn agent_ident(n: u64) -> [u8; 10] {
    let mut b = *b"Agent-0000";
    for (i, slot) in b[6..].iter_mut().enumerate() {
        *slot = b'0' + (n / 10u64.pow(3 - i as u32) % 10) as u8;
    }
    b
}

/// Draws operations: the first `ops.len()` draws are a shuffled pass over every
/// operation (so any history that long contains them all), then weighted.
pub(crate) struct OpSchedule {
    first: Vec<u16>,
    next: usize,
}

impl OpSchedule {
    pub(crate) fn cycling(g: &Generator, rng: &mut SplitMix64) -> OpSchedule {
        let mut first: Vec<u16> = (0..g.ops.len() as u16).collect();
        rng.shuffle(&mut first);
        OpSchedule { first, next: 0 }
    }

    pub(crate) fn weighted() -> OpSchedule {
        OpSchedule { first: Vec::new(), next: 0 }
    }

    pub(crate) fn draw(&mut self, g: &Generator, rng: &mut SplitMix64) -> u16 {
        if let Some(&op) = self.first.get(self.next) {
            self.next += 1;
            return op;
        }
        g.weighted_op(rng)
    }
}

pub(crate) struct Generator {
    pub seed: u64,
    pub tenant: Tenant,
    pub ops: &'static [Operation],
    shapes: Vec<Shape>,
    op_cumulative: Vec<u32>,
    user_cumulative: Vec<u32>,
    human_cumulative: Vec<u32>,
    texts: Texts,
}

fn cumulative(weights: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut total = 0;
    weights
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

fn draw_cumulative(table: &[u32], rng: &mut SplitMix64) -> usize {
    let total = *table.last().unwrap_or(&0);
    let x = rng.below(u64::from(total)) as u32;
    table.partition_point(|&c| c <= x)
}

impl Generator {
    pub(crate) fn new(seed: u64) -> Generator {
        let ops = catalog::operations();
        let tenant = Tenant::generate(seed);
        let shapes = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                NAMED_SHAPES
                    .iter()
                    .find(|(n, _)| *n == op.name)
                    .map(|(_, s)| *s)
                    .unwrap_or(Shape::Generic((i % usize::from(GENERIC_SHAPES)) as u8))
            })
            .collect();
        let op_cumulative = cumulative(
            ops.iter().map(|op| 1 + COMMON_WEIGHTS.iter().find(|(n, _)| *n == op.name).map_or(0, |(_, w)| *w)),
        );
        let user_cumulative = cumulative(tenant.users.iter().map(|u| u.weight));
        let human_cumulative = cumulative(tenant.users.iter().map(|u| if u.service { 0 } else { u.weight }));
        let texts = Texts {
            names: all(NAMES),
            agent_names: all(AGENT_NAMES),
            descriptions: all(DESCRIPTIONS),
            notes: all(NOTES),
            resource_values: all(RESOURCE_VALUES),
            action_options: all(ACTION_OPTIONS),
            token_names: all(TOKEN_NAMES),
            analytics: all(ANALYTICS_EVENTS),
            crons: all(CRONS),
            timezones: all(TIMEZONES),
            agent_types: all(AGENT_TYPES),
            roles: all(ROLES),
            read_access: all(READ_ACCESS),
            emails: tenant.users.iter().map(|u| quoted(&u.email)).collect(),
            teams: tenant.teams.iter().map(|t| quoted(t.name)).collect(),
            form_options_string: quoted("[\"Low\",\"Medium\",\"High\"]"),
        };
        Generator { seed, tenant, ops, shapes, op_cumulative, user_cumulative, human_cumulative, texts }
    }

    fn weighted_op(&self, rng: &mut SplitMix64) -> u16 {
        draw_cumulative(&self.op_cumulative, rng) as u16
    }

    /// A new event for operation `op`: the acting user, their address and browser.
    pub(crate) fn event(&self, rng: &mut SplitMix64, created_at: i64, id: u64, op: u16) -> Event {
        let shape = self.shapes[usize::from(op)];
        // Service accounts call the API; they do not log in or click around.
        let humans_only = matches!(shape, Shape::Null | Shape::Analytics | Shape::StoryItemsMovement);
        let table = if humans_only { &self.human_cumulative } else { &self.user_cumulative };
        let user = draw_cumulative(table, rng);
        let ip = self.tenant.ip_for(user, rng);
        let agent = self.tenant.agent_for(user, rng);
        let outputs = rng.chance(0.03) || shape == Shape::FormField;
        Event { created_at, id, ip, op, user: user as u8, agent, outputs, script: 0, odd: Odd::None }
    }

    /// The history: `count` events spread over `[anchor - span, anchor)`, plus
    /// `burst_count` events at `burst_at`, with ids rising in time order.
    pub(crate) fn history(&self, count: usize, span_secs: u64, anchor: i64, burst: Option<(usize, i64)>) -> Vec<Event> {
        let mut rng = SplitMix64::new(mix(self.seed, HISTORY_TAG));
        let span = span_secs.max(1);
        let start = anchor - span as i64;
        let mut times: Vec<i64> = (0..count).map(|_| start + rng.below(span) as i64).collect();
        if let Some((n, at)) = burst {
            times.extend(std::iter::repeat_n(at, n));
        }
        times.sort_unstable();
        let mut schedule = OpSchedule::cycling(self, &mut rng);
        let mut id = FIRST_ID + rng.below(1000);
        times
            .into_iter()
            .map(|t| {
                id += rng.between(1, 3);
                let op = schedule.draw(self, &mut rng);
                self.event(&mut rng, t, id, op)
            })
            .collect()
    }

    /// The user a `UserEdit` (or `UserDeletion`) event is about, and for an edit the admin and
    /// tenant-owner flags it sets: drawn as [`Generator::write_inputs`] draws them, so the
    /// emulated tenant's state (`mock::posture`) follows the records exactly.
    pub(crate) fn user_change(&self, ev: &Event) -> (usize, bool, bool) {
        let users = self.tenant.users.len();
        if ev.script == super::scenario::SCRIPT_OWNER_GRANT {
            // The target is another user of the tenant, made admin and tenant owner.
            return ((usize::from(ev.user) + 1) % users, true, true);
        }
        let mut r = SplitMix64::new(mix(self.seed ^ INPUTS_TAG, ev.id));
        // The draws write_inputs makes before its match.
        r.between(140_000, 149_999);
        r.between(1_340_000, 1_359_999);
        r.index(self.tenant.teams.len());
        let u = r.index(users);
        let admin = r.chance(0.3);
        let owner = r.chance(0.1);
        (u, admin, owner)
    }

    /// Whether `op` is rendered through [`Generator::user_change`].
    pub(crate) fn changes_a_user(&self, ev: &Event) -> bool {
        ev.script == super::scenario::SCRIPT_OWNER_GRANT
            || matches!(self.shapes[usize::from(ev.op)], Shape::UserEdit | Shape::UserDeletion)
    }

    /// Whether `ev` is an edit (rather than a deletion) of a user.
    pub(crate) fn is_user_edit(&self, ev: &Event) -> bool {
        ev.script == super::scenario::SCRIPT_OWNER_GRANT || self.shapes[usize::from(ev.op)] == Shape::UserEdit
    }

    /// Appends the event's `inputs` value; same seed and id, same bytes.
    pub(crate) fn write_inputs(&self, out: &mut Vec<u8>, ev: &Event) {
        let mut r = SplitMix64::new(mix(self.seed ^ INPUTS_TAG, ev.id));
        let t = &self.texts;
        let story = r.between(140_000, 149_999);
        let action = r.between(1_340_000, 1_359_999);
        let team_index = r.index(self.tenant.teams.len());
        let team = self.tenant.teams[team_index].id;
        let o = out;
        if ev.script == super::scenario::SCRIPT_OWNER_GRANT {
            let (target, _, _) = self.user_change(ev);
            o.extend_from_slice(b"{\"inputs\":{\"userId\":");
            push_u64(o, self.tenant.users[target].id);
            o.extend_from_slice(b",\"email\":");
            o.extend_from_slice(&t.emails[target]);
            o.extend_from_slice(b",\"admin\":true,\"isTenantOwner\":true}}");
            return;
        }
        match self.shapes[usize::from(ev.op)] {
            Shape::Null => o.extend_from_slice(b"null"),
            Shape::Empty => o.extend_from_slice(b"{}"),
            Shape::CredentialIdFlat => {
                o.extend_from_slice(b"{\"credentialId\":");
                push_u64(o, r.between(3_000, 3_999));
                o.push(b'}');
            }
            Shape::GlobalResource => {
                o.extend_from_slice(b"{\"inputs\":{\"teamId\":");
                push_u64(o, team);
                o.extend_from_slice(b",\"name\":");
                o.extend_from_slice(pick(&mut r, &t.names));
                o.extend_from_slice(b",\"description\":");
                o.extend_from_slice(pick(&mut r, &t.descriptions));
                o.extend_from_slice(b",\"value\":");
                o.extend_from_slice(pick(&mut r, &t.resource_values));
                o.extend_from_slice(b",\"readAccess\":");
                o.extend_from_slice(pick(&mut r, &t.read_access));
                o.extend_from_slice(b"}}");
            }
            Shape::ActionsOptions => {
                o.extend_from_slice(b"{\"inputs\":{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"actions\":[");
                for i in 0..r.between(1, 2) {
                    if i > 0 {
                        o.push(b',');
                    }
                    o.extend_from_slice(b"{\"actionId\":");
                    push_u64(o, action + i);
                    o.extend_from_slice(b",\"options\":");
                    o.extend_from_slice(pick(&mut r, &t.action_options));
                    o.push(b'}');
                }
                o.extend_from_slice(b"],\"editingSource\":");
                o.extend_from_slice(if r.chance(0.8) { b"\"NO_CODE\"" } else { b"\"CODE\"" });
                o.extend_from_slice(b"}}");
            }
            Shape::FormField => {
                o.extend_from_slice(b"{\"fieldId\":");
                push_u64(o, r.between(1_680_000, 1_699_999));
                o.extend_from_slice(b",\"inputs\":{\"actionIdsToUpdate\":[],\"content\":");
                o.extend_from_slice(pick(&mut r, &t.names));
                o.extend_from_slice(b",\"dateMode\":\"DATE\",\"defaultValue\":null,\"description\":");
                o.extend_from_slice(pick(&mut r, &t.descriptions));
                o.extend_from_slice(
                    b",\"graphDirection\":\"HORIZONTAL\",\"graphType\":\"LINE\",\"maxCharacters\":null,",
                );
                o.extend_from_slice(b"\"multiSelect\":");
                push_bool(o, r.chance(0.3));
                o.extend_from_slice(b",\"name\":\"Heading\",\"options\":");
                // The same key is an array, an object or a JSON string depending on the field type.
                match r.below(3) {
                    0 => o.extend_from_slice(b"[\"Option 1\",\"Option 2\"]"),
                    1 => o.extend_from_slice(b"{\"min\":0,\"max\":10,\"step\":1}"),
                    _ => o.extend_from_slice(&t.form_options_string),
                }
                o.extend_from_slice(b",\"required\":");
                push_bool(o, r.chance(0.5));
                o.extend_from_slice(b",\"storeValueAs\":\"\",\"style\":\"PRIMARY\",\"validationPattern\":null}}");
            }
            Shape::StoryItemsCreation => {
                o.extend_from_slice(b"{\"inputs\":{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"links\":[");
                for i in 0..r.below(3) {
                    if i > 0 {
                        o.push(b',');
                    }
                    o.extend_from_slice(b"{\"receiverIdentifier\":\"");
                    base64(&agent_ident(r.between(1_000, 9_999)), o);
                    o.extend_from_slice(b"\",\"sourceIdentifier\":\"");
                    base64(&agent_ident(r.between(1_000, 9_999)), o);
                    o.extend_from_slice(b"\"}");
                }
                o.extend_from_slice(b"],\"agents\":[");
                for i in 0..r.between(1, 2) {
                    if i > 0 {
                        o.push(b',');
                    }
                    o.extend_from_slice(b"{\"name\":");
                    o.extend_from_slice(pick(&mut r, &t.agent_names));
                    o.extend_from_slice(b",\"type\":");
                    o.extend_from_slice(pick(&mut r, &t.agent_types));
                    o.extend_from_slice(b",\"position\":{\"x\":");
                    push_i64(o, r.below(1200) as i64 - 200);
                    o.extend_from_slice(b",\"y\":");
                    push_i64(o, r.below(900) as i64 - 100);
                    o.extend_from_slice(b"},\"timeSavedUnit\":\"minutes\",\"timeSavedValue\":");
                    push_u64(o, r.below(30));
                    o.extend_from_slice(b",\"form\":null,\"disabled\":false,\"options\":");
                    o.extend_from_slice(pick(&mut r, &t.action_options));
                    o.extend_from_slice(b",\"schedule\":null}");
                }
                o.extend_from_slice(b"],\"diagramNotes\":[");
                if r.chance(0.4) {
                    o.extend_from_slice(b"{\"content\":");
                    o.extend_from_slice(pick(&mut r, &t.notes));
                    o.extend_from_slice(b",\"position\":{\"x\":");
                    push_i64(o, r.below(800) as i64);
                    o.extend_from_slice(b",\"y\":");
                    push_i64(o, -(r.below(300) as i64));
                    o.extend_from_slice(b"}}");
                }
                o.extend_from_slice(b"],\"options\":{\"createFormEmptyState\":true}},\"liveEvents\":null}");
            }
            Shape::StoryItemsMovement => {
                o.extend_from_slice(b"{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"inputs\":{\"actionIds\":[");
                for i in 0..r.between(1, 3) {
                    if i > 0 {
                        o.push(b',');
                    }
                    push_u64(o, action + i * 7);
                }
                o.extend_from_slice(b"],\"diagramNoteIds\":[],\"delta\":{\"x\":");
                push_i64(o, r.below(200) as i64 - 100);
                o.extend_from_slice(b",\"y\":");
                push_i64(o, r.below(200) as i64 - 100);
                o.extend_from_slice(b"}}}");
            }
            Shape::StoryItemsDestruction => {
                o.extend_from_slice(b"{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"actionIds\":[");
                push_u64(o, action);
                o.extend_from_slice(b"],\"diagramNoteIds\":[],\"linkIds\":[]}");
            }
            Shape::TokenCreation => {
                o.extend_from_slice(b"{\"inputs\":{\"name\":");
                o.extend_from_slice(pick(&mut r, &t.token_names));
                o.extend_from_slice(b",\"isServiceToken\":");
                push_bool(o, r.chance(0.5));
                o.extend_from_slice(b"}}");
            }
            Shape::TokenDeletion => {
                o.extend_from_slice(b"{\"inputs\":{\"authenticationTokenId\":");
                push_u64(o, r.between(600, 999));
                o.extend_from_slice(b"}}");
            }
            Shape::CredentialDestruction => {
                o.extend_from_slice(b"{\"inputs\":{\"credentialId\":");
                push_u64(o, r.between(3_000, 3_999));
                o.extend_from_slice(b"}}");
            }
            Shape::CredentialBulkDestruction => {
                o.extend_from_slice(b"{\"inputs\":{\"credentialIds\":[");
                let first = r.between(3_000, 3_900);
                for i in 0..r.between(2, 6) {
                    if i > 0 {
                        o.push(b',');
                    }
                    push_u64(o, first + i * 3);
                }
                o.extend_from_slice(b"]}}");
            }
            Shape::Invitation => {
                o.extend_from_slice(b"{\"inputs\":{\"email\":\"new.hire");
                push_u64(o, r.below(1000));
                o.push(b'@');
                o.extend_from_slice(EMAIL_DOMAIN.as_bytes());
                o.extend_from_slice(b"\",\"admin\":");
                push_bool(o, r.chance(0.2));
                o.extend_from_slice(b"}}");
            }
            Shape::UserEdit => {
                let (u, admin, owner) = self.user_change(ev);
                o.extend_from_slice(b"{\"inputs\":{\"userId\":");
                push_u64(o, self.tenant.users[u].id);
                o.extend_from_slice(b",\"email\":");
                o.extend_from_slice(&t.emails[u]);
                o.extend_from_slice(b",\"admin\":");
                push_bool(o, admin);
                o.extend_from_slice(b",\"isTenantOwner\":");
                push_bool(o, owner);
                o.extend_from_slice(b"}}");
            }
            Shape::UserDeletion => {
                let (u, _, _) = self.user_change(ev);
                o.extend_from_slice(b"{\"inputs\":{\"userId\":");
                push_u64(o, self.tenant.users[u].id);
                o.extend_from_slice(b"}}");
            }
            Shape::TeamRole => {
                o.extend_from_slice(b"{\"inputs\":{\"userId\":");
                push_u64(o, self.tenant.users[r.index(self.tenant.users.len())].id);
                o.extend_from_slice(b",\"teamId\":");
                push_u64(o, team);
                o.extend_from_slice(b",\"role\":");
                o.extend_from_slice(pick(&mut r, &t.roles));
                o.extend_from_slice(b"}}");
            }
            Shape::Analytics => {
                o.extend_from_slice(b"{\"inputs\":{\"eventName\":");
                o.extend_from_slice(pick(&mut r, &t.analytics));
                o.extend_from_slice(b"}}");
            }
            Shape::Schedule => {
                o.extend_from_slice(b"{\"inputs\":{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"actions\":[{\"actionId\":");
                push_u64(o, action);
                o.extend_from_slice(b",\"schedule\":[{\"cron\":");
                o.extend_from_slice(pick(&mut r, &t.crons));
                o.extend_from_slice(b",\"timezone\":");
                o.extend_from_slice(pick(&mut r, &t.timezones));
                o.extend_from_slice(b"}]}]}}");
            }
            Shape::StoryArchive => {
                o.extend_from_slice(b"{\"inputs\":{\"id\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"source\":\"STORY_LIST\"}}");
            }
            Shape::ActionDescription | Shape::StoryDescription => {
                let is_action = self.shapes[usize::from(ev.op)] == Shape::ActionDescription;
                o.extend_from_slice(if is_action {
                    b"{\"inputs\":{\"actionId\":"
                } else {
                    b"{\"inputs\":{\"storyId\":"
                });
                push_u64(o, if is_action { action } else { story });
                o.extend_from_slice(b",\"description\":");
                o.extend_from_slice(pick(&mut r, &t.descriptions));
                o.extend_from_slice(b"}}");
            }
            Shape::ActionRun => {
                o.extend_from_slice(b"{\"inputs\":{\"actionId\":");
                push_u64(o, action);
                o.extend_from_slice(b",\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b"}}");
            }
            Shape::CredentialSave => {
                // Tines itself writes REDACTED for every secret-bearing field.
                o.extend_from_slice(b"{\"inputs\":{\"name\":");
                o.extend_from_slice(pick(&mut r, &t.names));
                o.extend_from_slice(b",\"mode\":\"TEXT\",\"value\":\"REDACTED\",\"description\":");
                o.extend_from_slice(pick(&mut r, &t.descriptions));
                o.extend_from_slice(
                    b",\"jwtPayload\":\"REDACTED\",\"readAccess\":\"TEAM\",\"allowedHosts\":\"REDACTED\",",
                );
                o.extend_from_slice(b"\"sharedTeamSlugs\":\"REDACTED\",\"teamId\":");
                push_u64(o, team);
                o.extend_from_slice(b"}}");
            }
            Shape::SamlSet => {
                o.extend_from_slice(b"{\"domainId\":");
                push_u64(o, r.between(10, 99));
                o.extend_from_slice(
                    b",\"fingerprint\":\"REDACTED\",\"idpCertificate\":\"REDACTED\",\"targetUrl\":\"REDACTED\"}",
                );
            }
            Shape::ActionsDisabled => {
                o.extend_from_slice(b"{\"inputs\":{\"storyId\":");
                push_u64(o, story);
                o.extend_from_slice(b",\"actionIds\":[");
                push_u64(o, action);
                o.extend_from_slice(b"],\"disabled\":");
                push_bool(o, r.chance(0.5));
                o.extend_from_slice(b"}}");
            }
            Shape::Team => {
                o.extend_from_slice(b"{\"inputs\":{\"teamId\":");
                push_u64(o, team);
                o.extend_from_slice(b",\"name\":");
                o.extend_from_slice(&t.teams[team_index]);
                o.extend_from_slice(b"}}");
            }
            Shape::Generic(k) => {
                let id = r.between(1_000, 999_999);
                match k {
                    0 => o.extend_from_slice(b"{}"),
                    1 => {
                        o.extend_from_slice(b"{\"id\":");
                        push_u64(o, id);
                        o.push(b'}');
                    }
                    2 => {
                        o.extend_from_slice(b"{\"inputs\":{\"id\":");
                        push_u64(o, id);
                        o.extend_from_slice(b"}}");
                    }
                    3 => {
                        o.extend_from_slice(b"{\"inputs\":{\"id\":");
                        push_u64(o, id);
                        o.extend_from_slice(b",\"name\":");
                        o.extend_from_slice(pick(&mut r, &t.names));
                        o.extend_from_slice(b"},\"liveEvents\":null}");
                    }
                    4 => {
                        o.extend_from_slice(b"{\"storyId\":");
                        push_u64(o, story);
                        o.extend_from_slice(b",\"inputs\":{\"id\":");
                        push_u64(o, id);
                        o.extend_from_slice(b",\"teamId\":");
                        push_u64(o, team);
                        o.extend_from_slice(b"}}");
                    }
                    _ => {
                        o.extend_from_slice(b"{\"inputs\":{\"teamId\":");
                        push_u64(o, team);
                        o.extend_from_slice(b",\"name\":");
                        o.extend_from_slice(pick(&mut r, &t.names));
                        o.extend_from_slice(b",\"enabled\":");
                        push_bool(o, r.chance(0.5));
                        o.extend_from_slice(b"}}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_shapes_and_weights_name_real_operations() {
        for (name, _) in NAMED_SHAPES {
            assert!(catalog::find(name).is_some(), "{name} is not in the catalog");
        }
        for (name, _) in COMMON_WEIGHTS {
            assert!(catalog::find(name).is_some(), "{name} is not in the catalog");
        }
    }

    #[test]
    fn base64_matches_tines_identifiers() {
        let mut v = Vec::new();
        base64(&agent_ident(4554), &mut v);
        assert_eq!(v, b"QWdlbnQtNDU1NA==");
        v.clear();
        base64(b"ab", &mut v);
        assert_eq!(v, b"YWI=");
    }

    #[test]
    fn every_shape_renders_valid_json_and_expected_envelopes() {
        let g = Generator::new(5);
        let mut seen_forms = std::collections::HashSet::new();
        for (op_index, op) in g.ops.iter().enumerate() {
            for id in 0..40u64 {
                let ev = Event {
                    created_at: 0,
                    id: 9_000 + id,
                    ip: 0,
                    op: op_index as u16,
                    user: 0,
                    agent: 0,
                    outputs: false,
                    script: 0,
                    odd: Odd::None,
                };
                let mut out = Vec::new();
                g.write_inputs(&mut out, &ev);
                let v: serde_json::Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("{}: {e}: {}", op.name, String::from_utf8_lossy(&out)));
                match op.name {
                    "Login" => assert!(v.is_null()),
                    "UserCredentialDestruction" => assert!(v["credentialId"].is_u64()),
                    "GlobalResourceCreation" => {
                        let value = v["inputs"]["value"].as_str().unwrap();
                        serde_json::from_str::<serde_json::Value>(value).unwrap();
                    }
                    "ActionsOptionsChange" => {
                        let options = v["inputs"]["actions"][0]["options"].as_str().unwrap();
                        serde_json::from_str::<serde_json::Value>(options).unwrap();
                    }
                    "FormFieldUpdate" => {
                        assert!(v["fieldId"].is_u64());
                        let options = &v["inputs"]["options"];
                        seen_forms.insert(if options.is_array() {
                            "array"
                        } else if options.is_object() {
                            "object"
                        } else {
                            assert!(options.is_string());
                            "string"
                        });
                    }
                    "StoryItemsCreation" => {
                        assert!(v["inputs"]["agents"].is_array() && v["inputs"]["links"].is_array());
                        assert!(v["inputs"]["diagramNotes"].is_array());
                        assert!(v.get("liveEvents").is_some_and(|l| l.is_null()));
                    }
                    "StoryItemsMovement" => assert!(v["storyId"].is_u64() && v["inputs"].is_object()),
                    "AuthenticationTokenCreation" => assert!(v["inputs"]["isServiceToken"].is_boolean()),
                    "CredentialDestruction" => assert!(v["inputs"]["credentialId"].is_u64()),
                    "CredentialBulkDestruction" => assert!(v["inputs"]["credentialIds"].is_array()),
                    "UsersInvitation" => assert!(v["inputs"]["admin"].is_boolean() && v["inputs"]["email"].is_string()),
                    "UserEdit" => assert!(v["inputs"]["isTenantOwner"].is_boolean()),
                    "UserDeletion" => assert!(v["inputs"]["userId"].is_u64()),
                    _ => assert!(v.is_object()),
                }
            }
        }
        assert_eq!(seen_forms.len(), 3, "FormFieldUpdate options should take all three forms");
    }

    #[test]
    fn history_is_sorted_with_rising_ids_and_covers_every_operation() {
        let g = Generator::new(11);
        let h = g.history(g.ops.len(), 86_400, 1_700_000_000, None);
        assert!(h.windows(2).all(|w| w[0].key() < w[1].key() && w[0].id < w[1].id));
        assert!(h.iter().all(|e| (1_700_000_000 - 86_400..1_700_000_000).contains(&e.created_at)));
        let mut ops: Vec<u16> = h.iter().map(|e| e.op).collect();
        ops.sort_unstable();
        ops.dedup();
        assert_eq!(ops.len(), g.ops.len());
    }
}
