//! The ACL policy language (reference §11): HCL, or its JSON equivalent, parsed
//! into [`PathRule`]s.
//!
//! HCL is parsed with `hcl-rs` (HCL2 native syntax, which covers the documented
//! Vault policy forms); a document whose first character is `{` is parsed as
//! JSON. What is accepted is exactly what cipherd can enforce:
//!
//! - `path "<pattern>" { capabilities = [...] }`, legacy `policy = "read"` etc.,
//!   and `comment`; the top-level `name` is accepted and ignored.
//! - `*` only as the last character of a pattern (Vault would silently treat a
//!   `*` elsewhere as a literal that never matches; we refuse it).
//! - `min_wrapping_ttl`, `max_wrapping_ttl`, `subscribe_event_types` are parsed
//!   and ignored: cipherd never wraps responses nor sends events, so they can
//!   restrict nothing.
//! - Parameter constraints (`allowed_parameters`, `denied_parameters`,
//!   `required_parameters`) and Enterprise gates (`mfa_methods`,
//!   `control_group`) restrict requests by their body, which the ACL check does
//!   not see. Rather than grant more than the author wrote, a policy that uses
//!   them restrictively is refused; their no-op forms (`{}`, `[]`,
//!   `{"*" = []}`) are accepted.
//! - Anything else (unknown keys, unknown capabilities, wrong types) is refused
//!   with a message naming the path and the key, as Vault does.

use hcl::{BlockLabel, Body, Expression, ObjectKey, Structure};

use super::acl::{Caps, PathRule};

/// Vault's built-in `default` policy, verbatim (`vault/policy_store.go`).
pub(crate) const DEFAULT_POLICY: &str = r#"
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a Control Group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"#;

/// Parses a policy document (HCL or JSON) into its path rules. The error is the
/// reason, to be shown after `failed to parse policy: `.
pub(crate) fn parse(text: &str) -> Result<Vec<PathRule>, String> {
    let blocks = if text.trim_start().starts_with('{') {
        json_blocks(text)?
    } else {
        hcl_blocks(text)?
    };
    blocks
        .into_iter()
        .map(|(label, body)| path_rule(&label, body))
        .collect()
}

/// A value from either syntax, reduced to what policies use.
#[derive(Debug)]
enum Value {
    Bool,
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
    Null,
    Number,
    /// Any HCL expression that is not a literal (variables, templates, calls...).
    Other(&'static str),
    String(String),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::Bool => "a bool",
            Self::List(_) => "a list",
            Self::Map(_) => "an object",
            Self::Null => "null",
            Self::Number => "a number",
            Self::Other(kind) => kind,
            Self::String(_) => "a string",
        }
    }
}

type PathBlock = (String, Vec<(String, Value)>);

fn hcl_blocks(text: &str) -> Result<Vec<PathBlock>, String> {
    let body: Body = hcl::parse(text).map_err(|error| match error {
        hcl::Error::Parse(error) => format!(
            "At {}:{}: {}",
            error.location().line(),
            error.location().column(),
            error.message()
        ),
        other => other.to_string(),
    })?;
    let mut blocks = Vec::new();
    for structure in body.into_iter() {
        match structure {
            Structure::Block(block) if block.identifier.as_str() == "path" => {
                let [label] = <[BlockLabel; 1]>::try_from(block.labels).map_err(|labels| {
                    format!(
                        "path block must have exactly one label, found {}",
                        labels.len()
                    )
                })?;
                let label = label.into_inner();
                let body = block_body(&label, block.body)?;
                blocks.push((label, body));
            }
            Structure::Block(block) => {
                return Err(format!("invalid key {:?}", block.identifier.as_str()));
            }
            Structure::Attribute(attribute) => match attribute.key.as_str() {
                "name" => {}
                // HCL1's object form: `path = { "pattern" = { ... } }`.
                "path" => top_level_paths(hcl_value(attribute.expr)?, &mut blocks)?,
                other => return Err(format!("invalid key {other:?}")),
            },
        }
    }
    Ok(blocks)
}

