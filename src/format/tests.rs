use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::timeutil::parse_rfc3339;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The golden records: `tests/golden/<name>.input.json`, one record a file.
fn golden_inputs() -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".input.json")?.to_string();
            let raw = std::fs::read_to_string(golden_dir().join(&name)).unwrap();
            Some((stem, raw.trim_end().to_string()))
        })
        .collect();
    v.sort();
    v
}

fn event(raw: &str) -> StoredEvent<'_> {
    let v: Value = serde_json::from_str(raw).unwrap();
    StoredEvent {
        seq: 7,
        tenant: "acme",
        id: v["id"].as_i64().unwrap_or(1),
        created_at: v["created_at"].as_str().and_then(parse_rfc3339).unwrap_or(0),
        raw,
    }
}

fn encode(enc: &Encoder, raw: &str) -> Vec<u8> {
    let mut out = Vec::new();
    enc.encode_into(&event(raw), &mut out).unwrap();
    out
}

fn encode_value(enc: &Encoder, raw: &str) -> Value {
    let out = encode(enc, raw);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

#[test]
fn golden_ecs_and_ocsf_match_the_stored_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let inputs = golden_inputs();
    assert!(inputs.len() >= 14, "golden records missing: {}", inputs.len());
    let mut mismatches = Vec::new();
    for (name, raw) in &inputs {
        // raw: byte for byte.
        assert_eq!(encode(&Encoder::new(Shape::Raw, None), raw), raw.as_bytes(), "{name}: raw");
        for shape in [Shape::Ecs, Shape::Ocsf] {
            let got = encode_value(&Encoder::new(shape, None), raw);
            let path = golden_dir().join(format!("{name}.{}.json", shape.as_str()));
            if update {
                std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
                continue;
            }
            let want: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display())),
            )
            .unwrap();
            if got != want {
                mismatches.push(format!(
                    "{}:\n  got  {}\n  want {}",
                    path.display(),
                    serde_json::to_string(&got).unwrap(),
                    serde_json::to_string(&want).unwrap()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "golden mismatch (UPDATE_GOLDEN=1 rewrites them):\n{}", mismatches.join("\n"));
}

#[test]
fn inputs_and_outputs_pass_through_untouched_whatever_their_shape() {
    for (name, raw) in golden_inputs() {
        let record: Value = serde_json::from_str(&raw).unwrap();
        let ecs = encode_value(&Encoder::new(Shape::Ecs, None), &raw);
        let ocsf = encode_value(&Encoder::new(Shape::Ocsf, None), &raw);
        for key in ["inputs", "outputs", "updated_at"] {
            assert_eq!(ecs["tines"]["audit_log"].get(key), record.get(key), "{name}: ecs {key}");
            assert_eq!(ocsf["unmapped"].get(key), record.get(key), "{name}: ocsf {key}");
        }
        assert_eq!(ecs["event"]["original"], Value::String(raw.clone()), "{name}");
        assert_eq!(ocsf["raw_data"], Value::String(raw.clone()), "{name}");
    }
}

/// The failure that broke Elastic's integration (elastic/integrations#11886):
/// `inputs.inputs.options` is an array in one record, an object in another and
/// a JSON string in a third. Each comes out valid and exactly as it came.
#[test]
fn the_same_inputs_path_may_hold_an_array_an_object_or_a_string() {
    let mut seen = Vec::new();
    for (name, raw) in golden_inputs().into_iter().filter(|(n, _)| n.starts_with("form_field_update_options_")) {
        let options = serde_json::from_str::<Value>(&raw).unwrap()["inputs"]["inputs"]["options"].clone();
        let mut both = Vec::new();
        for enc in [Encoder::new(Shape::Ecs, None), Encoder::new(Shape::Ocsf, None)] {
            let mut out = Vec::new();
            for _ in 0..2 {
                // Several events into one buffer, as a sink does, newline-separated.
                enc.encode_into(&event(&raw), &mut out).unwrap();
                out.push(b'\n');
            }
            for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                both.push(serde_json::from_slice::<Value>(line).unwrap());
            }
        }
        assert_eq!(both[0]["tines"]["audit_log"]["inputs"]["inputs"]["options"], options, "{name}");
        assert_eq!(both[2]["unmapped"]["inputs"]["inputs"]["options"], options, "{name}");
        seen.push(match options {
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::String(_) => "string",
            _ => "other",
        });
    }
    seen.sort_unstable();
    assert_eq!(seen, ["array", "object", "string"]);
}

