//! Keeps `openapi/cipherd.json` in sync with the routes:
//!
//! 1. the document is OpenAPI 3 with the required top-level fields, and is
//!    internally consistent (every `$ref` resolves, path parameters match the
//!    templates, operation ids are unique);
//! 2. every transit route shape (`Route::template`) is documented with exactly
//!    the methods the route allows;
//! 3. every documented transit path parses back to the route it documents;
//! 4. every documented `sys/` and `auth/token/` operation is answered by the
//!    server (not `404 unsupported path`, not 405), and the endpoints the issue
//!    names are all documented;
//! 5. `GET /v1/sys/internal/specs/openapi` (and `sys/internal/openapi`) serve
//!    this very document.

#[path = "common/inprocess.rs"]
mod inprocess;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use cipherd::api::rest::{transit_route_for, transit_route_templates};
use inprocess::{InProcessServer, ROOT_TOKEN};

const DOCUMENT: &str = include_str!("../openapi/cipherd.json");

/// The HTTP methods an OpenAPI path item may hold.
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The `sys/` and `auth/token/` operations the document must describe, as
/// `(path, method)`; `list` is LIST (documented as `get` with `list=true`).
/// Those routes are string matches in `sys.rs` and `token.rs`, not a table the
/// test could enumerate: a new endpoint goes here and into the document.
const REQUIRED_NON_TRANSIT: &[(&str, &str)] = &[
    ("/sys/init", "get"),
    ("/sys/init", "post"),
    ("/sys/unseal", "post"),
    ("/sys/seal", "post"),
    ("/sys/seal-status", "get"),
    ("/sys/health", "get"),
    ("/sys/health", "head"),
    ("/sys/leader", "get"),
    ("/sys/mounts", "get"),
    ("/sys/mounts/{path}", "get"),
    ("/sys/mounts/{path}", "post"),
    ("/sys/mounts/{path}", "delete"),
    ("/sys/mounts/{path}/tune", "get"),
    ("/sys/mounts/{path}/tune", "post"),
    ("/sys/policy", "get"),
    ("/sys/policy/{name}", "get"),
    ("/sys/policy/{name}", "post"),
    ("/sys/policy/{name}", "delete"),
    ("/sys/policies/acl", "list"),
    ("/sys/policies/acl/{name}", "get"),
    ("/sys/policies/acl/{name}", "post"),
    ("/sys/policies/acl/{name}", "delete"),
    ("/sys/capabilities-self", "post"),
    ("/sys/rotate", "post"),
    ("/sys/key-status", "get"),
    ("/sys/audit", "get"),
    ("/sys/audit/{path}", "post"),
    ("/sys/audit/{path}", "delete"),
    ("/sys/audit/signing-key", "get"),
    ("/sys/audit-hash/{path}", "post"),
    ("/sys/internal/specs/openapi", "get"),
    ("/sys/internal/openapi", "get"),
    ("/auth/token/create", "post"),
    ("/auth/token/create-orphan", "post"),
    ("/auth/token/lookup", "post"),
    ("/auth/token/lookup-self", "get"),
    ("/auth/token/lookup-accessor", "post"),
    ("/auth/token/renew", "post"),
    ("/auth/token/renew-self", "post"),
    ("/auth/token/renew-accessor", "post"),
    ("/auth/token/revoke", "post"),
    ("/auth/token/revoke-self", "post"),
    ("/auth/token/revoke-orphan", "post"),
    ("/auth/token/revoke-accessor", "post"),
    ("/auth/token/accessors", "list"),
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi/cipherd.json is valid JSON")
}

/// Follows a local `$ref` (`#/components/...`), once.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => value,
    }
}

fn paths(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["paths"].as_object().expect("paths is an object")
}

/// The parameters of an operation: the path item's, then the operation's
/// (which override by name and location).
fn parameters<'a>(doc: &'a Value, item: &'a Value, operation: &'a Value) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = Vec::new();
    for list in [&item["parameters"], &operation["parameters"]] {
        for parameter in list.as_array().into_iter().flatten() {
            let parameter = resolve(doc, parameter);
            out.retain(|p| !(p["name"] == parameter["name"] && p["in"] == parameter["in"]));
            out.push(parameter);
        }
    }
    out
}

/// Whether the operation is LIST: a `get` with a required `list=true` query parameter.
fn is_list(doc: &Value, item: &Value, operation: &Value) -> bool {
    parameters(doc, item, operation)
        .iter()
        .any(|p| p["in"] == "query" && p["name"] == "list" && p["required"] == true)
}

