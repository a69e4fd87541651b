//! Postfix `smtpd` with STARTTLS and a certificate matrix. One private Postfix instance (its
//! own configuration, queue and data directories, run as `postfix start-fg` so that it is
//! our child and is reaped), with one `smtpd` per server below on its own loopback port.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use connector_probe::lab::certs::{LeafSpec, Pki, Signer};
use time::Duration;

use super::support::{
    Case, Daemon, Group, Need, Place, Target, delivers, failing, free_port, run_area, scratch_dir,
    tool_path,
};

pub const NEEDS: &[Need] = &[
    Need::Root,
    Need::Tool("postfix"),
    Need::Tool("openssl"),
    Need::Tool("ss"),
];

const MAIL: &str = "mail.lab.test";
const CV: &str = "certificate-validation";
const EO: &str = "encryption-only";

#[test]
fn postfix_certificate_matrix() {
    run_area("Postfix certificate matrix", NEEDS, || Place::Host, start);
}

/// What one `smtpd` presents.
enum Cert {
    /// A leaf of the lab PKI, with the chain the spec gives.
    Lab(LeafSpec),
    /// A lab leaf whose chain also carries the root, as some servers send it.
    LabWithRoot(LeafSpec),
    /// Made by `openssl req -x509`: self-signed RSA with `CA:TRUE`, as quick setups and
    /// appliances ship it.
    OpenSsl,
    /// A file that does not exist: Postfix disables TLS but still offers STARTTLS, and
    /// answers it `454 4.7.0 TLS not available due to local problem`.
    Missing,
}

struct Server {
    name: &'static str,
    what: &'static str,
    cert: Cert,
    /// `-o` overrides of this `smtpd`.
    options: &'static [&'static str],
}

fn valid() -> LeafSpec {
    LeafSpec::valid(MAIL)
}

/// OpenSSL 3 negotiates TLS 1.0 and 1.1 only at security level 0 (their handshake signs
/// with SHA-1).
const TLS11_ONLY: &[&str] = &[
    "smtpd_tls_protocols=>=TLSv1,<=TLSv1.1",
    "tls_medium_cipherlist=DEFAULT:@SECLEVEL=0",
];
/// TLS 1.2 with nothing but CBC suites, which rustls (like Microsoft 365) does not offer.
const CBC_ONLY: &[&str] = &[
    "smtpd_tls_protocols=TLSv1.2",
    "tls_medium_cipherlist=ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",
];

/// TLS 1.2 limited to one suite of EOP's list that rustls lacks (AES-CBC with ECDHE-RSA),
/// as older Exchange servers and appliances are configured.
const CBC_SHA384_ONLY: &[&str] = &[
    "smtpd_tls_protocols=TLSv1.2",
    "tls_medium_cipherlist=ECDHE-RSA-AES256-SHA384",
];
/// TLS 1.2 limited to RSA key exchange with AES-GCM, in EOP's list, not in rustls's.
const RSA_KX_ONLY: &[&str] = &[
    "smtpd_tls_protocols=TLSv1.2",
    "tls_medium_cipherlist=AES256-GCM-SHA384",
];
/// TLS 1.2 limited to ChaCha20, which rustls has and EOP never offers.
const CHACHA_ONLY: &[&str] = &[
    "smtpd_tls_protocols=TLSv1.2",
    "tls_medium_cipherlist=ECDHE-RSA-CHACHA20-POLY1305",
];

/// A lab leaf for mail.lab.test with an RSA key, which the ECDHE-RSA and RSA suites need.
fn valid_rsa() -> LeafSpec {
    LeafSpec {
        rsa: true,
        ..valid()
    }
}

