//! The decision merge: what the residency policy and the access rules concluded about a call,
//! merged into one [`Verdict`] before it is logged.
//!
//! Pure: no store, no log, no clock. Every Gate call that asks more than one question (a record's
//! residency and its access rule, a transfer for every possible home, a batch's many records, a
//! shred's many homes) merges the answers here, by one rule: an allowed verdict names every rule
//! that allowed part of it, once each, in the order asked; a refusal names only the rules that
//! refused; the first refusal's reason is the one given; obligations are kept once each; and a
//! refusal carries no obligations into the log.

use domicile_audit::EntryDecision;
use domicile_residency::{Decision, Obligation, RuleId};

use crate::rules::AccessDecision;

/// What the questions of one call concluded, before it is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Whether every question was answered yes.
    pub(super) allowed: bool,
    /// The rules that decided, each once, in the order asked: every allowing rule when allowed,
    /// only the refusing rules when refused.
    pub(super) rules: Vec<RuleId>,
    /// What the caller must honour, each once.
    pub(super) obligations: Vec<Obligation>,
    /// Why, in a sentence: the first refusal's reason, or `allowed`.
    pub(super) reason: String,
}

/// How the Verdict is built from the answers of the residency policy and the access rules.
impl Verdict {
    /// A verdict before any question is asked: allowed, naming no rule. Merging answers into it
    /// gives the answer of a call that asks many questions.
    pub(super) fn unopposed() -> Verdict {
        Verdict {
            allowed: true,
            rules: Vec::new(),
            obligations: Vec::new(),
            reason: "allowed".into(),
        }
    }

    /// The access rules' answer alone.
    pub(super) fn of_access(access: AccessDecision) -> Verdict {
        Verdict {
            allowed: access.allowed,
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
            rules: access.rules,
            obligations: Vec::new(),
        }
    }

    /// One record's answer: may it rest here (residency), and may this principal do this to it
    /// (access rules). `approval_note` says why an approval offered did not count; it is added to
    /// an access-rule refusal.
    pub(super) fn of_record(
        residency: &Decision,
        access: &AccessDecision,
        approval_note: Option<String>,
    ) -> Verdict {
        let allowed = residency.allowed && access.allowed;
        let mut rules = Vec::new();
        if residency.allowed == allowed {
            rules.push(residency.rule.clone());
        }
        if access.allowed == allowed {
            rules.extend(access.rules.iter().cloned());
        }
        let reason = if !residency.allowed {
            format!("the residency policy forbids it ({})", residency.rule)
        } else if !access.allowed {
            let mut r = format!(
                "the access rules do not permit it ({})",
                join(&access.rules)
            );
            if let Some(note) = approval_note {
                r.push_str(&format!("; {note}"));
            }
            r
        } else {
            "allowed".into()
        };
        Verdict {
            allowed,
            rules,
            obligations: if allowed {
                residency.obligations.clone()
            } else {
                Vec::new()
            },
            reason,
        }
    }

    /// The residency policy's answer to one transfer out of the region.
    pub(super) fn of_transfer(transfer: Decision) -> Verdict {
        Verdict {
            allowed: transfer.allowed,
            reason: if transfer.allowed {
                "allowed".into()
            } else {
                format!(
                    "the residency policy forbids the transfer ({})",
                    transfer.rule
                )
            },
            rules: vec![transfer.rule],
            obligations: transfer.obligations,
        }
    }