/// The attributes of a `path` block; nested blocks (HCL1's
/// `allowed_parameters { ... }`) become objects.
fn block_body(label: &str, body: Body) -> Result<Vec<(String, Value)>, String> {
    body.into_iter()
        .map(|structure| match structure {
            Structure::Attribute(attribute) => Ok((
                attribute.key.to_string(),
                hcl_value(attribute.expr).map_err(|e| format!("path {label:?}: {e}"))?,
            )),
            Structure::Block(block) if block.labels.is_empty() => Ok((
                block.identifier.to_string(),
                Value::Map(block_body(label, block.body)?),
            )),
            Structure::Block(block) => Err(format!(
                "path {label:?}: invalid key {:?}",
                block.identifier.as_str()
            )),
        })
        .collect()
}

fn hcl_value(expression: Expression) -> Result<Value, String> {
    Ok(match expression {
        Expression::Null => Value::Null,
        Expression::Bool(_) => Value::Bool,
        Expression::Number(_) => Value::Number,
        Expression::String(string) => Value::String(string),
        Expression::Array(items) => {
            Value::List(items.into_iter().map(hcl_value).collect::<Result<_, _>>()?)
        }
        Expression::Object(object) => Value::Map(
            object
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        ObjectKey::Identifier(identifier) => identifier.to_string(),
                        ObjectKey::Expression(Expression::String(key)) => key,
                        _ => return Err("object keys must be names or strings".to_owned()),
                    };
                    Ok((key, hcl_value(value)?))
                })
                .collect::<Result<_, _>>()?,
        ),
        Expression::TemplateExpr(_) => Value::Other("a template"),
        Expression::Variable(_) => Value::Other("a variable"),
        _ => Value::Other("an expression"),
    })
}

fn json_blocks(text: &str) -> Result<Vec<PathBlock>, String> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| error.to_string())?;
    let serde_json::Value::Object(document) = document else {
        return Err("a JSON policy must be an object".to_owned());
    };
    let mut blocks = Vec::new();
    for (key, value) in document {
        match key.as_str() {
            "name" => {}
            "path" => top_level_paths(json_value(value), &mut blocks)?,
            other => return Err(format!("invalid key {other:?}")),
        }
    }
    Ok(blocks)
}

fn json_value(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(_) => Value::Bool,
        serde_json::Value::Number(_) => Value::Number,
        serde_json::Value::String(string) => Value::String(string),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(json_value).collect()),
        serde_json::Value::Object(object) => Value::Map(
            object
                .into_iter()
                .map(|(key, value)| (key, json_value(value)))
                .collect(),
        ),
    }
}

/// `path = { "<pattern>" = { ... }, ... }` (or a list of such objects, as HCL1's
/// JSON form allows).
fn top_level_paths(value: Value, blocks: &mut Vec<PathBlock>) -> Result<(), String> {
    match value {
        Value::Map(entries) => {
            for (label, body) in entries {
                match body {
                    Value::Map(body) => blocks.push((label, body)),
                    // HCL1 JSON also allows a one-element list around the body.
                    Value::List(items) if items.len() == 1 => {
                        let Some(Value::Map(body)) = items.into_iter().next() else {
                            return Err(format!("path {label:?}: must be an object"));
                        };
                        blocks.push((label, body));
                    }
                    other => {
                        return Err(format!(
                            "path {label:?}: must be an object, not {}",
                            other.kind()
                        ));
                    }
                }
            }
            Ok(())
        }
        Value::List(items) => items
            .into_iter()
            .try_for_each(|item| top_level_paths(item, blocks)),
        other => Err(format!("\"path\" must be an object, not {}", other.kind())),
    }
}

