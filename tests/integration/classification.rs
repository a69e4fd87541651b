//! Every row of `classification.md`, driven through the real pipeline against a scripted
//! server on loopback (the lab the `demo` command runs). One test per row, so a failure names
//! the row.

use connector_probe::demo::{Lab, catalogue, matches_expectation};

/// Runs one case of the catalogue on its own lab and checks status, code, and that the
/// probe never started a mail transaction.
async fn row(id: &str) {
    let lab = Lab::start(|c| c == id).await.expect("lab starts");
    let results = lab.run().await;
    assert_eq!(results.len(), 1, "case {id} is in the catalogue");
    let (def, v) = &results[0];
    assert!(
        matches_expectation(def, v),
        "{id}: expected {:?} {:?}, got {:?} {:?}\n{:#?}",
        def.expect.status,
        def.expect.code,
        v.status,
        v.code,
        v.targets
    );
    for t in &v.targets {
        match t.code {
            Some(_) => {
                let eop = t
                    .eop_status
                    .as_deref()
                    .expect("a failing target has an EOP status line");
                let queue = t.queue_code.expect("a failing target has a queue code");
                assert!(eop.starts_with(queue), "{id}: {eop:?} starts with {queue}");
                let ndr = t.ndr.expect("a failing target has an NDR code");
                let ndr_line = t.ndr_line.as_deref().expect("and an NDR line");
                assert!(ndr_line.starts_with(ndr), "{id}: {ndr_line:?}");
                assert!(!t.detail.is_empty(), "{id}: a failure has a detail");
            }
            None => assert_eq!(
                t.stage.as_str(),
                "done",
                "{id}: a target without a code got to the end"
            ),
        }
    }
    assert_eq!(
        v.code.is_some(),
        v.status.as_str() == "failing",
        "{id}: code only when failing"
    );
    for line in lab.received_commands() {
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        assert!(
            ["EHLO", "HELO", "STARTTLS", "QUIT"].contains(&verb.as_str()),
            "{id}: the probe sent {line:?}; it may only send EHLO, HELO, STARTTLS and QUIT"
        );
    }
}

macro_rules! rows {
    ($($test:ident => $id:literal,)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                row($id).await;
            }
        )*

        /// Every case of the catalogue has its test here.
        #[test]
        fn every_catalogue_case_has_a_test() {
            let tested = [$($id),*];
            for def in catalogue() {
                assert!(tested.contains(&def.id), "no test for catalogue case {}", def.id);
            }
        }
    };
}