    /// A refusal by one of the Gate's own rules (`gate/…`), for `reason`.
    pub(super) fn refused_by(rule: RuleId, reason: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            rules: vec![rule],
            obligations: Vec::new(),
            reason: reason.into(),
        }
    }

    /// An allowance by one of the Gate's own rules (`gate/…`).
    pub(super) fn allowed_by(rule: RuleId) -> Verdict {
        Verdict {
            allowed: true,
            rules: vec![rule],
            obligations: Vec::new(),
            reason: "allowed".into(),
        }
    }

    /// Merges another answer of the same call into this one. Both allowing: its rules and
    /// obligations are added (each once). It refusing while this one allows: its refusal decides,
    /// and only its rules are named. Both refusing: its refusing rules are added, the first
    /// reason stays. This one refusing and it allowing: nothing changes.
    pub(super) fn merge(&mut self, other: Verdict) {
        if self.allowed && !other.allowed {
            self.allowed = false;
            self.rules.clear();
            self.reason = other.reason;
        } else if !self.allowed && other.allowed {
            return;
        }
        for rule in other.rules {
            if !self.rules.contains(&rule) {
                self.rules.push(rule);
            }
        }
        for o in other.obligations {
            if !self.obligations.contains(&o) {
                self.obligations.push(o);
            }
        }
    }

    /// Turns an allowing verdict into a refusal by the Gate's `rule` for `reason` (the Gate
    /// cannot honour what was decided); a verdict that already refuses keeps its rules and first
    /// reason.
    pub(super) fn refuse(&mut self, rule: RuleId, reason: impl Into<String>) {
        if self.allowed {
            *self = Verdict::refused_by(rule, reason);
        }
    }

    /// Whether releasing records under pseudonyms honours every obligation.
    pub(super) fn met_by_pseudonymising(&self) -> bool {
        self.obligations.iter().all(|o| match o {
            Obligation::Pseudonymize => true,
            Obligation::AnyOf { options } => options
                .iter()
                .any(|o| matches!(o, Obligation::Pseudonymize)),
            _ => false,
        })
    }

    /// The smallest group an aggregate may describe, if releasing aggregates honours every
    /// obligation (1 when nothing is obliged).
    pub(super) fn min_subjects_when_aggregating(&self) -> Option<u32> {
        let mut k = 1;
        for o in &self.obligations {
            let found = match o {
                Obligation::Aggregate { min_subjects } => Some(*min_subjects),
                Obligation::AnyOf { options } => options.iter().find_map(|o| match o {
                    Obligation::Aggregate { min_subjects } => Some(*min_subjects),
                    _ => None,
                }),
                _ => None,
            };
            k = k.max(found?);
        }
        Some(k)
    }

    /// The decision as the log records it. A refusal records no obligations: there is nothing
    /// for the caller to honour.
    pub(super) fn entry_decision(&self) -> EntryDecision {
        EntryDecision {
            allowed: self.allowed,
            rules: self.rules.clone(),
            obligations: if self.allowed {
                self.obligations.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// Rule ids as a comma-separated list, for reasons and error messages.
pub(super) fn join(rules: &[RuleId]) -> String {
    rules
        .iter()
        .map(RuleId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> RuleId {
        RuleId::parse(id).unwrap()
    }

    fn decision(allowed: bool, id: &str, obligations: Vec<Obligation>) -> Decision {
        Decision {
            allowed,
            rule: rule(id),
            obligations,
        }
    }

    fn access(allowed: bool, ids: &[&str]) -> AccessDecision {
        AccessDecision {
            allowed,
            rules: ids.iter().map(|id| rule(id)).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_record_is_allowed_only_when_residency_and_access_rules_both_allow() {
        let rest = decision(true, "p/rest", vec![Obligation::Pseudonymize]);
        let ok = Verdict::of_record(&rest, &access(true, &["p/access/a"]), None);
        assert!(ok.allowed);
        assert_eq!(ok.rules, vec![rule("p/rest"), rule("p/access/a")]);
        assert_eq!(ok.obligations, vec![Obligation::Pseudonymize]);

        let no = Verdict::of_record(&rest, &access(false, &["p/access/deny"]), Some("n".into()));
        assert!(!no.allowed);
        assert!(
            no.obligations.is_empty(),
            "a refusal carries no obligations"
        );
        assert_eq!(
            no.reason,
            "the access rules do not permit it (p/access/deny); n"
        );

        assert_eq!(
            no.rules,
            vec![rule("p/access/deny")],
            "the allowing residency rule is not cited"
        );

        let misplaced = decision(false, "p/home-only", Vec::new());
        let no = Verdict::of_record(&misplaced, &access(true, &["p/access/a"]), None);
        assert!(!no.allowed);
        assert_eq!(no.rules, vec![rule("p/home-only")]);
        assert_eq!(no.reason, "the residency policy forbids it (p/home-only)");
    }

    #[test]
    fn merging_names_every_rule_once_and_the_first_refusal_decides() {
        let mut v = Verdict::unopposed();
        v.merge(Verdict::of_access(access(true, &["p/access/a"])));
        v.merge(Verdict::of_access(access(false, &["p/access/b"])));
        v.merge(Verdict::of_transfer(decision(
            false,
            "p/no-transfer",
            Vec::new(),
        )));
        v.merge(Verdict::of_access(access(true, &["p/access/a"])));
        assert!(!v.allowed);
        assert_eq!(
            v.rules,
            vec![rule("p/access/b"), rule("p/no-transfer")],
            "a refusal names only the rules that refused"
        );
        assert_eq!(v.reason, "the access rules do not permit it (p/access/b)");
    }

    #[test]
    fn merging_keeps_each_obligation_once_and_a_refusal_logs_none() {
        let k = Obligation::Aggregate { min_subjects: 50 };
        let mut v = Verdict::of_access(access(true, &["p/access/a"]));
        v.merge(Verdict::of_transfer(decision(
            true,
            "p/t1",
            vec![k.clone()],
        )));
        v.merge(Verdict::of_transfer(decision(
            true,
            "p/t2",
            vec![k.clone()],
        )));
        assert_eq!(v.obligations, vec![k.clone()]);
        assert_eq!(v.entry_decision().obligations, vec![k]);
        v.refuse(rule("gate/obligation-unmet"), "cannot honour it");
        v.refuse(rule("gate/other"), "a second reason is not the one given");
        assert_eq!(v.reason, "cannot honour it");
        assert_eq!(v.rules, vec![rule("gate/obligation-unmet")]);
        assert!(v.entry_decision().obligations.is_empty());
    }

    #[test]
    fn an_empty_merge_allows_and_names_no_rule() {
        let v = Verdict::unopposed();
        assert!(v.allowed);
        assert!(v.entry_decision().rules.is_empty());
    }

    #[test]
    fn pseudonymising_and_aggregating_meet_the_obligations_they_name() {
        let k = |min_subjects| Obligation::Aggregate { min_subjects };
        let mut v = Verdict::unopposed();
        assert!(v.met_by_pseudonymising());
        assert_eq!(v.min_subjects_when_aggregating(), Some(1));

        v.obligations = vec![Obligation::AnyOf {
            options: vec![Obligation::Pseudonymize, k(20)],
        }];
        assert!(v.met_by_pseudonymising());
        assert_eq!(v.min_subjects_when_aggregating(), Some(20));

        v.obligations = vec![k(20), k(50)];
        assert!(!v.met_by_pseudonymising());
        assert_eq!(v.min_subjects_when_aggregating(), Some(50));

        v.obligations = vec![Obligation::Pseudonymize];
        assert_eq!(v.min_subjects_when_aggregating(), None);
    }
}