/// Validates one path block and computes what it grants.
fn path_rule(label: &str, body: Vec<(String, Value)>) -> Result<PathRule, String> {
    let pattern = label.strip_prefix('/').unwrap_or(label);
    if let Some(star) = pattern.find('*')
        && star != pattern.len() - 1
    {
        return Err(format!(
            "path {label:?}: '*' is only allowed as the last character"
        ));
    }
    let mut caps = Caps::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &body {
        if seen.contains(&key.as_str()) {
            return Err(format!("path {label:?}: duplicate key {key:?}"));
        }
        seen.push(key);
        let wrong_type = |expected: &str| {
            format!(
                "path {label:?}: {key:?} must be {expected}, not {}",
                value.kind()
            )
        };
        let wrong_item = |item: &Value| {
            format!(
                "path {label:?}: {key:?} must be a list of strings, but has {}",
                item.kind()
            )
        };
        match key.as_str() {
            "capabilities" => {
                let Value::List(items) = value else {
                    return Err(wrong_type("a list of strings"));
                };
                for item in items {
                    let Value::String(name) = item else {
                        return Err(wrong_item(item));
                    };
                    let cap = Caps::parse(name)
                        .ok_or_else(|| format!("path {label:?}: invalid capability {name:?}"))?;
                    caps = caps.union(cap);
                }
            }
            "policy" => {
                let Value::String(policy) = value else {
                    return Err(wrong_type("a string"));
                };
                let cap = Caps::legacy(policy)
                    .ok_or_else(|| format!("path {label:?}: invalid policy {policy:?}"))?;
                caps = caps.union(cap);
            }
            "comment" => {
                if !matches!(value, Value::String(_)) {
                    return Err(wrong_type("a string"));
                }
            }
            "min_wrapping_ttl" | "max_wrapping_ttl" => {
                if !matches!(value, Value::String(_) | Value::Number) {
                    return Err(wrong_type("a duration"));
                }
            }
            "subscribe_event_types" => {
                if !matches!(value, Value::List(_)) {
                    return Err(wrong_type("a list of strings"));
                }
            }
            "allowed_parameters" | "denied_parameters" => {
                let Value::Map(entries) = value else {
                    return Err(wrong_type("an object"));
                };
                let no_op = entries.is_empty()
                    || (key == "allowed_parameters"
                        && matches!(entries.as_slice(), [(any, Value::List(values))] if any == "*" && values.is_empty()));
                if !no_op {
                    return Err(unsupported(label, key));
                }
            }
            "required_parameters" | "mfa_methods" => {
                let Value::List(items) = value else {
                    return Err(wrong_type("a list of strings"));
                };
                if !items.is_empty() {
                    return Err(unsupported(label, key));
                }
            }
            "control_group" => return Err(unsupported(label, key)),
            other => return Err(format!("path {label:?}: invalid key {other:?}")),
        }
    }
    if caps.is_deny() {
        caps = Caps::deny();
    }
    Ok(PathRule {
        pattern: pattern.to_owned(),
        caps,
    })
}

