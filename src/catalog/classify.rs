//! STAND-IN for the real operation classifier, which another branch is adding
//! with this exact signature; the merge replaces this file. It only knows
//! enough (name prefixes and suffixes) for detection to build and be tested:
//! what category of object an operation touches, and what it does to it.

/// What kind of object an operation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Credential,
    User,
    Authentication,
    Tenant,
    AccessControl,
    Story,
    Team,
    Action,
    Resource,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Credential => "credential",
            Category::User => "user",
            Category::Authentication => "authentication",
            Category::Tenant => "tenant",
            Category::AccessControl => "access_control",
            Category::Story => "story",
            Category::Team => "team",
            Category::Action => "action",
            Category::Resource => "resource",
            Category::Other => "other",
        }
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Create,
    Update,
    Delete,
    Run,
    Login,
    Other,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Run => "run",
            Verb::Login => "login",
            Verb::Other => "other",
        }
    }
}

/// Category and verb of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub category: Category,
    pub verb: Verb,
}

/// Classifies an operation name (an open set: unknown names get `Other`).
pub fn classify(name: &str) -> Classification {
    let category = if name == "Login" || name.starts_with("Sso") || name.starts_with("AuthenticationToken") {
        Category::Authentication
    } else if name.contains("Credential") {
        Category::Credential
    } else if name.starts_with("User") || name.starts_with("SCIM") {
        Category::User
    } else if name.starts_with("IPAccessControl") || name.starts_with("ActionEgressControl") {
        Category::AccessControl
    } else if name.starts_with("Tenant") || name.starts_with("CustomCertificateAuthority") || name.starts_with("Jobs") {
        Category::Tenant
    } else if name.starts_with("Team") {
        Category::Team
    } else if name.contains("Story") {
        Category::Story
    } else if name.starts_with("Action") {
        Category::Action
    } else if name.starts_with("GlobalResource") || name.starts_with("Resource") {
        Category::Resource
    } else {
        Category::Other
    };
    let verb = if name == "Login" {
        Verb::Login
    } else if ["Destruction", "Deletion", "Delete", "DeleteAll", "Removal", "Clearance"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Verb::Delete
    } else if ["Creation", "Create", "Addition", "Invitation", "Save", "Generation"].iter().any(|s| name.ends_with(s)) {
        Verb::Create
    } else if ["Run", "Rerun", "Test"].iter().any(|s| name.ends_with(s)) {
        Verb::Run
    } else if ["Change", "Update", "Edit", "Set", "Enabled", "Disabled", "Toggle", "Movement"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Verb::Update
    } else {
        Verb::Other
    };
    Classification { category, verb }
}
