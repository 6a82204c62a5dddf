//! Access rules: the policy crate's Cedar policies, evaluated with cedar-policy.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, RuleId,
};
use serde::{Deserialize, Serialize};

use crate::{AccessError, Principal};

/// What the access rules are asked whether a principal may do: the Cedar action of a request.
///
/// This is the rules' vocabulary, not the log's: the log records what a Gate call did
/// ([`domicile_audit::Action`]: a migration, a shred, an approval step), and a call may put a
/// different question to the rules (a migration asks to `read`, a shred to `delete`, denying an
/// approval to `approve`). [`AccessAction::logged_as`] is the one conversion between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    /// Read one record.
    Read,
    /// Write one record.
    Write,
    /// Delete one record.
    Delete,
    /// Read many records at once (training, migration).
    Scan,
    /// Take sealed records out of the region's store.
    Export,
    /// Approve another principal's access request.
    Approve,
    /// Crypto-shred a subject: destroy their data keys, so no copy of their records opens again.
    Shred,
    /// Read the region's audit log.
    ReadLog,
    /// Check the region's store end to end: every record and registry entry is opened inside
    /// the node, and only counts and blind names come back.
    CheckStore,
}

impl AccessAction {
    /// The Cedar action id and wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessAction::Read => "read",
            AccessAction::Write => "write",
            AccessAction::Delete => "delete",
            AccessAction::Scan => "scan",
            AccessAction::Export => "export",
            AccessAction::Approve => "approve",
            AccessAction::Shred => "shred",
            AccessAction::ReadLog => "read_log",
            AccessAction::CheckStore => "check_store",
        }
    }

    /// What the log records when a call asks the rules this question about a single access of
    /// its own kind: `read` as `read`, `approve` as `approval_grant`, `read_log` as `audit_read`.
    /// Calls that ask one question on behalf of another act (a migration, a shred) log their own
    /// action instead.
    pub fn logged_as(&self) -> domicile_audit::Action {
        match self {
            AccessAction::Read => domicile_audit::Action::Read,
            AccessAction::Write => domicile_audit::Action::Write,
            AccessAction::Delete => domicile_audit::Action::Delete,
            AccessAction::Scan => domicile_audit::Action::Scan,
            AccessAction::Export => domicile_audit::Action::Export,
            AccessAction::Approve => domicile_audit::Action::ApprovalGrant,
            AccessAction::Shred => domicile_audit::Action::Shred,
            AccessAction::ReadLog => domicile_audit::Action::AuditRead,
            AccessAction::CheckStore => domicile_audit::Action::StoreCheck,
        }
    }
}

impl fmt::Display for AccessAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the action is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Records of a class in a collection of a region; for one subject, or for bulk access with no
    /// single subject home.
    Records {
        /// The data class.
        class: DataClass,
        /// Where the records rest.
        region: Region,
        /// The home region of the records' subject, when there is one subject.
        subject_home: Option<Region>,
        /// The collection.
        collection: String,
    },
    /// A region's audit log.
    AuditLog {
        /// Whose log.
        region: Region,
    },
    /// A region's sealed store as a whole (what a check reads).
    Store {
        /// Whose store.
        region: Region,
    },
}

/// A verified approval, as the access rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApprovalFacts {
    /// The country of the approver's employing organisation.
    pub approver_org_country: CountryCode,
    /// How long the approval lasts, in seconds.
    pub duration_secs: u64,
}

/// One question for the access rules.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// To do what.
    pub action: AccessAction,
    /// On what.
    pub resource: Resource,
    /// Why.
    pub purpose: &'a Purpose,
    /// A valid approval covering the request, already verified by the caller.
    pub approval: Option<ApprovalFacts>,
}

/// The access rules' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDecision {
    /// Whether some rule permits the request and no rule forbids it.
    pub allowed: bool,
    /// The rules that determined the answer: the permitting rules when allowed, the forbidding
    /// rules when forbidden, `<policy>/access/deny-by-default` when nothing permits.
    pub rules: Vec<RuleId>,
    /// Evaluation errors, if any rule could not be evaluated (such a rule does not permit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A policy crate's access rules, parsed, validated against the schema, and ready to decide.
pub struct AccessRules {
    policies: PolicySet,
    schema: Schema,
    default_deny: RuleId,
    check_shapes: bool,
    cache_capacity: usize,
    cache: Mutex<DecisionCache>,
}