rows! {
    resolve_nxdomain => "dns-nxdomain",
    resolve_nodata => "dns-nodata",
    resolve_servfail => "dns-servfail",
    resolve_refused => "dns-refused",
    resolve_timeout => "dns-timeout",
    resolve_no_resolver => "dns-no-resolver",
    resolve_null_mx => "mx-null",
    resolve_mx_domain_nonexistent => "mx-nxdomain",
    resolve_mx_no_records => "mx-no-records",
    resolve_smart_host_through_its_mx => "smart-host-mx",
    resolve_mx_host_unresolvable => "mx-host-unresolvable",
    resolve_mx_lookup_fails => "mx-lookup-fails",
    resolve_implicit_mx => "mx-implicit",
    resolve_mx_healthy => "mx-healthy",
    connect_timeout => "connect-timeout",
    connect_refused => "connect-refused",
    connect_reset_after_handshake => "connect-reset",
    banner_eof => "banner-eof",
    banner_reset_mid_greeting => "banner-partial-reset",
    banner_timeout => "banner-timeout",
    banner_421 => "banner-421",
    banner_554 => "banner-554",
    banner_not_smtp => "banner-ssh",
    banner_line_too_long => "banner-long-line",
    ehlo_refused_helo_accepted => "ehlo-helo-fallback",
    ehlo_4xx => "ehlo-421",
    ehlo_and_helo_refused => "ehlo-helo-refused",
    ehlo_eof => "ehlo-eof",
    ehlo_timeout => "ehlo-timeout",
    starttls_missing_opportunistic => "starttls-missing-opportunistic",
    starttls_missing_required => "starttls-missing-required",
    starttls_refused_opportunistic => "starttls-454-opportunistic",
    starttls_refused_required => "starttls-454-required",
    starttls_injection_opportunistic => "starttls-injection",
    starttls_injection_required => "starttls-injection-required",
    starttls_eof_opportunistic => "starttls-eof",
    starttls_eof_required => "starttls-eof-required",
    tls_protocol_version_alert_opportunistic => "tls-old-protocol",
    tls_protocol_version_alert_required => "tls-old-protocol-required",
    tls_not_a_record_opportunistic => "tls-not-tls",
    tls_not_a_record_required => "tls-not-tls-required",
    tls_reset_opportunistic => "tls-reset",
    tls_reset_required => "tls-reset-required",
    tls_timeout_opportunistic => "tls-timeout",
    tls_timeout_required => "tls-timeout-required",
    certificate_expired => "cert-expired",
    certificate_not_yet_valid => "cert-not-yet-valid",
    certificate_self_signed => "cert-self-signed",
    certificate_unknown_ca => "cert-unknown-ca",
    certificate_missing_intermediate => "cert-missing-intermediate",
    certificate_wrong_key_usage => "cert-wrong-usage",
    certificate_revoked => "cert-revoked",
    certificate_subject_mismatch => "cert-subject-mismatch",
    certificate_self_signed_encryption_only => "cert-self-signed-encryption-only",
    certificate_expired_opportunistic => "cert-expired-opportunistic",
    certificate_expiring_soon => "cert-expiring-soon",
    certificate_wildcard_one_label => "cert-wildcard",
    tls_domain_subdomains => "tls-domain-subdomains",
    certificate_field_spelling => "cert-expired-field-spelling",
    ehlo_tls_refused => "ehlo-tls-refused",
    ehlo_tls_eof => "ehlo-tls-eof",
    quit_reset_ignored => "quit-reset",
    healthy => "healthy",
    degraded => "degraded",
}

/// What the probe writes, `explain` reads back: for every failing target of every lab case,
/// the queue line and the NDR line parse to the condition the table gave, the code the line
/// starts with, the MFI code, and the server and address it names. So the probe's wording and
/// `explain`'s reading come from one table and cannot drift apart.
#[tokio::test]
async fn explain_reads_back_every_line_the_probe_writes() {
    use connector_probe::explain::parse::parse;
    let lab = Lab::start(|_| true).await.expect("lab starts");
    let mut checked = 0;
    for (def, v) in lab.run().await {
        for t in v.targets.iter().filter(|t| !t.succeeded()) {
            let (Some(eop), Some(ndr_line), Some(condition)) =
                (&t.eop_status, &t.ndr_line, t.condition)
            else {
                continue;
            };
            let queue = parse(eop).unwrap_or_else(|| panic!("{}: not read: {eop}", def.id));
            assert_eq!(queue.condition, condition, "{}: {eop}", def.id);
            assert_eq!(Some(queue.code.as_str()), t.queue_code, "{}: {eop}", def.id);
            assert_eq!(queue.server.as_deref(), Some(t.host.as_str()), "{}", def.id);
            if t.stage.as_str() != "resolve" {
                assert_eq!(
                    queue.ip,
                    t.address.map(|a| a.to_string()),
                    "{}: {eop}",
                    def.id
                );
                assert_eq!(queue.port, Some(t.port), "{}: {eop}", def.id);
            }
            let mfi = connector_probe::verdict::Code::render(
                t.failure.as_ref().unwrap().code,
                connector_probe::config::CertificateFailureCode::CertificateValidationFailed,
            );
            assert_eq!(queue.mfi_code.as_deref(), Some(mfi), "{}: {eop}", def.id);
            let ndr = parse(ndr_line).unwrap_or_else(|| panic!("{}: not read: {ndr_line}", def.id));
            assert_eq!(ndr.condition, condition, "{}: {ndr_line}", def.id);
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} failing targets checked");
}
