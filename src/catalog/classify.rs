//! What an operation is about (its [`Category`]) and what it did (its
//! [`Verb`]), derived from the name's CamelCase words by a few rules and a
//! small override table rather than a hand-written list, so names Tines adds
//! later get a best-effort answer too.
//!
//! - **Category**: the first word of the name that names a kind of object
//!   ("Draft**Credential**Creation", "Archived**Story**Deletion"), after a few
//!   multi-word prefixes that must win over it ("**TeamCase**…" is a case, not
//!   a team; "**UserCredential**…" a credential; "**TenantAi**…" AI).
//! - **Verb**: the last word that says what happened, read from the end
//!   ("…**Creation**", "…Delete**All**" → delete, "**Move**FormFieldTo…").
//!   A few words end the search as `other` ("…Approval", "…Cancellation"),
//!   so an earlier word does not claim them.

/// What an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Credentials, user credentials and draft credentials.
    Credential,
    /// Users: invitations, edits, deletions, SCIM, preferences.
    User,
    /// Logins, API tokens, SSO configuration, recovery codes, sessions, impersonation.
    Authentication,
    /// Stories and what lives on the storyboard (annotations, links, groups, tags, versions, sync).
    Story,
    /// Actions, their inputs, runs and tests.
    Action,
    /// Teams, membership, custom roles.
    Team,
    /// Cases (TeamCase*), their boards, blocks, comments and templates.
    Case,
    /// Tenant-wide settings: config, limits, licence, login notice, certificate authorities, SMTP, tunnels.
    Tenant,
    /// IP access-control and action egress-control rules.
    AccessControl,
    /// Resources and global resources.
    Resource,
    /// Records, record types, reports and writers.
    Record,
    /// Pages (and forms, their predecessor), page collections, themes.
    Page,
    /// Dashboards.
    Dashboard,
    /// Workbench configurations, conversations, presets.
    Workbench,
    /// AI providers, models, AI-action conversations.
    Ai,
    /// Templates.
    Template,
    /// Events, event limits, queued and retrying jobs.
    Event,
    /// Notifications and notification settings.
    Notification,
    /// Folders.
    Folder,
    /// Shared object links (sharing outside the usual access).
    Sharing,
    /// None of the above.
    Other,
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Read,
    Update,
    Delete,
    Move,
    Archive,
    Restore,
    Run,
    Test,
    Login,
    Import,
    Export,
    Enable,
    Disable,
    Other,
}

/// An operation's category and verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub category: Category,
    pub verb: Verb,
}

impl Category {
    pub const ALL: [Category; 21] = [
        Category::Credential,
        Category::User,
        Category::Authentication,
        Category::Story,
        Category::Action,
        Category::Team,
        Category::Case,
        Category::Tenant,
        Category::AccessControl,
        Category::Resource,
        Category::Record,
        Category::Page,
        Category::Dashboard,
        Category::Workbench,
        Category::Ai,
        Category::Template,
        Category::Event,
        Category::Notification,
        Category::Folder,
        Category::Sharing,
        Category::Other,
    ];

    /// The snake_case name, as written in formatted output.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Credential => "credential",
            Category::User => "user",
            Category::Authentication => "authentication",
            Category::Story => "story",
            Category::Action => "action",
            Category::Team => "team",
            Category::Case => "case",
            Category::Tenant => "tenant",
            Category::AccessControl => "access_control",
            Category::Resource => "resource",
            Category::Record => "record",
            Category::Page => "page",
            Category::Dashboard => "dashboard",
            Category::Workbench => "workbench",
            Category::Ai => "ai",
            Category::Template => "template",
            Category::Event => "event",
            Category::Notification => "notification",
            Category::Folder => "folder",
            Category::Sharing => "sharing",
            Category::Other => "other",
        }
    }
}

impl Verb {
    pub const ALL: [Verb; 15] = [
        Verb::Create,
        Verb::Read,
        Verb::Update,
        Verb::Delete,
        Verb::Move,
        Verb::Archive,
        Verb::Restore,
        Verb::Run,
        Verb::Test,
        Verb::Login,
        Verb::Import,
        Verb::Export,
        Verb::Enable,
        Verb::Disable,
        Verb::Other,
    ];