/// Decisions by a hash of their request's attributes, computed from the request as given so that
/// a lookup copies nothing; each bucket holds the full keys that share a hash.
#[derive(Default)]
struct DecisionCache {
    by_hash: HashMap<u64, Vec<(DecisionKey, AccessDecision)>>,
    len: usize,
}

/// Everything a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecisionKey {
    principal: Principal,
    action: AccessAction,
    resource: Resource,
    purpose: JustificationCode,
    has_ticket: bool,
    approval: Option<ApprovalFacts>,
}

impl DecisionKey {
    /// The key of `request`, built only when a decision is stored.
    fn of(request: &AccessRequest<'_>) -> Self {
        DecisionKey {
            principal: request.principal.clone(),
            action: request.action,
            resource: request.resource.clone(),
            purpose: request.purpose.code,
            has_ticket: has_ticket(request.purpose),
            approval: request.approval,
        }
    }

    /// Whether this is the key of `request` (`ticket`: whether its purpose cites a ticket).
    fn is_of(&self, request: &AccessRequest<'_>, ticket: bool) -> bool {
        self.action == request.action
            && self.purpose == request.purpose.code
            && self.has_ticket == ticket
            && self.approval == request.approval
            && self.resource == request.resource
            && self.principal == *request.principal
    }

    /// The hash of the key of `request`, from the request's own fields: a lookup copies nothing.
    fn hash_of(request: &AccessRequest<'_>, ticket: bool) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        request.principal.hash(&mut h);
        request.action.hash(&mut h);
        request.resource.hash(&mut h);
        request.purpose.code.hash(&mut h);
        ticket.hash(&mut h);
        request.approval.hash(&mut h);
        h.finish()
    }
}

fn has_ticket(purpose: &Purpose) -> bool {
    purpose.ticket.as_deref().is_some_and(is_ticket)
}

/// Whether `text` has the shape of a ticket reference: a project key of 1-10 uppercase letters
/// and digits starting with a letter, then one or two `-` and 1-9 digits groups (`SUP-1234`,
/// `AUD-2026-11`). The rules' `context.has_ticket` is true only for such a reference: "x" or a
/// sentence is not a ticket.
pub fn is_ticket(text: &str) -> bool {
    let mut parts = text.split('-');
    let key = parts.next().unwrap_or("");
    let key_ok = (1..=10).contains(&key.len())
        && key.as_bytes()[0].is_ascii_uppercase()
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let numbers: Vec<&str> = parts.collect();
    key_ok
        && (1..=2).contains(&numbers.len())
        && numbers
            .iter()
            .all(|n| (1..=9).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// How many distinct decisions [`AccessRules`] remembers by default.
pub const DEFAULT_DECISION_CACHE: usize = 65_536;

impl fmt::Debug for AccessRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessRules")
            .field("policies", &self.policies.policies().count())
            .field("default_deny", &self.default_deny)
            .finish()
    }
}

const NAMESPACE: &str = "Domicile";