fn golden(name: &str) -> String {
    golden_inputs().into_iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn ecs_maps_the_fields_elastic_maps() {
    let v = encode_value(&Encoder::new(Shape::Ecs, None), &golden("form_field_update_options_array"));
    assert_eq!(v["@timestamp"], "2024-11-25T10:35:55Z");
    assert_eq!(v["event"]["id"], "41274135");
    assert_eq!(v["event"]["action"], "FormFieldUpdate");
    assert_eq!(v["event"]["category"], json!(["configuration"]));
    assert_eq!(v["event"]["type"], json!(["change"]));
    assert_eq!(
        (v["event"]["module"].as_str(), v["event"]["dataset"].as_str()),
        (Some("tines"), Some("tines.audit_logs"))
    );
    assert_eq!(v["user"], json!({"id": "58468", "email": "jac@example.com", "name": "Jac O'All-Trades"}));
    assert_eq!(v["source"], json!({"ip": "92.19.2.1"}));
    assert_eq!(v["related"], json!({"user": ["Jac O'All-Trades", "jac@example.com"], "ip": ["92.19.2.1"]}));
    assert_eq!(v["tines"]["tenant_id"], 1111);
    assert_eq!(
        v["tines"]["audit_log"]["operation"],
        json!({"description": "A form field was updated", "category": "page", "verb": "update"})
    );
    for dup in ["id", "operation_name", "user_id", "user_email", "user_name", "request_ip", "request_user_agent"] {
        assert!(v["tines"]["audit_log"].get(dup).is_none(), "{dup} is mapped, not repeated");
    }

    let login = encode_value(&Encoder::new(Shape::Ecs, None), &golden("login_blank_user_name"));
    assert_eq!((&login["event"]["category"], &login["event"]["type"]), (&json!(["authentication"]), &json!(["start"])));
    assert!(login["user"].get("name").is_none(), "a blank user_name is left out");
    assert_eq!(login["related"]["user"], json!(["grove@example.com"]));
}

#[test]
fn ocsf_fills_api_activity_and_routes_logins_to_authentication() {
    let v = encode_value(&Encoder::new(Shape::Ocsf, None), &golden("user_credential_destruction"));
    assert_eq!((v["class_uid"].as_i64(), v["category_uid"].as_i64()), (Some(6003), Some(6)));
    assert_eq!((v["activity_id"].as_i64(), v["type_uid"].as_i64()), (Some(4), Some(600304)));
    assert_eq!(v["time"], 1_689_327_727_000_i64);
    assert_eq!(v["severity_id"], 1);
    assert_eq!(v["metadata"]["uid"], "1488526");
    assert_eq!(v["metadata"]["version"], OCSF_VERSION);
    assert_eq!(v["metadata"]["product"], json!({"name": "Tines", "vendor_name": "Tines"}));
    assert_eq!(v["metadata"]["original_time"], "2023-07-14T09:42:07Z");
    assert_eq!(v["metadata"]["tenant_uid"], "5044");
    assert_eq!(
        v["actor"]["user"],
        json!({"uid": "7642", "email_addr": "grove@example.com", "name": "Grove Collector"})
    );
    assert_eq!(v["src_endpoint"], json!({"ip": "198.51.100.23"}));
    assert_eq!(v["http_request"], json!({"user_agent": "python-requests/2.31.0"}));
    assert_eq!(v["api"], json!({"operation": "UserCredentialDestruction"}));
    assert_eq!(v["unmapped"]["inputs"], json!({"credentialId": 3013}));
    assert_eq!(v["unmapped"]["operation"]["category"], "credential");

    let login = encode_value(&Encoder::new(Shape::Ocsf, None), &golden("login_null_inputs"));
    assert_eq!((login["class_uid"].as_i64(), login["activity_id"].as_i64()), (Some(3002), Some(1)));
    assert_eq!((login["category_uid"].as_i64(), login["type_uid"].as_i64()), (Some(3), Some(300201)));
    assert_eq!(login["user"], login["actor"]["user"]);
    assert_eq!(login["service"], json!({"name": "Tines"}));
    assert!(login.get("api").is_none());

    let run = encode_value(
        &Encoder::new(Shape::Ocsf, None),
        r#"{"created_at":"2024-01-01T00:00:00Z","id":9,"operation_name":"ActionRun","user_id":1}"#,
    );
    assert_eq!((run["activity_id"].as_i64(), run["activity_name"].as_str()), (Some(99), Some("Run")));
    assert_eq!(run["type_uid"], 600399);
}

fn record(op: &str, inputs: &str) -> String {
    format!(
        r#"{{"created_at":"2024-05-01T08:00:00Z","id":77,"inputs":{inputs},"operation_name":"{op}","request_ip":"10.1.2.3","request_user_agent":"ua","tenant_id":3,"updated_at":"2024-05-01T08:00:00Z","user_email":"admin@example.com","user_id":5,"user_name":"Ada Admin"}}"#
    )
}

#[test]
fn iam_operations_go_to_iam_classes_when_inputs_name_their_target() {
    let ocsf = Encoder::new(Shape::Ocsf, None);
    let ecs = Encoder::new(Shape::Ecs, None);

    let role = record("UserTeamRoleChange", r#"{"inputs":{"userId":42,"teamId":7,"role":"EDITOR"}}"#);
    let v = encode_value(&ocsf, &role);
    assert_eq!((v["class_uid"].as_i64(), v["type_uid"].as_i64()), (Some(3005), Some(300501)));
    assert_eq!((&v["user"], &v["privileges"]), (&json!({"uid": "42"}), &json!(["EDITOR"])));
    let e = encode_value(&ecs, &role);
    assert_eq!((&e["event"]["category"], &e["event"]["type"]), (&json!(["iam"]), &json!(["user", "change"])));
    assert_eq!((&e["user"]["target"], &e["group"]), (&json!({"id": "42", "roles": ["EDITOR"]}), &json!({"id": "7"})));

    let add = record("TeamMembersAddition", r#"{"inputs":{"teamId":7,"userId":42}}"#);
    let v = encode_value(&ocsf, &add);
    assert_eq!((v["class_uid"].as_i64(), v["activity_id"].as_i64()), (Some(3006), Some(3)));
    assert_eq!((&v["group"], &v["user"]), (&json!({"uid": "7"}), &json!({"uid": "42"})));
    assert_eq!(encode_value(&ecs, &add)["event"]["type"], json!(["group", "change"]));

    let invite = record("UsersInvitation", r#"{"inputs":{"email":"new.hire@example.com","admin":false}}"#);
    let v = encode_value(&ocsf, &invite);
    assert_eq!((v["class_uid"].as_i64(), v["activity_id"].as_i64()), (Some(3001), Some(1)));
    assert_eq!(v["user"], json!({"email_addr": "new.hire@example.com"}));
    let e = encode_value(&ecs, &invite);
    assert_eq!(e["event"]["type"], json!(["user", "creation"]));
    assert_eq!(e["related"]["user"], json!(["Ada Admin", "admin@example.com", "new.hire@example.com"]));

    // No target in the record: the event stays API Activity rather than lack a required `user`.
    let v = encode_value(&ocsf, &record("UserDeletion", "null"));
    assert_eq!((v["class_uid"].as_i64(), v["activity_id"].as_i64()), (Some(6003), Some(4)));
    assert_eq!(encode_value(&ecs, &record("UserDeletion", "null"))["event"]["type"], json!(["user", "deletion"]));

    let team = encode_value(&ecs, &record("TeamDestruction", r#"{"inputs":{"teamId":7}}"#));
    assert_eq!((&team["event"]["type"], &team["group"]["id"]), (&json!(["group", "deletion"]), &json!("7")));
}

#[test]
fn odd_values_are_passed_on_not_mapped_and_never_break_the_output() {
    let raw = r#"{"created_at":"2024-05-01T08:00:00Z","id":"78","operation_name":"BrandNewThingCreation","request_ip":"unknown","user_id":null,"user_email":["x"],"user_name":"Zoë \"Z\" \\ Tab\t","request_user_agent":"","tenant_id":"3","outputs":"ok","operation":"theirs","weird\"key":1}"#;
    let e = encode_value(&Encoder::new(Shape::Ecs, None), raw);
    assert_eq!(e["source"], json!({"address": "unknown"}));
    assert!(e.get("related").unwrap().get("ip").is_none());
    assert_eq!(e["user"], json!({"name": "Zoë \"Z\" \\ Tab\t"}));
    assert!(e.get("user_agent").is_none());
    assert_eq!(e["tines"]["audit_log"]["user_email"], json!(["x"]), "unmappable values are kept");
    assert_eq!(e["tines"]["audit_log"]["operation"], "theirs", "a record field wins over the enrichment");
    assert_eq!(e["tines"]["audit_log"]["weird\"key"], 1);
    assert_eq!(e["tines"]["tenant_id"], "3");
    assert_eq!(e["event"]["type"], json!(["creation"]));
    let o = encode_value(&Encoder::new(Shape::Ocsf, None), raw);
    assert_eq!(o["src_endpoint"], json!({"uid": "unknown"}));
    assert_eq!(o["message"], "BrandNewThingCreation");
    assert_eq!((o["activity_id"].as_i64(), o["metadata"]["tenant_uid"].as_str()), (Some(1), Some("3")));
    assert!(o["unmapped"].get("operation").is_some());
}

#[test]
fn malformed_records_are_errors_and_append_nothing() {
    let p = PseudonymizeConfig {
        key: "0123456789abcdef".into(),
        fields: PseudoField::ALL.to_vec(),
        mode: PseudoMode::Hash,
    };
    let encoders = [
        Encoder::new(Shape::Ecs, None),
        Encoder::new(Shape::Ocsf, None),
        Encoder::new(Shape::Raw, Some(p.build().unwrap())),
    ];
    for bad in ["", "{", "[1]", "null", r#"{"id":1}"#, r#"{"operation_name":"Login"}{"#, "\u{0}"] {
        for enc in &encoders {
            let mut out = b"before".to_vec();
            let ev = StoredEvent { seq: 3, tenant: "t", id: 9, created_at: 0, raw: bad };
            let err = enc.encode_into(&ev, &mut out).unwrap_err();
            assert!(err.to_string().contains("journal event 3 (audit log 9)"), "{err}");
            assert_eq!(out, b"before");
        }
    }
    // Raw without pseudonymisation copies whatever the journal holds.
    let mut out = Vec::new();
    Encoder::new(Shape::Raw, None)
        .encode_into(&StoredEvent { seq: 1, tenant: "t", id: 1, created_at: 0, raw: "{" }, &mut out)
        .unwrap();
    assert_eq!(out, b"{");
}

#[test]
fn shape_names_deserialise_in_lowercase() {
    #[derive(serde::Deserialize)]
    struct S {
        #[serde(default)]
        shape: Shape,
    }
    let s = |t: &str| toml::from_str::<S>(t).map(|s| s.shape);
    assert_eq!(s("shape = \"ecs\"").unwrap(), Shape::Ecs);
    assert_eq!(s("shape = \"ocsf\"").unwrap(), Shape::Ocsf);
    assert_eq!(s("shape = \"raw\"").unwrap(), Shape::Raw);
    assert_eq!(s("").unwrap(), Shape::Raw);
    assert!(s("shape = \"ECS\"").is_err());
}

// ---- pseudonymisation ----

const KEY: &[u8] = b"a-test-key-of-32-bytes-0123456789";

fn pseudo(mode: PseudoMode) -> Pseudonymizer {
    Pseudonymizer::new(KEY, &PseudoField::ALL, mode)
}

#[test]
fn pseudonyms_are_stable_keyed_and_well_formed() {
    let p = pseudo(PseudoMode::Hash);
    let a = p.pseudonym("analyst@example.com");
    assert_eq!(a, p.pseudonym("analyst@example.com"));
    assert_eq!(a, pseudo(PseudoMode::Hash).pseudonym("analyst@example.com"), "same key, same pseudonym");
    assert_ne!(a, p.pseudonym("analyst@example.org"));
    assert_ne!(
        a,
        Pseudonymizer::new(b"another-key-of-32-bytes-987654321", &PseudoField::ALL, PseudoMode::Hash)
            .pseudonym("analyst@example.com")
    );
    assert!(a.starts_with(PSEUDONYM_PREFIX) && a.len() == PSEUDONYM_PREFIX.len() + 32, "{a}");
    assert!(a[PSEUDONYM_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // RFC 4231 test case 2 (key "Jefe"): HMAC-SHA256 starts 5bdcc146bf60754e6a042426089575c7.
    let jefe = Pseudonymizer::new(b"Jefe", &[], PseudoMode::Hash);
    assert_eq!(jefe.pseudonym("what do ya want for nothing?"), "pseu:5bdcc146bf60754e6a042426089575c7");
}

#[test]
fn hashing_replaces_the_fields_everywhere_and_consistently() {
    let p = pseudo(PseudoMode::Hash);
    let raw = golden("login_null_inputs");
    let (email, name, ip) =
        (p.pseudonym("analyst@example.com"), p.pseudonym("Example Analyst"), p.pseudonym("216.160.83.56"));

    let r: Value = serde_json::from_slice(&encode(&Encoder::new(Shape::Raw, Some(p.clone())), &raw)).unwrap();
    assert_eq!((r["user_email"].as_str(), r["user_name"].as_str()), (Some(&*email), Some(&*name)));
    assert_eq!(r["request_ip"].as_str(), Some(&*ip));
    assert_eq!(r["user_id"], 1234, "only the configured fields change");
    let keys: Vec<_> = serde_json::from_str::<serde_json::Map<String, Value>>(&raw).unwrap().keys().cloned().collect();
    assert_eq!(r.as_object().unwrap().keys().cloned().collect::<Vec<_>>(), keys);

    let e = encode_value(&Encoder::new(Shape::Ecs, Some(p.clone())), &raw);
    assert_eq!((e["user"]["email"].as_str(), e["user"]["name"].as_str()), (Some(&*email), Some(&*name)));
    assert_eq!(e["source"], json!({"address": ip}), "a pseudonym is not an IP address");
    assert_eq!(e["related"]["user"], json!([name, email]));
    assert!(e["related"].get("ip").is_none());
    let original: Value = serde_json::from_str(e["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original, r, "event.original is the pseudonymised record");

    let o = encode_value(&Encoder::new(Shape::Ocsf, Some(p.clone())), &raw);
    assert_eq!(o["actor"]["user"], json!({"uid": "1234", "email_addr": email, "name": name}));
    assert_eq!(o["src_endpoint"], json!({"uid": ip}));
    assert_eq!(serde_json::from_str::<Value>(o["raw_data"].as_str().unwrap()).unwrap(), r);
}

#[test]
fn dropping_removes_the_fields() {
    let p = pseudo(PseudoMode::Drop);
    let raw = golden("authentication_token_creation");
    let r: Value = serde_json::from_slice(&encode(&Encoder::new(Shape::Raw, Some(p.clone())), &raw)).unwrap();
    assert_eq!((&r["user_email"], &r["user_name"], &r["request_ip"]), (&Value::Null, &Value::Null, &Value::Null));
    let e = encode_value(&Encoder::new(Shape::Ecs, Some(p.clone())), &raw);
    assert_eq!(e["user"], json!({"id": "1234"}));
    assert!(e.get("source").is_none() && e.get("related").is_none());
    let o = encode_value(&Encoder::new(Shape::Ocsf, Some(p.clone())), &raw);
    assert_eq!(o["actor"]["user"], json!({"uid": "1234"}));
    assert!(o.get("src_endpoint").is_none());

    // Only the configured fields.
    let only_ip = Pseudonymizer::new(KEY, &[PseudoField::RequestIp], PseudoMode::Drop);
    let e = encode_value(&Encoder::new(Shape::Ecs, Some(only_ip)), &raw);
    assert_eq!(e["user"]["email"], "analyst@example.com");
    assert!(e.get("source").is_none());
}

#[test]
fn no_original_value_is_left_anywhere_in_the_output() {
    // The golden records, plus values hidden in inputs and outputs, escaped, and in longer text.
    let mut raws: Vec<String> = golden_inputs().into_iter().map(|(_, r)| r).collect();
    raws.push(record(
        "UserEdit",
        r#"{"inputs":{"userId":5,"email":"admin@example.com","note":"ping admin@example.com","names":["Ada Admin"],"from":"10.1.2.3"}}"#,
    ));
    raws.push(r#"{"created_at":"2024-05-01T08:00:00Z","id":79,"inputs":{"who":"j\u00f6rg@example.com"},"operation_name":"UserEdit","outputs":{"by":"J\u00f6rg"},"request_ip":"2001:db8::1","user_email":"j\u00f6rg@example.com","user_name":"J\u00f6rg"}"#.into());
    let originals = [
        "analyst@example.com",
        "Example Analyst",
        "216.160.83.56",
        "jac@example.com",
        "Jac O'All-Trades",
        "92.19.2.1",
        "grove@example.com",
        "Grove Collector",
        "198.51.100.23",
        "admin@example.com",
        "Ada Admin",
        "10.1.2.3",
        "jörg@example.com",
        "j\\u00f6rg@example.com",
        "Jörg",
        "J\\u00f6rg",
        "2001:db8::1",
    ];
    for mode in [PseudoMode::Hash, PseudoMode::Drop] {
        for shape in [Shape::Raw, Shape::Ecs, Shape::Ocsf] {
            let enc = Encoder::new(shape, Some(pseudo(mode)));
            for raw in &raws {
                let out = encode(&enc, raw);
                let text = String::from_utf8(out).unwrap();
                serde_json::from_str::<Value>(&text).unwrap();
                for o in originals {
                    assert!(!text.contains(o), "{mode:?} {shape:?}: {o:?} left in {text}");
                    // Inside event.original / raw_data the record is escaped once more.
                    let escaped_twice = o.replace('\\', "\\\\");
                    assert!(!text.contains(&escaped_twice), "{mode:?} {shape:?}: {o:?} left in {text}");
                }
            }
        }
    }
}

#[test]
fn target_emails_follow_the_email_rule() {
    let invite = record("UsersInvitation", r#"{"inputs":{"email":"new.hire@example.com"}}"#);
    let p = pseudo(PseudoMode::Hash);
    let v = encode_value(&Encoder::new(Shape::Ocsf, Some(p.clone())), &invite);
    assert_eq!(v["user"], json!({"email_addr": p.pseudonym("new.hire@example.com")}));
    let e = encode_value(&Encoder::new(Shape::Ecs, Some(pseudo(PseudoMode::Drop))), &invite);
    assert!(e["user"].get("target").is_none());
}

#[test]
fn config_defaults_validation_and_a_debug_without_the_key() {
    let c: PseudonymizeConfig = toml::from_str("key = \"0123456789abcdef0123\"").unwrap();
    assert_eq!((c.fields.as_slice(), c.mode), (PseudoField::ALL.as_slice(), PseudoMode::Hash));
    let c: PseudonymizeConfig =
        toml::from_str("key = \"0123456789abcdef0123\"\nfields = [\"user_email\"]\nmode = \"drop\"").unwrap();
    assert_eq!((c.fields.as_slice(), c.mode), ([PseudoField::UserEmail].as_slice(), PseudoMode::Drop));
    let p = c.build().unwrap();
    assert!(p.covers(PseudoField::UserEmail) && !p.covers(PseudoField::UserName));
    assert!(!format!("{c:?}{p:?}").contains("0123456789abcdef"), "{c:?} {p:?}");
    assert!(toml::from_str::<PseudonymizeConfig>("key = \"0123456789abcdef\"\nsalt = 1").is_err());
    assert!(toml::from_str::<PseudonymizeConfig>("key = \"0123456789abcdef\"\nfields = [\"user_id\"]").is_err());
    assert!(toml::from_str::<PseudonymizeConfig>("fields = []").is_err());
    let short = PseudonymizeConfig { key: "short".into(), fields: PseudoField::ALL.to_vec(), mode: PseudoMode::Hash };
    assert!(short.build().unwrap_err().contains("at least 16 bytes"));
    let none = PseudonymizeConfig { key: "0123456789abcdef".into(), fields: vec![], mode: PseudoMode::Hash };
    assert!(none.build().is_err());
}

/// Measures encoding speed; run in release:
/// `cargo test --release --lib format::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let raws: Vec<String> = golden_inputs().into_iter().map(|(_, r)| r).collect();
    let events: Vec<StoredEvent<'_>> = raws.iter().map(|r| event(r)).collect();
    let n = 200_000;
    let p = pseudo(PseudoMode::Hash);
    for (label, enc) in [
        ("raw", Encoder::new(Shape::Raw, None)),
        ("raw+pseudonymised", Encoder::new(Shape::Raw, Some(p.clone()))),
        ("ecs", Encoder::new(Shape::Ecs, None)),
        ("ecs without event.original", Encoder::new(Shape::Ecs, None).with_original(false)),
        ("ecs+pseudonymised", Encoder::new(Shape::Ecs, Some(p.clone()))),
        ("ocsf", Encoder::new(Shape::Ocsf, None)),
        ("ocsf+pseudonymised", Encoder::new(Shape::Ocsf, Some(p.clone()))),
    ] {
        let mut out = Vec::with_capacity(8 << 20);
        let start = Instant::now();
        let mut bytes = 0;
        for i in 0..n {
            if out.len() > (4 << 20) {
                bytes += out.len();
                out.clear();
            }
            enc.encode_into(&events[i % events.len()], &mut out).unwrap();
            out.push(b'\n');
        }
        bytes += out.len();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label:>28}: {:>9.0} events/s, {:>6.1} MB/s out, {:.0} B/event",
            n as f64 / secs,
            bytes as f64 / secs / 1e6,
            bytes as f64 / n as f64
        );
    }
}