    /// The snake_case name, as written in formatted output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Read => "read",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Move => "move",
            Verb::Archive => "archive",
            Verb::Restore => "restore",
            Verb::Run => "run",
            Verb::Test => "test",
            Verb::Login => "login",
            Verb::Import => "import",
            Verb::Export => "export",
            Verb::Enable => "enable",
            Verb::Disable => "disable",
            Verb::Other => "other",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exact names the rules get wrong, with the category and/or verb to use instead.
static OVERRIDES: &[(&str, Option<Category>, Option<Verb>)] = &[
    // Storyboard operations whose first word is not a kind of object.
    ("GroupExtraction", Some(Category::Story), None),
    ("GroupFlatten", Some(Category::Story), None),
    ("LinkChange", Some(Category::Story), None),
    // "A template test was run".
    ("TemplateTestRun", None, Some(Verb::Test)),
    // "Multiple notifications were marked as read": a change of state, not an access.
    ("NotificationBulkRead", None, Some(Verb::Update)),
];

/// Multi-word prefixes that decide the category before single words are looked at.
static PREFIXES: &[(&[&str], Category)] = &[
    (&["action", "egress", "control", "rule"], Category::AccessControl),
    (&["ip", "access", "control", "rule"], Category::AccessControl),
    (&["tenant", "ai"], Category::Ai),
    (&["login", "notice"], Category::Tenant),
    (&["user", "credential"], Category::Credential),
    (&["user", "credentials"], Category::Credential),
    (&["user", "recovery", "codes"], Category::Authentication),
    (&["user", "session", "expiry"], Category::Authentication),
    (&["user", "impersonation"], Category::Authentication),
    (&["team", "case"], Category::Case),
    (&["team", "cases"], Category::Case),
    // Tool links: what they link is not documented; keep them out of "template".
    (&["tool", "link"], Category::Other),
];

/// Words that name a kind of object; the first one in the name decides.
fn noun(w: &str) -> Option<Category> {
    Some(match w {
        "credential" | "credentials" => Category::Credential,
        "user" | "users" | "scim" | "onboarding" => Category::User,
        "login" | "logout" | "sso" | "authentication" | "token" | "tokens" | "password" | "mfa" | "session" => {
            Category::Authentication
        }
        "story" | "stories" | "annotation" | "tag" | "tags" | "sync" | "synced" => Category::Story,
        "action" | "actions" | "integration" => Category::Action,
        "team" | "teams" | "role" | "roles" => Category::Team,
        "case" | "cases" | "board" => Category::Case,
        "tenant" | "license" | "licence" | "certificate" | "smtp" | "sender" | "tunnel" | "tunnels" => Category::Tenant,
        "ip" | "egress" | "allowlist" => Category::AccessControl,
        "resource" | "resources" => Category::Resource,
        "record" | "records" => Category::Record,
        "page" | "pages" | "form" | "forms" => Category::Page,
        "dashboard" | "dashboards" => Category::Dashboard,
        "workbench" => Category::Workbench,
        "ai" | "llm" => Category::Ai,
        "template" | "templates" => Category::Template,
        "event" | "events" | "job" | "jobs" => Category::Event,
        "notification" | "notifications" => Category::Notification,
        "folder" | "folders" => Category::Folder,
        "shared" | "sharing" => Category::Sharing,
        _ => return None,
    })
}

/// Words that say what happened. `Some(Other)` ends the search: the name says
/// what happened, it is just none of the verbs.
fn verb_word(w: &str) -> Option<Verb> {
    Some(match w {
        "creation" | "create" | "created" | "addition" | "add" | "added" | "duplication" | "duplicate" | "clone"
        | "generation" | "invitation" | "fork" | "upload" => Verb::Create,
        "update" | "updated" | "change" | "changed" | "edit" | "edited" | "set" | "save" | "saved" | "modification"
        | "replacement" | "replace" | "reorder" | "toggle" | "rename" | "rebase" | "reset" | "refresh"
        | "positioning" | "layout" | "align" | "upsert" | "visibility" | "selection" | "select" | "undo" | "detach"
        | "disconnect" | "flatten" | "extraction" | "attach" | "link" | "unlink" | "merge" | "apply"
        | "application" | "unpublish" => Verb::Update,
        "deletion" | "delete" | "deleted" | "destruction" | "destroy" | "destroyed" | "removal" | "remove"
        | "removed" | "clearance" | "clear" | "cleared" => Verb::Delete,
        "movement" | "move" | "moved" => Verb::Move,
        "archive" | "archived" => Verb::Archive,
        "restore" | "restored" | "restoration" => Verb::Restore,
        "run" | "rerun" | "trigger" | "emission" | "sync" => Verb::Run,
        "test" | "tested" => Verb::Test,
        "login" | "logon" | "signin" => Verb::Login,
        "read" | "preview" | "view" | "viewed" => Verb::Read,
        "import" | "imported" => Verb::Import,
        "export" | "exported" => Verb::Export,
        "enable" | "enabled" => Verb::Enable,
        "disable" | "disabled" => Verb::Disable,
        "approval" | "cancellation" | "cancel" | "capture" | "submission" | "submit" | "request" | "promotion"
        | "finish" | "start" | "stop" | "send" | "confirm" | "evaluation" | "release" | "validation" | "unpause"
        | "reinvitation" | "operation" => Verb::Other,
        _ => return None,
    })
}

/// The lowercase words of a name: CamelCase humps (an acronym stays one word:
/// `IPAccessControlRule` → ip, access, control, rule), split further at any
/// character that is not a letter or digit (`story.created`, `SCIM/2.0/User`).
pub(crate) fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
        let chars: Vec<char> = part.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1], chars[i]);
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let boundary = (cur.is_uppercase() && (prev.is_lowercase() || prev.is_numeric()))
                || (cur.is_uppercase() && prev.is_uppercase() && next_lower)
                || (cur.is_numeric() != prev.is_numeric());
            if boundary {
                out.push(chars[start..i].iter().collect::<String>().to_lowercase());
                start = i;
            }
        }
        out.push(chars[start..].iter().collect::<String>().to_lowercase());
    }
    out
}