fn servers() -> Vec<Server> {
    let server = |name, what, cert| Server {
        name,
        what,
        cert,
        options: &[],
    };
    vec![
        server(
            "valid",
            "valid certificate for mail.lab.test",
            Cert::Lab(valid()),
        ),
        server(
            "full-chain",
            "valid certificate, chain sent with its root",
            Cert::LabWithRoot(valid()),
        ),
        server(
            "expired",
            "expired certificate",
            Cert::Lab(LeafSpec {
                not_before: Duration::days(-90),
                not_after: Duration::days(-1),
                ..valid()
            }),
        ),
        server(
            "not-yet-valid",
            "certificate not valid yet",
            Cert::Lab(LeafSpec {
                not_before: Duration::days(2),
                ..valid()
            }),
        ),
        server(
            "wrong-name",
            "certificate for other.lab.test",
            Cert::Lab(LeafSpec::valid("other.lab.test")),
        ),
        server(
            "self-signed",
            "self-signed certificate",
            Cert::Lab(LeafSpec {
                signer: Signer::SelfSigned,
                ..valid()
            }),
        ),
        server(
            "openssl-self-signed",
            "self-signed by `openssl req -x509` (RSA, CA:TRUE)",
            Cert::OpenSsl,
        ),
        server(
            "unknown-ca",
            "certificate from an unknown CA",
            Cert::Lab(LeafSpec {
                signer: Signer::Stranger,
                ..valid()
            }),
        ),
        server(
            "no-intermediate",
            "chain without its intermediate",
            Cert::Lab(LeafSpec {
                send_intermediate: false,
                ..valid()
            }),
        ),
        server(
            "wildcard",
            "wildcard certificate *.lab.test",
            Cert::Lab(LeafSpec::valid("*.lab.test")),
        ),
        server(
            "deep-name",
            "certificate for mx1.eu.lab.test",
            Cert::Lab(LeafSpec::valid("mx1.eu.lab.test")),
        ),
        server(
            "expiring",
            "certificate expiring in 5 days",
            Cert::Lab(LeafSpec {
                not_after: Duration::days(5),
                ..valid()
            }),
        ),
        Server {
            options: TLS11_ONLY,
            ..server("tls11", "TLS 1.0 and 1.1 only", Cert::Lab(valid()))
        },
        Server {
            options: CBC_ONLY,
            ..server(
                "cbc-only",
                "TLS 1.2 with CBC cipher suites only",
                Cert::Lab(valid()),
            )
        },
        Server {
            options: CBC_SHA384_ONLY,
            ..server(
                "cbc-sha384",
                "TLS 1.2 with ECDHE-RSA-AES256-SHA384 only",
                Cert::Lab(valid_rsa()),
            )
        },
        Server {
            options: RSA_KX_ONLY,
            ..server(
                "rsa-kx",
                "TLS 1.2 with AES256-GCM-SHA384 (RSA key exchange) only",
                Cert::Lab(valid_rsa()),
            )
        },
        Server {
            options: CHACHA_ONLY,
            ..server(
                "chacha",
                "TLS 1.2 with ECDHE-RSA-CHACHA20-POLY1305 only",
                Cert::Lab(valid_rsa()),
            )
        },
        Server {
            options: &["smtpd_tls_security_level=none"],
            ..server("no-starttls", "STARTTLS not offered", Cert::Lab(valid()))
        },
        server(
            "broken-tls",
            "certificate file missing: STARTTLS answered 454",
            Cert::Missing,
        ),
        Server {
            // Postfix checks HELO restrictions at EHLO only without the delayed reject.
            options: &[
                "smtpd_delay_reject=no",
                "smtpd_helo_restrictions=$refuse_probe_helo",
            ],
            ..server(
                "helo-blocked",
                "the probe's HELO name blocked (check_helo_access)",
                Cert::Lab(valid()),
            )
        },
    ]
}