fn uid(kind: &str, id: &str) -> EntityUid {
    let type_name = EntityTypeName::from_str(&format!("{NAMESPACE}::{kind}"))
        .expect("the namespace and entity type names are constants");
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

fn text(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// A resource that is a region's whole of something (its log, its store): an entity of `kind`
/// with the region as its only attribute.
fn whole(kind: &str, region: &Region) -> Result<(EntityUid, Entity), AccessError> {
    let r_uid = uid(kind, region.as_str());
    let entity = Entity::new(
        r_uid.clone(),
        HashMap::from([("region".to_owned(), text(region.as_str()))]),
        Default::default(),
    )
    .map_err(|e| AccessError::Evaluation(e.to_string()))?;
    Ok((r_uid, entity))
}

impl AccessRules {
    /// Parses the policy's Cedar rules and schema, validates the rules against the schema in
    /// strict mode, and checks that every rule carries an `@id` that is in the policy's rule table.
    pub fn new(policy: &dyn ResidencyPolicy) -> Result<Self, AccessError> {
        let invalid = |detail: String| AccessError::InvalidAccessRules {
            policy: policy.id().name.clone(),
            detail,
        };
        let (schema, _warnings) = Schema::from_cedarschema_str(policy.access_schema())
            .map_err(|e| invalid(format!("schema: {e}")))?;
        let parsed =
            PolicySet::from_str(policy.access_rules()).map_err(|e| invalid(format!("{e}")))?;
        let validation = Validator::new(schema.clone()).validate(&parsed, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation
                .validation_errors()
                .map(|e| e.to_string())
                .collect();
            return Err(invalid(errors.join("; ")));
        }
        // Re-id every policy by its @id annotation, so a decision's reasons are rule ids.
        let mut policies = PolicySet::new();
        for p in parsed.policies() {
            let Some(id) = p.annotation("id") else {
                return Err(invalid(format!("policy {} has no @id annotation", p.id())));
            };
            let rule = RuleId::parse(id).map_err(|e| invalid(e.to_string()))?;
            if policy.rule(&rule).is_none() {
                return Err(invalid(format!("@id({id:?}) is not in the rule table")));
            }
            policies
                .add(p.new_id(cedar_policy::PolicyId::new(id)))
                .map_err(|e| invalid(e.to_string()))?;
        }
        let default_deny = RuleId::parse(&format!("{}/access/deny-by-default", policy.id().name))
            .map_err(|e| invalid(e.to_string()))?;
        if policy.rule(&default_deny).is_none() {
            return Err(invalid(format!("the rule table lacks {default_deny}")));
        }
        Ok(AccessRules {
            policies,
            schema,
            default_deny,
            check_shapes: false,
            cache_capacity: DEFAULT_DECISION_CACHE,
            cache: Mutex::new(DecisionCache::default()),
        })
    }

    /// Also checks every request's entities and context against the schema before deciding.
    ///
    /// Off by default: the entities are built from typed values by [`decide`](Self::decide)
    /// itself, so their shape is fixed by this crate and checked once by its tests, and checking
    /// on every request costs several times the decision. Turn it on when debugging a schema.
    pub fn with_shape_checks(mut self, on: bool) -> Self {
        self.check_shapes = on;
        self
    }

    /// Decides one request. Deny by default: a request no rule permits is denied, naming
    /// `<policy>/access/deny-by-default`.
    ///
    /// Answers are cached: a decision depends only on the request's attributes (never on a
    /// subject id or record key) and the rules cannot change under a built `AccessRules`, so the
    /// same question gets the same answer from the cache as from Cedar, in a fraction of the time.
    pub fn decide(&self, request: &AccessRequest<'_>) -> Result<AccessDecision, AccessError> {
        if self.cache_capacity == 0 {
            return self.evaluate(request);
        }
        let ticket = has_ticket(request.purpose);
        let hash = DecisionKey::hash_of(request, ticket);
        let hit = |bucket: &Vec<(DecisionKey, AccessDecision)>| {
            bucket
                .iter()
                .find(|(k, _)| k.is_of(request, ticket))
                .map(|(_, d)| d.clone())
        };
        if let Some(hit) = self.lock_cache().by_hash.get(&hash).and_then(hit) {
            return Ok(hit);
        }
        let decision = self.evaluate(request)?;
        let mut cache = self.lock_cache();
        if cache.len >= self.cache_capacity {
            *cache = DecisionCache::default();
        }
        let bucket = cache.by_hash.entry(hash).or_default();
        if hit(bucket).is_none() {
            bucket.push((DecisionKey::of(request), decision.clone()));
            cache.len += 1;
        }
        Ok(decision)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, DecisionCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how many distinct decisions are remembered (0 turns the cache off). When full, the
    /// cache starts again empty.
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Puts the request to Cedar, bypassing the cache.
    pub fn evaluate(&self, request: &AccessRequest<'_>) -> Result<AccessDecision, AccessError> {
        let p = request.principal;
        let org_uid = uid("Organisation", &p.organisation.name);
        let org = Entity::new(
            org_uid.clone(),
            HashMap::from([("country".to_owned(), text(p.organisation.country.as_str()))]),
            Default::default(),
        )
        .map_err(|e| AccessError::Evaluation(e.to_string()))?;
        let role_uids: Vec<EntityUid> = p.roles.iter().map(|r| uid("Role", r.as_str())).collect();
        let actor_uid = uid("Actor", &p.id.to_string());
        let actor = Entity::new(
            actor_uid.clone(),
            HashMap::from([
                ("kind".to_owned(), text(p.kind.as_str())),
                (
                    "organisation".to_owned(),
                    RestrictedExpression::new_entity_uid(org_uid),
                ),
                ("office_country".to_owned(), text(p.office_country.as_str())),
                (
                    "location_country".to_owned(),
                    text(p.location_country.as_str()),
                ),
                ("region".to_owned(), text(p.id.region().as_str())),
            ]),
            role_uids.iter().cloned().collect(),
        )
        .map_err(|e| AccessError::Evaluation(e.to_string()))?;
        let (resource_uid, resource) = match &request.resource {
            Resource::Records {
                class,
                region,
                subject_home,
                collection,
            } => {
                let r_uid = uid("Record", "requested");
                let home = subject_home.as_ref().map_or("", Region::as_str);
                let entity = Entity::new(
                    r_uid.clone(),
                    HashMap::from([
                        ("class".to_owned(), text(class.as_str())),
                        ("region".to_owned(), text(region.as_str())),
                        ("subject_home".to_owned(), text(home)),
                        ("collection".to_owned(), text(collection)),
                    ]),
                    Default::default(),
                )
                .map_err(|e| AccessError::Evaluation(e.to_string()))?;
                (r_uid, entity)
            }
            Resource::AuditLog { region } => whole("AuditLog", region)?,
            Resource::Store { region } => whole("Store", region)?,
        };
        let roles = role_uids
            .into_iter()
            .map(|u| Entity::new_no_attrs(u, Default::default()));
        let entities = Entities::from_entities(
            [org, actor, resource].into_iter().chain(roles),
            self.check_shapes.then_some(&self.schema),
        )
        .map_err(|e| AccessError::Evaluation(e.to_string()))?;
        let approval = request.approval;
        let context = Context::from_pairs([
            ("purpose".to_owned(), text(request.purpose.code.as_str())),
            (
                "has_ticket".to_owned(),
                RestrictedExpression::new_bool(has_ticket(request.purpose)),
            ),
            (
                "approved".to_owned(),
                RestrictedExpression::new_bool(approval.is_some()),
            ),
            (
                "approver_org_country".to_owned(),
                text(
                    approval
                        .as_ref()
                        .map_or("", |a| a.approver_org_country.as_str()),
                ),
            ),
            (
                "approval_secs".to_owned(),
                RestrictedExpression::new_long(
                    approval.map_or(0, |a| i64::try_from(a.duration_secs).unwrap_or(i64::MAX)),
                ),
            ),
        ])
        .map_err(|e| AccessError::Evaluation(e.to_string()))?;
        let cedar_request = Request::new(
            actor_uid,
            uid("Action", request.action.as_str()),
            resource_uid,
            context,
            self.check_shapes.then_some(&self.schema),
        )
        .map_err(|e| AccessError::Evaluation(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&cedar_request, &self.policies, &entities);
        let allowed = response.decision() == CedarDecision::Allow;
        let mut rules: Vec<RuleId> = response
            .diagnostics()
            .reason()
            .filter_map(|id| RuleId::parse(id.as_ref()).ok())
            .collect();
        rules.sort();
        if !allowed && rules.is_empty() {
            rules.push(self.default_deny.clone());
        }
        let errors = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        Ok(AccessDecision {
            allowed,
            rules,
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{is_ticket, AccessAction};

    #[test]
    fn only_a_ticket_shaped_reference_counts_as_a_ticket() {
        for ok in ["SUP-1234", "AUD-2026-11", "T-1", "INC2-99"] {
            assert!(is_ticket(ok), "{ok}");
        }
        for bad in [
            "", "x", "sup-1", "SUP", "SUP-", "SUP-12a", "1SUP-1", "A-1-2-3", " SUP-1",
        ] {
            assert!(!is_ticket(bad), "{bad:?}");
        }
    }

    #[test]
    fn each_rules_action_is_logged_under_the_log_s_name_for_it() {
        let all = [
            (AccessAction::Read, "read"),
            (AccessAction::Write, "write"),
            (AccessAction::Delete, "delete"),
            (AccessAction::Scan, "scan"),
            (AccessAction::Export, "export"),
            (AccessAction::Approve, "approval_grant"),
            (AccessAction::Shred, "shred"),
            (AccessAction::ReadLog, "audit_read"),
            (AccessAction::CheckStore, "store_check"),
        ];
        for (asked, logged) in all {
            assert_eq!(asked.logged_as().as_str(), logged, "{asked}");
        }
    }
}
