//! The Gate's own rules: checks the Gate makes before or beside the policy's, each with a rule
//! id of its own so that every logged decision names the rule that made it.

use domicile_residency::{Rule, RuleId};

/// A principal not in the directory, or claiming attributes its entry does not give it.
pub const UNVERIFIED_PRINCIPAL: &str = "gate/unverified-principal";
/// A person answering their own request, under any of their ids.
pub const SELF_APPROVAL: &str = "gate/self-approval";
/// Filing a request for approval: allowed for any verified principal; it decides nothing else.
pub const APPROVAL_FILED: &str = "gate/approval-filed";
/// A request whose scope is not specific: no subjects, too many, or a class approvals never
/// cover.
pub const APPROVAL_SCOPE: &str = "gate/approval-scope-is-specific";
/// Only the approver who gave a grant, or the security team, withdraws it.
pub const REVOKE: &str = "gate/revoke-by-approver-or-security";
/// The Gate cannot honour what the decision obliges (pseudonymise, aggregate, licence).
pub const OBLIGATION_UNMET: &str = "gate/obligation-unmet";
/// Whole subjects move (a migration read or write) only under a migration warrant: a split
/// plan's fingerprint and its exact subject set, signed by the migration key the Gate trusts.
pub const MIGRATION_WARRANT: &str = "gate/migration-under-signed-plan";

/// The Gate's rules, with a sentence each: a decision in any Gate's log names one of these or a
/// rule of the policy in force.
pub fn gate_rules() -> Vec<Rule> {
    vec![
        Rule::new(UNVERIFIED_PRINCIPAL, "A principal is refused unless the region's principal directory names its id with exactly the attributes it claims."),
        Rule::new(SELF_APPROVAL, "Nobody answers their own request for approval, under any of their ids."),
        Rule::new(APPROVAL_FILED, "Any verified principal may file a request for approval; filing grants nothing."),
        Rule::new(APPROVAL_SCOPE, "A request for approval names a bounded set of subjects, one class that approvals may cover, and a purpose with a ticket."),
        Rule::new(REVOKE, "A grant is withdrawn only by the approver who gave it or by the security team of its region."),
        Rule::new(OBLIGATION_UNMET, "A release whose obligations the Gate cannot honour is refused."),
        Rule::new(MIGRATION_WARRANT, "Whole subjects are read or written for a migration only under a split plan's warrant, signed by the deployment's migration key, that names each of them."),
    ]
}

/// A Gate rule's id.
pub(super) fn gate_rule(id: &str) -> RuleId {
    RuleId::parse(id).expect("the Gate's rule ids are valid constants")
}

#[cfg(test)]
mod tests {
    #[test]
    fn gate_rule_ids_are_valid_and_unique() {
        let rules = super::gate_rules();
        let mut ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rules.len());
    }
}