/// The cases: which server, which TLS mode, and what the spec says.
fn cases(servers: &[Server], ports: &HashMap<&str, u16>) -> Vec<Case> {
    let on = |name: &'static str, server: &str, expect| {
        let s = servers.iter().find(|s| s.name == server).expect("a server");
        Case::new(
            name,
            format!("Postfix: {}", s.what),
            Target::Smart {
                host: "127.0.0.1".into(),
                port: ports[server],
            },
            expect,
        )
    };
    let cert_failure = || failing("450 4.7.320", "certificate");
    vec![
        on("pf-valid-dv", "valid", delivers("ok")).domain(MAIL),
        on("pf-valid-cv", "valid", delivers("ok")).tls(CV),
        on("pf-valid-opportunistic", "valid", delivers("ok")),
        on("pf-full-chain-dv", "full-chain", delivers("ok")).domain(MAIL),
        on(
            "pf-expired-cv",
            "expired",
            cert_failure().message("CertificateExpired"),
        )
        .tls(CV),
        on(
            "pf-expired-field-spelling",
            "expired",
            failing("450 4.4.317", "certificate").message("CertificateExpired"),
        )
        .domain(MAIL)
        .setting("certificate_failure_code = \"4.4.317\""),
        on("pf-expired-opportunistic", "expired", delivers("warning")),
        on(
            "pf-not-yet-valid-cv",
            "not-yet-valid",
            cert_failure().message("CertificateExpired"),
        )
        .tls(CV),
        on(
            "pf-wrong-name-dv",
            "wrong-name",
            cert_failure().message("SubjectMismatch"),
        )
        .domain(MAIL),
        on("pf-wrong-name-cv", "wrong-name", delivers("ok")).tls(CV),
        on(
            "pf-self-signed-cv",
            "self-signed",
            cert_failure().message("UntrustedRoot"),
        )
        .tls(CV),
        on(
            "pf-self-signed-encryption-only",
            "self-signed",
            delivers("warning"),
        )
        .tls(EO),
        on(
            "pf-openssl-self-signed-dv",
            "openssl-self-signed",
            // A CA-flagged self-signed leaf is untrusted, as EOP reports it.
            cert_failure().message("UntrustedRoot"),
        )
        .domain(MAIL),
        on(
            "pf-openssl-self-signed-encryption-only",
            "openssl-self-signed",
            delivers("warning"),
        )
        .tls(EO),
        on(
            "pf-unknown-ca-dv",
            "unknown-ca",
            cert_failure().message("UntrustedRoot"),
        )
        .domain(MAIL),
        on(
            "pf-no-intermediate-cv",
            "no-intermediate",
            cert_failure().message("UntrustedRoot"),
        )
        .tls(CV),
        on("pf-wildcard-dv", "wildcard", delivers("ok")).domain(MAIL),
        // A wildcard covers one label, never the domain itself.
        on(
            "pf-wildcard-apex-dv",
            "wildcard",
            cert_failure().message("SubjectMismatch"),
        )
        .domain("lab.test"),
        on("pf-subdomains-dv", "deep-name", delivers("ok")).domain("*.lab.test"),
        on("pf-expiring-dv", "expiring", delivers("warning")).domain(MAIL),
        on(
            "pf-tls11-opportunistic",
            "tls11",
            // EOP sends without TLS over a new connection when the negotiation fails.
            delivers("warning"),
        ),
        on(
            "pf-tls11-dv",
            "tls11",
            failing("450 4.4.317", "tls")
                .message("451 4.4.0 TLS negotiation failed with error AlgorithmMismatch]"),
        )
        .domain(MAIL),
        on("pf-cbc-only-opportunistic", "cbc-only", delivers("warning")),
        // EOP offers these two suites and rustls has neither: the OpenSSL engine handshakes.
        on(
            "pf-cbc-sha384-cv",
            "cbc-sha384",
            delivers("ok").over("openssl", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        )
        .tls(CV),
        on(
            "pf-cbc-sha384-encryption-only",
            "cbc-sha384",
            delivers("ok").over("openssl", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        )
        .tls(EO),
        on(
            "pf-cbc-sha384-opportunistic",
            "cbc-sha384",
            delivers("ok").over("openssl", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        ),
        on(
            "pf-rsa-kx-cv",
            "rsa-kx",
            delivers("ok").over("openssl", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
        )
        .tls(CV),
        on(
            "pf-rsa-kx-encryption-only",
            "rsa-kx",
            delivers("ok").over("openssl", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
        )
        .tls(EO),
        on(
            "pf-rsa-kx-opportunistic",
            "rsa-kx",
            delivers("ok").over("openssl", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
        ),
        // EOP never offers ChaCha20: the negotiation fails where TLS is required; where it is
        // not, EOP sends without TLS over a new connection.
        on("pf-chacha-cv", "chacha", failing("450 4.4.317", "tls")).tls(CV),
        on(
            "pf-chacha-encryption-only",
            "chacha",
            failing("450 4.4.317", "tls"),
        )
        .tls(EO),
        on("pf-chacha-opportunistic", "chacha", delivers("warning")),
        on(
            "pf-no-starttls-opportunistic",
            "no-starttls",
            delivers("warning"),
        ),
        on(
            "pf-no-starttls-encryption-only",
            "no-starttls",
            failing("450 4.4.317", "starttls"),
        )
        .tls(EO),
        on(
            "pf-broken-tls-opportunistic",
            "broken-tls",
            delivers("warning"),
        ),
        on(
            "pf-broken-tls-cv",
            "broken-tls",
            failing("450 4.4.317", "starttls"),
        )
        .tls(CV),
        on(
            "pf-helo-blocked",
            "helo-blocked",
            failing("450 4.4.317", "ehlo"),
        ),
    ]
}

/// Starts the instance in `place` and returns it with its cases.
pub fn start(place: &Place) -> Group {
    let mut group = Group::new(scratch_dir());
    let dir = group.dir.path().to_owned();
    let pki = Pki::new();
    let ca = dir.join("lab-root.pem");
    std::fs::write(&ca, &pki.root.pem).expect("write the lab root");
    group.ca_file = Some(ca);

    let servers = servers();
    let ports: HashMap<&str, u16> = servers.iter().map(|s| (s.name, free_port())).collect();
    let mut master_cf = String::new();
    for s in &servers {
        let (cert, key) = (
            dir.join(format!("{}.crt", s.name)),
            dir.join(format!("{}.key", s.name)),
        );
        match &s.cert {
            Cert::Lab(spec) | Cert::LabWithRoot(spec) => {
                let leaf = pki.leaf(spec);
                let mut chain = leaf.chain_pem;
                if matches!(s.cert, Cert::LabWithRoot(_)) {
                    chain.push_str(&pki.root.pem);
                }
                std::fs::write(&cert, chain).expect("write a chain");
                std::fs::write(&key, leaf.key_pem).expect("write a key");
            }
            Cert::OpenSsl => openssl_self_signed(&cert, &key),
            Cert::Missing => {}
        }
        master_cf.push_str(&format!(
            "127.0.0.1:{} inet n - n - - smtpd -o smtpd_tls_cert_file={} -o smtpd_tls_key_file={}",
            ports[s.name],
            cert.display(),
            key.display()
        ));
        for o in s.options {
            master_cf.push_str(&format!(" -o {o}"));
        }
        master_cf.push('\n');
    }
    // The services smtpd talks to: TLS session cache and randomness, connection counts, and
    // the log writer (Postfix logs through it to stdout, our log file).
    master_cf.push_str(
        "tlsmgr unix - - n 1000? 1 tlsmgr\n\
         anvil unix - - n - 1 anvil\n\
         postlog unix-dgram n - n - 1 postlogd\n",
    );
    // Postfix creates what is inside the queue directory, but not the directory itself.
    std::fs::create_dir(dir.join("spool")).expect("create the queue directory");
    let etc = dir.join("etc");
    std::fs::create_dir(&etc).expect("create the config directory");
    std::fs::write(etc.join("master.cf"), master_cf).expect("write master.cf");
    std::fs::write(etc.join("main.cf"), main_cf(&dir)).expect("write main.cf");

    let postfix = |action: &str| {
        let mut c = place.command(tool_path("postfix"));
        c.arg("-c").arg(&etc).arg(action);
        c
    };
    let tcp: Vec<u16> = ports.values().copied().collect();
    let daemon = Daemon::start(place, &dir, "postfix", postfix("start-fg"), &tcp, &[])
        .stop_with(postfix("stop"));
    group.daemons.push(daemon);

    assert_handshake(
        place,
        ports["tls11"],
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        true,
    );
    assert_handshake(place, ports["tls11"], &["-tls1_2"], false);
    assert_handshake(
        place,
        ports["cbc-only"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
        true,
    );
    // Each limited server really speaks its one suite, or its case proves nothing.
    for (server, cipher) in [
        ("cbc-sha384", "ECDHE-RSA-AES256-SHA384"),
        ("rsa-kx", "AES256-GCM-SHA384"),
        ("chacha", "ECDHE-RSA-CHACHA20-POLY1305"),
    ] {
        assert_handshake(place, ports[server], &["-tls1_2", "-cipher", cipher], true);
    }
    group.cases = cases(&servers, &ports);
    group
}

/// The instance's `main.cf`: everything private to `dir`, nothing that needs DNS or a
/// service this instance does not run.
fn main_cf(dir: &Path) -> String {
    format!(
        "compatibility_level = 3.6\n\
         queue_directory = {d}/spool\n\
         data_directory = {d}/data\n\
         maillog_file = /dev/stdout\n\
         myhostname = mail.lab.test\n\
         mydomain = lab.test\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         # No reverse lookup of the client: the probe's address needs no DNS.\n\
         smtpd_peername_lookup = no\n\
         # No local delivery, so smtpd needs no proxymap, which this instance does not run.\n\
         mydestination =\n\
         local_recipient_maps =\n\
         alias_maps =\n\
         alias_database =\n\
         smtpd_tls_security_level = may\n\
         refuse_probe_helo = check_helo_access inline:{{{{probe.lab.test = REJECT Your HELO name is blocked}}}}\n",
        d = dir.display()
    )
}

/// `openssl req -x509`, as an admin would make a quick self-signed certificate.
fn openssl_self_signed(cert: &Path, key: &Path) {
    let out = Command::new(tool_path("openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
        ])
        .args([
            "-subj",
            "/CN=mail.lab.test",
            "-addext",
            "subjectAltName=DNS:mail.lab.test",
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server that must refuse a modern client has to speak TLS at all, or its case proves
/// nothing: `openssl s_client` with `args` must (or must not) complete a handshake.
fn assert_handshake(place: &Place, port: u16, args: &[&str], succeeds: bool) {
    let out = place
        .command(tool_path("openssl"))
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        succeeds,
        "openssl s_client {args:?} against port {port}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
