//! Per-tool authorization: which caller may call (and see) which tool, decided from the
//! verified token alone, so every replica decides alike with no shared state.
//!
//! The first rule whose patterns match a tool's name decides; a tool no rule names gets the
//! default. A rule admits a caller that meets every kind of requirement it lists: all of its
//! scopes, one of its roles, one of its groups, one of its tenants.

use mcp_gateway_contract::config::{ToolAccess as ToolAccessConfig, ToolDecision, ToolRule};
use wildmatch::WildMatch;

use crate::auth::Principal;
use crate::dotnet_case;

/// What a caller may do with one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Everything but these scopes is met: a token carrying them would be allowed (MCP
    /// step-up authorization).
    NeedsScopes(Vec<String>),
    Denied,
}

impl Verdict {
    /// The `decision` label of the tool-call metric.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::NeedsScopes(_) => "step_up",
            Verdict::Denied => "denied",
        }
    }
}

/// The verdict and what it was decided by: an exact tool name or pattern from the config, or
/// `default`. Config text only, so it is safe as a metric label and bounded by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub verdict: Verdict,
    pub matched: &'a str,
}

/// The compiled policy.
pub struct ToolAccess {
    default: ToolDecision,
    rules: Vec<Rule>,
}

struct Rule {
    tools: Vec<(String, WildMatch)>,
    requirements: ToolRule,
}

impl ToolAccess {
    pub fn new(config: &ToolAccessConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|rule| Rule {
                tools: rule
                    .tools
                    .iter()
                    .map(|t| (t.clone(), WildMatch::new(&dotnet_case::fold(t))))
                    .collect(),
                requirements: rule.clone(),
            })
            .collect();
        Self {
            default: config.default,
            rules,
        }
    }

    /// Whether `caller` may call `tool`. `has_scope` says whether the caller's token grants
    /// a scope (the authenticator's rule, which knows Entra's short scope names).
    pub fn decide<'a>(
        &'a self,
        tool: &str,
        caller: &Principal,
        has_scope: &dyn Fn(&str) -> bool,
    ) -> Decision<'a> {
        // The host finds tools ignoring case: so do the rules.
        let tool = dotnet_case::fold(tool);
        for rule in &self.rules {
            let Some((pattern, _)) = rule.tools.iter().find(|(_, m)| m.matches(&tool)) else {
                continue;
            };
            return Decision {
                verdict: rule.verdict(caller, has_scope),
                matched: pattern,
            };
        }
        Decision {
            verdict: match self.default {
                ToolDecision::Allow => Verdict::Allowed,
                ToolDecision::Deny => Verdict::Denied,
            },
            matched: "default",
        }
    }

    /// Whether `caller` may call `tool` (and so see it listed).
    pub fn allows(&self, tool: &str, caller: &Principal, has_scope: &dyn Fn(&str) -> bool) -> bool {
        self.decide(tool, caller, has_scope).verdict == Verdict::Allowed
    }
}

