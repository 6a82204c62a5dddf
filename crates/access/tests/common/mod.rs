//! Fixtures shared by the access tests.
//!
//! Each test binary uses some of these, not all.
#![allow(dead_code)]

use domicile_access::{Gate, Principal, PrincipalKind};

/// Starts a principal with SPIFFE id `id`: by default a person with no roles, whose office and
/// location are in their organisation's country.
pub(crate) fn principal(id: &str) -> PrincipalFixture {
    PrincipalFixture {
        id: id.to_owned(),
        kind: PrincipalKind::Person,
        organisation: ("org".to_owned(), "US".to_owned()),
        office: None,
        location: None,
        roles: Vec::new(),
    }
}

/// A principal being described for a test; [`build`](Self::build) parses it.
#[derive(Debug, Clone)]
pub(crate) struct PrincipalFixture {
    id: String,
    kind: PrincipalKind,
    organisation: (String, String),
    office: Option<String>,
    location: Option<String>,
    roles: Vec<String>,
}

impl PrincipalFixture {
    /// A person, a service or an auditor.
    pub(crate) fn kind(mut self, kind: PrincipalKind) -> Self {
        self.kind = kind;
        self
    }

    /// Employed by organisation `name`, registered in `country`.
    pub(crate) fn org(mut self, name: &str, country: &str) -> Self {
        self.organisation = (name.to_owned(), country.to_owned());
        self
    }

    /// Works from an office in `country` (default: the organisation's country).
    pub(crate) fn office(mut self, country: &str) -> Self {
        self.office = Some(country.to_owned());
        self
    }

    /// Is physically in `country` (default: the office's country).
    pub(crate) fn located_in(mut self, country: &str) -> Self {
        self.location = Some(country.to_owned());
        self
    }

    /// Holds these roles.
    pub(crate) fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// The principal; panics (naming the fixture) if it does not parse.
    pub(crate) fn build(self) -> Principal {
        let (org, country) = (&self.organisation.0, &self.organisation.1);
        let office = self.office.as_deref().unwrap_or(country);
        let location = self.location.as_deref().unwrap_or(office);
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        Principal::parse(
            &self.id,
            self.kind,
            (org, country),
            office,
            location,
            &roles,
        )
        .unwrap_or_else(|e| panic!("fixture {self:?} is not a principal: {e}"))
    }

    /// The principal, enrolled in `gate`'s directory as the operator would.
    pub(crate) fn enrol(self, gate: &Gate) -> Principal {
        let p = self.build();
        gate.enrol(p.clone())
            .unwrap_or_else(|e| panic!("{} cannot be enrolled: {e}", p.id));
        p
    }
}
