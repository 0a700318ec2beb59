//! The one table that says which audit events evidence which controls: each
//! report section, the operations that belong to it (exact names from the
//! Tines catalog, checked by a test), and the control of each framework it
//! supports. `docs/search-and-reports.md` prints the same table for auditors.
//!
//! References: AICPA Trust Services Criteria (2017, revised points of focus
//! 2022); ISO/IEC 27001:2022 Annex A; GDPR (Regulation (EU) 2016/679).

use super::Framework;

/// A control and its short name, as written in the report.
pub type Control = (&'static str, &'static str);

/// One section of evidence.
#[derive(Debug)]
pub struct SectionDef {
    pub id: &'static str,
    pub title: &'static str,
    /// What the section shows an auditor, in a sentence.
    pub purpose: &'static str,
    pub operations: &'static [&'static str],
    pub soc2: &'static [Control],
    pub iso27001: &'static [Control],
    pub gdpr: &'static [Control],
}

impl SectionDef {
    pub fn controls(&self, f: Framework) -> &'static [Control] {
        match f {
            Framework::Soc2 => self.soc2,
            Framework::Iso27001 => self.iso27001,
            Framework::Gdpr => self.gdpr,
        }
    }
}

const CC6_1: Control = ("CC6.1", "Logical access security: identification, authentication, credentials");
const CC6_2: Control = ("CC6.2", "Registration, authorisation and removal of users");
const CC6_3: Control = ("CC6.3", "Role-based access: grant, change and remove access");
const CC6_6: Control = ("CC6.6", "Access from outside the system boundary is restricted");
const CC6_7: Control = ("CC6.7", "Transmission of information is restricted to authorised destinations");
const CC2_2: Control = ("CC2.2", "Security responsibilities are communicated to users");
const CC7_2: Control = ("CC7.2", "System components are monitored for anomalies");
const CC7_3: Control = ("CC7.3", "Security events are evaluated");
const CC4_1: Control = ("CC4.1", "Ongoing and separate evaluations: controls are present and functioning");
const CC8_1: Control = ("CC8.1", "Changes are authorised, tested, approved and implemented");

const A5_10: Control = ("A.5.10", "Acceptable use of information and other associated assets");
const A5_15: Control = ("A.5.15", "Access control");
const A5_16: Control = ("A.5.16", "Identity management");
const A5_17: Control = ("A.5.17", "Authentication information");
const A5_18: Control = ("A.5.18", "Access rights");
const A5_25: Control = ("A.5.25", "Assessment and decision on information security events");
const A8_2: Control = ("A.8.2", "Privileged access rights");
const A8_5: Control = ("A.8.5", "Secure authentication");
const A8_12: Control = ("A.8.12", "Data leakage prevention");
const A8_15: Control = ("A.8.15", "Logging");
const A8_16: Control = ("A.8.16", "Monitoring activities");
const A8_20: Control = ("A.8.20", "Networks security");
const A8_32: Control = ("A.8.32", "Change management");

const ART5_1F: Control = ("Art. 5(1)(f)", "Integrity and confidentiality");
const ART5_2: Control = ("Art. 5(2)", "Accountability: able to demonstrate compliance");
const ART25: Control = ("Art. 25", "Data protection by design and by default");
const ART30: Control = ("Art. 30", "Records of processing activities (supporting evidence)");
const ART32: Control = ("Art. 32", "Security of processing");
const ART32_1D: Control = ("Art. 32(1)(d)", "Regularly testing the effectiveness of security measures");
const ART33: Control = ("Art. 33", "Detecting personal data breaches in time to notify");