impl Rule {
    fn verdict(&self, caller: &Principal, has_scope: &dyn Fn(&str) -> bool) -> Verdict {
        let r = &self.requirements;
        let any_of = |wanted: &[String], held: &[String], eq: fn(&str, &str) -> bool| {
            wanted.is_empty() || wanted.iter().any(|w| held.iter().any(|h| eq(w, h)))
        };
        let exact = |a: &str, b: &str| a == b;
        // Entra writes GUIDs in lowercase; a config may not.
        let guid = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let tenant: &[String] = caller.tenant.as_slice();
        let identity_ok = any_of(&r.roles, &caller.roles, exact)
            && (r.groups.is_empty() || !caller.groups_overage)
            && any_of(&r.groups, &caller.groups, guid)
            && any_of(&r.tenants, tenant, guid);
        if !identity_ok {
            return Verdict::Denied;
        }
        if r.scopes.iter().all(|s| has_scope(s)) {
            Verdict::Allowed
        } else {
            Verdict::NeedsScopes(r.scopes.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Principal {
        Principal {
            subject: "t/o".into(),
            client_id: None,
            tenant: Some("0b8c53d2-5a1f-4b1e-9d6e-2c1f0a9e7d11".into()),
            oid: None,
            name: None,
            scopes: vec!["mcp.tools".into()],
            roles: vec!["Tools.Read".into()],
            groups: vec!["6f1e0c2a-8b7d-4e3f-a1b2-c3d4e5f60718".into()],
            groups_overage: false,
            expires_at: u64::MAX,
        }
    }

    fn policy(yaml: &str) -> ToolAccess {
        ToolAccess::new(&serde_yaml::from_str(yaml).unwrap())
    }

    fn scopes_of(p: &Principal) -> impl Fn(&str) -> bool + '_ {
        |s| p.scopes.iter().any(|x| x == s)
    }

    #[test]
    fn the_first_matching_rule_decides_and_unnamed_tools_get_the_default() {
        let p = policy(
            r#"
default: Deny
rules:
- tools: ["get_*", "search"]
- tools: ["delete_?ile"]
  roles: ["Tools.Admin"]
- tools: ["get_secret"]
"#,
        );
        let c = caller();
        let has = scopes_of(&c);
        let d = p.decide("get_weather", &c, &has);
        assert_eq!((d.verdict, d.matched), (Verdict::Allowed, "get_*"));
        assert_eq!(p.decide("search", &c, &has).verdict, Verdict::Allowed);
        // `get_secret` is named later, but `get_*` came first.
        assert_eq!(p.decide("get_secret", &c, &has).matched, "get_*");
        let d = p.decide("delete_file", &c, &has);
        assert_eq!((d.verdict, d.matched), (Verdict::Denied, "delete_?ile"));
        let d = p.decide("searchx", &c, &has);
        assert_eq!((d.verdict, d.matched), (Verdict::Denied, "default"));
        assert!(policy("rules: []").allows("anything", &c, &has));
    }

    #[test]
    fn tool_names_match_ignoring_case_as_the_host_finds_them() {
        let p =
            policy("default: Allow\nrules:\n- tools: [delete_*]\n  roles: [Admin]\n- tools: ['*']");
        let c = caller();
        let has = scopes_of(&c);
        for name in ["delete_file", "DELETE_FILE", "Delete_File"] {
            let d = p.decide(name, &c, &has);
            assert_eq!(
                (d.verdict, d.matched),
                (Verdict::Denied, "delete_*"),
                "{name}"
            );
        }
        assert_eq!(p.decide("get", &c, &has).verdict, Verdict::Allowed);
    }

    #[test]
    fn every_kind_of_requirement_must_be_met() {
        let c = caller();
        let has = scopes_of(&c);
        let verdict = |rule: &str| {
            policy(&format!("rules:\n- tools: [t]\n{rule}"))
                .decide("t", &c, &has)
                .verdict
        };
        assert_eq!(
            verdict("  roles: [Tools.Admin, Tools.Read]"),
            Verdict::Allowed
        );
        assert_eq!(verdict("  roles: [Tools.Admin]"), Verdict::Denied);
        // Roles are exact; group and tenant GUIDs are compared without case.
        assert_eq!(verdict("  roles: [tools.read]"), Verdict::Denied);
        assert_eq!(
            verdict("  groups: [6F1E0C2A-8B7D-4E3F-A1B2-C3D4E5F60718]"),
            Verdict::Allowed
        );
        assert_eq!(
            verdict("  tenants: [0B8C53D2-5A1F-4B1E-9D6E-2C1F0A9E7D11]"),
            Verdict::Allowed
        );
        assert_eq!(
            verdict("  tenants: [11111111-1111-1111-1111-111111111111]"),
            Verdict::Denied
        );
        assert_eq!(verdict("  scopes: [mcp.tools]"), Verdict::Allowed);
        assert_eq!(
            verdict("  scopes: [mcp.tools, mcp.admin]"),
            Verdict::NeedsScopes(vec!["mcp.tools".into(), "mcp.admin".into()])
        );
        // Short of a role as well as a scope: no token the client can ask for would do.
        assert_eq!(
            verdict("  scopes: [mcp.admin]\n  roles: [Tools.Admin]"),
            Verdict::Denied
        );
        assert_eq!(
            verdict("  scopes: [mcp.admin]\n  roles: [Tools.Read]"),
            Verdict::NeedsScopes(vec!["mcp.admin".into()])
        );
    }

    #[test]
    fn a_group_rule_denies_when_entra_left_the_groups_out() {
        let mut c = caller();
        c.groups_overage = true;
        let has = scopes_of(&c);
        let p = policy(
            "rules:\n- tools: [t]\n  groups: [6f1e0c2a-8b7d-4e3f-a1b2-c3d4e5f60718]\n- tools: [u]\n  roles: [Tools.Read]",
        );
        assert_eq!(p.decide("t", &c, &has).verdict, Verdict::Denied);
        assert_eq!(p.decide("u", &c, &has).verdict, Verdict::Allowed);
    }
}
