use super::*;

/// Settings with every shipped rule on: the examples' addresses resolve with the
/// emulator's own ranges, and the allowlist is the one the examples assume.
fn shipped(allowed: &[&str]) -> DetectSettings {
    DetectSettings {
        emulator_geoip: true,
        vars: [("allowed_countries".to_string(), allowed.iter().map(|c| c.to_string()).collect())].into(),
        suppress_secs: 3600,
        lookback_secs: Some(86_400),
        ..Default::default()
    }
}

fn custom(rules: &str) -> DetectSettings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.keep().join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    DetectSettings { rules: Some(vec![path]), suppress_secs: 3600, lookback_secs: Some(86_400), ..Default::default() }
}

fn outcome<'a>(rules: &'a [RuleOutcome], id: &str) -> &'a RuleOutcome {
    rules.iter().find(|r| r.rule == id).unwrap_or_else(|| panic!("no outcome for {id}"))
}

#[test]
fn every_shipped_rule_fires_on_its_canary() {
    let now = now_secs();
    let Evaluated { rules, alerts, left_out } = evaluate(&shipped(&["US", "IE", "GB"]), "run-1", now).unwrap();
    assert!(left_out.is_empty(), "{left_out:?}");
    let pack = RulePack::builtin();
    assert_eq!(rules.len(), pack.docs.len(), "one line per shipped rule");
    for doc in &pack.docs {
        let o = outcome(&rules, &doc.id);
        if pack.is_counted_only(&doc.id) {
            assert_eq!(o.result, RuleResult::Counted, "{o:?}");
            continue;
        }
        assert_eq!(o.result, RuleResult::Fired, "{o:?}");
        assert!(o.canary.as_deref().is_some_and(|c| c.starts_with("example ")), "{o:?}");
        let id = o.alert_id.as_deref().unwrap();
        let alert = alerts.iter().find(|a| a.id == id).unwrap();
        assert_eq!(alert.rule_id, doc.id);
        // The alert is dated by its synthetic trigger, which is dated now.
        assert_eq!(alert.event_time, now, "{alert:?}");
    }
    let alerting = pack.docs.iter().filter(|d| !pack.is_counted_only(&d.id)).count();
    assert_eq!(alerts.len(), alerting);
    let (passed, summary) = summarise(&rules, &[]);
    assert!(passed, "{summary}");
}

#[test]
fn test_alerts_say_they_are_tests_and_their_events_say_they_are_synthetic() {
    let Evaluated { rules, alerts, .. } = evaluate(&shipped(&["US", "IE", "GB"]), "run-7", now_secs()).unwrap();
    let o = outcome(&rules, "tines_credential_mass_deletion");
    let a = alerts.iter().find(|a| Some(&a.id) == o.alert_id.as_ref()).unwrap();
    assert_eq!(a.id, "selftest:run-7:tines_credential_mass_deletion");
    assert_eq!(a.tenant, TENANT);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["id"], a.id.as_str());
    assert_eq!(v["test"], true);
    assert_eq!(v["selftest"]["run"], "run-7");
    assert!(v["summary"].as_str().unwrap().starts_with("[TEST] "), "{v}");
    assert!(v["rule"]["title"].as_str().unwrap().starts_with("[TEST] "), "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 6, "the six deletions of its first example: {v}");
    assert!(events.iter().all(|e| e["synthetic"] == true && e["link"].is_null()), "{v}");
    // What a person reads: the Slack header and the stdout line.
    let slack = alerts::slack_payload(a);
    assert!(slack["blocks"][0]["text"]["text"].as_str().unwrap().starts_with("[TEST] "), "{slack}");
    assert!(alerts::text_line(a).contains("[TEST] "), "{}", alerts::text_line(a));
}

#[test]
fn a_synthetic_event_carries_a_field_no_tines_record_has() {
    // Not among the record's documented fields (nor the enrichments): no real record has it.
    assert!(!crate::detect::rules::is_known_field(SYNTHETIC_FIELD));
    let ev =
        synthesize(&json!({"operation_name": "Login", "created_at": "2020-01-01T00:00:00Z"}), 3, 1_700_000_000, "r")
            .unwrap();
    assert_eq!(ev[SYNTHETIC_FIELD], json!({"synthetic": true, "run": "r"}));
    assert_eq!(ev["created_at"], "2023-11-14T22:13:20Z", "dated when it runs, whatever the example said");
    assert_eq!(ev["id"], 3);
    assert!(synthesize(&json!([1]), 1, 0, "r").is_none());
}