/// The evidence sections, in report order. Continuity and alerts are built
/// from the collection ledger and the alerts table, not from operations.
pub static SECTIONS: &[SectionDef] = &[
    SectionDef {
        id: "user_access",
        title: "User access changes",
        purpose: "Who was invited, removed, or given other roles, teams or tenant ownership, and by whom.",
        operations: &[
            "UsersInvitation",
            "UserReinvitation",
            "UserDeletion",
            "UserEdit",
            "UserTeamRoleChange",
            "TeamMembersAddition",
            "TeamMemberRemoval",
            "CustomTeamRoleCreation",
            "CustomTeamRoleUpdate",
            "CustomTeamRoleDestruction",
            "SCIM/2.0/User/create",
            "SCIM/2.0/User/replace",
            "SCIM/2.0/User/update",
            "SCIM/2.0/User/destroy",
        ],
        soc2: &[CC6_2, CC6_3],
        iso27001: &[A5_15, A5_16, A5_18, A8_2],
        gdpr: &[ART5_1F, ART32],
    },
    SectionDef {
        id: "api_keys",
        title: "API key lifecycle",
        purpose: "Every API key created, edited or deleted.",
        operations: &["AuthenticationTokenCreation", "AuthenticationTokenEdit", "AuthenticationTokenDeletion"],
        soc2: &[CC6_1, CC6_2],
        iso27001: &[A5_17, A8_5],
        gdpr: &[ART32],
    },
    SectionDef {
        id: "credentials",
        title: "Credential lifecycle",
        purpose: "Credentials (secrets used by stories) created, changed, moved, shared or deleted.",
        operations: &[
            "CredentialSave",
            "DraftCredentialCreation",
            "CredentialDestruction",
            "CredentialBulkDestruction",
            "CredentialMovement",
            "CredentialReplacement",
            "CredentialMetadataReplacement",
            "CredentialMetadataToResourceReplacement",
            "CredentialOauthTokenRefresh",
            "UserCredentialSave",
            "UserCredentialDestruction",
            "UserCredentialMovement",
        ],
        soc2: &[CC6_1],
        iso27001: &[A5_17, A8_2],
        gdpr: &[ART5_1F, ART32],
    },
    SectionDef {
        id: "network",
        title: "IP access control and egress rules",
        purpose: "Which networks may reach the tenant, and which destinations actions may send data to.",
        operations: &[
            "IPAccessControlRuleCreation",
            "IPAccessControlRuleChange",
            "IPAccessControlRuleDeletion",
            "ActionEgressControlRuleCreation",
            "ActionEgressControlRuleChange",
            "ActionEgressControlRuleDeletion",
        ],
        soc2: &[CC6_6, CC6_7],
        iso27001: &[A8_20, A8_12],
        gdpr: &[ART25, ART32],
    },
    SectionDef {
        id: "sso_sessions",
        title: "SSO and session settings",
        purpose: "Single sign-on configuration, session timeouts and recovery codes.",
        operations: &[
            "SsoConfigurationSamlSet",
            "SsoConfigurationOidcSet",
            "SsoConfigurationDefaultSet",
            "SsoConfigurationJitConfigurationSet",
            "SsoConfigurationPageGroupAttributeNameUpdate",
            "TenantSessionTimeoutChange",
            "UserSessionExpiryChange",
            "UserRecoveryCodesGeneration",
            "UserRecoveryCodesDeletion",
        ],
        soc2: &[CC6_1],
        iso27001: &[A5_17, A8_5],
        gdpr: &[ART32],
    },
    SectionDef {
        id: "login_notice",
        title: "Login notices",
        purpose: "Changes to the notice users accept when they log in (acceptable use).",
        operations: &["LoginNoticeChange"],
        soc2: &[CC2_2],
        iso27001: &[A5_10],
        gdpr: &[],
    },
    SectionDef {
        id: "impersonation",
        title: "Impersonation",
        purpose: "When impersonation of users was turned on or off.",
        operations: &["UserImpersonationEnabled", "UserImpersonationDisabled"],
        soc2: &[CC6_1, CC6_3],
        iso27001: &[A8_2, A8_15],
        gdpr: &[ART5_1F, ART32],
    },
    SectionDef {
        id: "change_control",
        title: "Change control",
        purpose: "Change-control settings, change requests from creation to promotion, and test stories.",
        operations: &[
            "TenantChangeControlSettingsUpdate",
            "StoryChangeRequestCreation",
            "StoryChangeRequestApproval",
            "StoryChangeRequestCancellation",
            "StoryChangeRequestPromotion",
            "TestStoryCreation",
            "TestStoryDeletion",
        ],
        soc2: &[CC8_1],
        iso27001: &[A8_32],
        gdpr: &[ART25, ART32],
    },
];

/// The continuity section: the journal itself is the audit trail.
pub const CONTINUITY_TITLE: &str = "Continuity of the audit trail";
pub fn continuity_controls(f: Framework) -> &'static [Control] {
    match f {
        Framework::Soc2 => &[CC7_2],
        Framework::Iso27001 => &[A8_15, A8_16],
        Framework::Gdpr => &[ART5_2, ART30],
    }
}

/// The integrity section: the journal's hash chain and signed checkpoints, verified.
pub const INTEGRITY_TITLE: &str = "Integrity of the audit trail";
pub fn integrity_controls(f: Framework) -> &'static [Control] {
    match f {
        Framework::Soc2 => &[CC7_2],
        Framework::Iso27001 => &[A8_15],
        Framework::Gdpr => &[ART5_2, ART32],
    }
}

/// The posture section: who holds rights, which network rules and keys are in force, and why.
pub const POSTURE_TITLE: &str = "Security posture";
pub fn posture_controls(f: Framework) -> &'static [Control] {
    match f {
        Framework::Soc2 => &[CC6_1, CC6_2, CC6_3, CC6_6, CC6_7],
        Framework::Iso27001 => &[A5_15, A5_18, A8_2, A8_20, A8_12],
        Framework::Gdpr => &[ART25, ART32],
    }
}

/// The alerts section: detection raised on the events.
pub const ALERTS_TITLE: &str = "Alerts raised";
pub fn alerts_controls(f: Framework) -> &'static [Control] {
    match f {
        Framework::Soc2 => &[CC7_2, CC7_3],
        Framework::Iso27001 => &[A8_16, A5_25],
        Framework::Gdpr => &[ART33],
    }
}

/// The self-test section: runs that proved the detection rules fire and the alert outputs deliver.
pub const SELFTEST_TITLE: &str = "Controls tested (self-test)";
pub fn selftest_controls(f: Framework) -> &'static [Control] {
    match f {
        Framework::Soc2 => &[CC4_1, CC7_2],
        Framework::Iso27001 => &[A8_16],
        Framework::Gdpr => &[ART32_1D],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_in_the_catalog_and_in_one_section_only() {
        let mut seen = std::collections::HashSet::new();
        for s in SECTIONS {
            for op in s.operations {
                assert!(crate::catalog::find(op).is_some(), "{op} ({}) is not a documented operation", s.id);
                assert!(seen.insert(*op), "{op} is in two sections");
            }
            assert!(!s.soc2.is_empty() && !s.iso27001.is_empty(), "{} evidences nothing", s.id);
        }
    }
}