/// The operations of a path item, named as the routes name methods: `get`,
/// `post` (also for `put`), `delete`, `head`, and `list` for LIST.
fn operations<'a>(doc: &'a Value, item: &'a Value) -> Vec<(&'static str, &'a Value)> {
    let mut out = Vec::new();
    for method in HTTP_METHODS {
        let Some(operation) = item.get(method) else {
            continue;
        };
        let name = match method {
            "get" if is_list(doc, item, operation) => "list",
            "put" => "post",
            other => other,
        };
        out.push((name, operation));
    }
    out
}

fn method_set<'a>(methods: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    methods.into_iter().collect()
}

/// The `{name}` placeholders of a path template, in order.
fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// Substitutes sample values into a template (`sample` maps a placeholder).
fn fill(template: &str, sample: impl Fn(&str) -> String) -> String {
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => sample(name),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Sample values for the transit placeholders; a new placeholder needs one here.
fn transit_sample(name: &str) -> String {
    match name {
        "mount" => "transit",
        "name" => "k",
        "type" => "public-key",
        "version" => "1",
        "plaintext" => "wrapped",
        "source" => "all",
        "urlbytes" => "16",
        "urlalgorithm" => "sha2-256",
        other => panic!(
            "no sample value for transit path parameter {{{other}}}; add one to tests/openapi.rs"
        ),
    }
    .to_owned()
}

/// Sample values for the `sys/` and `auth/token/` placeholders.
fn non_transit_sample(name: &str) -> String {
    match name {
        "path" => "transit",
        "name" => "default",
        "token" => ROOT_TOKEN,
        other => {
            panic!("no sample value for path parameter {{{other}}}; add one to tests/openapi.rs")
        }
    }
    .to_owned()
}

/// Every `$ref` anywhere in `value`.
fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn document_is_openapi_3_with_required_fields() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi version string");
    assert!(
        version.starts_with("3.0.") || version.starts_with("3.1."),
        "openapi {version}"
    );
    assert_eq!(doc["info"]["title"], "cipherd");
    assert_eq!(
        doc["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version follows Cargo.toml"
    );
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:8200/v1");
    assert!(!paths(&doc).is_empty());

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "apiKey" && s["in"] == "header" && s["name"] == "X-Vault-Token"),
        "an X-Vault-Token header scheme"
    );
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "http" && s["scheme"] == "bearer"),
        "a bearer scheme"
    );
    for requirement in doc["security"].as_array().expect("top-level security") {
        for name in requirement
            .as_object()
            .expect("security requirement")
            .keys()
        {
            assert!(
                schemes.contains_key(name),
                "security requirement {name} has no scheme"
            );
        }
    }

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {reference}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
    }

    let mut operation_ids = BTreeSet::new();
    for (template, item) in paths(&doc) {
        assert!(template.starts_with('/'), "{template}");
        let ops = operations(&doc, item);
        assert!(!ops.is_empty(), "{template} has no operation");
        for (method, operation) in ops {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {template}: operationId"));
            assert!(operation_ids.insert(id), "duplicate operationId {id}");
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {template}: responses"));
            assert!(!responses.is_empty(), "{method} {template}: no responses");
            for response in responses.values() {
                assert!(
                    resolve(&doc, response)["description"].is_string(),
                    "{method} {template}: response description"
                );
            }
            // Path parameters and placeholders match one to one.
            let declared: BTreeSet<&str> = parameters(&doc, item, operation)
                .into_iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(
                        p["required"], true,
                        "{method} {template}: path parameter {} must be required",
                        p["name"]
                    );
                    p["name"].as_str().expect("parameter name")
                })
                .collect();
            let used: BTreeSet<&str> = placeholders(template).into_iter().collect();
            assert_eq!(
                declared, used,
                "{method} {template}: path parameters vs placeholders"
            );
            if let Some(body) = operation.get("requestBody") {
                assert!(
                    resolve(&doc, body)["content"]["application/json"]["schema"].is_object(),
                    "{method} {template}: body schema"
                );
            }
        }
    }
}