fn unsupported(label: &str, key: &str) -> String {
    format!(
        "path {label:?}: {key:?} is not supported: cipherd cannot enforce request-parameter \
         constraints, and ignoring them would grant more than the policy says"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::{Acl, Capability};

    fn rules(text: &str) -> Vec<PathRule> {
        match parse(text) {
            Ok(rules) => rules,
            Err(reason) => panic!("policy should parse: {reason}"),
        }
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(rules) => panic!("policy should not parse, got {rules:?}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn reference_example_parses() {
        let text = r#"
            path "transit/encrypt/orders" {
              capabilities = ["update"]
            }
            path "transit/decrypt/orders" {
              capabilities = ["update"]
            }
            path "transit/keys/*" {
              capabilities = ["read", "list"]
            }
            path "transit/keys/orders" {
              capabilities = ["deny"]
            }
        "#;
        let parsed = rules(text);
        assert_eq!(parsed.len(), 4);
        let acl = Acl::build(&parsed);
        assert!(acl.allows("transit/encrypt/orders", Capability::Update));
        assert!(acl.allows("transit/keys/other", Capability::Read));
        assert!(acl.allows("transit/keys/", Capability::List));
        assert!(!acl.allows("transit/keys/orders", Capability::Read));
    }

    #[test]
    fn json_equivalent_parses_the_same() {
        let hcl = rules(r#"path "transit/encrypt/orders" { capabilities = ["update"] }"#);
        let json = rules(r#"{"path": {"transit/encrypt/orders": {"capabilities": ["update"]}}}"#);
        assert_eq!(hcl, json);
        let object_form =
            rules(r#"path = { "transit/encrypt/orders" = { capabilities = ["update"] } }"#);
        assert_eq!(hcl, object_form);
    }

    #[test]
    fn default_policy_parses() {
        let parsed = rules(DEFAULT_POLICY);
        let acl = Acl::build(&parsed);
        assert!(acl.allows("auth/token/lookup-self", Capability::Read));
        assert!(acl.allows("auth/token/renew-self", Capability::Update));
        assert!(acl.allows("auth/token/revoke-self", Capability::Update));
        assert!(acl.allows("sys/capabilities-self", Capability::Update));
        assert!(acl.allows("cubbyhole/x", Capability::Delete));
        assert!(acl.allows("identity/oidc/provider/p/authorize", Capability::Read));
        assert!(!acl.allows("transit/encrypt/x", Capability::Update));
        assert!(!acl.allows("auth/token/create", Capability::Update));
    }

    #[test]
    fn legacy_policy_field() {
        let caps = |text: &str| Acl::build(&rules(text)).capability_names("a");
        assert_eq!(caps(r#"path "a" { policy = "read" }"#), ["list", "read"]);
        assert_eq!(
            caps(r#"path "a" { policy = "write" }"#),
            ["create", "delete", "list", "read", "update"]
        );
        assert_eq!(
            caps(r#"path "a" { policy = "sudo" }"#),
            ["create", "delete", "list", "read", "sudo", "update"]
        );
        assert_eq!(caps(r#"path "a" { policy = "deny" }"#), ["deny"]);
    }

    #[test]
    fn deny_keeps_only_deny() {
        let parsed = rules(r#"path "a" { capabilities = ["read", "deny", "sudo"] }"#);
        assert_eq!(parsed[0].caps, Caps::deny());
    }

    #[test]
    fn leading_slash_is_stripped_and_comments_allowed() {
        let parsed = rules(
            "# hash comment\n// slash comment\n/* block */\nname = \"x\"\npath \"/transit/keys\" {\n comment = \"hi\"\n capabilities = []\n}\n",
        );
        assert_eq!(parsed[0].pattern, "transit/keys");
        assert_eq!(parsed[0].caps, Caps::default());
    }

    #[test]
    fn ignorable_and_no_op_attributes() {
        rules(
            r#"path "a" {
                capabilities = ["read"]
                min_wrapping_ttl = "1s"
                max_wrapping_ttl = 90
                allowed_parameters = { "*" = [] }
                denied_parameters = {}
                required_parameters = []
            }"#,
        );
    }

    #[test]
    fn syntax_errors_name_the_location() {
        let reason = error(r#"path "x" {"#);
        assert!(reason.starts_with("At 1:"), "{reason}");
        let reason = error(r#"{"path": "#);
        assert!(reason.contains("line 1"), "{reason}");
    }

    #[test]
    fn semantic_errors_are_clear() {
        assert_eq!(
            error(r#"path "a" { capabilities = ["read", "fly"] }"#),
            r#"path "a": invalid capability "fly""#
        );
        assert_eq!(
            error(r#"path "a" { capabilities = "read" }"#),
            r#"path "a": "capabilities" must be a list of strings, not a string"#
        );
        assert_eq!(
            error(r#"path "a" { capabilites = ["read"] }"#),
            r#"path "a": invalid key "capabilites""#
        );
        assert_eq!(error(r#"paths "a" { }"#), r#"invalid key "paths""#);
        assert_eq!(error(r#"foo = 1"#), r#"invalid key "foo""#);
        assert_eq!(
            error(r#"path "a" "b" { }"#),
            "path block must have exactly one label, found 2"
        );
        assert_eq!(
            error(r#"path "a" { policy = "admin" }"#),
            r#"path "a": invalid policy "admin""#
        );
        assert_eq!(
            error(r#"path "a/*/b" { capabilities = ["read"] }"#),
            r#"path "a/*/b": '*' is only allowed as the last character"#
        );
        let duplicate =
            error("path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"update\"]\n}");
        assert!(
            duplicate.starts_with("At 3:2:") && duplicate.contains("redefined"),
            "{duplicate}"
        );
        assert_eq!(
            error("path \"a\" {\n allowed_parameters = {}\n allowed_parameters {}\n}"),
            r#"path "a": duplicate key "allowed_parameters""#
        );
        assert_eq!(
            error(r#"path "a" { capabilities = [var.x] }"#),
            r#"path "a": "capabilities" must be a list of strings, but has an expression"#
        );
        assert!(!error(r#"["x"]"#).is_empty());
        assert_eq!(error(r#"{"nope": 1}"#), r#"invalid key "nope""#);
    }

    #[test]
    fn restrictive_parameter_constraints_are_refused() {
        for body in [
            r#"allowed_parameters = { "context" = [] }"#,
            r#"denied_parameters = { "hash_algorithm" = ["sha1"] }"#,
            r#"required_parameters = ["context"]"#,
            r#"mfa_methods = ["totp"]"#,
            r#"control_group = { }"#,
        ] {
            let reason = error(&format!("path \"transit/sign/*\" {{\n{body}\n}}"));
            assert!(reason.contains("is not supported"), "{reason}");
        }
    }
}