#[test]
fn a_rule_without_examples_is_tested_with_a_canary_built_from_its_selection() {
    let s = custom(
        r#"
title: Named story deleted
id: named_story
logsource: {product: tines}
detection:
  sel:
    operation_name: [StoryDestruction, StoryBulkDestruction]
    inputs.inputs.name|contains: prod
  quiet:
    user_email|endswith: '@robots.example'
  condition: sel and not quiet
---
title: Regex only
id: regex_only
logsource: {product: tines}
detection:
  sel:
    user_email|re: '^adm.*'
  condition: sel
---
title: Logins
id: login
logsource: {product: tines}
detection:
  sel:
    operation_name: Login
  condition: sel
---
title: Many logins
id: many_logins
correlation:
  type: event_count
  rules: [login]
  group-by: [user_id]
  timespan: 1h
  condition: {gte: 4}
---
title: Distinct addresses
id: distinct
correlation:
  type: value_count
  rules: [login]
  group-by: [user_id]
  timespan: 1h
  condition: {field: request_ip, gte: 3}
"#,
    );
    let Evaluated { rules, alerts, .. } = evaluate(&s, "run-3", now_secs()).unwrap();
    let named = outcome(&rules, "named_story");
    assert_eq!(named.result, RuleResult::Fired, "{named:?}");
    assert!(named.canary.as_deref().unwrap().contains("built from its selection"), "{named:?}");
    let regex = outcome(&rules, "regex_only");
    assert_eq!(regex.result, RuleResult::NotFired, "{regex:?}");
    assert!(regex.note.as_deref().unwrap().contains("user_email|re"), "{regex:?}");
    let many = outcome(&rules, "many_logins");
    assert_eq!(many.result, RuleResult::Fired, "{many:?}");
    assert!(many.canary.as_deref().unwrap().starts_with("canary: 4 events"), "{many:?}");
    let distinct = outcome(&rules, "distinct");
    assert_eq!(distinct.result, RuleResult::NotFired, "{distinct:?}");
    assert!(distinct.note.as_deref().unwrap().contains("value_count"), "{distinct:?}");
    assert_eq!(outcome(&rules, "login").result, RuleResult::Counted);
    assert_eq!(alerts.len(), 2);
    let (passed, summary) = summarise(&rules, &[]);
    assert!(!passed);
    assert!(
        summary.contains("regex_only") && summary.contains("distinct") && !summary.contains("named_story"),
        "{summary}"
    );
}

/// The examples of the unexpected-country rule come from Brazil and Japan: with those
/// countries allowed, the rule as configured cannot fire on them, and the self-test says so
/// rather than testing it with values the daemon does not use.
#[test]
fn a_rule_that_cannot_fire_with_the_configured_values_is_named() {
    let Evaluated { rules, .. } = evaluate(&shipped(&["BR", "JP"]), "run-4", now_secs()).unwrap();
    let o = outcome(&rules, "tines_unexpected_country");
    assert_eq!(o.result, RuleResult::NotFired, "{o:?}");
    assert!(o.note.as_deref().unwrap().contains("%allowed_countries%"), "{o:?}");
    let (passed, summary) = summarise(&rules, &[]);
    assert!(!passed && summary.contains("tines_unexpected_country"), "{summary}");
}

#[test]
fn rules_that_are_off_are_listed_and_not_failures() {
    let s = DetectSettings { emulator_geoip: true, suppress_secs: 3600, ..Default::default() };
    let Evaluated { rules, .. } = evaluate(&s, "run-5", now_secs()).unwrap();
    let o = outcome(&rules, "tines_unexpected_country");
    assert_eq!(o.result, RuleResult::Off, "{o:?}");
    assert!(o.note.as_deref().unwrap().contains("allowed_countries"), "{o:?}");
    assert!(summarise(&rules, &[]).0);
}

/// Without GeoIP, the country rules cannot fire as configured: a real finding.
#[test]
fn rules_needing_geoip_do_not_fire_without_it() {
    let s = DetectSettings { suppress_secs: 3600, ..Default::default() };
    let Evaluated { rules, .. } = evaluate(&s, "run-6", now_secs()).unwrap();
    let o = outcome(&rules, "tines_new_country_for_user");
    assert_eq!(o.result, RuleResult::NotFired);
    assert!(o.note.as_deref().unwrap().contains("no GeoIP database is configured (detect.geoip)"), "{o:?}");
    assert_eq!(outcome(&rules, "tines_credential_mass_deletion").result, RuleResult::Fired);
}

#[test]
fn selftest_every_is_off_by_default_at_least_an_hour_and_a_duration() {
    assert_eq!(parse_every(None).unwrap(), None);
    assert_eq!(parse_every(Some("off")).unwrap(), None);
    assert_eq!(parse_every(Some("24h")).unwrap(), Some(Duration::from_secs(86_400)));
    let e = parse_every(Some("30m")).unwrap_err();
    assert!(e.starts_with("detect.selftest_every: ") && e.contains("1h"), "{e}");
    let e = parse_every(Some("daily")).unwrap_err();
    assert!(e.contains("\"daily\" is not a duration"), "{e}");
}

#[test]
fn an_event_count_canary_is_as_many_events_as_its_condition_needs() {
    let t = |preds: Vec<(ConditionOperator, u64)>| {
        threshold(&CorrelationCondition::Threshold { predicates: preds, field: None, percentile: None })
    };
    assert_eq!(t(vec![(ConditionOperator::Gte, 4)]), Some(4));
    assert_eq!(t(vec![(ConditionOperator::Gt, 5)]), Some(6));
    assert_eq!(t(vec![(ConditionOperator::Gt, 2), (ConditionOperator::Lte, 10)]), Some(3));
    assert_eq!(t(vec![(ConditionOperator::Lt, 1)]), None);
}