#[test]
fn every_transit_route_is_documented_with_its_methods() {
    let doc = document();
    let templates = transit_route_templates();
    assert!(
        templates.len() >= 20,
        "expected the whole transit table, got {}",
        templates.len()
    );
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (template, methods) in &templates {
        assert!(
            seen.insert(*template),
            "two route shapes share the template {template}"
        );
        assert!(!methods.is_empty(), "{template} allows no method");
        // The template and the parser agree.
        let rest = fill(template, transit_sample);
        let rest = rest
            .strip_prefix("/transit/")
            .expect("templates start with /{mount}/");
        match transit_route_for(rest) {
            Some((parsed, _)) if parsed == *template => {}
            other => problems.push(format!(
                "{template}: sample path {rest:?} parses to {other:?}"
            )),
        }
        let Some(item) = doc["paths"].get(*template) else {
            problems.push(format!("{template} is not documented"));
            continue;
        };
        let documented = method_set(operations(&doc, item).into_iter().map(|(m, _)| m));
        let allowed = method_set(methods.iter().copied());
        if documented != allowed {
            problems.push(format!(
                "{template}: documented {documented:?}, routes allow {allowed:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "transit routes vs openapi/cipherd.json:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_documented_transit_path_is_a_route() {
    let doc = document();
    let mut problems = Vec::new();
    let mut transit_paths = 0;
    for (template, item) in paths(&doc) {
        if !template.starts_with("/{mount}/") {
            assert!(
                template.starts_with("/sys/") || template.starts_with("/auth/token/"),
                "{template} is neither under /{{mount}}/, /sys/ nor /auth/token/"
            );
            continue;
        }
        transit_paths += 1;
        let mount = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p))
            .find(|p| p["name"] == "mount" && p["in"] == "path");
        match mount {
            Some(mount) if mount["schema"]["default"] == "transit" => {}
            _ => problems.push(format!(
                "{template}: {{mount}} must be a path parameter with default `transit`"
            )),
        }
        let rest = fill(template, transit_sample);
        let rest = rest.strip_prefix("/transit/").expect("sample mount");
        let Some((parsed, allowed)) = transit_route_for(rest) else {
            problems.push(format!("{template}: sample path {rest:?} is no route"));
            continue;
        };
        if parsed != template.as_str() {
            problems.push(format!(
                "{template}: sample path {rest:?} parses to the route of {parsed}"
            ));
        }
        for (method, _) in operations(&doc, item) {
            if !allowed.contains(&method) {
                problems.push(format!(
                    "{template}: documents {method}, the route allows {allowed:?}"
                ));
            }
        }
    }
    assert!(
        transit_paths >= 20,
        "expected the transit paths, found {transit_paths}"
    );
    assert!(
        problems.is_empty(),
        "openapi/cipherd.json vs transit routes:\n{}",
        problems.join("\n")
    );
}

#[test]
fn required_sys_and_token_operations_are_documented() {
    let doc = document();
    let documented: BTreeMap<&str, BTreeSet<&str>> = paths(&doc)
        .iter()
        .map(|(template, item)| {
            (
                template.as_str(),
                method_set(operations(&doc, item).into_iter().map(|(m, _)| m)),
            )
        })
        .collect();
    let missing: Vec<String> = REQUIRED_NON_TRANSIT
        .iter()
        .filter(|(path, method)| !documented.get(path).is_some_and(|m| m.contains(method)))
        .map(|(path, method)| format!("{method} {path}"))
        .collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");
}

#[tokio::test]
async fn documented_sys_and_token_operations_are_served() {
    let doc = document();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (template, item) in paths(&doc) {
        if !(template.starts_with("/sys/") || template.starts_with("/auth/token/")) {
            continue;
        }
        for (method, _) in operations(&doc, item) {
            // A fresh server per request: some operations seal the server or
            // revoke the root token.
            let server = InProcessServer::start().await;
            let path = fill(template.trim_start_matches('/'), non_transit_sample);
            let (http_method, path, body) = match method {
                "list" => ("GET", format!("{path}?list=true"), None),
                "get" => ("GET", path, None),
                "head" => ("HEAD", path, None),
                "delete" => ("DELETE", path, None),
                "post" => ("POST", path, Some(json!({}))),
                other => panic!("unexpected method {other} on {template}"),
            };
            let response = server.call(http_method, &path, body).await;
            checked += 1;
            let unsupported_path = response.status == 404
                && response
                    .errors()
                    .iter()
                    .any(|e| e.contains("unsupported path"));
            if unsupported_path || response.status == 405 {
                problems.push(format!(
                    "{method} {template} ({http_method} /v1/{path}): {} {}",
                    response.status, response.body
                ));
            }
        }
    }
    assert!(
        checked >= REQUIRED_NON_TRANSIT.len(),
        "checked only {checked} operations"
    );
    assert!(
        problems.is_empty(),
        "documented but not served:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn server_serves_this_document() {
    let doc = document();
    let server = InProcessServer::start().await;
    for path in ["sys/internal/specs/openapi", "sys/internal/openapi"] {
        let response = server.get(path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert_eq!(response.content_type.as_deref(), Some("application/json"));
        assert!(
            response.body == doc,
            "{path} does not serve openapi/cipherd.json"
        );

        let anonymous = server.call_as(None, "GET", path, None).await;
        assert_eq!(anonymous.status, 403, "{path} without a token");
        let bogus = server.call_as(Some("not-a-token"), "GET", path, None).await;
        assert_eq!(bogus.status, 403, "{path} with an unknown token");
    }
    let sealed = server.call("POST", "sys/seal", None).await;
    assert_eq!(sealed.status, 204);
    let response = server.get("sys/internal/specs/openapi").await;
    assert_eq!(response.status, 503, "sealed: {}", response.body);
}