/// Classifies any operation name by the rules (no catalog lookup).
pub(crate) fn by_rules(name: &str) -> Classification {
    let words = words(name);
    let over = OVERRIDES.iter().find(|(n, _, _)| *n == name);
    let category = over.and_then(|o| o.1).unwrap_or_else(|| category_of(&words));
    let verb = over.and_then(|o| o.2).unwrap_or_else(|| verb_of(&words));
    Classification { category, verb }
}

fn category_of(words: &[String]) -> Category {
    let prefix = PREFIXES
        .iter()
        .filter(|(p, _)| p.len() <= words.len() && p.iter().zip(words).all(|(a, b)| *a == b))
        .max_by_key(|(p, _)| p.len());
    if let Some((_, c)) = prefix {
        return *c;
    }
    words.iter().find_map(|w| noun(w)).unwrap_or(Category::Other)
}

fn verb_of(words: &[String]) -> Verb {
    // An export is an export whatever else the name says ("RecordElementExportRequest").
    if words.iter().any(|w| w == "export") {
        return Verb::Export;
    }
    words.iter().rev().find_map(|w| verb_word(w)).unwrap_or(Verb::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_camel_case_acronyms_and_separators() {
        assert_eq!(words("IPAccessControlRuleChange"), ["ip", "access", "control", "rule", "change"]);
        assert_eq!(words("StoryLLMProductInstructionsChange"), ["story", "llm", "product", "instructions", "change"]);
        assert_eq!(words("StoryAPIChange"), ["story", "api", "change"]);
        assert_eq!(words("SCIM/2.0/User/{operation}"), ["scim", "2", "0", "user", "operation"]);
        assert_eq!(words("story.created"), ["story", "created"]);
        assert_eq!(words("Login"), ["login"]);
        assert_eq!(words(""), Vec::<String>::new());
    }

    fn c(name: &str) -> (&'static str, &'static str) {
        let k = by_rules(name);
        (k.category.as_str(), k.verb.as_str())
    }

    #[test]
    fn rules_cover_the_awkward_names() {
        assert_eq!(c("TeamCaseRecordResultSetBulkDestruction"), ("case", "delete"));
        assert_eq!(c("UserCredentialSave"), ("credential", "update"));
        assert_eq!(c("DraftCredentialCreation"), ("credential", "create"));
        assert_eq!(c("ArchivedStoryDeleteAll"), ("story", "delete"));
        assert_eq!(c("MoveFormFieldToNewContainer"), ("page", "move"));
        assert_eq!(c("RunActionWithReceivedEvent"), ("action", "run"));
        assert_eq!(c("UploadImage"), ("other", "create"));
        assert_eq!(c("ApplyPageTemplate"), ("page", "update"));
        assert_eq!(c("PreviewPageTemplate"), ("page", "read"));
        assert_eq!(c("TenantAiProviderRestoreDefault"), ("ai", "restore"));
        assert_eq!(c("WorkbenchConversationToggleFavorite"), ("workbench", "update"));
        assert_eq!(c("StoryChangeRequestApproval"), ("story", "other"));
        assert_eq!(c("RecordElementExportRequest"), ("record", "export"));
        assert_eq!(c("TeamCasesExportCreation"), ("case", "export"));
        assert_eq!(c("TemplateTestRun"), ("template", "test"));
        assert_eq!(c("CustomCertificateAuthoritySet"), ("tenant", "update"));
        assert_eq!(c("IPAccessControlRuleDeletion"), ("access_control", "delete"));
        assert_eq!(c("ActionEgressControlRuleCreation"), ("access_control", "create"));
        assert_eq!(c("LoginNoticeChange"), ("tenant", "update"));
        assert_eq!(c("Login"), ("authentication", "login"));
        assert_eq!(c("UserImpersonationEnabled"), ("authentication", "enable"));
        assert_eq!(c("UsersInvitation"), ("user", "create"));
        assert_eq!(c("SCIM/2.0/User/{operation}"), ("user", "other"));
        assert_eq!(c("SCIM/2.0/User/update"), ("user", "update"));
        assert_eq!(c("ToolLinkTemplatesCreation"), ("other", "create"));
        assert_eq!(c("BatchStoryArchive"), ("story", "archive"));
        assert_eq!(c("ActionsEventsDeletion"), ("action", "delete"));
    }

    #[test]
    fn unknown_names_get_a_best_effort_answer() {
        assert_eq!(c("story.created"), ("story", "create"));
        assert_eq!(c("WidgetCredentialRotation"), ("credential", "other"));
        assert_eq!(c("FutureThingDestruction"), ("other", "delete"));
        assert_eq!(c("zzzz"), ("other", "other"));
        assert_eq!(c(""), ("other", "other"));
        assert_eq!(c("ÉtéÜber"), ("other", "other"));
    }
}
